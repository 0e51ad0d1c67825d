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
"""Running a planned migration: the operation thread's domain (flag swap,
param merge, passthrough, refusal retry), the monitor's (escalations,
downtime scaling, aborts) and the session they share. The domain is a
``mock.Mock`` where the test records calls a ``virDomain`` would receive.
"""

import json
from unittest import mock

import fixtures
from nova.tests.fixtures import libvirt as fakelibvirt

from nova_qat_migration.conf import CONF
from nova_qat_migration import datamodel
from nova_qat_migration import outcomes
from nova_qat_migration.policy import base
from nova_qat_migration.policy import escalation
from nova_qat_migration.policy import nova_default
from nova_qat_migration.virt.libvirt import constants as c
from nova_qat_migration.virt.libvirt import monitor as lm_monitor
from nova_qat_migration.virt.libvirt import operation as lm_operation
from nova_qat_migration.virt.libvirt import translate
from tests.unit.virt.libvirt import test_driver

CAPS = test_driver.CAPS
DEST = test_driver.DEST
NOVA_FLAGS = test_driver.NOVA_FLAGS
make_session = test_driver.make_session


def _refusal(code_name='VIR_ERR_ARGUMENT_UNSUPPORTED'):
    return fakelibvirt.make_libvirtError(
        fakelibvirt.libvirtError, 'unsupported',
        error_code=getattr(fakelibvirt, code_name))


class _DomainTestBase(test_driver.DriverTestBase):

    def setUp(self):
        super().setUp()
        self.domain = mock.Mock()
        self.nova_params = {'bandwidth': 0, 'destination_xml': '<d/>',
                            'persistent_xml': '<d/>'}

    def _zstd(self):
        return make_session(datamodel.Plan(
            policy='static', method='zstd', level=3, parallel_connections=4))


