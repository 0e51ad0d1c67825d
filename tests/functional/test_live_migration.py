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
"""Live migrations through Nova's REST API with ``QATLibvirtDriver``.

Each test asserts on what libvirt's ``migrateToURI3`` received (flags and
params), on the server's state and host afterwards, and on Placement.
"""

import threading

import fixtures
from nova.tests.fixtures import libvirt as fakelibvirt
from nova.tests.functional.api import client

from nova_qat_migration.virt.libvirt import migration_traits
from tests.functional import base


def _migrate_together(test, servers, host):
    """Live-migrate ``servers`` to ``host`` at once (the recording stubs
    wait at ``test.barrier`` until all are in flight) and wait until each
    migration completed.
    """
    test.barrier = threading.Barrier(len(servers))
    for server in servers:
        test.api.post_server_action(
            server['id'], {'os-migrateLive': {'host': host,
                                              'block_migration': 'auto'}})
    for server in servers:
        test._wait_for_migration_status(server, ['completed'])


class NovaDefaultIdenticalTest(base.QATMigrationTestBase):
    """(a) ``nova_default`` hands libvirt exactly what plain Nova does."""

    POLICY = 'nova_default'

    def _compare(self):
        # One pair runs Nova's LibvirtDriver, the other ours; same options.
        self.start_qat_compute('nsrc', driver=base.NOVA_DRIVER)
        self.start_qat_compute('ndest', driver=base.NOVA_DRIVER)
        self.start_qat_compute('qsrc')
        self.start_qat_compute('qdest')
        plain = self.server_on('nsrc')
        ours = self.server_on('qsrc')
        plain = self.migrate(plain, 'ndest')
        ours = self.migrate(ours, 'qdest')
        self.assertEqual('ndest', plain['OS-EXT-SRV-ATTR:host'])
        self.assertEqual('qdest', ours['OS-EXT-SRV-ATTR:host'])
        nova_call = self.last_call(plain)
        our_call = self.last_call(ours)
        self.assertEqual(nova_call['flags'], our_call['flags'])
        self.assertEqual(self.without_xml(nova_call['params']),
                         self.without_xml(our_call['params']))
        self.assertEqual(set(nova_call['params']), set(our_call['params']))
        return our_call

    def test_defaults(self):
        call = self._compare()
        self.assertEqual({'LIVE', 'PEER2PEER', 'UNDEFINE_SOURCE',
                          'PERSIST_DEST'}, base.flag_set(call['flags']))

    def test_tuned_nova_options(self):
        self.flags(live_migration_permit_auto_converge=True,
                   live_migration_parallel_connections=4,
                   live_migration_bandwidth=500, group='libvirt')
        call = self._compare()
        self.assertIn('PARALLEL', base.flag_set(call['flags']))
        self.assertIn('AUTO_CONVERGE', base.flag_set(call['flags']))
        self.assertEqual(4, call['params']['parallel.connections'])
        self.assertEqual(500, call['params']['bandwidth'])


class AdaptiveTest(base.QATMigrationTestBase):
    """(b), (c): the adaptive policy and the destination's traits."""

    POLICY = 'adaptive'

    def test_idle_host_zstd_destination_gets_parallel_zstd(self):
        self.start_qat_compute('src')
        self.start_qat_compute('dest')
        server = self.migrate(self.server_on('src'), 'dest')
        self.assertEqual('dest', server['OS-EXT-SRV-ATTR:host'])
        call = self.last_call(server)
        self.assertIn('PARALLEL', base.flag_set(call['flags']))
        self.assertEqual('zstd', call['params']['compression'])
        self.assertGreaterEqual(call['params']['parallel.connections'], 2)
        self.assertIn('compression.zstd.level', call['params'])
        # The planning really ran in our driver: one report, one history.
        self.wait_for_driver_cleanup('src')
        self.assertIsInstance(self.driver_of('src'), base.qat_driver.
                              QATLibvirtDriver)
        self.assertIn('qat_migration report: ', self.stdlog.logger.output)
        history = self.driver_of('src')._qat_history.get(server['id'])
        self.assertEqual(1, history.migrations)
        self.assertEqual('zstd', history.method)
        self.assertTrue(history.converged)

    def test_destination_without_zstd_trait(self):
        self.start_qat_compute('src')
        self.start_qat_compute('dest', caps=base.NO_ZSTD)
        server = self.migrate(self.server_on('src'), 'dest')
        params = self.last_call(server)['params']
        self.assertNotEqual('zstd', params.get('compression'))

    def test_destination_without_planner_traits(self):
        # A destination running Nova's own driver publishes no migration
        # traits: nothing that needs the destination's help is used.
        self.start_qat_compute('src')
        self.start_qat_compute('dest', driver=base.NOVA_DRIVER)
        server = self.migrate(self.server_on('src'), 'dest')
        call = self.last_call(server)
        self.assertNotIn(call['params'].get('compression'),
                         ('zlib', 'zstd', 'qatzip'))
        self.assertEqual('dest', server['OS-EXT-SRV-ATTR:host'])

    def test_traits_in_placement(self):
        self.start_qat_compute('src')
        self.start_qat_compute('dest', caps=base.NO_ZSTD)
        self._run_periodics()
        src = self._get_provider_traits(self.compute_rp_uuids['src'])
        dest = self._get_provider_traits(self.compute_rp_uuids['dest'])
        for traits in (src, dest):
            self.assertIn(migration_traits.TRAIT_PLANNER, traits)
            self.assertIn(migration_traits.compress_trait('zlib'), traits)
            # Nova's own traits survive ours.
            self.assertIn('COMPUTE_NET_ATTACH_INTERFACE', traits)
        self.assertIn(migration_traits.compress_trait('zstd'), src)
        self.assertNotIn(migration_traits.compress_trait('zstd'), dest)


