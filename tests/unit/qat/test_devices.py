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
"""Discovery and health against sysfs/debugfs trees laid out like the
kernel's (no QAT hardware here)."""

import os

from nova_qat_migration.qat import devices
from nova_qat_migration.qat import health
from tests.unit.qat import base

PF = '0000:6b:00.0'


class TestDiscovery(base.QATTestCase):

    def scan(self):
        return devices.Scanner(self.tree.sysfs).scan()

    def statuses(self):
        pfs = self.scan()
        reader = health.HealthReader(self.tree.debugfs)
        by = reader.read_all([p.address for p in pfs])
        return {p.address: health.PFStatus(p, by[p.address]) for p in pfs}

    def test_4xxx_pf_with_16_dc_vfs(self):
        vfs = self.tree.add_pf(PF, '4xxx', numvfs=16, services='dc',
                               numa_node=1)
        # Unrelated PCI functions are ignored.
        self.tree.add_function('0000:00:1f.0', 0x8086, 0xa1c8)
        self.tree.add_function('0000:3b:00.0', 0x15b3, 0x1017)
        pfs = self.scan()
        self.assertEqual(1, len(pfs))
        pf = pfs[0]
        self.assertEqual(PF, pf.address)
        self.assertEqual(0x4940, pf.device_id)
        self.assertEqual('4xxx', pf.product)
        self.assertEqual(4, pf.generation)
        self.assertEqual('4xxx', pf.driver)
        self.assertEqual(1, pf.numa_node)
        self.assertEqual((16, 16), (pf.sriov_numvfs, pf.sriov_totalvfs))
        self.assertEqual('up', pf.state)
        self.assertEqual(('dc',), pf.services)
        self.assertTrue(pf.compression_capable)
        # virtfn order, not name order (virtfn10 after virtfn9).
        self.assertEqual(vfs, [vf.address for vf in pf.vfs])
        self.assertEqual({'4xxxvf'}, {vf.driver for vf in pf.vfs})
        self.assertEqual(tuple(vfs), pf.endpoints())
        status = self.statuses()[PF]
        self.assertTrue(status.healthy)
        self.assertEqual(0, status.health.heartbeat)
        self.assertEqual(16, len(status.compression_endpoints()))
        self.assertEqual([], self.log.output.splitlines())

    def test_mixed_generations(self):
        self.tree.add_pf('0000:3d:00.0', 'c62x', numvfs=16)
        self.tree.add_pf('0000:6b:00.0', '4xxx', numvfs=8, services='sym;dc')
        self.tree.add_pf('0000:76:00.0', '420xx', numvfs=4,
                         services='asym;dc')
        self.tree.add_pf('0000:e8:00.0', '6xxx', numvfs=2,
                         services='decomp')
        self.tree.add_pf('0000:1a:00.0', 'dh895xcc', numvfs=0)
        pfs = {p.address: p for p in self.scan()}
        self.assertEqual(
            {'0000:1a:00.0': (1, 'DH895xCC', 'dh895xcc'),
             '0000:3d:00.0': (2, 'C62x', 'c6xx'),
             '0000:6b:00.0': (4, '4xxx', '4xxx'),
             '0000:76:00.0': (4, '420xx', '420xx'),
             '0000:e8:00.0': (6, '6xxx', '6xxx')},
            {a: (p.generation, p.product, p.driver) for a, p in pfs.items()})
        # Gen1-3: no qat/ directory, every service, no state file.
        c62x = pfs['0000:3d:00.0']
        self.assertIsNone(c62x.state)
        self.assertEqual(('sym', 'asym', 'dc'), c62x.services)
        self.assertEqual({'c6xxvf'}, {vf.driver for vf in c62x.vfs})
        self.assertEqual(16, len(c62x.endpoints()))
        # SR-IOV off: the PF itself is the endpoint.
        self.assertEqual(('0000:1a:00.0',), pfs['0000:1a:00.0'].endpoints())
        self.assertEqual(('sym', 'dc'), pfs['0000:6b:00.0'].services)
        self.assertTrue(pfs['0000:e8:00.0'].compression_capable)
        statuses = self.statuses()
        self.assertEqual(
            {'0000:1a:00.0': 1, '0000:3d:00.0': 16, '0000:6b:00.0': 8,
             '0000:76:00.0': 4, '0000:e8:00.0': 2},
            {a: len(s.compression_endpoints())
             for a, s in statuses.items()})

    def test_401xx_402xx_use_4xxx_driver(self):
        self.tree.add_pf('0000:6b:00.0', '401xx', numvfs=1)
        self.tree.add_pf('0000:70:00.0', '402xx', numvfs=1)
        pfs = self.scan()
        self.assertEqual(['401xx', '402xx'], [p.product for p in pfs])
        self.assertEqual(['4xxx', '4xxx'], [p.driver for p in pfs])

    def test_vfs_bound_to_vfio_pci(self):
        # Gen4: vfio-pci is how qatlib/QATzip open VFs -> endpoints.
        self.tree.add_pf(PF, '4xxx', numvfs=4, vf_driver='vfio-pci')
        # Gen2: a vfio-pci VF is assumed assigned to a guest -> not ours.
        self.tree.add_pf('0000:3d:00.0', 'c62x', numvfs=4,
                         vf_driver='vfio-pci')
        pfs = {p.address: p for p in self.scan()}
        self.assertEqual({'vfio'},
                         {vf.driver_kind for vf in pfs[PF].vfs})
        self.assertEqual(4, len(pfs[PF].endpoints()))
        self.assertEqual((), pfs['0000:3d:00.0'].endpoints())

    def test_some_vfs_unbound(self):
        vfs = self.tree.add_pf(PF, '4xxx', numvfs=4)
        self.tree.bind(vfs[0], None)
        self.tree.bind(vfs[1], 'qat_vfio_pci')
        pf = self.scan()[0]
        self.assertEqual([None, 'qat_vfio_pci', '4xxxvf', '4xxxvf'],
                         [vf.driver for vf in pf.vfs])
        self.assertEqual(tuple(vfs[1:]), pf.endpoints())

    def test_pf_state_down(self):
        self.tree.add_pf(PF, '4xxx', numvfs=16, state='down')
        self.tree.add_pf('0000:70:00.0', '4xxx', numvfs=16)
        statuses = self.statuses()
        self.assertEqual('down', statuses[PF].pf.state)
        self.assertFalse(statuses[PF].healthy)
        self.assertEqual((), statuses[PF].compression_endpoints())
        self.assertEqual(16, len(
            statuses['0000:70:00.0'].compression_endpoints()))

    def test_pf_unbound_or_passed_through(self):
        self.tree.add_pf(PF, '4xxx', numvfs=0, driver=None)
        self.tree.add_pf('0000:70:00.0', '4xxx', numvfs=0,
                         driver='vfio-pci')
        for status in self.statuses().values():
            self.assertFalse(status.healthy)
            self.assertEqual((), status.compression_endpoints())

    def test_heartbeat_failed(self):
        self.tree.add_pf(PF, '4xxx', numvfs=16, heartbeat=-1)
        status = self.statuses()[PF]
        self.assertEqual(-1, status.health.heartbeat)
        self.assertEqual('unresponsive', status.health.status)
        self.assertFalse(status.healthy)
        self.assertEqual((), status.compression_endpoints())

    def test_no_debugfs_is_unknown_and_usable(self):
        self.tree.add_pf(PF, '4xxx', numvfs=2, heartbeat=None)
        status = self.statuses()[PF]
        self.assertEqual('unknown', status.health.status)
        self.assertTrue(status.healthy)
        reader = health.HealthReader('/nonexistent/debugfs')
        self.assertEqual({PF: health.UNKNOWN}, reader.read_all([PF]))

    def test_telemetry_utilization(self):
        self.tree.add_pf(PF, '4xxx', numvfs=2, telemetry={
            'util_cpr0': 10, 'util_cpr1': 30, 'util_dcpr0': 20,
            'util_cph0': 99, 'util_dcpr1': 'garbage'})
        status = self.statuses()[PF]
        self.assertEqual(20.0, status.health.dc_utilization)
        self.assertIn('garbled utilisation', self.log.output)

    def test_sym_asym_only_is_not_compression_capable(self):
        self.tree.add_pf(PF, '4xxx', numvfs=16, services='sym;asym')
        status = self.statuses()[PF]
        self.assertFalse(status.pf.compression_capable)
        self.assertTrue(status.healthy)
        self.assertEqual(16, len(status.pf.endpoints()))
        self.assertEqual((), status.compression_endpoints())

    def test_garbage_files_are_skipped_with_a_warning(self):
        good = self.tree.add_pf('0000:10:00.0', '4xxx', numvfs=2)
        self.tree.add_pf('0000:20:00.0', '4xxx', numvfs=2)
        self.tree.add_pf('0000:30:00.0', '4xxx', numvfs=2)
        self.tree.add_pf('0000:40:00.0', '4xxx', numvfs=2)
        self.tree.add_pf('0000:50:00.0', '4xxx', numvfs=2)
        self.tree.add_pf('0000:60:00.0', 'c62x', numvfs=2)
        # A PF whose device ID is garbage: skipped, and its VFs with it.
        self.tree.write_attr('0000:20:00.0', 'device', 'zz\n')
        # An unreadable vendor file (EISDIR): skipped.
        self.tree.make_unreadable(os.path.join(
            self.tree.device_dir('0000:30:00.0'), 'vendor'))
        # Binary garbage in state: state unknown -> not usable.
        self.tree.write_attr('0000:40:00.0', 'qat/state', b'\xff\xfe\x00')
        # Unknown service names are ignored; numa_node garbage -> -1.
        self.tree.write_attr('0000:50:00.0', 'qat/cfg_services',
                             'dc;bogus\n')
        self.tree.write_attr('0000:50:00.0', 'numa_node', 'x\n')
        # Heartbeat garbage -> unknown, telemetry unreadable -> None.
        self.tree.set_heartbeat('0000:60:00.0', 'ok?')
        self.tree.make_unreadable(os.path.join(
            self.tree.debugfs_dir('0000:60:00.0'), 'telemetry',
            'device_data'))
        # VFs are identified by their PF's virtfn links, not their own ID
        # files; a virtfn entry that is not a link drops just that VF.
        pf10 = self.tree.device_dir('0000:10:00.0')
        os.unlink(os.path.join(pf10, 'virtfn1'))
        self.tree.write(os.path.join(pf10, 'virtfn1'), 'junk')
        # A QAT VF without a PF (as inside a guest): ignored, warned.
        self.tree.add_function('0000:f0:00.1', 0x8086, 0x4941,
                               driver='4xxxvf')
        statuses = self.statuses()
        self.assertEqual(['0000:10:00.0', '0000:40:00.0', '0000:50:00.0',
                         '0000:60:00.0'], sorted(statuses))
        self.assertEqual((good[0],),
                         statuses['0000:10:00.0'].compression_endpoints())
        self.assertEqual('unknown', statuses['0000:40:00.0'].pf.state)
        self.assertFalse(statuses['0000:40:00.0'].healthy)
        s50 = statuses['0000:50:00.0']
        self.assertEqual(('dc',), s50.pf.services)
        self.assertEqual(-1, s50.pf.numa_node)
        self.assertEqual(2, len(s50.compression_endpoints()))
        s60 = statuses['0000:60:00.0']
        self.assertIsNone(s60.health.heartbeat)
        self.assertIsNone(s60.health.dc_utilization)
        self.assertEqual(2, len(s60.compression_endpoints()))
        out = self.log.output
        for expected in ("not a number ('zz')", 'vendor: unreadable',
                         'state: unreadable', 'unknown services bogus',
                         "not a heartbeat status ('ok?')",
                         'device_data: unreadable',
                         'QAT VFs without a PF ignored'):
            self.assertIn(expected, out)

    def test_warnings_are_logged_once(self):
        self.tree.add_pf(PF, '4xxx', numvfs=1)
        self.tree.write_attr(PF, 'numa_node', 'x\n')
        scanner = devices.Scanner(self.tree.sysfs)
        for _ in range(3):
            scanner.scan()
        self.assertEqual(1, self.log.output.count('not a number'))

    def test_missing_sysfs_root(self):
        self.assertEqual([], devices.discover('/nonexistent/sys'))

    def test_removed_pf(self):
        self.tree.add_pf(PF, '4xxx', numvfs=4)
        self.tree.add_pf('0000:70:00.0', '4xxx', numvfs=4)
        self.tree.remove_pf(PF)
        self.assertEqual(['0000:70:00.0'],
                         [p.address for p in self.scan()])

    def test_to_dict(self):
        self.tree.add_pf(PF, '4xxx', numvfs=1)
        data = self.statuses()[PF].to_dict()
        self.assertEqual('0x4940', data['device_id'])
        self.assertEqual({'heartbeat': 0, 'status': 'ok',
                          'dc_utilization': None}, data['health'])
        self.assertEqual(['0000:6b:00.1'], data['compression_endpoints'])