class PlannedDomainTest(_DomainTestBase):
    """Nova's operation thread: the call sent instead of Nova's."""

    def test_flags_swapped_params_merged(self):
        session = self._zstd()
        proxy = lm_operation.PlannedDomain(self.domain, session)
        proxy.migrateToURI3('qemu+tcp://dest/system', self.nova_params,
                            NOVA_FLAGS)
        sent = self.domain.migrateToURI3.call_args.kwargs
        self.assertEqual(NOVA_FLAGS | c.VIR_MIGRATE_PARALLEL, sent['flags'])
        self.assertEqual('zstd', sent['params']['compression'])
        self.assertEqual(3, sent['params']['compression.zstd.level'])
        self.assertEqual(4, sent['params']['parallel.connections'])
        self.assertEqual('<d/>', sent['params']['destination_xml'])
        self.assertEqual(sent['params'], session.sent_params)

    def test_nova_parallel_dropped_for_single_stream_plan(self):
        session = make_session(datamodel.Plan(
            policy='static', method='xbzrle', xbzrle_cache_mb=128))
        params = dict(self.nova_params, **{'parallel.connections': 4})
        lm_operation.PlannedDomain(self.domain, session).migrateToURI3(
            'uri', params, NOVA_FLAGS | c.VIR_MIGRATE_PARALLEL)
        sent = self.domain.migrateToURI3.call_args.kwargs
        self.assertNotIn('parallel.connections', sent['params'])
        self.assertFalse(sent['flags'] & c.VIR_MIGRATE_PARALLEL)

    def test_non_shared_inc_dropped_without_disks(self):
        facts = datamodel.Facts(hypervisor=CAPS, destination=DEST,
                                block_migration=True)
        session = make_session(datamodel.Plan(
            policy='static', method='zstd', parallel_connections=2), facts)
        self.assertTrue(session.call.flags & c.VIR_MIGRATE_NON_SHARED_INC)
        proxy = lm_operation.PlannedDomain(self.domain, session)
        proxy.migrateToURI3('uri', self.nova_params, NOVA_FLAGS)
        sent = self.domain.migrateToURI3.call_args.kwargs
        self.assertFalse(sent['flags'] & c.VIR_MIGRATE_NON_SHARED_INC)
        proxy.migrateToURI3('uri', dict(self.nova_params,
                                        migrate_disks=['vda']),
                            NOVA_FLAGS | c.VIR_MIGRATE_NON_SHARED_INC)
        sent = self.domain.migrateToURI3.call_args.kwargs
        self.assertTrue(sent['flags'] & c.VIR_MIGRATE_NON_SHARED_INC)

    def _stale_xml(self, method='zstd'):
        from nova_qat_migration.virt.libvirt import passthrough
        return passthrough.add_globals(
            "<domain type='qemu'><name>vm</name></domain>",
            {'multifd-compression': method, 'multifd-zstd-level': 1})

    def _monitor_calls(self, reply='{"return": {}}'):
        calls = []

        def monitor(domain, command):
            calls.append(json.loads(command))
            return reply

        self.useFixture(fixtures.MonkeyPatch(
            'nova_qat_migration.virt.libvirt.passthrough._monitor',
            monitor))
        return calls

    def test_nova_plan_gets_a_clean_slate(self):
        # An earlier passthrough migration left -global in the running
        # definition; Nova copies it into both XMLs of the next migration.
        from nova_qat_migration.virt.libvirt import passthrough
        stale = self._stale_xml()
        self.domain.XMLDesc.return_value = stale
        calls = self._monitor_calls()
        facts = datamodel.Facts(hypervisor=CAPS, destination=DEST)
        session = make_session(
            nova_default.NovaDefaultPolicy(CONF).plan(facts), facts)
        params = {'bandwidth': 0, 'destination_xml': stale,
                  'persistent_xml': stale}
        lm_operation.PlannedDomain(self.domain, session).migrateToURI3(
            'uri', params, NOVA_FLAGS)
        sent = self.domain.migrateToURI3.call_args.kwargs
        self.assertEqual(NOVA_FLAGS, sent['flags'])
        self.assertEqual(0, sent['params']['bandwidth'])
        for key in ('destination_xml', 'persistent_xml'):
            self.assertFalse(passthrough.globals_of(sent['params'][key]))
        # Single stream: the source's default method does not matter.
        self.assertEqual([], calls)

    def test_stale_source_method_reset_for_multifd_plan(self):
        from nova_qat_migration.virt.libvirt import passthrough
        stale = self._stale_xml()
        self.domain.XMLDesc.return_value = stale
        params = {'bandwidth': 0, 'destination_xml': stale,
                  'persistent_xml': stale}
        plan = datamodel.Plan(policy='static', parallel_connections=4)
        # Monitor commands allowed: the source goes back to none.
        self.flags(qemu_monitor_passthrough=True, group='qat_migration')
        calls = self._monitor_calls()
        session = make_session(plan)
        lm_operation.PlannedDomain(self.domain, session).migrateToURI3(
            'uri', params, NOVA_FLAGS)
        sent = self.domain.migrateToURI3.call_args.kwargs
        self.assertTrue(sent['flags'] & c.VIR_MIGRATE_PARALLEL)
        self.assertEqual([{'execute': 'migrate-set-parameters',
                           'arguments': {'multifd-compression': 'none'}}],
                         calls)
        self.assertFalse(passthrough.globals_of(
            sent['params']['destination_xml']))
        # Not allowed: both ends keep the stale method (live XML only).
        self.flags(qemu_monitor_passthrough=False, group='qat_migration')
        del calls[:]
        session = make_session(plan)
        lm_operation.PlannedDomain(self.domain, session).migrateToURI3(
            'uri', params, NOVA_FLAGS)
        sent = self.domain.migrateToURI3.call_args.kwargs
        self.assertEqual([], calls)
        self.assertEqual({'multifd-compression': 'zstd'},
                         passthrough.globals_of(
                             sent['params']['destination_xml']))
        self.assertFalse(passthrough.globals_of(
            sent['params']['persistent_xml']))

    def test_unplanned_migration_gets_a_clean_slate(self):
        # Planner disabled, or planning failed: no session, Nova's call.
        # The -global pairs must not reach the destination's persistent
        # definition, and a stale source method is reset.
        from nova_qat_migration.virt.libvirt import passthrough
        stale = self._stale_xml('qatzip')
        self.domain.XMLDesc.return_value = stale
        self.flags(qemu_monitor_passthrough=True, group='qat_migration')
        calls = self._monitor_calls()
        params = {'bandwidth': 0, 'destination_xml': stale,
                  'persistent_xml': stale}
        proxy = lm_operation.CleanDomain(self.domain, mock.Mock(uuid='u'))
        proxy.migrateToURI3('uri', params,
                            NOVA_FLAGS | c.VIR_MIGRATE_PARALLEL)
        sent = self.domain.migrateToURI3.call_args.kwargs
        self.assertEqual(NOVA_FLAGS | c.VIR_MIGRATE_PARALLEL, sent['flags'])
        for key in ('destination_xml', 'persistent_xml'):
            self.assertFalse(passthrough.globals_of(sent['params'][key]))
        self.assertEqual([{'execute': 'migrate-set-parameters',
                           'arguments': {'multifd-compression': 'none'}}],
                         calls)
        self.assertIn('reset to none', proxy.notes[0])
        # Everything else reaches the real domain.
        self.assertEqual(stale, proxy.XMLDesc(0))

    def test_unbuildable_passthrough_plan_leaves_source_alone(self):
        facts = datamodel.Facts(hypervisor=datamodel.HypervisorCaps(
            libvirt_version=(9, 3, 0),
            multifd_methods=frozenset({'none', 'zstd'})),
            destination=DEST, passthrough_allowed=True)
        session = make_session(datamodel.Plan(
            policy='static', method='zstd', level=1, parallel_connections=4),
            facts)
        self.assertEqual(translate.BACKEND_PASSTHROUGH, session.call.backend)
        calls = self._monitor_calls()
        params = dict(self.nova_params, destination_xml='<not xml')
        lm_operation.PlannedDomain(self.domain, session).migrateToURI3(
            'uri', params, NOVA_FLAGS)
        # Nothing reached the source QEMU; the software plan ran.
        self.assertEqual([], calls)
        self.assertEqual(1, self.domain.migrateToURI3.call_count)
        self.assertTrue(any('could not be built' in n
                            for n in session.notes), session.notes)

    def test_refusal_retries_once_with_nova_call(self):
        for code in ('VIR_ERR_ARGUMENT_UNSUPPORTED',
                     'VIR_ERR_CONFIG_UNSUPPORTED', 'VIR_ERR_INVALID_ARG',
                     'VIR_ERR_OPERATION_UNSUPPORTED'):
            domain = mock.Mock()
            domain.migrateToURI3.side_effect = [_refusal(code), None]
            session = self._zstd()
            lm_operation.PlannedDomain(domain, session).migrateToURI3(
                'uri', self.nova_params, NOVA_FLAGS)
            first, second = domain.migrateToURI3.call_args_list
            self.assertIn('compression', first.kwargs['params'])
            self.assertEqual(self.nova_params, second.kwargs['params'])
            self.assertEqual(NOVA_FLAGS, second.kwargs['flags'])
            self.assertFalse(session.planned)    # the monitor follows
            self.assertIn('libvirt refused', session.notes[0])

    def test_other_errors_are_not_retried(self):
        self.domain.migrateToURI3.side_effect = _refusal(
            'VIR_ERR_OPERATION_FAILED')
        session = self._zstd()
        self.assertRaises(
            fakelibvirt.libvirtError,
            lm_operation.PlannedDomain(self.domain, session).migrateToURI3,
            'uri', self.nova_params, NOVA_FLAGS)
        self.assertEqual(1, self.domain.migrateToURI3.call_count)
        self.assertTrue(session.planned)
        # The report says what ended it.
        self.assertEqual('migration failed: unsupported', session.notes[-1])

    def test_requested_abort_keeps_the_instance_out_of_error(self):
        # QEMU 10 may end an aborted job as failed; the guest runs on here
        # and Nova's monitor rolls back, so the error is not raised (Nova
        # would set the instance to ERROR).
        self.domain.migrateToURI3.side_effect = _refusal(
            'VIR_ERR_OPERATION_FAILED')
        self.domain.state.return_value = [fakelibvirt.VIR_DOMAIN_RUNNING, 0]
        session = self._zstd()
        monitor_view = lm_monitor.MonitoredDomain(self.domain, session)
        monitor_view.abortJob()
        self.domain.abortJob.assert_called_once_with()
        self.assertIsNone(
            lm_operation.PlannedDomain(self.domain, session).migrateToURI3(
                'uri', self.nova_params, NOVA_FLAGS))
        self.assertIn('aborted as requested', session.notes[-1])
        # A guest that is not running here (post-copy, gone): raised.
        self.domain.state.return_value = [fakelibvirt.VIR_DOMAIN_PAUSED, 0]
        self.assertRaises(
            fakelibvirt.libvirtError,
            lm_operation.PlannedDomain(self.domain, session).migrateToURI3,
            'uri', self.nova_params, NOVA_FLAGS)

    def test_refusal_of_nova_call_is_raised(self):
        self.domain.migrateToURI3.side_effect = _refusal()
        facts = datamodel.Facts(hypervisor=CAPS, destination=DEST)
        session = make_session(
            nova_default.NovaDefaultPolicy(CONF).plan(facts), facts)
        self.assertRaises(
            fakelibvirt.libvirtError,
            lm_operation.PlannedDomain(self.domain, session).migrateToURI3,
            'uri', self.nova_params, NOVA_FLAGS)
        self.assertEqual(1, self.domain.migrateToURI3.call_count)

    def test_failed_job_with_the_guest_running_here_is_not_raised(self):
        # The destination QEMU died mid-migration: libvirt fails the job
        # and the guest runs on here. Nova's monitor rolls back; raising
        # would make Nova put the running instance in ERROR.
        self.domain.migrateToURI3.side_effect = _refusal(
            'VIR_ERR_OPERATION_FAILED')
        self.domain.state.return_value = [fakelibvirt.VIR_DOMAIN_RUNNING, 0]
        session = self._zstd()
        self.assertIsNone(
            lm_operation.PlannedDomain(self.domain, session).migrateToURI3(
                'uri', self.nova_params, NOVA_FLAGS))
        self.assertEqual(1, self.domain.migrateToURI3.call_count)
        self.assertEqual('migration failed: unsupported', session.notes[-1])
        # Paused here (post-copy: the guest's memory is split) or gone:
        # Nova's handling.
        for state in ([fakelibvirt.VIR_DOMAIN_PAUSED, 12],
                      [fakelibvirt.VIR_DOMAIN_SHUTOFF, 0]):
            self.domain.state.return_value = state
            self.assertRaises(
                fakelibvirt.libvirtError,
                lm_operation.PlannedDomain(self.domain, session).migrateToURI3,
                'uri', self.nova_params, NOVA_FLAGS)

    def test_other_calls_pass_through(self):
        proxy = lm_operation.PlannedDomain(self.domain, self._zstd())
        proxy.abortJob()
        self.domain.abortJob.assert_called_once_with()


