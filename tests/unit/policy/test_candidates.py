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
"""The candidates: one set of levers for both rankings."""

import dataclasses

from nova_qat_migration.policy import adaptive
from nova_qat_migration.policy import candidates
from nova_qat_migration.policy import common
from nova_qat_migration.virt.libvirt import translate
from tests.unit import base
from tests.unit.policy import test_replay

QAT = dict(qat=dict(endpoints=2, free_leases=1), hypervisor=base.HV_QATZIP,
           destination=base.DEST_QAT, passthrough_allowed=True)


def _bare(plan):
    return dataclasses.replace(plan, reasons=())


class TestGenerate(base.TestCase):

    def setUp(self):
        super().setUp()
        self.flags(**base.WIDENED)

    def generate(self, **facts):
        facts = base.make_facts(**facts)
        return facts, candidates.generate(
            self.conf, facts, common.limits(self.conf, facts))

    def test_throttle_starts_exclude_the_last_step(self):
        self.flags(throttle_schedule=[20, 40, 60, 80, 99])
        self.assertEqual([(20, 20), (40, 20), (60, 20), (80, 19)],
                         candidates.throttle_steps(self.conf))
        self.flags(throttle_schedule=[50], auto_converge_increment=7)
        self.assertEqual([(50, 7)], candidates.throttle_steps(self.conf))

    def test_no_forbidden_lever(self):
        self.flags(permit_auto_converge=False, permit_post_copy=False,
                   allowed_methods=['none', 'zlib'])
        _facts, cands = self.generate(host=dict(cpu_idle_pct=100.0),
                                      **QAT)
        self.assertTrue(cands.plans)
        for plan in cands.plans:
            self.assertIn(plan.method, ('none', 'zlib'))
            self.assertFalse(plan.auto_converge)
            self.assertFalse(plan.post_copy)

    def test_qat_only_where_open(self):
        _f, cands = self.generate(**QAT)
        self.assertIn('qatzip', {p.method for p in cands.plans})
        self.assertTrue(all(p.qat_lease for p in cands.plans
                            if p.method == 'qatzip'))
        _f, cands = self.generate(**dict(QAT, passthrough_allowed=False))
        self.assertNotIn('qatzip', {p.method for p in cands.plans})
        self.assertIn('QAT: qatzip needs [qat_migration] '
                      'qemu_monitor_passthrough: software path', cands.notes)

    def test_every_candidate_translates_cleanly(self):
        self.flags(permit_post_copy=True)
        facts, cands = self.generate(host=dict(cpu_idle_pct=100.0,
                                               mem_free_mb=20000),
                                     **QAT)
        for plan in cands.plans:
            call = translate.to_libvirt(plan, facts)
            self.assertEqual((), call.degradations, plan.describe())

    def test_forced_method_is_the_only_shape(self):
        _f, cands = self.generate(hints=dict(method='zlib'),
                                  host=dict(cpu_idle_pct=100.0))
        self.assertTrue(cands.forced)
        self.assertEqual({'zlib'}, {p.method for p in cands.plans})


class TestOneEngine(base.TestCase):
    """Both rankings choose a candidate, never a plan of their own."""

    def test_chosen_plan_is_a_candidate(self):
        checked = 0
        for _case, facts, options in test_replay.grid_cases():
            self.flags(**options)
            policy = adaptive.AdaptivePolicy(self.conf)
            plan = policy.plan(facts)
            lim = common.limits(self.conf, facts)
            plans = {_bare(p) for p in candidates.generate(
                self.conf, facts, lim).plans}
            self.assertIn(_bare(plan), plans, plan.reasons)
            checked += 1
        self.assertGreater(checked, 1000)
