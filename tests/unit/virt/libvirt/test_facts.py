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
"""The facts a migration is planned from: what is read, what is measured
only when the policy needs it, and the destination's Placement traits.
"""

import os
import stat
import time
from unittest import mock

import fixtures
from nova import objects
from nova import test
from nova.virt.libvirt import config as vconfig

from nova_qat_migration.conf import CONF
from nova_qat_migration import datamodel
from nova_qat_migration import history as qat_history
from nova_qat_migration import outcomes
from nova_qat_migration.policy import hints as qat_hints
from nova_qat_migration.virt.libvirt import facts
from nova_qat_migration.virt.libvirt import migration_traits
from nova_qat_migration.virt.libvirt import report

CAPS = datamodel.HypervisorCaps(multifd_methods=frozenset({'none', 'zstd'}))
UUID = '11111111-2222-3333-4444-555555555555'


def _instance(vm_state='active', extra_specs=None):
    flavor = objects.Flavor(memory_mb=2048, vcpus=2,
                            extra_specs=extra_specs or {})
    return objects.Instance(uuid=UUID, vm_state=vm_state, flavor=flavor,
                            system_metadata={})


def _traits(*names):
    return mock.Mock(traits=list(names))


class _GatherTestBase(test.NoDBTestCase):

    def setUp(self):
        super().setUp()
        self.load = datamodel.HostLoad(cpus=8, cpu_idle_pct=90.0,
                                       mem_free_mb=8192)
        self.host_load = self.useFixture(fixtures.MockPatch(
            'nova_qat_migration.virt.libvirt.measure.host_load',
            return_value=self.load)).mock
        self.fields = self.useFixture(fixtures.MockPatch(
            'nova_qat_migration.virt.libvirt.measure.instance_fields',
            return_value={'dirty_rate_mbps': 40.0})).mock
        self.destination = self.useFixture(fixtures.MockPatch(
            'nova_qat_migration.virt.libvirt.facts.destination',
            return_value=datamodel.DestinationCaps(known=True))).mock
        self.host = mock.Mock()
        self.manager = mock.Mock()
        self.manager.state.return_value = datamodel.QATState(endpoints=2)
        self.history = qat_history.HistoryStore(None, 10)
        self.flags(link_gbps=8, dirty_rate_sample_seconds=1,
                   group='qat_migration')

    def _gather(self, instance, measured, **kw):
        args = dict(caps=CAPS, host=self.host, qat_manager=self.manager,
                    history=self.history, reportclient=mock.sentinel.rc,
                    in_flight=datamodel.InFlight(migrations=1))
        args.update(kw)
        migrate_data = objects.LibvirtLiveMigrateData(block_migration=True)
        return facts.gather(CONF, mock.sentinel.ctx, instance, 'dest',
                            migrate_data, datamodel.Hints(), measured,
                            **args)


