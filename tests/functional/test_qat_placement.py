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
"""QAT capacity in real (in-process) Placement, through nova-compute.

A ``QATLibvirtDriver`` compute is started on Nova's in-process stack with
``[qat_migration] sysfs_root``/``debugfs_root`` pointing at a fixture tree
(no QAT hardware here); its resource tracker's periodic update calls the
driver's ``update_provider_tree``, and the assertions read Placement's
REST API, not internal state.
"""

from nova import context as nova_context
from oslo_utils import uuidutils

from nova_qat_migration.qat import placement
from tests.fixtures import qat_sysfs
from tests.functional import base
from tests.unit.qat import test_qatzip

HOST = 'cmp1'
PF1 = '0000:6b:00.0'
PF2 = '0000:76:00.0'
PF3 = '0000:e8:00.0'
RC = placement.RESOURCE_CLASS


class QATPlacementTest(base.QATMigrationTestBase):

    def setUp(self):
        super().setUp()
        # The driver's QAT state runs the QATzip self-test once; keep
        # libusdm's "Cannot open /dev/vfio" out of the test output.
        self.useFixture(test_qatzip.QuietStderrFD())
        self.tree = self.useFixture(qat_sysfs.QATSysfs())
        self.tree.add_pf(PF1, '4xxx', numvfs=16, services='sym;dc')
        self.tree.add_pf(PF2, '420xx', numvfs=8, services='dc', numa_node=1)
        self.tree.add_pf(PF3, '6xxx', numvfs=4, services='sym;asym')
        self.flags(sysfs_root=self.tree.sysfs,
                   debugfs_root=self.tree.debugfs,
                   qat_endpoints_for_migration=3, group='qat_migration')
        self.start_qat_compute(HOST)
        self.root = self._get_provider_uuid_by_host(HOST)

    def periodic(self):
        self.computes[HOST].manager.update_available_resource(
            nova_context.get_admin_context())

    def children(self):
        return {rp['name']: rp['uuid']
                for rp in self._get_all_rps_in_a_tree(self.root)
                if rp['uuid'] != self.root}

    def child_uuid(self, pf):
        return self.children()[placement.child_name(HOST, pf)]

    def inventory(self, pf):
        return self._get_provider_inventory(self.child_uuid(pf)).get(RC)

    def test_providers_inventory_and_traits(self):
        children = self.children()
        self.assertEqual({placement.child_name(HOST, pf)
                          for pf in (PF1, PF2, PF3)}, set(children))
        for uuid in children.values():
            rp = self._get_resource_provider_by_uuid(uuid)
            self.assertEqual(self.root, rp['parent_provider_uuid'])
        inv1 = self.inventory(PF1)
        self.assertEqual((16, 2, 1, 16),
                         (inv1['total'], inv1['reserved'], inv1['min_unit'],
                          inv1['max_unit']))
        inv2 = self.inventory(PF2)
        self.assertEqual((8, 1), (inv2['total'], inv2['reserved']))
        self.assertIsNone(self.inventory(PF3))    # sym;asym: no dc
        self.assertEqual(
            {'CUSTOM_QAT_GEN4', 'CUSTOM_QAT_SYM', 'CUSTOM_QAT_DC'},
            set(self._get_provider_traits(self.child_uuid(PF1))))
        self.assertEqual(
            {'CUSTOM_QAT_GEN6', 'CUSTOM_QAT_SYM', 'CUSTOM_QAT_ASYM'},
            set(self._get_provider_traits(self.child_uuid(PF3))))
        root_traits = set(self._get_provider_traits(self.root))
        self.assertIn(placement.HOST_TRAIT, root_traits)
        # Nova's own inventory and traits on the compute node are intact.
        self.assertIn('VCPU', self._get_provider_inventory(self.root))
        self.assertIn('COMPUTE_NET_ATTACH_INTERFACE', root_traits)

    def test_device_down_removes_capacity_on_next_update(self):
        self.tree.set_state(PF2, 'down')
        self.tree.set_heartbeat(PF1, -1)
        self.periodic()
        # Nova's periodic passes no allocations: the records stay, fully
        # reserved, so nothing new can land and nothing in use is deleted.
        for pf, total in ((PF1, 16), (PF2, 8)):
            inv = self.inventory(pf)
            self.assertEqual((total, total), (inv['total'], inv['reserved']))
        self.assertNotIn(placement.HOST_TRAIT,
                         self._get_provider_traits(self.root))
        # Healthy again: capacity returns.
        self.tree.set_state(PF2, 'up')
        self.tree.set_heartbeat(PF1, 0)
        self.periodic()
        self.assertEqual((16, 2), (self.inventory(PF1)['total'],
                                   self.inventory(PF1)['reserved']))
        self.assertEqual((8, 1), (self.inventory(PF2)['total'],
                                  self.inventory(PF2)['reserved']))
        self.assertIn(placement.HOST_TRAIT,
                      self._get_provider_traits(self.root))

    def test_lost_vfs_shrink_inventory(self):
        vfs = self.tree.add_pf('0000:99:00.0', '4xxx', numvfs=4)
        self.periodic()
        self.assertEqual(4, self.inventory('0000:99:00.0')['total'])
        self.tree.bind(vfs[0], None)
        self.tree.bind(vfs[1], None)
        self.periodic()
        self.assertEqual(2, self.inventory('0000:99:00.0')['total'])

    def test_allocation_in_use_survives_device_loss(self):
        rp = self.child_uuid(PF2)
        consumer = uuidutils.generate_uuid()
        body = {'allocations': {rp: {'resources': {RC: 2}}},
                'project_id': uuidutils.generate_uuid(),
                'user_id': uuidutils.generate_uuid(),
                'consumer_generation': None}
        self.placement.put('/allocations/%s' % consumer, body,
                           version='1.28')
        self.tree.remove_pf(PF2)
        self.periodic()
        # Still there (in use), nothing claimable; the allocation intact.
        self.assertIn(placement.child_name(HOST, PF2), self.children())
        inv = self.inventory(PF2)
        self.assertEqual(inv['total'], inv['reserved'])
        self.assertEqual({RC: 2}, self._get_provider_usages(rp))
        # A vanished PF without allocations is removed.
        self.tree.remove_pf(PF3)
        self.periodic()
        self.assertNotIn(placement.child_name(HOST, PF3), self.children())
