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
"""Escalation on Nova's real monitor loop, fed with recorded job stats.

Nova's ``_live_migration_monitor`` polls ``jobStats()`` every 0.5 s; here
the fake domain answers with a recorded sequence of a guest that does not
converge, and the test asserts what reached libvirt: downtime steps scaled
to the plan, a post-copy switch, or an abort on the progress timeout.
"""

import threading
import time

import fixtures
from nova.tests.fixtures import libvirt as fakelibvirt

from tests.functional import base

MIB = 1024 * 1024
TOTAL = 1024 * MIB


def _stalling(samples, first_pass=6, step_ms=500, jump_ms=0):
    """Job stats of a 1 GiB guest that stops converging at ~400 MiB."""
    out = []
    for i in range(1, samples + 1):
        if i <= first_pass:
            iteration, remaining = 1, 1024 - 104 * i
        else:
            k = i - first_pass
            iteration = 1 + (k + 1) // 2
            remaining = 400 + (k % 2) * 100
        elapsed = step_ms * i + (jump_ms * (i - first_pass)
                                 if i > first_pass else 0)
        out.append({
            'type': fakelibvirt.VIR_DOMAIN_JOB_UNBOUNDED,
            'time_elapsed': elapsed,
            'memory_total': TOTAL,
            'memory_remaining': remaining * MIB,
            'memory_processed': TOTAL - remaining * MIB,
            'memory_iteration': iteration,
            'memory_dirty_rate': 150000,
            'memory_page_size': 4096,
            'memory_bps': 100 * MIB,
        })
    return out


class EscalationTest(base.QATMigrationTestBase):

    POLICY = 'static'

    def setUp(self):
        super().setUp()
        self.sequences = {}
        self.downtimes = []
        self.postcopy = []
        self.aborted = []
        self.lock = threading.Lock()
        # NOTE(qat-migration): Nova's fake domain reports only the job type
        # and has no migrateStartPostCopy; these stand-ins replay recorded
        # stats and record the runtime calls.
        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.jobStats',
            lambda dom, flags=0: self._job_stats(dom, flags)))
        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.migrateSetMaxDowntime',
            lambda dom, ms: self.downtimes.append(ms)))
        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.migrateStartPostCopy',
            lambda dom, flags=0: self._start_postcopy(dom, flags)))
        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.abortJob',
            lambda dom, flags=0: self._abort(dom)))
        self.flags(downtime_ms=1000, group='qat_migration')

    def wait_for_migration(self, server, statuses, timeout=60):
        """Like Nova's helper, which gives up after 5 s.

        The monitor polls every 0.5 s, so a replayed sequence takes longer.
        """
        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            for migration in self.api.api_get(
                    '/os-migrations?instance_uuid=%s' % server['id']
            ).body['migrations']:
                status = migration['status']
                if status in statuses:
                    return migration
            time.sleep(0.5)
        self.fail('migration of %s still %s' % (server['id'], status))

    def start_migration(self, server):
        self.api.post_server_action(
            server['id'], {'os-migrateLive': {'host': 'dest',
                                              'block_migration': 'auto'}})

    def _job_stats(self, dom, flags=0):
        with self.lock:
            seq = self.sequences.get(dom.UUIDString())
            if dom._job_type != fakelibvirt.VIR_DOMAIN_JOB_UNBOUNDED:
                return {'type': dom._job_type}
            if seq:
                return seq.pop(0)
            dom.complete_job()
            return {'type': dom._job_type}

    def _start_postcopy(self, dom, flags=0):
        self.postcopy.append(dom.UUIDString())
        # In post-copy the guest runs on the destination; the rest of
        # the pages follow on demand and the job completes.
        with self.lock:
            self.sequences[dom.UUIDString()] = []

    def _abort(self, dom):
        self.aborted.append(dom.UUIDString())
        dom._job_type = fakelibvirt.VIR_DOMAIN_JOB_CANCELLED

    def _migrate_stub(self, domain, destination, params, flags):
        uuid = domain.UUIDString()
        with self.calls_lock:
            self.calls.setdefault(uuid, []).append(
                {'flags': flags, 'params': dict(params)})
        if self.sequences.get(uuid) is not None:
            # Keep the job running: the monitor replays the stats; the
            # destination domain exists once the job completes.
            self.computes['dest'].driver._host.get_connection().createXML(
                params['destination_xml'],
                'fake-createXML-doesnt-care-about-flags')
            domain._job_type = fakelibvirt.VIR_DOMAIN_JOB_UNBOUNDED
            return
        super()._migrate_stub(domain, destination, params, flags)

    def test_stalled_guest_switches_to_post_copy(self):
        self.flags(method='xbzrle', group='qat_migration_static')
        self.flags(permit_post_copy=True, post_copy_after_stalled=2,
                   progress_timeout=0, group='qat_migration')
        self.start_qat_compute('src')
        self.start_qat_compute('dest')
        server = self.server_on('src')
        self.sequences[server['id']] = _stalling(24, first_pass=3)
        self.start_migration(server)
        migration = self.wait_for_migration(server, ['completed'])
        server = self._wait_for_state_change(server, 'ACTIVE')
        self.assertEqual('dest', server['OS-EXT-SRV-ATTR:host'])
        flags = base.flag_set(self.last_call(server)['flags'])
        self.assertIn('POSTCOPY', flags)
        self.assertEqual([server['id']], self.postcopy)
        # Nova's first downtime step (50 ms of its 500 ms) scaled to the
        # plan's 1000 ms target less its 25% headroom (750 ms for QEMU),
        # then stepped up by stalled iterations, never past 750 ms.
        self.assertEqual(75, self.downtimes[0])
        self.assertEqual(sorted(self.downtimes), self.downtimes)
        self.assertGreater(max(self.downtimes), 75)
        self.assertLessEqual(max(self.downtimes), 750)
        self.assertEqual('completed', migration['status'])
        self.wait_for_driver_cleanup('src')
        self.assertIn('"actions": [{"kind": "downtime"',
                      self.stdlog.logger.output)
        self.assertIn('"kind": "post_copy"', self.stdlog.logger.output)

    def test_progress_timeout_aborts_and_guest_stays(self):
        self.flags(method='none', group='qat_migration_static')
        self.flags(permit_post_copy=False, progress_timeout=5,
                   group='qat_migration')
        self.start_qat_compute('src')
        self.start_qat_compute('dest')
        server = self.server_on('src')
        # No new low after the first pass, and 3 s pass per sample.
        self.sequences[server['id']] = _stalling(30, first_pass=3,
                                                 jump_ms=3000)
        self.start_migration(server)
        self.wait_for_migration(server, ['cancelled'])
        server = self._wait_for_state_change(server, 'ACTIVE')
        self.assertEqual('src', server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual([server['id']], self.aborted)
        self.assertEqual([], self.postcopy)
        self.wait_for_driver_cleanup('src')
        self.assertIn('"outcome": "aborted"', self.stdlog.logger.output)
        history = self.driver_of('src')._qat_history.get(server['id'])
        self.assertFalse(history.converged)