class GatherTest(_GatherTestBase):

    def test_nova_plan_measures_nothing(self):
        got = self._gather(_instance(), measured=False)
        self.host_load.assert_not_called()
        self.fields.assert_not_called()
        self.manager.state.assert_not_called()
        self.destination.assert_not_called()
        self.assertEqual(datamodel.HostLoad(), got.host)
        self.assertFalse(got.destination.known)
        # What costs nothing is read all the same.
        self.assertEqual(2048, got.instance.memory_mb)
        self.assertEqual(2, got.instance.vcpus)
        self.assertEqual(UUID, got.instance.uuid)
        self.assertIs(CAPS, got.hypervisor)
        self.assertTrue(got.block_migration)
        self.assertEqual(1, got.in_flight.migrations)
        self.assertAlmostEqual(8e9 / 8 / datamodel.MIB, got.link_mbps)

    def test_guest_memory_not_read_when_off(self):
        # The dirty rate is measured all the same; no page is peeked.
        self.flags(sample_guest_memory=False, group='qat_migration')
        got = self._gather(_instance(), measured=True)
        self.fields.assert_called_once_with(
            self.host.get_guest.return_value._domain, 2048, 1,
            sample_pages=0)
        self.assertEqual(40.0, got.instance.dirty_rate_mbps)

    def test_measured_facts(self):
        got = self._gather(_instance(), measured=True)
        self.assertEqual(self.load, got.host)
        self.host.get_guest.assert_called_once_with(mock.ANY)
        self.fields.assert_called_once_with(
            self.host.get_guest.return_value._domain, 2048, 1)
        self.assertEqual(40.0, got.instance.dirty_rate_mbps)
        self.assertEqual(2, got.qat.endpoints)
        self.destination.assert_called_once_with(
            mock.sentinel.ctx, mock.sentinel.rc, 'dest', mock.ANY)
        self.assertTrue(got.destination.known)

    def test_paused_guest_not_sampled_and_failures_degrade(self):
        got = self._gather(_instance(vm_state='paused'), measured=True)
        self.fields.assert_not_called()
        self.assertTrue(got.instance.paused)
        self.host.get_guest.side_effect = RuntimeError('gone')
        self.manager.state.side_effect = RuntimeError('no QAT')
        got = self._gather(_instance(), measured=True, caps=None,
                           qat_manager=self.manager, history=None)
        self.assertEqual(datamodel.QATState(), got.qat)
        self.assertEqual(datamodel.HypervisorCaps(), got.hypervisor)
        self.assertEqual(datamodel.History(), got.history)


class ReuseMeasurementTest(_GatherTestBase):
    """A recent measurement on record replaces the ~1 s measuring window."""

    def setUp(self):
        super().setUp()
        self.flags(measurement_reuse_seconds=300, group='qat_migration')
        self.now = time.time()

    def _remember(self, age_s, memory_mb=2048, dirty=12.0):
        self.history.record(UUID, {
            'measured_at': self.now - age_s, 'measured_memory_mb': memory_mb,
            'measured_dirty_rate_mbps': dirty,
            'measured_compress_ratio': 0.5,
            'measured_xbzrle_friendly': 0.8})

    def test_recent_measurement_reused(self):
        self._remember(60)
        logger = self.useFixture(fixtures.FakeLogger())
        got = self._gather(_instance(), measured=True)
        self.fields.assert_not_called()
        # Looked up once, for the block migration's disks only.
        self.host.get_guest.assert_called_once_with(mock.ANY)
        inst = got.instance
        self.assertEqual((12.0, 0.5, 0.8, None, 'reused'),
                         (inst.dirty_rate_mbps, inst.compress_ratio,
                          inst.xbzrle_friendly, inst.zero_fraction,
                          inst.measurement))
        self.assertAlmostEqual(self.now - 60, inst.measured_at)
        self.assertIn('reused', logger.output)
        # Host load, QAT and the destination are measured all the same.
        self.host_load.assert_called_once_with()
        self.assertEqual(2, got.qat.endpoints)

    def test_measured_when_the_record_does_not_fit(self):
        cases = {
            'too old': dict(age_s=301),
            'resized since': dict(age_s=10, memory_mb=4096),
            'from the future (clock went back)': dict(age_s=-120),
        }
        for name, kw in cases.items():
            self.history = qat_history.HistoryStore(None, 10)
            self._remember(**kw)
            self.fields.reset_mock()
            got = self._gather(_instance(), measured=True)
            self.fields.assert_called_once_with(mock.ANY, 2048, 1)
            self.assertEqual(40.0, got.instance.dirty_rate_mbps, name)
            self.assertNotEqual('reused', got.instance.measurement, name)

    def test_option_zero_always_measures(self):
        self._remember(1)
        self.flags(measurement_reuse_seconds=0, group='qat_migration')
        got = self._gather(_instance(), measured=True)
        self.fields.assert_called_once_with(mock.ANY, 2048, 1)
        self.assertEqual(40.0, got.instance.dirty_rate_mbps)

    def test_nothing_reused_when_nothing_is_measured(self):
        self._remember(1)
        got = self._gather(_instance(vm_state='paused'), measured=True)
        self.assertIsNone(got.instance.measurement)
        self.assertIsNone(got.instance.dirty_rate_mbps)
        self.flags(dirty_rate_sample_seconds=0, group='qat_migration')
        got = self._gather(_instance(), measured=True)
        self.assertIsNone(got.instance.measurement)
        got = self._gather(_instance(), measured=False)
        self.assertIsNone(got.instance.measurement)

    def test_unreadable_history_measures(self):
        history = mock.Mock()
        history.measurement.side_effect = RuntimeError('broken')
        history.get.return_value = datamodel.History()
        self.useFixture(fixtures.FakeLogger())
        got = self._gather(_instance(), measured=True, history=history)
        self.assertEqual(40.0, got.instance.dirty_rate_mbps)

    def test_second_migration_reuses_the_first_measurement(self):
        # The whole loop: measured, reported, recorded, reused; the
        # reuse is said in the report, with the first one's time.
        self.fields.return_value = {
            'dirty_rate_mbps': 40.0, 'compress_ratio': 0.3,
            'measurement': 'measured', 'measured_at': self.now}
        first = self._gather(_instance(), measured=True)
        plan = datamodel.Plan(policy='adaptive')
        report.emit(report.build(instance_uuid=UUID, requested=plan,
                                 outcome=outcomes.OUTCOME_COMPLETED,
                                 facts=first), self.history)
        self.fields.reset_mock()
        second = self._gather(_instance(), measured=True)
        self.fields.assert_not_called()
        self.assertEqual(('reused', self.now, 40.0, 0.3),
                         (second.instance.measurement,
                          second.instance.measured_at,
                          second.instance.dirty_rate_mbps,
                          second.instance.compress_ratio))
        record = report.build(instance_uuid=UUID, requested=plan,
                              outcome=outcomes.OUTCOME_COMPLETED,
                              facts=second)
        self.assertTrue([n for n in record['notes']
                         if 'measurement reused' in n], record['notes'])


