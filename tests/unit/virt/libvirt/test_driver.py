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
"""``QATLibvirtDriver`` hooks that the functional tests cannot reach.

Start-up failures, the per-migration domain proxy (flag swap, param merge,
refusal retry, downtime scaling), the monitor's view of the flags, and
bad input on the planning path. The domain is a ``mock.Mock`` only where
the test records calls a ``virDomain`` would receive.
"""

import json
import threading
from unittest import mock

import fixtures
from nova import exception
from nova import objects
from nova import test
from nova.tests import fixtures as nova_fixtures
from nova.tests.fixtures import libvirt as fakelibvirt
from nova.virt import fake

from nova_qat_migration.conf import CONF
from nova_qat_migration import datamodel
from nova_qat_migration.policy import base
from nova_qat_migration.policy import nova_default
from nova_qat_migration.policy import static
from nova_qat_migration.virt.libvirt import constants as c
from nova_qat_migration.virt.libvirt import driver as qat_driver
from nova_qat_migration.virt.libvirt import translate

CAPS = datamodel.HypervisorCaps(multifd_methods=frozenset({'none', 'zlib',
                                                           'zstd'}))
DEST = datamodel.DestinationCaps(known=True,
                                 methods=frozenset({'xbzrle', 'zlib', 'zstd'}),
                                 multifd=True)
NOVA_FLAGS = (c.VIR_MIGRATE_LIVE | c.VIR_MIGRATE_PEER2PEER |
              c.VIR_MIGRATE_UNDEFINE_SOURCE | c.VIR_MIGRATE_PERSIST_DEST)


class DriverTestBase(test.NoDBTestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(nova_fixtures.LibvirtFixture())
        self.useFixture(fixtures.MonkeyPatch(
            'nova_qat_migration.virt.libvirt.driver.QATMigrationMixin.'
            'qat_probe_hypervisor',
            staticmethod(lambda conn, qemu_binary=None: CAPS)))
        self.flags(state_path=self.useFixture(fixtures.TempDir()).path,
                   group='qat_migration')
        # NOTE(qat-migration): what is under test is what our init_host
        # adds after Nova's; Nova's own starts libvirt event threads and
        # pipes that outlive the test and upset subprocess-based tests
        # (the capability probe) later in the same worker.
        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.driver.LibvirtDriver.init_host',
            lambda self, host: None))

    def driver(self):
        return qat_driver.QATLibvirtDriver(fake.FakeVirtAPI(), False)


class InitHostTest(DriverTestBase):

    def test_unknown_policy_fails_start_with_the_list(self):
        self.flags(policy='fastest', group='qat_migration')
        exc = self.assertRaises(exception.InvalidConfiguration,
                                self.driver().init_host, 'host')
        self.assertIn("'fastest'", str(exc))
        for name in ('adaptive', 'nova_default', 'static'):
            self.assertIn(name, str(exc))

    def test_bad_option_combination_fails_start(self):
        self.flags(xbzrle_cache_min_mb=512, xbzrle_cache_max_mb=256,
                   group='qat_migration')
        exc = self.assertRaises(exception.InvalidConfiguration,
                                self.driver().init_host, 'host')
        self.assertIn('xbzrle_cache_min_mb', str(exc))

    def test_start_probes_once(self):
        calls = []

        def probe(conn, qemu_binary=None):
            calls.append(conn)
            return CAPS

        self.useFixture(fixtures.MonkeyPatch(
            'nova_qat_migration.virt.libvirt.driver.QATMigrationMixin.'
            'qat_probe_hypervisor', staticmethod(probe)))
        drvr = self.driver()
        drvr.init_host('host')
        self.assertTrue(drvr._qat_ready())
        self.assertEqual(1, len(calls))
        self.assertIs(CAPS, drvr._qat_caps)

    def test_failing_probe_degrades(self):
        def probe(conn, qemu_binary=None):
            raise RuntimeError('no QEMU')

        self.useFixture(fixtures.MonkeyPatch(
            'nova_qat_migration.virt.libvirt.driver.QATMigrationMixin.'
            'qat_probe_hypervisor', staticmethod(probe)))
        drvr = self.driver()
        drvr.init_host('host')
        self.assertFalse(drvr._qat_caps.accepts('zstd'))
        self.assertFalse(drvr._qat_caps.has_mt)

    def test_disabled_plans_nothing(self):
        self.flags(enabled=False, policy='no-such-policy',
                   group='qat_migration')
        drvr = self.driver()
        drvr.init_host('host')      # the bad policy name is not even read
        self.assertFalse(drvr._qat_ready())
        self.assertIsNone(drvr._qat_policies)


