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
"""Nova's ``[libvirt] live_migration_*`` switches are the ceiling by default.

With every ``[libvirt]`` switch at Nova's default and ``[qat_migration]``
untouched, no policy may throttle a guest or switch it to post-copy --
not in its plan, and not in its escalations of a migration that does not
converge -- because plain Nova never would. An explicit ``[qat_migration]``
value wins over ``[libvirt]`` either way.
"""

import itertools

from nova_qat_migration import conf as qat_conf
from nova_qat_migration import datamodel
from nova_qat_migration.policy import adaptive
from nova_qat_migration.policy import common
from nova_qat_migration.policy import nova_default
from nova_qat_migration.policy import static
from tests.unit import base

#: Fact sets: quiet and busy guests (some far beyond the link: they never
#: converge without throttling or post-copy), idle and busy hosts, slow
#: and fast links, with and without QAT and history of failure.
GRID = {
    'dirty_rate_mbps': (None, 5.0, 300.0, 2000.0, 20000.0),
    'cpu_idle_pct': (5.0, 95.0),
    'link_mbps': (119.2, 1192.1),
    'qat': (False, True),
    'converged_before': (None, False),
    'hint': ('', 'allow_both'),
}


def grid():
    keys = sorted(GRID)
    for values in itertools.product(*(GRID[k] for k in keys)):
        v = dict(zip(keys, values))
        facts = base.make_facts(
            instance=dict(memory_mb=8192, vcpus=4,
                          dirty_rate_mbps=v['dirty_rate_mbps'],
                          compress_ratio=0.4, zero_fraction=0.1),
            host=dict(cpus=8, cpu_idle_pct=v['cpu_idle_pct'],
                      mem_free_mb=32768),
            destination=base.DEST_QAT if v['qat'] else base.DEST_SOFTWARE,
            hypervisor=base.HV_QATZIP if v['qat'] else None,
            qat=(dict(endpoints=2, free_leases=2) if v['qat'] else None),
            history=dict(migrations=1 if v['converged_before'] is False
                         else 0, converged=v['converged_before']),
            # A flavor may say yes; the options still decide.
            hints=(dict(allow_throttle=True, allow_post_copy=True)
                   if v['hint'] else None),
            link_mbps=v['link_mbps'], passthrough_allowed=v['qat'])
        yield ','.join('%s=%s' % (k, v[k]) for k in keys), facts


def stalled(plan, facts):
    """Progress of a migration that stopped converging long ago."""
    total = float(facts.instance.memory_mb)
    return datamodel.Progress(
        elapsed_s=600.0, remaining_mb=total * 0.6, total_mb=total,
        dirty_rate_mbps=5000.0, iteration=40, bandwidth_mbps=100.0,
        lowest_remaining_mb=total * 0.5, lowest_at_s=100.0,
        stalled_iterations=30)


class NovaDefaultsTest(base.TestCase):
    """Every ``[libvirt] live_migration_*`` at Nova's default (the test
    base resets every override), ``[qat_migration]`` untouched.
    """

    def policies(self):
        out = []
        for cls in (adaptive.AdaptivePolicy, static.StaticPolicy,
                    nova_default.NovaDefaultPolicy):
            policy = cls(self.conf)
            policy.load()
            out.append(policy)
        return out

    def assertGentle(self, policies, what):
        checked = 0
        for model in (True, False):
            self.flags(adaptive_model=model)
            for case, facts in grid():
                for policy in policies:
                    if not model and policy.name != 'adaptive':
                        continue    # only adaptive has a model
                    plan = policy.plan(facts)
                    where = '%s %s model=%s: %s' % (
                        policy.name, case, model, plan.describe())
                    self.assertIsNone(plan.throttle_initial, where)
                    self.assertFalse(plan.post_copy, where)
                    actions = policy.on_progress(plan, stalled(plan, facts))
                    self.assertNotIn(
                        datamodel.ACTION_POST_COPY,
                        [a.kind for a in actions], where)
                    checked += 1
        size = len(list(grid()))
        self.assertEqual(size * 4, checked, what)

    def test_nova_defaults_never_throttle_nor_post_copy(self):
        self.assertEqual(dict(permit_auto_converge=False,
                              permit_post_copy=False),
                         {k: getattr(self.conf.libvirt,
                                     'live_migration_' + k)
                          for k in ('permit_auto_converge',
                                    'permit_post_copy')})
        self.assertGentle(self.policies(), 'Nova defaults')

    def test_static_asking_for_throttle_still_bounded(self):
        # The static policy's own auto_converge is bounded by the ceiling.
        self.flags(auto_converge=True, group='qat_migration_static')
        self.assertGentle(self.policies(), 'static auto_converge')

    def test_libvirt_switch_raises_the_ceiling(self):
        # Nova's own switch, not ours: plans may now throttle.
        self.flags(live_migration_permit_auto_converge=True,
                   group='libvirt')
        plans = [adaptive.AdaptivePolicy(self.conf).plan(facts)
                 for _case, facts in grid()]
        self.assertTrue(any(p.throttle_initial for p in plans))
        self.assertFalse(any(p.post_copy for p in plans))


class ExplicitValueWinsTest(base.TestCase):

    def test_unset_follows_libvirt(self):
        self.flags(live_migration_downtime=800,
                   live_migration_parallel_connections=3,
                   live_migration_permit_post_copy=True, group='libvirt')
        self.assertEqual(800, qat_conf.nova_ceiling(self.conf,
                                                    'downtime_ms'))
        self.assertEqual(3, qat_conf.nova_ceiling(
            self.conf, 'max_parallel_connections'))
        self.assertIs(True, qat_conf.nova_ceiling(self.conf,
                                                  'permit_post_copy'))
        self.assertIs(False, qat_conf.nova_ceiling(self.conf,
                                                   'permit_auto_converge'))

    def test_explicit_value_narrows(self):
        self.flags(live_migration_permit_auto_converge=True,
                   live_migration_downtime=800, group='libvirt')
        self.flags(permit_auto_converge=False, downtime_ms=300)
        self.assertIs(False, qat_conf.nova_ceiling(self.conf,
                                                   'permit_auto_converge'))
        self.assertEqual(300, qat_conf.nova_ceiling(self.conf,
                                                    'downtime_ms'))

    def test_explicit_value_widens(self):
        self.flags(permit_auto_converge=True, max_parallel_connections=4)
        self.assertIs(True, qat_conf.nova_ceiling(self.conf,
                                                  'permit_auto_converge'))
        self.assertEqual(4, qat_conf.nova_ceiling(
            self.conf, 'max_parallel_connections'))

    def test_nova_parallel_connections_bounded_for_multifd(self):
        self.flags(live_migration_parallel_connections=500, group='libvirt')
        self.assertEqual(32, qat_conf.nova_ceiling(
            self.conf, 'max_parallel_connections'))

    def test_plan_limits_follow(self):
        facts = base.make_facts(hints=dict(allow_throttle=True))
        lim = common.limits(self.conf, facts)
        self.assertEqual((500, False, False, 1),
                         (lim.max_downtime_ms, lim.throttle, lim.post_copy,
                          lim.max_channels))
        self.flags(live_migration_downtime=900, group='libvirt')
        self.flags(permit_post_copy=True, max_parallel_connections=6)
        lim = common.limits(self.conf, facts)
        self.assertEqual((900, False, True, 6),
                         (lim.max_downtime_ms, lim.throttle, lim.post_copy,
                          lim.max_channels))