def _disk(target, path=None, source_type='file', readonly=False,
          serial=None, device='disk'):
    disk = vconfig.LibvirtConfigGuestDisk()
    disk.source_type = source_type
    disk.source_device = device
    disk.source_path = path
    disk.target_dev = target
    disk.readonly = readonly
    disk.serial = serial
    return disk


class BlockMigrationDisksTest(_GatherTestBase):
    """Issue 21: a block migration's facts carry the disks Nova copies."""

    def setUp(self):
        super().setUp()
        tmp = self.useFixture(fixtures.TempDir()).path
        # A sparse 1 GiB root disk holding 4 MiB of data, as a qcow2
        # overlay or a sparse raw file holds only what the guest wrote.
        self.root = os.path.join(tmp, 'disk')
        with open(self.root, 'wb') as f:
            f.truncate(1024 * datamodel.MIB)
            f.write(os.urandom(4 * datamodel.MIB))
        self.ephemeral = os.path.join(tmp, 'disk.eph0')
        with open(self.ephemeral, 'wb') as f:
            f.write(os.urandom(3 * datamodel.MIB))
        self.guest = self.host.get_guest.return_value
        self.guest.get_all_disks.return_value = [
            _disk('vda', self.root),
            _disk('vdb', self.ephemeral),
            # What Nova does not copy: a volume (named in migrate_data's
            # bdms, or carrying its volume's serial), a read-only config
            # drive, a network disk.
            _disk('vdc', '/dev/sdx', source_type='block'),
            _disk('vdd', '/dev/sdy', source_type='block', serial='vol-2'),
            _disk('hda', os.path.join(tmp, 'disk.config'), readonly=True,
                  device='cdrom'),
            _disk('vde', None, source_type='network'),
        ]
        self.migrate_data = objects.LibvirtLiveMigrateData(
            block_migration=True,
            bdms=[objects.LibvirtLiveMigrateBDMInfo(serial='vol-1',
                                                    dev='vdc')])

    def _gather_block(self, instance=None, measured=True, migrate_data=None):
        return facts.gather(
            CONF, mock.sentinel.ctx, instance or _instance(), 'dest',
            migrate_data or self.migrate_data, datamodel.Hints(), measured,
            caps=CAPS, host=self.host, qat_manager=self.manager,
            history=self.history, reportclient=mock.sentinel.rc,
            in_flight=datamodel.InFlight())

    def test_disks_nova_copies_are_read(self):
        got = self._gather_block()
        self.assertTrue(got.block_migration)
        self.assertEqual('disks', got.disk_source)
        # Nova's monitor counts each file's size (st_size) ...
        self.assertEqual((1024 * datamodel.MIB, 3 * datamodel.MIB),
                         got.disk_sizes)
        # ... the mirror copies what the files hold (sparse: ~7 MiB of a
        # 1 GiB file; the filesystem may round up a little).
        self.assertGreaterEqual(got.disk_bytes, 7 * datamodel.MIB)
        self.assertLess(got.disk_bytes, 64 * datamodel.MIB)
        # One guest lookup serves the disks and the measurement.
        self.host.get_guest.assert_called_once_with(mock.ANY)
        # Nova's data: 2 GiB of RAM (its floor) + 2 GiB per disk (its
        # floor per disk) = 6 GiB, at 800 s per GiB.
        self.assertEqual(6.0, got.nova_data_gb())
        self.assertEqual(4800.0, got.completion_timeout_s())

    def test_block_device_size_from_sysfs(self):
        # An LVM or raw-device disk: st_size 0 (which Nova counts, at its
        # 2 GiB floor), the size in 512-byte sectors under /sys/dev/block.
        sysfs = self.useFixture(fixtures.TempDir()).path
        os.makedirs(os.path.join(sysfs, '253:7'))
        with open(os.path.join(sysfs, '253:7', 'size'), 'w') as f:
            f.write('41943040\n')              # 20 GiB
        self.useFixture(fixtures.MonkeyPatch(
            'nova_qat_migration.virt.libvirt.facts.SYS_DEV_BLOCK', sysfs))
        device = os.stat_result(
            (stat.S_IFBLK | 0o660, 0, 0, 1, 0, 0, 0, 0, 0, 0),
            {'st_rdev': os.makedev(253, 7), 'st_blocks': 0})
        self.guest.get_all_disks.return_value = [
            _disk('vda', '/dev/vg/disk', source_type='block')]
        with mock.patch.object(facts.os, 'stat', return_value=device):
            got = self._gather_block()
        self.assertEqual('disks', got.disk_source)
        self.assertEqual(20 * 1024 * datamodel.MIB, got.disk_bytes)
        self.assertEqual((0,), got.disk_sizes)
        self.assertEqual(4.0, got.nova_data_gb())

    def test_flavor_bounds_the_copy_when_disks_cannot_be_read(self):
        self.guest.get_all_disks.side_effect = RuntimeError('no XML')
        self.useFixture(fixtures.FakeLogger())
        instance = _instance()
        instance.flavor.root_gb = 20
        instance.flavor.ephemeral_gb = 5
        instance.flavor.swap = 512
        got = self._gather_block(instance)
        gib = 1024 * datamodel.MIB
        self.assertEqual('flavor', got.disk_source)
        self.assertEqual((20 * gib, 5 * gib, 512 * datamodel.MIB),
                         got.disk_sizes)
        self.assertEqual(25 * gib + 512 * datamodel.MIB, got.disk_bytes)
        # An instance booted from a volume has no local root disk.
        self.migrate_data.is_volume_backed = True
        got = self._gather_block(instance)
        self.assertEqual((5 * gib, 512 * datamodel.MIB), got.disk_sizes)

    def test_unknown_never_fails_planning(self):
        self.guest.get_all_disks.side_effect = RuntimeError('no XML')
        self.useFixture(fixtures.FakeLogger())
        with mock.patch.object(facts, '_flavor_disks',
                               side_effect=KeyError('flavor')):
            got = self._gather_block()
        self.assertTrue(got.block_migration)
        self.assertIsNone(got.disk_bytes)
        self.assertIsNone(got.disk_source)

    def test_not_read_without_a_block_migration_or_for_novas_plan(self):
        shared = objects.LibvirtLiveMigrateData(block_migration=False)
        got = self._gather_block(migrate_data=shared)
        self.assertFalse(got.block_migration)
        self.assertIsNone(got.disk_bytes)
        self.assertEqual((), got.disk_sizes)
        self.assertEqual(2.0, got.nova_data_gb())
        got = self._gather_block(measured=False)
        self.assertTrue(got.block_migration)
        self.assertIsNone(got.disk_bytes)
        self.guest.get_all_disks.assert_not_called()