class ExtraSpecTest(base.QATMigrationTestBase):
    """(d), (e): per-flavor hints."""

    POLICY = 'adaptive'

    def setUp(self):
        super().setUp()
        self.start_qat_compute('src')
        self.start_qat_compute('dest')

    def test_flavor_forces_method(self):
        flavor = self.flavor(**{'qat_migration:method': 'zlib',
                                'qat_migration:level': '3'})
        server = self.migrate(self.server_on('src', flavor), 'dest')
        call = self.last_call(server)
        self.assertEqual('zlib', call['params']['compression'])
        self.assertEqual(3, call['params']['compression.zlib.level'])
        self.assertIn('PARALLEL', base.flag_set(call['flags']))

    def test_flavor_forces_xbzrle(self):
        flavor = self.flavor(**{'qat_migration:method': 'xbzrle'})
        server = self.migrate(self.server_on('src', flavor), 'dest')
        call = self.last_call(server)
        self.assertEqual('xbzrle', call['params']['compression'])
        self.assertNotIn('PARALLEL', base.flag_set(call['flags']))
        self.assertNotIn('parallel.connections', call['params'])

    def test_bad_extra_spec_refused_by_api(self):
        flavor = self.flavor()
        for key, value in (('qat_migration:method', 'bogus'),
                           ('qat_migration:level', 'x'),
                           ('qat_migration:nonsense', '1')):
            exc = self.assertRaises(
                client.OpenStackApiException,
                self.api.post_extra_spec, flavor,
                {'extra_specs': {key: value}})
            self.assertEqual(400, exc.response.status_code)
            self.assertIn(value if key != 'qat_migration:nonsense' else key,
                          exc.response.text)


class BadFlavorHintTest(base.QATMigrationTestBase):
    """A bad hint that reached a flavor never refuses the migration."""

    def test_bad_extra_spec_ignored_naming_key(self):
        self.start_qat_compute('src')
        self.start_qat_compute('dest')
        # Stored below microversion 2.86, which validates nothing (as
        # openstacksdk's 2.61): the key is ignored with a warning naming
        # it, the flavor's other hints stand and the migration runs.
        flavor = self.flavor()
        self.api.microversion = '2.85'
        self.api.post_extra_spec(
            flavor, {'extra_specs': {'qat_migration:method': 'bogus',
                                     'qat_migration:level': '3'}})
        self.api.microversion = 'latest'
        server = self.migrate(self.server_on('src', flavor), 'dest')
        self.assertEqual('dest', server['OS-EXT-SRV-ATTR:host'])
        self.assertIn(server['id'], self.calls)
        self.assertIn("qat_migration:method: 'bogus' is not one of",
                      self.stdlog.logger.output)
        # the report carries it too
        report_line = [line for line in
                       self.stdlog.logger.output.splitlines()
                       if 'qat_migration report: ' in line][-1]
        self.assertIn('qat_migration:method', report_line)


class RefusedPlanTest(base.QATMigrationTestBase):
    """(f) libvirt refuses the plan: Nova's plan runs instead."""

    def test_refused_compression_falls_back_to_nova(self):
        self.start_qat_compute('src')
        self.start_qat_compute('dest')
        self.refuse = lambda params, flags: 'compression' in params
        server = self.migrate(self.server_on('src'), 'dest')
        self.assertEqual('dest', server['OS-EXT-SRV-ATTR:host'])
        calls = self.calls[server['id']]
        self.assertEqual(2, len(calls))
        self.assertEqual('zstd', calls[0]['params']['compression'])
        self.assertNotIn('compression', calls[1]['params'])
        self.assertEqual({'LIVE', 'PEER2PEER', 'UNDEFINE_SOURCE',
                          'PERSIST_DEST'}, base.flag_set(calls[1]['flags']))


