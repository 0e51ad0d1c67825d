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
"""QAT capacity written into Nova's real ``ProviderTree``."""

from nova.compute import provider_tree
from oslo_utils import uuidutils

from nova_qat_migration.qat import manager
from nova_qat_migration.qat import placement
from tests.unit.qat import base

NODE = 'cmp1'
RC = placement.RESOURCE_CLASS
PF1 = '0000:6b:00.0'
PF2 = '0000:70:00.0'


def alloc(rp_uuid, amount, rc=RC):
    return {uuidutils.generate_uuid(): {
        'allocations': {rp_uuid: {'resources': {rc: amount}}}}}


class TestPlacement(base.QATTestCase):

    def setUp(self):
        super().setUp()
        self.pt = provider_tree.ProviderTree()
        self.root_uuid = uuidutils.generate_uuid()
        self.pt.new_root(NODE, self.root_uuid, generation=0)
        # Something the parent driver put there must survive.
        self.pt.update_inventory(NODE, {'VCPU': {'total': 8}})
        self.pt.add_traits(NODE, 'COMPUTE_STATUS_DISABLED_NOT', 'HW_CPU_X86')
        self.mgr = manager.QATManager(self.conf)

    def update(self, allocations=None):
        return self.mgr.update_provider_tree(self.pt, NODE, allocations)

    def child(self, pf):
        return self.pt.data(placement.child_name(NODE, pf))

    def inv(self, pf):
        return self.child(pf).inventory.get(RC)

    def test_children_inventory_traits(self):
        self.tree.add_pf(PF1, '4xxx', numvfs=16, services='sym;dc')
        self.tree.add_pf(PF2, '420xx', numvfs=8, services='dc')
        self.flags(qat_endpoints_for_migration=3)
        host_plan = self.update()
        self.assertEqual(24, host_plan.endpoints)
        self.assertEqual(3, host_plan.reserved)
        c1 = self.child(PF1)
        self.assertEqual('cmp1_qat_0000:6b:00.0', c1.name)
        self.assertEqual(self.root_uuid, c1.parent_uuid)
        self.assertEqual({RC: {'total': 16, 'reserved': 2, 'min_unit': 1,
                               'max_unit': 16, 'step_size': 1,
                               'allocation_ratio': 1.0}}, c1.inventory)
        self.assertEqual({'CUSTOM_QAT_GEN4', 'CUSTOM_QAT_SYM',
                          'CUSTOM_QAT_DC'}, c1.traits)
        self.assertEqual(8, self.inv(PF2)['total'])
        self.assertEqual(1, self.inv(PF2)['reserved'])
        self.assertEqual({'CUSTOM_QAT_GEN4', 'CUSTOM_QAT_DC'},
                         self.child(PF2).traits)
        root = self.pt.data(NODE)
        self.assertIn(placement.HOST_TRAIT, root.traits)
        self.assertIn('HW_CPU_X86', root.traits)
        self.assertEqual({'VCPU': {'total': 8}}, root.inventory)
        # Leases follow the reserved endpoints: 2 on PF1, 1 on PF2.
        self.assertEqual(3, self.mgr.pool.capacity)
        self.assertEqual([PF1, PF1, PF2], host_plan.lease_slots())

    def test_idempotent(self):
        self.tree.add_pf(PF1, '4xxx', numvfs=4)
        self.update()
        before = self.pt.data(placement.child_name(NODE, PF1))
        self.update()
        after = self.pt.data(placement.child_name(NODE, PF1))
        self.assertEqual(before.uuid, after.uuid)
        self.assertEqual(before.inventory, after.inventory)

    def test_mixed_generations_and_no_compression(self):
        self.tree.add_pf('0000:3d:00.0', 'c62x', numvfs=16)
        self.tree.add_pf(PF1, '6xxx', numvfs=4, services='sym;asym')
        self.tree.add_pf('0000:1a:00.0', 'dh895xcc', numvfs=0)
        self.update()
        self.assertEqual({'CUSTOM_QAT_GEN2', 'CUSTOM_QAT_SYM',
                          'CUSTOM_QAT_ASYM', 'CUSTOM_QAT_DC'},
                         self.child('0000:3d:00.0').traits)
        self.assertEqual(16, self.inv('0000:3d:00.0')['total'])
        self.assertEqual(1, self.inv('0000:1a:00.0')['total'])
        # sym;asym only: provider with traits, no compression inventory.
        self.assertEqual({}, self.child(PF1).inventory)
        self.assertEqual({'CUSTOM_QAT_GEN6', 'CUSTOM_QAT_SYM',
                          'CUSTOM_QAT_ASYM'}, self.child(PF1).traits)

    def test_no_qat_no_host_trait(self):
        self.pt.add_traits(NODE, placement.HOST_TRAIT)
        self.update()
        self.assertNotIn(placement.HOST_TRAIT, self.pt.data(NODE).traits)
        self.assertEqual([self.root_uuid], list(
            self.pt.get_provider_uuids(NODE)))

    def test_device_goes_down_on_next_update(self):
        self.tree.add_pf(PF1, '4xxx', numvfs=16)
        self.tree.add_pf(PF2, '4xxx', numvfs=16)
        self.update({})
        self.assertEqual(16, self.inv(PF2)['total'])
        self.tree.set_state(PF2, 'down')
        self.update({})
        # Nothing allocated: the inventory goes, the provider stays.
        self.assertEqual({}, self.child(PF2).inventory)
        self.assertEqual(16, self.inv(PF1)['total'])
        self.assertEqual(1, self.inv(PF1)['reserved'])
        self.assertIn(placement.HOST_TRAIT, self.pt.data(NODE).traits)
        # Heartbeat failure on the other one: no capacity anywhere.
        self.tree.set_heartbeat(PF1, -1)
        self.update({})
        self.assertEqual({}, self.child(PF1).inventory)
        self.assertNotIn(placement.HOST_TRAIT, self.pt.data(NODE).traits)
        self.assertEqual(0, self.mgr.pool.capacity)
        # Back up: capacity returns.
        self.tree.set_heartbeat(PF1, 0)
        self.tree.set_state(PF2, 'up')
        self.update()
        self.assertEqual(16, self.inv(PF1)['total'])
        self.assertEqual(16, self.inv(PF2)['total'])

    def test_vf_loss_shrinks_total(self):
        vfs = self.tree.add_pf(PF1, '4xxx', numvfs=16)
        self.update()
        for vf in vfs[:6]:
            self.tree.bind(vf, None)
        self.update()
        self.assertEqual(10, self.inv(PF1)['total'])

    def test_allocation_in_use_preserved_when_device_goes_down(self):
        self.tree.add_pf(PF1, '4xxx', numvfs=16)
        self.update()
        uuid = self.child(PF1).uuid
        self.tree.set_heartbeat(PF1, -1)
        self.update(alloc(uuid, 3))
        # Total kept at the allocated amount, all of it reserved.
        inv = self.inv(PF1)
        self.assertEqual((3, 3), (inv['total'], inv['reserved']))
        # Partially healthy: 4 VFs left, 6 allocated -> total 6, the 2
        # unhealthy allocated units plus the migration reserve reserved.
        self.tree.set_heartbeat(PF1, 0)
        self.tree.remove_pf(PF1)
        self.tree.add_pf(PF1, '4xxx', numvfs=4)
        self.update(alloc(uuid, 6))
        inv = self.inv(PF1)
        self.assertEqual((6, 3), (inv['total'], inv['reserved']))
        self.assertEqual(uuid, self.child(PF1).uuid)

    def test_allocations_unknown_keep_inventory_fully_reserved(self):
        self.tree.add_pf(PF1, '4xxx', numvfs=16)
        self.update()
        self.tree.set_state(PF1, 'down')
        self.update(None)
        inv = self.inv(PF1)
        self.assertEqual((16, 16), (inv['total'], inv['reserved']))
        # Once Nova passes allocations (none here) the record can go.
        self.update({})
        self.assertEqual({}, self.child(PF1).inventory)

    def test_vanished_pf_removed_only_without_allocations(self):
        self.tree.add_pf(PF1, '4xxx', numvfs=4)
        self.tree.add_pf(PF2, '4xxx', numvfs=4)
        self.update()
        uuid2 = self.child(PF2).uuid
        self.tree.remove_pf(PF1)
        self.tree.remove_pf(PF2)
        result_plan = self.update(alloc(uuid2, 2))
        self.assertIsNotNone(result_plan)
        self.assertFalse(self.pt.exists(placement.child_name(NODE, PF1)))
        self.assertTrue(self.pt.exists(placement.child_name(NODE, PF2)))
        inv = self.inv(PF2)
        self.assertEqual((2, 2), (inv['total'], inv['reserved']))
        # Allocation gone: removed on the next update.
        self.update({})
        self.assertFalse(self.pt.exists(placement.child_name(NODE, PF2)))
        self.assertNotIn(placement.HOST_TRAIT, self.pt.data(NODE).traits)

    def test_vanished_pf_allocations_unknown(self):
        self.tree.add_pf(PF1, '4xxx', numvfs=4)
        self.update()
        self.tree.remove_pf(PF1)
        self.update(None)
        inv = self.inv(PF1)
        self.assertEqual((4, 4), (inv['total'], inv['reserved']))

    def test_other_children_untouched(self):
        self.pt.new_child('cmp1_pgpu_0000:81:00.0', NODE)
        self.update({})
        self.assertTrue(self.pt.exists('cmp1_pgpu_0000:81:00.0'))

    def test_reserved_more_than_exists(self):
        self.tree.add_pf(PF1, '4xxx', numvfs=2)
        self.flags(qat_endpoints_for_migration=5)
        self.update()
        self.assertEqual((2, 2), (self.inv(PF1)['total'],
                                  self.inv(PF1)['reserved']))
        self.assertEqual(2, self.mgr.pool.capacity)

    def test_update_never_raises(self):
        # The compute node provider is missing: logged, not raised.
        self.tree.add_pf(PF1, '4xxx', numvfs=2)
        self.assertIsNone(self.mgr.update_provider_tree(
            provider_tree.ProviderTree(), NODE))
        self.assertIn('Reporting QAT capacity to Placement failed',
                      self.log.output)


class TestPure(base.QATTestCase):

    def test_distribute(self):
        self.assertEqual({'a': 2, 'b': 1, 'c': 0},
                         placement.distribute({'a': 5, 'b': 1, 'c': 0}, 3))
        self.assertEqual({'a': 1, 'b': 1},
                         placement.distribute({'a': 1, 'b': 1}, 9))
        self.assertEqual({'a': 0}, placement.distribute({'a': 3}, 0))

    def test_usage_by_provider(self):
        self.assertIsNone(placement.usage_by_provider(None))
        allocations = {}
        allocations.update(alloc('rp1', 2))
        allocations.update(alloc('rp1', 1))
        allocations.update(alloc('rp2', 4, rc='VCPU'))
        self.assertEqual({'rp1': 3},
                         placement.usage_by_provider(allocations))

    def test_inventory_record(self):
        self.assertEqual({}, placement.inventory_record(0, 0))
        self.assertEqual(2, placement.inventory_record(2, 5)[RC]['reserved'])