class DestinationTest(test.NoDBTestCase):

    def setUp(self):
        super().setUp()
        self.reportclient = mock.Mock()
        self.reportclient.get_provider_traits.return_value = _traits(
            migration_traits.TRAIT_PLANNER, migration_traits.TRAIT_MULTIFD,
            migration_traits.compress_trait('zstd'))

    def test_traits_of_the_destination_node(self):
        node = mock.Mock(uuid='rp-1')
        migration = objects.Migration(dest_node='node1')
        migrate_data = objects.LibvirtLiveMigrateData(migration=migration)
        with mock.patch.object(objects.ComputeNode,
                               'get_by_host_and_nodename',
                               return_value=node) as get:
            caps = facts.destination(mock.sentinel.ctx, self.reportclient,
                                     'dest', migrate_data)
        get.assert_called_once_with(mock.sentinel.ctx, 'dest', 'node1')
        self.reportclient.get_provider_traits.assert_called_once_with(
            mock.sentinel.ctx, 'rp-1')
        self.assertTrue(caps.known)
        self.assertTrue(caps.multifd)
        self.assertIn('zstd', caps.methods)

    def test_all_nodes_of_the_host_without_a_migration(self):
        nodes = [mock.Mock(uuid='rp-1'), mock.Mock(uuid='rp-2')]
        with mock.patch.object(objects.ComputeNodeList, 'get_all_by_host',
                               return_value=nodes):
            caps = facts.destination(mock.sentinel.ctx, self.reportclient,
                                     'dest', objects.LibvirtLiveMigrateData())
        self.assertEqual(2, self.reportclient.get_provider_traits.call_count)
        self.assertTrue(caps.known)

    def test_unreadable_traits_mean_unknown(self):
        logger = self.useFixture(fixtures.FakeLogger())
        # No Placement client at all (Nova's fake virt API has none).
        caps = facts.destination(mock.sentinel.ctx, None, 'dest',
                                 objects.LibvirtLiveMigrateData())
        self.assertEqual(datamodel.DestinationCaps(), caps)
        self.assertIn('Could not read the traits of destination dest',
                      logger.output)


class InstanceInputTest(test.NoDBTestCase):

    def test_hints_from_the_flavor(self):
        hints = facts.instance_hints(CONF, _instance(
            extra_specs={'qat_migration:parallel_connections': '4'}))
        self.assertEqual(4, hints.parallel_connections)
        self.assertRaises(
            qat_hints.InvalidHint, facts.instance_hints, CONF,
            _instance(extra_specs={
                'qat_migration:parallel_connections': '999'}))
        # Planning passes a list: the bad key is ignored and named there.
        ignored = []
        hints = facts.instance_hints(CONF, _instance(extra_specs={
            'qat_migration:parallel_connections': '999',
            'qat_migration:level': '3'}), ignored)
        self.assertIsNone(hints.parallel_connections)
        self.assertEqual(3, hints.level)
        self.assertEqual(1, len(ignored))
        self.assertIn('qat_migration:parallel_connections', ignored[0])

    def test_field_of_an_unset_versioned_field(self):
        instance = objects.Instance(uuid=UUID)
        self.assertEqual('x', facts.field(instance, 'flavor', 'x'))
        self.assertEqual(UUID, facts.field(instance, 'uuid'))
        self.assertIsNone(facts.field(None, 'uuid'))
