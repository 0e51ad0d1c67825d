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
"""``nova_default``: Nova's own plan from its ``[libvirt]`` options.

The flags are compared with Nova's code in
``tests/unit/virt/libvirt/test_nova_flags.py``; here the plan itself.
"""

from nova_qat_migration import datamodel
from nova_qat_migration.policy import nova_default
from nova_qat_migration.virt.libvirt import constants as c
from nova_qat_migration.virt.libvirt import translate
from tests.unit import base


class TestNovaDefault(base.TestCase):

    def setUp(self):
        super().setUp()
        self.policy = nova_default.NovaDefaultPolicy(self.conf)

    def test_defaults(self):
        plan = self.policy.plan(base.make_facts())
        self.assertEqual('nova_default', plan.policy)
        self.assertTrue(plan.nova_baseline)
        self.assertEqual('none', plan.method)
        self.assertEqual(1, plan.parallel_connections)
        self.assertFalse(plan.auto_converge)
        self.assertFalse(plan.post_copy)
        self.assertEqual(500, plan.max_downtime_ms)
        self.assertTrue(plan.reasons)

    def test_from_nova_settings(self):
        plan = self.policy.plan(base.make_facts(nova=dict(
            parallel_connections=4, bandwidth_mbps=250, downtime_ms=900,
            permit_auto_converge=True)))
        self.assertEqual(4, plan.parallel_connections)
        self.assertEqual(250, plan.bandwidth_mbps)
        self.assertEqual(900, plan.max_downtime_ms)
        # QEMU's own auto-converge defaults: Nova passes no params.
        self.assertEqual((20, 10),
                         (plan.throttle_initial, plan.throttle_increment))

    def test_post_copy_wins_over_auto_converge(self):
        plan = self.policy.plan(base.make_facts(nova=dict(
            permit_post_copy=True, permit_auto_converge=True)))
        self.assertTrue(plan.post_copy)
        self.assertFalse(plan.auto_converge)

    def test_ignores_qat_migration_options_and_hints(self):
        self.flags(allowed_methods=['none', 'zstd'], downtime_ms=50,
                   permit_post_copy=True, max_parallel_connections=2)
        facts = base.make_facts(
            hints=dict(method='zstd', max_downtime_ms=100,
                       allow_post_copy=True, parallel_connections=8),
            host=dict(cpu_idle_pct=100.0),
            destination=base.DEST_SOFTWARE,
            nova=dict(parallel_connections=3, downtime_ms=600))
        plan = self.policy.plan(facts)
        self.assertEqual('none', plan.method)
        self.assertEqual(3, plan.parallel_connections)
        self.assertEqual(600, plan.max_downtime_ms)
        self.assertFalse(plan.post_copy)

    def test_translation_sends_no_auto_converge_params(self):
        facts = base.make_facts(nova=dict(permit_auto_converge=True))
        call = translate.to_libvirt(self.policy.plan(facts), facts)
        self.assertTrue(call.flags & c.VIR_MIGRATE_AUTO_CONVERGE)
        self.assertNotIn(c.PARAM_AUTO_CONVERGE_INITIAL, call.params)
        self.assertNotIn(c.PARAM_AUTO_CONVERGE_INCREMENT, call.params)

    def test_no_escalations(self):
        plan = self.policy.plan(base.make_facts())
        progress = datamodel.Progress(elapsed_s=600.0, remaining_mb=4000.0,
                                      stalled_iterations=50)
        self.assertEqual([], list(self.policy.on_progress(plan, progress)))
