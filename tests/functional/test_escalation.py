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

import os
import threading
import time

import fixtures
from nova import conf as nova_conf
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


def _block_copy(samples, stall_after=None, step_ms=500, jump_ms=3000,
                disk_mib=4096):
    """Job stats of a block migration's disk copy (memory not started).

    libvirt copies the disks with an NBD drive-mirror before QEMU's memory
    migration starts; until then every memory_* stat is 0. 128 MiB are
    copied per sample, none after ``stall_after`` samples.
    """
    out = []
    for i in range(1, samples + 1):
        copied = 128 * min(i, stall_after or i)
        out.append({
            'type': fakelibvirt.VIR_DOMAIN_JOB_UNBOUNDED,
            'time_elapsed': (step_ms + jump_ms) * i,
            'memory_total': 0, 'memory_remaining': 0,
            'memory_processed': 0, 'memory_iteration': 0,
            'disk_total': disk_mib * MIB, 'disk_processed': copied * MIB,
            'disk_remaining': (disk_mib - copied) * MIB,
            'disk_bps': 100 * MIB,
        })
    return out


def _converging_after(stats, disk_mib=4096):
    """A 1 GiB guest converging after the disk copy, mirrors in sync."""
    t0 = stats[-1]['time_elapsed']
    out = []
    for i, remaining in enumerate((900, 600, 300, 100, 20, 5), start=1):
        out.append({
            'type': fakelibvirt.VIR_DOMAIN_JOB_UNBOUNDED,
            'time_elapsed': t0 + 500 * i,
            'memory_total': TOTAL, 'memory_remaining': remaining * MIB,
            'memory_processed': TOTAL - remaining * MIB,
            'memory_iteration': 1 if i < 5 else 2,
            'memory_dirty_rate': 0, 'memory_page_size': 4096,
            'memory_bps': 100 * MIB,
            'disk_total': disk_mib * MIB, 'disk_processed': disk_mib * MIB,
            'disk_remaining': 0,
        })
    return out


class _ReplayTestBase(base.QATMigrationTestBase):
    """The fake domain replays recorded job stats to Nova's monitor."""

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


class EscalationTest(_ReplayTestBase):

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


class BlockMigrationTest(_ReplayTestBase):
    """Issue 21: a block migration through Nova's API and monitor.

    NOTE(qat-migration): both fake computes share one instances_path, so
    Nova would take the storage for shared: the test says it is not, gives
    the destination its own instance directory and skips its image
    download (the fake has no image backend to copy from).
    """

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.driver.LibvirtDriver.'
            '_check_shared_storage_test_file', lambda *a, **k: False))
        dest_root = self.useFixture(fixtures.TempDir()).path
        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.utils.get_instance_path_at_destination',
            lambda instance, migrate_data=None: '%s/%s' % (dest_root,
                                                           instance.uuid)))
        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.driver.LibvirtDriver.'
            '_create_images_and_backing', lambda *a, **k: None))
        self.flags(method='none', group='qat_migration_static')

    def block_server(self):
        """A server on src whose root disk file holds 8 MiB of data.

        The fake image backend writes no disk files; Nova's own disk
        listing (and the planner's) reads them.
        """
        server = self.server_on('src')
        path = os.path.join(nova_conf.CONF.instances_path, server['id'])
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, 'disk'), 'wb') as f:
            f.truncate(1024 * MIB)
            f.write(b'\x01' * 8 * MIB)
        return server

    def migrate_block(self, sequence, status):
        """Block-migrate a new server while the fake replays ``sequence``.

        Post-copy is permitted and the progress timeout is 5 s.

        :returns: the server once its migration is ``status``.
        """
        self.flags(permit_post_copy=True, post_copy_after_stalled=1,
                   progress_timeout=5, group='qat_migration')
        self.start_qat_compute('src')
        self.start_qat_compute('dest')
        server = self.block_server()
        self.sequences[server['id']] = list(sequence)
        self.start_migration(server)
        self.wait_for_migration(server, [status])
        return self._wait_for_state_change(server, 'ACTIVE')

    def test_disk_copy_longer_than_the_progress_timeout_completes(self):
        # 20 samples of disk copy, 3.5 s of job time each (70 s), with a
        # 5 s progress timeout: memory_remaining stays 0 all along.
        copy = _block_copy(20)
        server = self.migrate_block(copy + _converging_after(copy),
                                    'completed')
        self.assertEqual('dest', server['OS-EXT-SRV-ATTR:host'])
        call = self.last_call(server)
        self.assertIn('NON_SHARED_INC', base.flag_set(call['flags']))
        self.assertTrue(call['params'].get('migrate_disks'))
        self.assertEqual([], self.aborted)
        self.assertEqual([], self.postcopy)
        self.wait_for_driver_cleanup('src')
        log = self.stdlog.logger.output
        self.assertIn('"outcome": "completed"', log)
        self.assertIn('"block_migration": true', log)
        # What libvirt copied, beside the 8 MiB the root disk file holds.
        self.assertIn('block migration disks: libvirt copied 4096 of 4096 '
                      'MiB (0 MiB left); 8 MiB planned from the disks', log)
        self.assertIn('Block migration: disks in sync after', log)

    def test_stalled_disk_copy_aborts_without_post_copy(self):
        # The copy stops after 5 samples; post-copy is permitted but QEMU's
        # memory migration never started: abort, the guest stays.
        server = self.migrate_block(_block_copy(30, stall_after=5),
                                    'cancelled')
        self.assertEqual('src', server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual([server['id']], self.aborted)
        self.assertEqual([], self.postcopy)
        self.wait_for_driver_cleanup('src')
        log = self.stdlog.logger.output
        self.assertIn('"outcome": "aborted"', log)
        self.assertIn('disk copy stalled', log)
        self.assertIn('no post-copy while the disks are copied', log)