class MonitoredDomainTest(_DomainTestBase):
    """Nova's monitor: progress, escalations, downtime steps."""

    def test_downtime_steps_scaled_and_never_lowered(self):
        self.flags(live_migration_downtime=500, group='libvirt')
        session = make_session(datamodel.Plan(policy='static',
                                              max_downtime_ms=2000))
        proxy = lm_monitor.MonitoredDomain(self.domain, session)
        # Nova's steps climb to 500 ms; the plan's to its target less the
        # headroom QEMU's estimate needs (2000 ms -> 1500 ms).
        proxy.migrateSetMaxDowntime(50)
        self.domain.migrateSetMaxDowntime.assert_called_with(150)
        session.tracker.applied(datamodel.Action('downtime', 900))
        self.domain.reset_mock()
        proxy.migrateSetMaxDowntime(200)          # scaled 600 < 900
        self.domain.migrateSetMaxDowntime.assert_not_called()
        proxy.migrateSetMaxDowntime(500)
        self.domain.migrateSetMaxDowntime.assert_called_with(1500)

    def test_multifd_plan_steps_keep_the_larger_headroom(self):
        # A static zstd-1 x4 plan paused the guest 604 ms with 375 ms
        # given: multifd plans climb to 60% of the target (300 ms).
        self.flags(live_migration_downtime=500, group='libvirt')
        session = self._zstd()
        self.assertEqual(300, session.plan.downtime_limit_ms)
        proxy = lm_monitor.MonitoredDomain(self.domain, session)
        proxy.migrateSetMaxDowntime(50)
        self.domain.migrateSetMaxDowntime.assert_called_with(30)
        proxy.migrateSetMaxDowntime(500)
        self.domain.migrateSetMaxDowntime.assert_called_with(300)

    def test_nova_baseline_downtime_steps_are_novas(self):
        self.flags(live_migration_downtime=500, group='libvirt')
        plan = datamodel.Plan(policy='nova_default', max_downtime_ms=500,
                              nova_baseline=True)
        self.assertEqual(500, plan.downtime_limit_ms)
        proxy = lm_monitor.MonitoredDomain(self.domain, make_session(plan))
        for step in (50, 275, 500):
            proxy.migrateSetMaxDowntime(step)
            self.domain.migrateSetMaxDowntime.assert_called_with(step)

    def test_escalation_errors_never_reach_nova(self):
        session = self._zstd()

        class Exploding(base.Policy):
            def plan(self, facts):
                raise AssertionError

            def on_progress(self, plan, progress):
                raise ValueError('plugin bug')

        session.policy = Exploding(CONF)
        self.domain.jobStats.return_value = {'type': 2,
                                             'memory_remaining': 1}
        proxy = lm_monitor.MonitoredDomain(self.domain, session)
        self.assertEqual({'type': 2, 'memory_remaining': 1},
                         proxy.jobStats())

    def test_no_post_copy_over_a_dead_link(self):
        # A progress timeout asks for post-copy; nothing has been sent for
        # longer than DEAD_LINK_S (the link is cut): abort instead, the
        # guest keeps running here.
        session = make_session(datamodel.Plan(
            policy='static', post_copy=True, post_copy_after_stalled=2))
        proxy = lm_monitor.MonitoredDomain(self.domain, session)
        stats = {'type': 2, 'memory_processed': 100,
                 'memory_remaining': 50}
        self.domain.jobStats.return_value = stats
        clock = self.useFixture(fixtures.MockPatchObject(
            lm_monitor, 'time')).mock.monotonic
        clock.return_value = 1000.0
        proxy.jobStats()
        clock.return_value = 1000.0 + escalation.DEAD_LINK_S + 1
        proxy.jobStats()
        with mock.patch('nova.virt.libvirt.migration.'
                        'trigger_postcopy_switch') as switch:
            proxy._qat_apply(datamodel.Action('post_copy', reason='timeout'))
        switch.assert_not_called()
        self.domain.migrateStartPostCopy.assert_not_called()
        self.domain.abortJob.assert_called_once_with()
        self.assertTrue(session.aborted_by_us)
        self.assertEqual('abort', session.actions[-1].kind)
        self.assertIn('nothing sent', session.actions[-1].reason)

    def test_one_abort_per_migration(self):
        # The progress timeout keeps asking while the job is cancelled
        # (over a cut link that takes until the link returns): abortJob
        # once; a failed abort may be tried again.
        session = self._zstd()
        proxy = lm_monitor.MonitoredDomain(self.domain, session)
        self.domain.abortJob.side_effect = [
            fakelibvirt.make_libvirtError(
                fakelibvirt.libvirtError, 'busy',
                error_code=fakelibvirt.VIR_ERR_OPERATION_FAILED), 0]
        for _ in range(4):
            proxy._qat_apply(datamodel.Action('abort',
                                              reason='progress timeout'))
        self.assertEqual(2, self.domain.abortJob.call_count)
        self.assertEqual(['abort'], [a.kind for a in session.actions])

    def test_post_copy_while_data_moves(self):
        session = make_session(datamodel.Plan(
            policy='static', post_copy=True, post_copy_after_stalled=2))
        proxy = lm_monitor.MonitoredDomain(self.domain, session)
        clock = self.useFixture(fixtures.MockPatchObject(
            lm_monitor, 'time')).mock.monotonic
        clock.return_value = 1000.0
        for i in range(10):
            clock.return_value = 1000.0 + i
            self.domain.jobStats.return_value = {
                'type': 2, 'memory_processed': 100 * (i + 1),
                'memory_remaining': 50}
            proxy.jobStats()
        proxy._qat_apply(datamodel.Action('post_copy', reason='stalled'))
        self.domain.migrateStartPostCopy.assert_called_once_with()
        self.domain.abortJob.assert_not_called()
        self.assertEqual('post_copy', session.actions[-1].kind)