class ConcurrentTest(base.QATMigrationTestBase):
    """(g) two migrations at once, each with its own plan."""

    CAST_AS_CALL = False

    def test_two_flavors_two_plans(self):
        self.flags(max_concurrent_live_migrations=2)
        self.start_qat_compute('src')
        self.start_qat_compute('dest')
        zstd = self.flavor(**{'qat_migration:method': 'zstd'})
        xbzrle = self.flavor(**{'qat_migration:method': 'xbzrle'})
        a = self.server_on('src', zstd)
        b = self.server_on('src', xbzrle)
        # Both stubs wait until the other migration is in flight too.
        _migrate_together(self, (a, b), 'dest')
        self.assertFalse(self.barrier.broken)
        call_a, call_b = self.last_call(a), self.last_call(b)
        self.assertEqual('zstd', call_a['params']['compression'])
        self.assertIn('PARALLEL', base.flag_set(call_a['flags']))
        self.assertEqual('xbzrle', call_b['params']['compression'])
        self.assertNotIn('PARALLEL', base.flag_set(call_b['flags']))
        # Nova's host-wide flags were never touched.
        self.wait_for_driver_cleanup('src')
        driver = self.driver_of('src')
        self.assertEqual(fakelibvirt.VIR_MIGRATE_LIVE |
                         fakelibvirt.VIR_MIGRATE_PEER2PEER |
                         fakelibvirt.VIR_MIGRATE_UNDEFINE_SOURCE |
                         fakelibvirt.VIR_MIGRATE_PERSIST_DEST,
                         driver._live_migration_flags)
        self.assertEqual({}, driver._qat_sessions)


class BothThreadsOneFlagsTest(base.QATMigrationTestBase):
    """Nova's monitor and its operation thread run with the same planned
    flags, each migration with its own (the session registry is the one
    channel to both).
    """

    POLICY = 'static'
    CAST_AS_CALL = False

    def test_monitor_sees_the_flags_the_operation_sent(self):
        self.flags(max_concurrent_live_migrations=2)
        self.start_qat_compute('src')
        self.start_qat_compute('dest')
        driver = self.driver_of('src')
        monitor_flags = {}
        real = type(driver)._get_migration_flags

        def recording(self_, is_block_migration):
            flags = real(self_, is_block_migration)
            session = self_._qat_monitored_session()
            monitor_flags[session and session.instance_uuid] = flags
            return flags
        self.useFixture(fixtures.MonkeyPatch(
            'nova_qat_migration.virt.libvirt.driver.QATMigrationMixin.'
            '_get_migration_flags', recording))
        post_copy = self.flavor(**{'qat_migration:allow_post_copy': 'true'})
        a = self.server_on('src', post_copy)
        b = self.server_on('src', self.flavor(
            **{'qat_migration:allow_post_copy': 'false'}))
        self.flags(permit_post_copy=True, group='qat_migration')
        _migrate_together(self, (a, b), 'dest')
        self.wait_for_driver_cleanup('src')
        self.assertEqual({a['id'], b['id']}, set(monitor_flags))
        for server, post_copy in ((a, True), (b, False)):
            sent = self.last_call(server)['flags']
            self.assertEqual(sent, monitor_flags[server['id']])
            self.assertEqual(post_copy, 'POSTCOPY' in base.flag_set(sent))
        # Outside a monitor: Nova's own flags.
        self.assertEqual(driver._live_migration_flags,
                         driver._get_migration_flags(False))


class DisabledTest(base.QATMigrationTestBase):
    """``[qat_migration] enabled = False``: Nova's driver, exactly."""

    def test_disabled_is_nova(self):
        self.flags(enabled=False, group='qat_migration')
        self.start_qat_compute('src')
        self.start_qat_compute('dest')
        server = self.migrate(self.server_on('src'), 'dest')
        call = self.last_call(server)
        self.assertEqual({'LIVE', 'PEER2PEER', 'UNDEFINE_SOURCE',
                          'PERSIST_DEST'}, base.flag_set(call['flags']))
        self.assertEqual({'bandwidth': 0},
                         self.without_xml(call['params']))
        traits = self._get_provider_traits(self.compute_rp_uuids['src'])
        self.assertFalse([t for t in traits
                          if t.startswith(migration_traits.TRAIT_PREFIX)])
        self.assertNotIn('qat_migration report', self.stdlog.logger.output)