def _session(plan, facts=None, nova_flags=NOVA_FLAGS):
    facts = facts or datamodel.Facts(hypervisor=CAPS, destination=DEST,
                                     nova=datamodel.NovaSettings())
    instance = mock.Mock(uuid='uuid-1', vm_state='active')
    instance.name = 'vm'
    nova_plan = nova_default.NovaDefaultPolicy(CONF).plan(facts)
    return qat_driver.MigrationSession(
        instance, facts, static.StaticPolicy(CONF), plan,
        translate.to_libvirt(plan, facts),
        translate.to_libvirt(nova_plan, facts))


def _refusal(code_name='VIR_ERR_ARGUMENT_UNSUPPORTED'):
    return fakelibvirt.make_libvirtError(
        fakelibvirt.libvirtError, 'unsupported',
        error_code=getattr(fakelibvirt, code_name))


class PlannedDomainTest(DriverTestBase):

    def setUp(self):
        super().setUp()
        self.domain = mock.Mock()
        self.nova_params = {'bandwidth': 0, 'destination_xml': '<d/>',
                            'persistent_xml': '<d/>'}

    def _zstd(self):
        return _session(datamodel.Plan(policy='static', method='zstd', level=3,
                                       parallel_connections=4))

    def test_flags_swapped_params_merged(self):
        session = self._zstd()
        proxy = qat_driver._PlannedDomain(self.domain, session)
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
        session = _session(datamodel.Plan(policy='static', method='xbzrle',
                                          xbzrle_cache_mb=128))
        params = dict(self.nova_params, **{'parallel.connections': 4})
        qat_driver._PlannedDomain(self.domain, session).migrateToURI3(
            'uri', params, NOVA_FLAGS | c.VIR_MIGRATE_PARALLEL)
        sent = self.domain.migrateToURI3.call_args.kwargs
        self.assertNotIn('parallel.connections', sent['params'])
        self.assertFalse(sent['flags'] & c.VIR_MIGRATE_PARALLEL)

    def test_non_shared_inc_dropped_without_disks(self):
        facts = datamodel.Facts(hypervisor=CAPS, destination=DEST,
                                block_migration=True)
        session = _session(datamodel.Plan(policy='static', method='zstd',
                                          parallel_connections=2), facts)
        self.assertTrue(session.call.flags & c.VIR_MIGRATE_NON_SHARED_INC)
        proxy = qat_driver._PlannedDomain(self.domain, session)
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
        session = _session(
            nova_default.NovaDefaultPolicy(CONF).plan(facts), facts)
        params = {'bandwidth': 0, 'destination_xml': stale,
                  'persistent_xml': stale}
        qat_driver._PlannedDomain(self.domain, session).migrateToURI3(
            'uri', params, NOVA_FLAGS)
        sent = self.domain.migrateToURI3.call_args.kwargs
        self.assertEqual(NOVA_FLAGS, sent['flags'])
        self.assertEqual(0, sent['params']['bandwidth'])
        for key in ('destination_xml', 'persistent_xml'):
            self.assertFalse(passthrough.has_globals(sent['params'][key]))
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
        session = _session(plan)
        qat_driver._PlannedDomain(self.domain, session).migrateToURI3(
            'uri', params, NOVA_FLAGS)
        sent = self.domain.migrateToURI3.call_args.kwargs
        self.assertTrue(sent['flags'] & c.VIR_MIGRATE_PARALLEL)
        self.assertEqual([{'execute': 'migrate-set-parameters',
                           'arguments': {'multifd-compression': 'none'}}],
                         calls)
        self.assertFalse(passthrough.has_globals(
            sent['params']['destination_xml']))
        # Not allowed: both ends keep the stale method (live XML only).
        self.flags(qemu_monitor_passthrough=False, group='qat_migration')
        del calls[:]
        session = _session(plan)
        qat_driver._PlannedDomain(self.domain, session).migrateToURI3(
            'uri', params, NOVA_FLAGS)
        sent = self.domain.migrateToURI3.call_args.kwargs
        self.assertEqual([], calls)
        self.assertEqual({'multifd-compression': 'zstd'},
                         passthrough.globals_of(
                             sent['params']['destination_xml']))
        self.assertFalse(passthrough.has_globals(
            sent['params']['persistent_xml']))

    def test_unbuildable_passthrough_plan_leaves_source_alone(self):
        facts = datamodel.Facts(hypervisor=datamodel.HypervisorCaps(
            libvirt_version=(9, 3, 0),
            multifd_methods=frozenset({'none', 'zstd'})),
            destination=DEST, passthrough_allowed=True)
        session = _session(datamodel.Plan(policy='static', method='zstd',
                                          level=1, parallel_connections=4),
                           facts)
        self.assertEqual(translate.BACKEND_PASSTHROUGH, session.call.backend)
        session.software_call = translate.to_libvirt(
            session.requested, datamodel.Facts(
                hypervisor=facts.hypervisor, destination=DEST))
        calls = self._monitor_calls()
        params = dict(self.nova_params, destination_xml='<not xml')
        qat_driver._PlannedDomain(self.domain, session).migrateToURI3(
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
            qat_driver._PlannedDomain(domain, session).migrateToURI3(
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
            qat_driver._PlannedDomain(self.domain, session).migrateToURI3,
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
        monitor_view = qat_driver._PlannedDomain(self.domain, session,
                                                 observe=True)
        monitor_view.abortJob()
        self.domain.abortJob.assert_called_once_with()
        self.assertIsNone(
            qat_driver._PlannedDomain(self.domain, session).migrateToURI3(
                'uri', self.nova_params, NOVA_FLAGS))
        self.assertIn('aborted as requested', session.notes[-1])
        # A guest that is not running here (post-copy, gone): raised.
        self.domain.state.return_value = [fakelibvirt.VIR_DOMAIN_PAUSED, 0]
        self.assertRaises(
            fakelibvirt.libvirtError,
            qat_driver._PlannedDomain(self.domain, session).migrateToURI3,
            'uri', self.nova_params, NOVA_FLAGS)

    def test_refusal_of_nova_call_is_raised(self):
        self.domain.migrateToURI3.side_effect = _refusal()
        facts = datamodel.Facts(hypervisor=CAPS, destination=DEST)
        session = _session(
            nova_default.NovaDefaultPolicy(CONF).plan(facts), facts)
        self.assertRaises(
            fakelibvirt.libvirtError,
            qat_driver._PlannedDomain(self.domain, session).migrateToURI3,
            'uri', self.nova_params, NOVA_FLAGS)
        self.assertEqual(1, self.domain.migrateToURI3.call_count)

    def test_downtime_steps_scaled_and_never_lowered(self):
        self.flags(live_migration_downtime=500, group='libvirt')
        session = _session(datamodel.Plan(policy='static',
                                          max_downtime_ms=2000))
        proxy = qat_driver._PlannedDomain(self.domain, session,
                                          observe=True)
        proxy.migrateSetMaxDowntime(50)
        self.domain.migrateSetMaxDowntime.assert_called_with(200)
        session.tracker.applied(datamodel.Action('downtime', 900))
        self.domain.reset_mock()
        proxy.migrateSetMaxDowntime(200)          # scaled 800 < 900
        self.domain.migrateSetMaxDowntime.assert_not_called()
        proxy.migrateSetMaxDowntime(500)
        self.domain.migrateSetMaxDowntime.assert_called_with(2000)

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
        proxy = qat_driver._PlannedDomain(self.domain, session,
                                          observe=True)
        self.assertEqual({'type': 2, 'memory_remaining': 1},
                         proxy.jobStats())

    def test_failed_job_with_the_guest_running_here_is_not_raised(self):
        # The destination QEMU died mid-migration: libvirt fails the job
        # and the guest runs on here. Nova's monitor rolls back; raising
        # would make Nova put the running instance in ERROR.
        self.domain.migrateToURI3.side_effect = _refusal(
            'VIR_ERR_OPERATION_FAILED')
        self.domain.state.return_value = [fakelibvirt.VIR_DOMAIN_RUNNING, 0]
        session = self._zstd()
        self.assertIsNone(
            qat_driver._PlannedDomain(self.domain, session).migrateToURI3(
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
                qat_driver._PlannedDomain(self.domain, session).migrateToURI3,
                'uri', self.nova_params, NOVA_FLAGS)

    def test_no_post_copy_over_a_dead_link(self):
        # A progress timeout asks for post-copy; nothing has been sent for
        # longer than DEAD_LINK_S (the link is cut): abort instead, the
        # guest keeps running here.
        session = _session(datamodel.Plan(policy='static', post_copy=True,
                                          post_copy_after_stalled=2))
        proxy = qat_driver._PlannedDomain(self.domain, session,
                                          observe=True)
        stats = {'type': 2, 'memory_processed': 100,
                 'memory_remaining': 50}
        self.domain.jobStats.return_value = stats
        clock = self.useFixture(fixtures.MockPatchObject(
            qat_driver, 'time')).mock.monotonic
        clock.return_value = 1000.0
        proxy.jobStats()
        clock.return_value = 1000.0 + qat_driver.DEAD_LINK_S + 1
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
        proxy = qat_driver._PlannedDomain(self.domain, session,
                                          observe=True)
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
        session = _session(datamodel.Plan(policy='static', post_copy=True,
                                          post_copy_after_stalled=2))
        proxy = qat_driver._PlannedDomain(self.domain, session,
                                          observe=True)
        clock = self.useFixture(fixtures.MockPatchObject(
            qat_driver, 'time')).mock.monotonic
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

    def test_other_calls_pass_through(self):
        proxy = qat_driver._PlannedDomain(self.domain, self._zstd())
        proxy.abortJob()
        self.domain.abortJob.assert_called_once_with()


class JobCompletedEventTest(DriverTestBase):
    """The completed job's statistics arrive by libvirt's event: Nova's
    UNDEFINE_SOURCE removes the source domain, and its job, at the end.
    """

    def setUp(self):
        super().setUp()
        # Nova's fake libvirt lacks the event id; libvirt's value.
        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.driver.libvirt.'
            'VIR_DOMAIN_EVENT_ID_JOB_COMPLETED', 16))

    def test_watch_collects_and_unwatch_deregisters(self):
        drvr = self.driver()
        conn = mock.Mock()
        conn.domainEventRegisterAny.return_value = 7
        self.useFixture(fixtures.MockPatchObject(
            drvr._host, 'get_connection', return_value=conn))
        session = _session(datamodel.Plan(policy='static'))
        drvr._qat_watch_job(session, mock.sentinel.dom)
        dom, event_id, callback, _opaque = \
            conn.domainEventRegisterAny.call_args.args
        self.assertIs(mock.sentinel.dom, dom)
        self.assertEqual(16, event_id)
        self.assertFalse(session.completed_event.is_set())
        # libvirt's event loop thread delivers the typed params.
        callback(conn, dom, {'downtime': 42, 'memory_iteration': 3}, None)
        self.assertTrue(session.completed_event.is_set())
        self.assertEqual(42, session.completed_stats['downtime'])
        drvr._qat_unwatch_job(session)
        conn.domainEventDeregisterAny.assert_called_once_with(7)
        self.assertIsNone(session.job_watch)

    def test_no_event_support_is_not_an_error(self):
        drvr = self.driver()
        conn = mock.Mock()
        conn.domainEventRegisterAny.side_effect = fakelibvirt.libvirtError(
            'no events here')
        self.useFixture(fixtures.MockPatchObject(
            drvr._host, 'get_connection', return_value=conn))
        session = _session(datamodel.Plan(policy='static'))
        drvr._qat_watch_job(session, mock.sentinel.dom)
        self.assertIsNone(session.job_watch)
        drvr._qat_unwatch_job(session)     # nothing to do, no error


class MonitorFlagsTest(DriverTestBase):

    def test_monitor_sees_only_its_own_flags(self):
        drvr = self.driver()
        drvr._parse_migration_flags()
        session = _session(datamodel.Plan(policy='static', post_copy=True))
        self.assertTrue(session.call.flags & c.VIR_MIGRATE_POSTCOPY)
        seen = {}

        def other_thread():
            seen['other'] = drvr._get_migration_flags(False)

        drvr._qat_local.session = session
        try:
            self.assertEqual(session.call.flags,
                             drvr._get_migration_flags(False))
            t = threading.Thread(target=other_thread)
            t.start()
            t.join()
        finally:
            drvr._qat_local.session = None
        self.assertEqual(drvr._live_migration_flags, seen['other'])
        self.assertEqual(drvr._live_migration_flags,
                         drvr._get_migration_flags(False))
        self.assertFalse(drvr._live_migration_flags & c.VIR_MIGRATE_POSTCOPY)


class PlanningInputTest(DriverTestBase):

    def _instance(self, extra_specs=None, sysmeta=None):
        flavor = objects.Flavor(memory_mb=2048, vcpus=2,
                                extra_specs=extra_specs or {})
        return objects.Instance(uuid='11111111-2222-3333-4444-555555555555',
                                vm_state='active', flavor=flavor,
                                system_metadata=sysmeta or {})

    def test_bad_hint_fails_precheck_naming_key(self):
        drvr = self.driver()
        drvr.init_host('host')
        exc = self.assertRaises(
            exception.MigrationPreCheckError, drvr._qat_check_hints,
            self._instance({'qat_migration:parallel_connections': '999'}))
        self.assertIn('qat_migration:parallel_connections', str(exc))

    def test_bad_image_hint_ignored_with_warning(self):
        # Image properties are the tenant's: they never block a migration.
        drvr = self.driver()
        drvr.init_host('host')
        logger = self.useFixture(fixtures.FakeLogger())
        hints = drvr._qat_check_hints(
            self._instance(sysmeta={'image_qat_migration:policy': 'nope'}))
        self.assertIsNone(hints.policy)
        self.assertIn('image property qat_migration:policy=nope ignored',
                      logger.output)

    def test_policy_exception_falls_back_to_nova_default(self):
        self.flags(policy='static', group='qat_migration')
        drvr = self.driver()
        drvr.init_host('host')
        self.useFixture(fixtures.MonkeyPatch(
            'nova_qat_migration.policy.static.StaticPolicy.plan',
            mock.Mock(side_effect=RuntimeError('plugin bug'))))
        self.useFixture(fixtures.MonkeyPatch(
            'nova_qat_migration.virt.libvirt.measure.host_load',
            lambda *a, **k: datamodel.HostLoad()))
        migrate_data = objects.LibvirtLiveMigrateData(block_migration=False)
        session = drvr._qat_plan(None, self._instance(), 'dest',
                                 migrate_data)
        self.assertEqual('nova_default', session.plan.policy)
        self.assertFalse(session.planned)

    def test_planning_failure_runs_nova(self):
        drvr = self.driver()
        drvr.init_host('host')
        self.useFixture(fixtures.MonkeyPatch(
            'nova_qat_migration.virt.libvirt.driver.QATMigrationMixin.'
            '_qat_plan', mock.Mock(side_effect=RuntimeError('boom'))))
        with mock.patch('nova.virt.libvirt.driver.LibvirtDriver.'
                        '_live_migration') as nova_lm:
            drvr._live_migration(None, self._instance(), 'dest', 'post',
                                 'recover', False, 'data')
        nova_lm.assert_called_once_with(None, mock.ANY, 'dest', 'post',
                                        'recover', False, 'data')
        self.assertEqual({}, drvr._qat_sessions)