def _disk_phase(disk_processed_mib, disk_total_mib=10240):
    """Job stats while a block migration's disks are copied."""
    mib = datamodel.MIB
    return {'type': 2, 'memory_total': 0, 'memory_remaining': 0,
            'memory_processed': 0, 'memory_iteration': 0,
            'disk_total': disk_total_mib * mib,
            'disk_processed': disk_processed_mib * mib,
            'disk_remaining': (disk_total_mib - disk_processed_mib) * mib}


def _memory_phase(remaining_mib, disk_total_mib=10240):
    """Job stats once the memory migration runs, disk mirrors in sync."""
    mib = datamodel.MIB
    return {'type': 2, 'memory_total': 1024 * mib,
            'memory_remaining': remaining_mib * mib,
            'memory_processed': (1024 - remaining_mib) * mib,
            'memory_iteration': 1, 'disk_total': disk_total_mib * mib,
            'disk_processed': disk_total_mib * mib, 'disk_remaining': 0}


class BlockMigrationMonitorTest(_DomainTestBase):
    """Issue 21: no post-copy while a block migration copies its disks."""

    def setUp(self):
        super().setUp()
        self.session = make_session(datamodel.Plan(
            policy='static', post_copy=True, post_copy_after_stalled=2))
        self.proxy = lm_monitor.MonitoredDomain(self.domain, self.session)

    def _sample(self, stats):
        self.domain.jobStats.return_value = stats
        return self.proxy.jobStats()

    def test_novas_post_copy_switch_refused_while_disks_copy(self):
        # Nova's force-complete (or its timeout's force_complete action)
        # reaches the monitor's domain through Nova's own Guest.
        migration = mock.Mock(status='running')
        guest = lm_monitor.libvirt_guest.Guest(self.proxy)
        logs = self.useFixture(fixtures.FakeLogger())
        self._sample(_disk_phase(2048))
        self.assertRaises(fakelibvirt.libvirtError,
                          self.proxy.migrateStartPostCopy)
        lm_monitor.libvirt_migrate.trigger_postcopy_switch(
            guest, self.session.instance, migration)
        self.domain.migrateStartPostCopy.assert_not_called()
        # Nova logged the refusal and did not mark the migration
        # post-copy: its completion timeout stays in force.
        self.assertEqual('running', migration.status)
        self.assertIn('still copying the disks', logs.output)
        # Once the memory migration runs with the mirrors in sync, the
        # switch goes through.
        self._sample(_memory_phase(600))
        lm_monitor.libvirt_migrate.trigger_postcopy_switch(
            guest, self.session.instance, migration)
        self.domain.migrateStartPostCopy.assert_called_once_with()
        self.assertEqual('running (post-copy)', migration.status)

    def test_escalated_post_copy_not_applied_while_disks_copy(self):
        # The default escalation never asks then; a plugin policy may.
        logs = self.useFixture(fixtures.FakeLogger())
        self._sample(_disk_phase(1024))
        self.proxy._qat_apply(datamodel.Action('post_copy',
                                               reason='a plugin asked'))
        self.domain.migrateStartPostCopy.assert_not_called()
        self.assertEqual([], self.session.actions)
        self.assertFalse(self.session.tracker.post_copy_active)
        self.assertIn('Escalation post_copy failed: post-copy refused',
                      logs.output)

    def test_lagging_mirrors_do_not_block_novas_switch(self):
        # The memory migration runs; the mirrors owe 2 GiB of the guest's
        # latest writes. libvirt completes them in the switch-over pause,
        # so Nova's own force-complete goes through (the default
        # escalation waits for them, see test_escalation).
        lagging = dict(_memory_phase(600), disk_remaining=2048 * 1024 ** 2)
        progress = self.session.tracker.update(lagging)
        self.assertTrue(progress.disk_copying)
        self.proxy.migrateStartPostCopy()
        self.domain.migrateStartPostCopy.assert_called_once_with()

    def test_post_copy_nova_could_not_start_is_not_recorded(self):
        # Nova's trigger_postcopy_switch logs a libvirt refusal and
        # returns: the escalation must not believe the switch happened
        # (it would stop watching a migration still in pre-copy).
        self.useFixture(fixtures.FakeLogger())
        self.session.migration = mock.Mock(status='running')
        self.domain.migrateStartPostCopy.side_effect = (
            fakelibvirt.make_libvirtError(
                fakelibvirt.libvirtError, 'Postcopy must be started after '
                'migration has been started',
                error_code=fakelibvirt.VIR_ERR_OPERATION_FAILED))
        self._sample(_memory_phase(600))
        self.proxy._qat_apply(datamodel.Action('post_copy',
                                               reason='stalled'))
        self.domain.migrateStartPostCopy.assert_called_once_with()
        self.assertEqual([], self.session.actions)
        self.assertFalse(self.session.tracker.post_copy_active)
        self.domain.migrateStartPostCopy.side_effect = None
        self.proxy._qat_apply(datamodel.Action('post_copy',
                                               reason='stalled'))
        self.assertEqual(['post_copy'],
                         [a.kind for a in self.session.actions])
        self.assertTrue(self.session.tracker.post_copy_active)

    def test_disk_copy_is_data_sent(self):
        # memory_processed stays 0 while the disks copy: the disk data
        # moving is what tells a live link from a dead one.
        clock = self.useFixture(fixtures.MockPatchObject(
            lm_monitor, 'time')).mock.monotonic
        for i in range(5):
            clock.return_value = 1000.0 + 10 * i
            self._sample(_disk_phase(100 * (i + 1)))
        self.assertEqual(0.0, self.proxy._qat_idle_s())
        clock.return_value = 1060.0
        self._sample(_disk_phase(500))
        self.assertEqual(20.0, self.proxy._qat_idle_s())