class TestParsing(base.QATTestCase):

    def test_parse_services(self):
        self.assertEqual((('sym', 'dc'), []),
                         devices.parse_services('sym;dc\n'))
        self.assertEqual((('dcc',), ['x']), devices.parse_services('DCC;x'))
        self.assertEqual(((), []), devices.parse_services(''))

    def test_driver_kind(self):
        self.assertEqual('qat', devices.driver_kind('4xxxvf'))
        self.assertEqual('qat', devices.driver_kind('c6xx'))
        self.assertEqual('qat', devices.driver_kind('qat_4xxx'))
        self.assertEqual('vfio', devices.driver_kind('vfio-pci'))
        self.assertEqual('none', devices.driver_kind(None))
        self.assertEqual('other', devices.driver_kind('pci-stub'))

    def test_every_generation_known(self):
        for pf_id, vf_id in ((0x0435, 0x0443), (0x37c8, 0x37c9),
                             (0x19e2, 0x19e3), (0x6f54, 0x6f55),
                             (0x4940, 0x4941), (0x4942, 0x4943),
                             (0x4944, 0x4945), (0x4946, 0x4947),
                             (0x4948, 0x4949)):
            self.assertFalse(devices.lookup(pf_id)[1])
            self.assertTrue(devices.lookup(vf_id)[1])
        self.assertIsNone(devices.lookup(0x1234))

    def test_parse_dc_utilization(self):
        self.assertIsNone(health.parse_dc_utilization('sample_cnt 1\n'))
        self.assertEqual(50.0, health.parse_dc_utilization(
            'util_cpr0 40\nutil_dcpr0 60\n'))
