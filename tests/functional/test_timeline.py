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
"""A migration's timeline through Nova's real monitor loop.

Nova's ``_live_migration_monitor`` polls the fake domain's recorded job
stats (as in :mod:`tests.functional.test_escalation`); the source
compute's history entry then carries the timeline, which the operator's
command prints.
"""

import io
import json
import os

import fixtures

from nova_qat_migration.cmd import cli
from tests.functional import test_escalation


class TimelineTest(test_escalation._ReplayTestBase):

    def timeline_of(self, server):
        """The source's history file and the server's timeline in it."""
        store = self.driver_of('src')._qat_history
        with open(store.filename) as f:
            data = json.load(f, parse_constant=self.fail)   # strict JSON
        entry = {e['uuid']: e for e in data['instances']}[server['id']]
        return store.filename, entry['timeline']

    def run_cli(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', out))
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', err))
        code = cli.main(list(argv))
        return code, out.getvalue(), err.getvalue()

    def test_stalled_guest_switched_to_post_copy(self):
        self.flags(method='xbzrle', group='qat_migration_static')
        self.flags(permit_post_copy=True, post_copy_after_stalled=2,
                   progress_timeout=0, group='qat_migration')
        self.start_qat_compute('src')
        self.start_qat_compute('dest')
        server = self.server_on('src')
        sequence = test_escalation._stalling(24, first_pass=3)
        self.sequences[server['id']] = list(sequence)
        self.start_migration(server)
        self.wait_for_migration(server, ['completed'])
        self.wait_for_driver_cleanup('src')
        path, data = self.timeline_of(server)

        self.assertEqual('completed', data['outcome'])
        self.assertEqual(server['id'], data['instance'])
        self.assertTrue(data['plan'].startswith('static[xbzrle'), data)
        self.assertEqual('src', data['host'])
        self.assertTrue(data['name'].startswith('instance-'), data)
        # Every poll of the monitor until the switch, in order, with the
        # recorded numbers (MiB).
        samples = data['samples']
        self.assertEqual(data['samples_seen'], len(samples))
        self.assertGreater(len(samples), 5)
        times = [s[0] for s in samples]
        self.assertEqual([r['time_elapsed'] / 1000.0
                          for r in sequence[:len(samples)]], times)
        self.assertEqual([920.0, 816.0, 712.0],
                         [s[1] for s in samples[:3]])
        # The actions with their times: Nova's first downtime step as
        # scaled for QEMU, the escalation's steps, then post-copy.
        events = data['events']
        self.assertEqual(self.downtimes,
                         [e['value'] for e in events
                          if e['kind'] == 'downtime'])
        self.assertIn("Nova's downtime step", events[0]['reason'])
        switch = [e for e in events if e['kind'] == 'post_copy']
        self.assertEqual(1, len(switch))
        self.assertTrue(switch[0]['reason'], switch)
        self.assertEqual(times[-1], switch[0]['t'])
        # The model's line for the plan, and its value at every sample.
        self.assertTrue(data['predicted'])
        self.assertTrue(all(s[7] is not None for s in samples[:3]))

        code, out, err = self.run_cli('timeline', server['id'],
                                      '--history-file', path)
        self.assertEqual(0, code, err)
        self.assertIn('completed', out.splitlines()[0])
        self.assertIn('post_copy', out)
        self.assertEqual(len(samples), len(out.splitlines()) - 4)

        svg = os.path.join(self.useFixture(fixtures.TempDir()).path,
                           'timeline.svg')
        code, _, err = self.run_cli('timeline', server['id'],
                                    '--history-file', path, '--output', svg)
        self.assertEqual(0, code, err)
        with open(svg) as f:
            self.assertIn('post_copy', f.read())

    def test_aborted_migration_keeps_its_timeline(self):
        self.flags(method='none', group='qat_migration_static')
        self.flags(permit_post_copy=False, progress_timeout=5,
                   group='qat_migration')
        self.start_qat_compute('src')
        self.start_qat_compute('dest')
        server = self.server_on('src')
        self.sequences[server['id']] = test_escalation._stalling(
            30, first_pass=3, jump_ms=3000)
        self.start_migration(server)
        self.wait_for_migration(server, ['cancelled'])
        self.wait_for_driver_cleanup('src')
        _, data = self.timeline_of(server)
        self.assertEqual('aborted', data['outcome'])
        aborts = [e for e in data['events'] if e['kind'] == 'abort']
        self.assertEqual(1, len(aborts))
        self.assertIn('progress timeout 5 s', aborts[0]['reason'])
        # Asked for after the last sample the escalation saw.
        self.assertEqual(data['samples'][-1][0], aborts[0]['t'])
