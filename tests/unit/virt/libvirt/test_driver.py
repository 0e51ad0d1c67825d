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

Start-up failures, the traits it publishes, the job-completed event watch,
the monitor's view of the flags, and bad input on the planning path. The
planned call itself is tested in ``test_execution``, the facts in
``test_facts``.
"""

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
from nova_qat_migration.policy import nova_default
from nova_qat_migration.policy import static
from nova_qat_migration.virt.libvirt import constants as c
from nova_qat_migration.virt.libvirt import driver as qat_driver
from nova_qat_migration.virt.libvirt import operation as lm_operation
from nova_qat_migration.virt.libvirt import session as lm_session
from nova_qat_migration.virt.libvirt import translate

CAPS = datamodel.HypervisorCaps(multifd_methods=frozenset({'none', 'zlib',
                                                           'zstd'}))
DEST = datamodel.DestinationCaps(known=True,
                                 methods=frozenset({'xbzrle', 'zlib', 'zstd'}),
                                 multifd=True)
NOVA_FLAGS = (c.VIR_MIGRATE_LIVE | c.VIR_MIGRATE_PEER2PEER |
              c.VIR_MIGRATE_UNDEFINE_SOURCE | c.VIR_MIGRATE_PERSIST_DEST)


def provider_traits(drvr):
    """The traits ``drvr`` publishes on a provider tree of one node."""
    from nova.compute import provider_tree
    tree = provider_tree.ProviderTree()
    tree.new_root('node', 'rp-uuid')
    drvr.update_provider_tree(tree, 'node', allocations={})
    return tree.data('node').traits


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


def make_session(plan, facts=None, nova_flags=NOVA_FLAGS):
    facts = facts or datamodel.Facts(hypervisor=CAPS, destination=DEST,
                                     nova=datamodel.NovaSettings())
    instance = mock.Mock(uuid='uuid-1', vm_state='active')
    instance.name = 'vm'
    nova_plan = nova_default.NovaDefaultPolicy(CONF).plan(facts)
    return lm_session.MigrationSession(
        instance, facts, static.StaticPolicy(CONF), plan,
        translate.to_libvirt(plan, facts), nova_plan)


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
        session = make_session(datamodel.Plan(policy='static'))
        session.watch_job(drvr._host.get_connection, mock.sentinel.dom)
        dom, event_id, callback, _opaque = \
            conn.domainEventRegisterAny.call_args.args
        self.assertIs(mock.sentinel.dom, dom)
        self.assertEqual(16, event_id)
        self.assertFalse(session.completed_event.is_set())
        # libvirt's event loop thread delivers the typed params.
        callback(conn, dom, {'downtime': 42, 'memory_iteration': 3}, None)
        self.assertTrue(session.completed_event.is_set())
        self.assertEqual(42, session.completed_stats['downtime'])
        session.unwatch_job()
        conn.domainEventDeregisterAny.assert_called_once_with(7)
        self.assertIsNone(session.job_watch)

    def test_no_event_support_is_not_an_error(self):
        drvr = self.driver()
        conn = mock.Mock()
        conn.domainEventRegisterAny.side_effect = fakelibvirt.libvirtError(
            'no events here')
        self.useFixture(fixtures.MockPatchObject(
            drvr._host, 'get_connection', return_value=conn))
        session = make_session(datamodel.Plan(policy='static'))
        session.watch_job(drvr._host.get_connection, mock.sentinel.dom)
        self.assertIsNone(session.job_watch)
        session.unwatch_job()     # nothing to do, no error


class ProviderTreeTest(DriverTestBase):

    def test_qat_host_trait_has_one_writer(self):
        from nova.compute import provider_tree

        from nova_qat_migration.qat import placement
        from nova_qat_migration.virt.libvirt import migration_traits
        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.driver.LibvirtDriver.update_provider_tree',
            lambda self, tree, nodename, allocations=None: None))
        drvr = self.driver()
        drvr.init_host('host')
        tree = provider_tree.ProviderTree()
        tree.new_root('node', 'rp-uuid')
        stale = migration_traits.compress_trait('gone')
        tree.add_traits('node', stale, 'CUSTOM_OPERATOR')
        manager = mock.Mock()
        manager.update_provider_tree.side_effect = (
            lambda pt, node, allocations: pt.add_traits(
                node, placement.HOST_TRAIT))
        drvr._qat_manager = manager
        drvr.update_provider_tree(tree, 'node', allocations={})
        manager.update_provider_tree.assert_called_once_with(tree, 'node',
                                                             {})
        traits = tree.data('node').traits
        self.assertIn(migration_traits.TRAIT_PLANNER, traits)
        self.assertIn(placement.HOST_TRAIT, traits)       # the manager's
        self.assertIn('CUSTOM_OPERATOR', traits)
        self.assertNotIn(stale, traits)
        # The driver's own traits never include the manager's.
        self.assertNotIn(placement.HOST_TRAIT,
                         migration_traits.traits_for(drvr._qat_caps))


class IntrospectionTest(DriverTestBase):
    """The read-only view the lab checks, and its one test hook."""

    def test_introspect_before_and_after_start(self):
        drvr = self.driver()
        before = drvr.qat_introspect()
        self.assertEqual({'capabilities', 'sessions', 'budget', 'history',
                          'manager'}, set(before))
        self.assertIsNone(before['capabilities'])     # not probed yet
        self.assertIsNone(before['history'])
        drvr.init_host('host')
        seen = drvr.qat_introspect()
        self.assertEqual(CAPS, seen['capabilities'])
        self.assertEqual({}, seen['sessions'])
        self.assertEqual(0, seen['budget'].snapshot().migrations)
        self.assertIsNotNone(seen['history'])

    def test_sessions_are_a_copy(self):
        drvr = self.driver()
        session = make_session(datamodel.Plan(policy='static'))
        drvr._qat_sessions['uuid-1'] = session
        seen = drvr.qat_introspect()['sessions']
        self.assertEqual({'uuid-1': session}, seen)
        seen.clear()
        self.assertIn('uuid-1', drvr.qat_introspect()['sessions'])

    def test_test_capabilities_plan_and_traits_then_restore(self):
        from nova_qat_migration.virt.libvirt import migration_traits
        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.driver.LibvirtDriver.update_provider_tree',
            lambda self, tree, nodename, allocations=None: None))
        drvr = self.driver()
        drvr.init_host('host')
        trait = migration_traits.compress_trait('qatzip')
        self.assertNotIn(trait, provider_traits(drvr))
        pretend = datamodel.HypervisorCaps(
            multifd_methods=CAPS.multifd_methods | {'qatzip'})
        previous = drvr.qat_set_test_capabilities(pretend)
        self.assertEqual(CAPS, previous)
        self.assertIs(pretend, drvr.qat_introspect()['capabilities'])
        self.assertIn(trait, provider_traits(drvr))
        drvr.qat_set_test_capabilities(previous)
        self.assertNotIn(trait, provider_traits(drvr))


class MonitorFlagsTest(DriverTestBase):

    def test_monitor_sees_only_its_own_flags(self):
        drvr = self.driver()
        drvr._parse_migration_flags()
        session = make_session(datamodel.Plan(policy='static',
                                              post_copy=True))
        self.assertTrue(session.call.flags & c.VIR_MIGRATE_POSTCOPY)
        seen = {}

        def other_thread():
            seen['other'] = drvr._get_migration_flags(False)

        drvr._qat_sessions['uuid-1'] = session
        # Registered but not monitored yet: Nova's flags.
        self.assertEqual(drvr._live_migration_flags,
                         drvr._get_migration_flags(False))
        session.monitor_thread = threading.get_ident()
        try:
            self.assertEqual(session.call.flags,
                             drvr._get_migration_flags(False))
            t = threading.Thread(target=other_thread)
            t.start()
            t.join()
        finally:
            session.monitor_thread = None
            drvr._qat_sessions.pop('uuid-1')
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

    def test_bad_flavor_hint_ignored_naming_key(self):
        # A typo in a flavor never refuses a migration: the key is
        # ignored with a warning naming it, the other hints stand.
        drvr = self.driver()
        drvr.init_host('host')
        logger = self.useFixture(fixtures.FakeLogger())
        hints = drvr._qat_check_hints(
            self._instance({'qat_migration:parallel_connections': '999',
                            'qat_migration:method': 'zlib'}))
        self.assertIsNone(hints.parallel_connections)
        self.assertEqual('zlib', hints.method)
        self.assertIn('qat_migration:parallel_connections: 999 is above '
                      'the maximum 32: ignored', logger.output)

    def test_bad_flavor_hint_is_a_note_of_the_session(self):
        drvr = self.driver()
        drvr.init_host('host')
        self.useFixture(fixtures.FakeLogger())
        self.useFixture(fixtures.MonkeyPatch(
            'nova_qat_migration.virt.libvirt.measure.host_load',
            lambda *a, **k: datamodel.HostLoad()))
        migrate_data = objects.LibvirtLiveMigrateData(block_migration=False)
        session = drvr._qat_plan(None, self._instance(
            {'qat_migration:method': 'bogus',
             'qat_migration:policy': 'not_installed'}), 'dest',
            migrate_data)
        # The configured policy plans; both keys are named in the notes.
        self.assertEqual('adaptive', session.policy.name)
        notes = ' '.join(session.notes)
        self.assertIn("qat_migration:method: 'bogus' is not one of", notes)
        self.assertIn('qat_migration:policy=not_installed ignored', notes)

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

    def _operation_domain(self, drvr):
        """The domain Nova's operation thread would migrate."""
        seen = []

        def nova_operation(self_, context, instance, dest, block_migration,
                           migrate_data, guest, device_names):
            seen.append(guest._domain)

        guest = mock.Mock(_domain=mock.Mock())
        with mock.patch('nova.virt.libvirt.driver.LibvirtDriver.'
                        '_live_migration_operation', nova_operation):
            drvr._live_migration_operation(
                None, self._instance(), 'dest', False, None, guest, None)
        return seen[0]

    def test_unplanned_migrations_go_out_clean(self):
        # Planning failed, or the planner is off: no session, and still
        # the domain Nova migrates strips our -global pairs.
        drvr = self.driver()
        drvr.init_host('host')
        self.assertIsInstance(self._operation_domain(drvr),
                              lm_operation.CleanDomain)
        self.flags(enabled=False, group='qat_migration')
        drvr = self.driver()
        drvr.init_host('host')
        self.assertIsInstance(self._operation_domain(drvr),
                              lm_operation.CleanDomain)

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
