# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.
"""The soak's verdict (:func:`nova_qat_migration_lab.soak.summarize`) on
records it could have written."""

import copy

import testtools

from nova_qat_migration_lab import soak


def _row(n, rss=100000, fds=40, **extra):
    row = {'n': n, 'guest': 'adaptive', 'source': 'a', 'dest': 'b',
           'outcome': 'completed', 'integrity': 'ok', 'backend': 'libvirt',
           'held': {'in_flight_migrations': 0, 'cores_held': 0,
                    'xbzrle_mb_held': 0, 'qat_leases_held': 0},
           'link_share': 1.0,
           'globals': {'live': {}, 'persistent': {}},
           'computes': {'a': {'rss_kib': rss, 'fds': fds},
                        'b': {'rss_kib': rss, 'fds': fds}}}
    row.update(extra)
    return row


class TestSoakSummary(testtools.TestCase):

    def rows(self):
        return [_row(n, rss=100000 + n * 100) for n in range(1, 53)]

    def test_clean_run_passes(self):
        summary = soak.summarize(self.rows())
        self.assertTrue(summary['passed'], summary)
        self.assertEqual(52, summary['migrations'])
        self.assertLess(summary['computes']['a']['rss_growth'], 0.10)

    def test_each_kind_of_failure_fails(self):
        for n, change in (
                (20, {'outcome': 'error'}),
                (21, {'integrity': 'FAIL'}),
                (22, {'held': {'qat_leases_held': 1}}),
                (23, {'link_share': 0.5}),
                (24, {'globals': {'live': {}, 'persistent': {
                    'multifd-compression': 'qatzip'}}}),
                (25, {'globals': {'live': {'multifd-compression': 'qatzip'},
                                  'persistent': {}}})):
            rows = self.rows()
            rows[n - 1].update(copy.deepcopy(change))
            summary = soak.summarize(rows)
            self.assertFalse(summary['passed'], (n, change))
        # A passthrough hop's live -global is what it asked for.
        rows = self.rows()
        rows[30].update({'backend': 'qemu-passthrough', 'globals': {
            'live': {'multifd-compression': 'qatzip'}, 'persistent': {}}})
        self.assertTrue(soak.summarize(rows)['passed'])

    def test_growth_from_the_tenth_migration(self):
        rows = self.rows()
        rows[-1]['computes']['b']['rss_kib'] = 200000
        self.assertFalse(soak.summarize(rows)['passed'])
        rows = self.rows()
        rows[-1]['computes']['a']['fds'] = 41
        self.assertFalse(soak.summarize(rows)['passed'])
        # Growth before the tenth migration (warm-up) is not counted.
        rows = self.rows()
        rows[0]['computes']['a']['rss_kib'] = 50000
        self.assertTrue(soak.summarize(rows)['passed'])