class MigrationSessionTest(_DomainTestBase):

    def test_outcome_follows_what_nova_and_we_asked_for(self):
        session = self._zstd()
        self.assertEqual(outcomes.OUTCOME_FAILED, session.outcome)
        session.completed()
        self.assertEqual(outcomes.OUTCOME_COMPLETED, session.outcome)
        session.rolled_back()
        self.assertEqual(outcomes.OUTCOME_FAILED, session.outcome)
        session.rolled_back('cancelled')        # Nova's API abort
        self.assertEqual(outcomes.OUTCOME_CANCELLED, session.outcome)
        # Nova's completion timeout, through the monitor's domain.
        session = self._zstd()
        lm_monitor.MonitoredDomain(self.domain, session).abortJob()
        session.rolled_back('error')
        self.assertEqual(outcomes.OUTCOME_CANCELLED, session.outcome)
        # Our own escalation.
        lm_monitor.MonitoredDomain(self.domain, session)._qat_apply(
            datamodel.Action('abort', reason='progress timeout'))
        session.rolled_back('error')
        self.assertEqual(outcomes.OUTCOME_ABORTED, session.outcome)

    def test_no_job_completed_event_id_no_watch(self):
        # Nova's fake libvirt lacks VIR_DOMAIN_EVENT_ID_JOB_COMPLETED.
        session = self._zstd()
        connect = mock.Mock()
        session.watch_job(connect, self.domain)
        connect.assert_not_called()
        self.assertIsNone(session.job_watch)

    def test_operation_domain_leaves_monitoring_to_the_monitor(self):
        # jobStats through the operation thread's domain feeds nothing.
        session = self._zstd()
        self.domain.jobStats.return_value = {'type': 2,
                                             'memory_remaining': 1}
        lm_operation.PlannedDomain(self.domain, session).jobStats()
        self.assertEqual({}, session.tracker.last)
        lm_monitor.MonitoredDomain(self.domain, session).jobStats()
        self.assertEqual(1, session.tracker.last['memory_remaining'])


class RefusalCodesTest(test_driver.DriverTestBase):

    def test_codes_by_name_in_the_loaded_module(self):
        # The fake numbers VIR_ERR_CONFIG_UNSUPPORTED 951, libvirt 67.
        codes = c.refused_error_codes(fakelibvirt)
        self.assertIn(fakelibvirt.VIR_ERR_CONFIG_UNSUPPORTED, codes)
        self.assertEqual(frozenset(c.REFUSED_ERRORS.values()),
                         c.refused_error_codes(object()))
        for name in c.REFUSED_ERRORS:
            self.assertTrue(lm_operation._is_refusal(_refusal(name)), name)
        self.assertFalse(lm_operation._is_refusal(
            _refusal('VIR_ERR_OPERATION_FAILED')))
        self.assertFalse(lm_operation._is_refusal(RuntimeError('other')))
