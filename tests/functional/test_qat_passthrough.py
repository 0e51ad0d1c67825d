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
"""multifd ``qatzip`` through the QEMU monitor passthrough, on Nova's stack.

A QAT-capable host pair: QAT devices in a sysfs fixture (both computes of
this process read the same tree), a fake QEMU capability that includes
``qatzip``, and the destination's traits in Placement. The monitor command
is recorded instead of reaching a QEMU (the fake libvirt has none).
"""

import json
import threading

import fixtures
from lxml import etree
from nova.tests.fixtures import libvirt as fakelibvirt

from nova_qat_migration import datamodel
from nova_qat_migration.qat import placement
from nova_qat_migration.virt.libvirt import migration_traits
from nova_qat_migration.virt.libvirt import passthrough
from tests.fixtures import qat_sysfs
from tests.functional import base
from tests.unit.qat import test_qatzip

QATZIP = datamodel.HypervisorCaps(
    libvirt_version=(11, 3, 0), qemu_version=(10, 0, 0),
    multifd_methods=frozenset({'none', 'zlib', 'zstd', 'qatzip'}))


class QATPassthroughBase(base.QATMigrationTestBase):

    POLICY = 'static'

    def setUp(self):
        super().setUp()
        self.useFixture(test_qatzip.QuietStderrFD())
        tree = self.useFixture(qat_sysfs.QATSysfs())
        tree.add_pf('0000:6b:00.0', '4xxx', numvfs=4, services='dc')
        # No QAT hardware here: QATzip runs in its software fallback,
        # which counts for plans only because this option says so.
        self.flags(sysfs_root=tree.sysfs, debugfs_root=tree.debugfs,
                   qat_endpoints_for_migration=1,
                   qatzip_software_allowed=True,
                   qemu_monitor_passthrough=True, group='qat_migration')
        self.flags(method='qatzip', parallel_connections=4,
                   group='qat_migration_static')
        #: migrate-set-parameters commands sent to the source QEMU
        self.commands = []
        self.all_commands = []
        #: the source QEMU's multifd parameters
        self.qemu = {'multifd-compression': 'none',
                     'multifd-qatzip-level': 1}
        self.reply = '{"return": {}}'
        self.useFixture(fixtures.MonkeyPatch(
            'nova_qat_migration.virt.libvirt.passthrough._monitor',
            self._monitor))
        self.leases_during = []

    def _monitor(self, domain, command):
        """The source QEMU's monitor: remembers what was set, answers
        queries with it, or answers everything with ``self.reply`` when
        that is an error.
        """
        command = json.loads(command)
        self.all_commands.append(command)
        if 'error' in self.reply:
            if command['execute'] == 'migrate-set-parameters':
                self.commands.append(command)
            return self.reply
        if command['execute'] == 'query-migrate-parameters':
            return json.dumps({'return': dict(self.qemu)})
        self.commands.append(command)
        self.qemu.update(command['arguments'])
        return self.reply

    def _migrate_stub(self, domain, destination, params, flags):
        pool = self.driver_of('src')._qat_manager.pool
        self.leases_during.append(pool.in_use)
        super()._migrate_stub(domain, destination, params, flags)

    def _multifd_globals(self, xml):
        doc = etree.fromstring(xml.encode())
        return [a.get('value') for a in doc.iter(
            '{%s}arg' % passthrough.QEMU_NS)]


