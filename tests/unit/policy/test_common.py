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
"""The quantities both rankings read, worked out once per plan."""

import ast
import inspect
from unittest import mock

from nova_qat_migration import datamodel
from nova_qat_migration.policy import adaptive
from nova_qat_migration.policy import candidates
from nova_qat_migration.policy import common
from nova_qat_migration.policy import predictive
from nova_qat_migration.policy import rules
from tests.unit import base


class TestDerived(base.TestCase):

    def setUp(self):
        super().setUp()
        self.flags(**base.WIDENED)
        # 8 cores, 50% idle, of which a migration in flight holds 1.5;
        # 8 GiB free less the 2 GiB headroom less 512 MiB of cache held.
        self.facts = base.make_facts(
            instance=dict(dirty_rate_mbps=None, compress_ratio=0.9),
            host=dict(cpus=8, cpu_idle_pct=50.0, mem_free_mb=8192),
            history=dict(dirty_rate_mbps=120.0),
            in_flight=datamodel.InFlight(migrations=1, link_share=0.5,
                                         cores_held=1.5,
                                         xbzrle_mb_held=512))

    def test_values(self):
        d = common.derive(self.conf, self.facts)
        self.assertAlmostEqual(base.LINK_10G * 0.5, d.link_mbps)
        self.assertAlmostEqual(2.5, d.idle_cores)      # 4 idle - 1.5 held
        self.assertAlmostEqual(5.5, d.busy_cores)
        self.assertAlmostEqual(100.0 * 2.5 / 8, d.cpu_idle_pct)
        self.assertEqual(8192 - 2048 - 512, d.spare_mb)
        self.assertEqual(120.0, d.dirty_rate)          # last time's
        self.assertEqual(0.9, d.measured_ratio)
        self.assertTrue(d.incompressible)              # 0.9 > 0.85

    def test_once_per_plan(self):
        policy = adaptive.AdaptivePolicy(self.conf)
        for model in (True, False):
            self.flags(adaptive_model=model, group='qat_migration_adaptive')
            with mock.patch.object(common, 'derive',
                                   wraps=common.derive) as derive:
                policy.plan(self.facts)
            self.assertEqual(1, derive.call_count, model)

    def test_load_is_the_workload(self):
        d = common.derive(self.conf, self.facts)
        self.assertEqual(common.workload(self.facts), d.load)

    def test_model_ranking_reads_only_the_derived_quantities(self):
        # With the facts worked out once, the model's ranking and the
        # cost note read nothing of the facts' load, link or cores again.
        facts = base.make_facts(
            host=dict(cpus=4, cpu_idle_pct=10.0),
            instance=dict(dirty_rate_mbps=300.0),
            destination=datamodel.DestinationCaps(
                known=True, methods=frozenset({'xbzrle', 'zlib', 'zstd'}),
                multifd=True))
        d = common.derive(self.conf, facts)
        lim = common.limits(self.conf, facts)
        cands = candidates.generate(self.conf, facts, lim)
        cal = datamodel.Calibration()
        zstd = [p for p in cands.plans if p.method == 'zstd']
        self.assertTrue(zstd)
        expected = [common.cpu_cost(facts, p, cal) for p in zstd]
        reread = mock.Mock(side_effect=AssertionError('facts read again'))
        with mock.patch.multiple(common, workload=reread, link_mbps=reread,
                                 idle_cores=reread, busy_cores=reread,
                                 cpu_idle_pct=reread):
            picked = predictive.choose(facts, lim, cands.plans, d.load, cal,
                                       derived=d)
            costs = [common.cpu_cost(facts, p, cal, d) for p in zstd]
        self.assertIsNotNone(picked)
        self.assertEqual(expected, costs)
        self.assertTrue(any(costs), costs)


class TestNoBorrowing(base.TestCase):
    """Helpers both rankings use live below both (:mod:`.common`)."""

    def test_rules_and_candidates_do_not_import_predictive(self):
        for module in (rules, candidates):
            tree = ast.parse(inspect.getsource(module))
            imported = {alias.name for node in ast.walk(tree)
                        if isinstance(node, ast.ImportFrom)
                        for alias in node.names}
            self.assertNotIn('predictive', imported, module.__name__)
