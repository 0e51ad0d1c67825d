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
"""The per-host migration history and the per-migration report."""

import json
import os
import threading

import fixtures
import testtools

from nova_qat_migration import datamodel
from nova_qat_migration import history
from nova_qat_migration import report


class HistoryStoreTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.path = self.useFixture(fixtures.TempDir()).path

    def test_unknown_instance_is_empty_history(self):
        store = history.HistoryStore(self.path)
        self.assertEqual(datamodel.History(), store.get('nope'))

    def test_record_persists_and_counts(self):
        store = history.HistoryStore(self.path)
        store.record('a', {'dirty_rate_mbps': 80.0, 'method': 'zstd',
                           'converged': True})
        store.record('a', {'dirty_rate_mbps': None, 'total_s': 4.5})
        again = history.HistoryStore(self.path).get('a')
        self.assertEqual(2, again.migrations)
        # None keeps the last measurement.
        self.assertEqual(80.0, again.dirty_rate_mbps)
        self.assertEqual('zstd', again.method)
        self.assertEqual(4.5, again.total_s)
        self.assertEqual(sorted([history.FILENAME, history.LOCKNAME]),
                         sorted(os.listdir(self.path)))

    def test_bounded_oldest_out(self):
        store = history.HistoryStore(self.path, max_entries=3)
        for name in 'abcd':
            store.record(name, {'method': 'none'})
        store.record('b', {'method': 'xbzrle'})    # b is now newest
        store.record('e', {'method': 'none'})
        self.assertEqual(3, len(store))
        reloaded = history.HistoryStore(self.path, max_entries=3)
        self.assertEqual(0, reloaded.get('a').migrations)
        self.assertEqual(0, reloaded.get('c').migrations)
        self.assertEqual('xbzrle', reloaded.get('b').method)
        self.assertEqual(1, reloaded.get('e').migrations)

    def test_corrupt_file_starts_empty(self):
        with open(os.path.join(self.path, history.FILENAME), 'w') as f:
            f.write('{"instances": [{"uuid": "a", "migr')
        logger = self.useFixture(fixtures.FakeLogger())
        store = history.HistoryStore(self.path)
        self.assertEqual(0, len(store))
        self.assertIn('Ignoring unreadable migration history',
                      logger.output)
        store.record('a', {'method': 'none'})
        with open(os.path.join(self.path, history.FILENAME)) as f:
            self.assertEqual('a', json.load(f)['instances'][0]['uuid'])

    def test_wrong_shape_starts_empty(self):
        with open(os.path.join(self.path, history.FILENAME), 'w') as f:
            json.dump({'instances': {'a': 1}}, f)
        self.useFixture(fixtures.FakeLogger())
        self.assertEqual(0, len(history.HistoryStore(self.path)))

    def test_unwritable_path_keeps_memory(self):
        target = os.path.join(self.path, 'file')
        open(target, 'w').close()
        logger = self.useFixture(fixtures.FakeLogger())
        store = history.HistoryStore(os.path.join(target, 'sub'))
        store.record('a', {'method': 'none'})
        self.assertEqual(1, store.get('a').migrations)
        self.assertIn('Could not write migration history', logger.output)

    def test_concurrent_records(self):
        store = history.HistoryStore(self.path, max_entries=1000)

        def work(prefix):
            for i in range(25):
                store.record('%s-%d' % (prefix, i), {'method': 'none'})

        threads = [threading.Thread(target=work, args=(p,))
                   for p in 'abcd']
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(100, len(history.HistoryStore(self.path)))
        leftovers = [n for n in os.listdir(self.path)
                     if n not in (history.FILENAME, history.LOCKNAME)]
        self.assertEqual([], leftovers)


class ReportTest(testtools.TestCase):

    def _record(self, **kw):
        plan = datamodel.Plan(policy='adaptive', method='zstd', level=1,
                              parallel_connections=4, reasons=('idle CPU',))
        args = dict(
            instance_uuid='u1', instance_name='vm', requested=plan,
            outcome=report.OUTCOME_COMPLETED, total_s=12.3456,
            last_stats={'memory_total': 1024 * datamodel.MIB,
                        'memory_processed': 512 * datamodel.MIB,
                        'time_elapsed': 4000, 'downtime': 999},
            completed_stats={'downtime': 42, 'memory_iteration': 3},
            summary={'max_dirty_rate_mbps': 33.0, 'xbzrle_hit_ratio': None},
            sent_params={'compression': 'zstd', 'destination_xml': '<x/>',
                         'parallel.connections': 4},
            sent_flags=['LIVE', 'PARALLEL'])
        args.update(kw)
        return report.build(**args)

    def test_record_fields(self):
        record = self._record()
        self.assertEqual('u1', record['instance'])
        self.assertEqual('adaptive[zstd-1 x4] downtime<=500ms',
                         record['plan'])
        self.assertEqual(['idle CPU'], record['reasons'])
        self.assertEqual(['LIVE', 'PARALLEL'], record['flags'])
        self.assertNotIn('destination_xml', record['params'])
        self.assertEqual(0.5, record['wire_ratio'])
        self.assertEqual(128.0, record['wire_mbps'])
        # The completed job's downtime, not the running job's expectation.
        self.assertEqual(42, record['downtime_ms'])
        self.assertEqual(3, record['iterations'])
        self.assertEqual(12.346, record['total_s'])
        failed = self._record(completed_stats={})
        self.assertIsNone(failed['downtime_ms'])

    def test_history_values(self):
        values = report.history_values(self._record())
        self.assertEqual({'dirty_rate_mbps': 33.0, 'wire_mbps': 128.0,
                          'compression_ratio': 0.5,
                          'xbzrle_hit_ratio': None, 'method': 'zstd',
                          'converged': True, 'total_s': 12.346}, values)

    def test_emit_logs_one_line_and_feeds_history(self):
        logger = self.useFixture(fixtures.FakeLogger())
        store = history.HistoryStore(None)
        report.emit(self._record(), store)
        lines = [line for line in logger.output.splitlines()
                 if line.startswith(report.PREFIX)]
        self.assertEqual(1, len(lines))
        self.assertEqual('u1', json.loads(
            lines[0][len(report.PREFIX):])['instance'])
        self.assertEqual('zstd', store.get('u1').method)

    def test_emit_never_raises(self):
        class Broken:
            def record(self, *a):
                raise OSError('disk full')

        self.useFixture(fixtures.FakeLogger())
        report.emit(self._record(outcome='failed'), Broken())