class QATPassthroughTest(QATPassthroughBase):

    def test_qatzip_pair(self):
        self.start_qat_compute('src', caps=QATZIP)
        self.start_qat_compute('dest', caps=QATZIP)
        traits = self._get_provider_traits(self.compute_rp_uuids['dest'])
        self.assertIn(migration_traits.compress_trait('qatzip'), traits)
        self.assertIn(placement.HOST_TRAIT, traits)

        server = self.migrate(self.server_on('src'), 'dest')
        self.assertEqual('dest', server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual(
            [{'execute': 'migrate-set-parameters',
              'arguments': {'multifd-compression': 'qatzip',
                            'multifd-qatzip-level': 1}}], self.commands)
        call = self.last_call(server)
        self.assertIn('PARALLEL', base.flag_set(call['flags']))
        self.assertNotIn('compression', call['params'])
        self.assertEqual(4, call['params']['parallel.connections'])
        self.assertIn('migration.multifd-compression=qatzip',
                      self._multifd_globals(
                          call['params']['destination_xml']))
        self.assertFalse(passthrough.globals_of(
            call['params']['persistent_xml']))
        # A QAT lease was held while migrating and released after.
        self.assertEqual([1], self.leases_during)
        self.wait_for_driver_cleanup('src')

    def test_destination_without_qatzip(self):
        self.start_qat_compute('src', caps=QATZIP)
        self.start_qat_compute('dest', caps=base.MODERN)
        server = self.migrate(self.server_on('src'), 'dest')
        self.assertEqual([], self.commands)
        call = self.last_call(server)
        self.assertFalse(passthrough.globals_of(
            call['params']['destination_xml']))
        self.assertEqual([0], self.leases_during)

    def test_refused_monitor_command_runs_software_plan(self):
        self.reply = json.dumps({'error': {'class': 'GenericError',
                                           'desc': 'qatzip not built in'}})
        self.start_qat_compute('src', caps=QATZIP)
        self.start_qat_compute('dest', caps=QATZIP)
        server = self.migrate(self.server_on('src'), 'dest')
        self.assertEqual('dest', server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual(1, len(self.commands))
        call = self.last_call(server)
        self.assertFalse(passthrough.globals_of(
            call['params']['destination_xml']))
        self.assertNotEqual('qatzip', call['params'].get('compression'))
        self.assertIn('monitor passthrough refused',
                      self.stdlog.logger.output)

    def test_failed_migration_restores_source_method(self):
        self.start_qat_compute('src', caps=QATZIP)
        self.start_qat_compute('dest', caps=QATZIP)
        # Not a refusal: libvirt started and the migration failed; the
        # job reports failure as a real libvirt's would.

        def failing(domain, destination, params, flags):
            domain.fail_job()
            raise fakelibvirt.make_libvirtError(
                fakelibvirt.libvirtError, 'connection reset',
                error_code=fakelibvirt.VIR_ERR_OPERATION_FAILED)

        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.migrateToURI3',
            lambda dom, uri, params, flags: failing(dom, uri, params,
                                                    flags)))
        server = self.server_on('src')
        self.api.post_server_action(
            server['id'], {'os-migrateLive': {'host': 'dest',
                                              'block_migration': 'auto'}})
        self._wait_for_migration_status(server, ['error', 'failed'])
        # Nova sets ERROR when migrateToURI3 raises; the guest itself is
        # still defined and running on the source.
        server = self._wait_for_state_change(server, 'ERROR',
                                             wait_for_fault_key=False)
        self.assertEqual('src', server['OS-EXT-SRV-ATTR:host'])
        dom = self.driver_of('src')._host.get_connection().lookupByUUIDString(
            server['id'])
        self.assertTrue(dom.isActive())
        # Restored to what the source had before (asked first), not to a
        # constant.
        self.assertEqual(
            ['qatzip', 'none'],
            [c['arguments']['multifd-compression'] for c in self.commands])
        self.assertEqual('query-migrate-parameters',
                         self.all_commands[0]['execute'])
        self.assertEqual({'multifd-compression': 'none',
                          'multifd-qatzip-level': 1}, self.qemu)
        self.wait_for_driver_cleanup('src')


class QATLeaseContentionTest(QATPassthroughBase):
    """Two qatzip migrations, one QAT endpoint kept for migrations."""

    CAST_AS_CALL = False

    def test_second_migration_without_lease_degrades(self):
        self.flags(max_concurrent_live_migrations=2)
        self.start_qat_compute('src', caps=QATZIP)
        self.start_qat_compute('dest', caps=QATZIP)
        a = self.server_on('src')
        b = self.server_on('src')
        self.barrier = threading.Barrier(2)
        for server in (a, b):
            self.start_migration(server)
        for server in (a, b):
            self._wait_for_migration_status(server, ['completed'])
        self.assertFalse(self.barrier.broken)
        with_qat = [s for s in (a, b) if passthrough.globals_of(
            self.last_call(s)['params']['destination_xml'])]
        self.assertEqual(1, len(with_qat))
        # Both were in flight together; one lease existed and was held.
        self.assertEqual([1, 1], self.leases_during)
        self.assertEqual(1, len(self.commands))
        # Which path said so depends on timing: the second migration was
        # planned either after the first took the lease (it saw no free
        # lease) or before (the lease was gone when it asked)
        # (the driver's lease step, the policy, or the translation).
        output = self.stdlog.logger.output
        self.assertTrue(any(text in output for text in (
            'no QAT lease free', 'QAT: no free lease',
            'no free QAT lease on the source')), output[-3000:])
        self.wait_for_driver_cleanup('src')

    def start_migration(self, server):
        self.api.post_server_action(
            server['id'], {'os-migrateLive': {'host': 'dest',
                                              'block_migration': 'auto'}})
