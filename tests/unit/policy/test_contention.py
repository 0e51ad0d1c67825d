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
"""Compression chosen by its predicted time under CPU contention.

The cases of the performance issue: a slow-link ("scale model") text
guest measured at 31% and at 23% idle CPU, the committed text-rewrite run
at 0% idle on two cores, and guests where compression loses (random
pages, a link faster than two busy cores compress). The facts are built
the way the replay test rebuilds the lab's records, with the lab's
fitted constants (``benchmarks/calibration.json``).
"""

import json
import os

from nova_qat_migration import datamodel
from nova_qat_migration.policy import adaptive
from nova_qat_migration.policy import model
from nova_qat_migration.policy import predictive
from tests.unit import base
from tests.unit.policy import test_replay

CALIBRATION = os.path.join(test_replay.ROOT, 'benchmarks',
                           'calibration.json')


def mbit(value: float) -> float:
    """MiB/s of a link of ``value`` Mbit/s."""
    return value * 1e6 / 8 / datamodel.MIB


def lab_facts(idle_pct, cpus=2, memory_mb=1536, dirty=20.0, ratio=0.3,
              link_mbit=250, zero=0.1, xbzrle_friendly=0.0):
    """Facts as the lab's driver records them (see ``test_replay``)."""
    return test_replay.rebuild(dict(
        memory_mb=memory_mb, dirty_rate_mbps=dirty, compress_ratio=ratio,
        zero_fraction=zero, xbzrle_friendly=xbzrle_friendly, cpus=cpus,
        cpu_idle_pct=idle_pct, mem_free_mb=20000,
        destination_methods=['xbzrle', 'zlib', 'zstd'],
        source_multifd_methods=['none', 'zlib', 'zstd'],
        link_mbps=mbit(link_mbit)))


class CompressorCoresTest(base.TestCase):
    """The sharing rule, by hand."""

    def test_idle_cores_first(self):
        self.assertEqual((1.0, 0.0), model.compressor_cores(1.0, 1.5, 0.5))

    def test_busy_cores_shared_in_proportion_to_demand(self):
        # 4/3 of a core wanted, none idle, two busy: the compressors get
        # 4/3 * 2 / (2 + 4/3) = 0.8 cores, the busy work keeps 60%.
        cores, impact = model.compressor_cores(4.0 / 3.0, 0.0, 2.0)
        self.assertAlmostEqual(0.8, cores)
        self.assertAlmostEqual(0.4, impact)

    def test_part_idle_part_shared(self):
        # 0.5 idle, 1 more wanted from 1.5 busy: 0.5 + 1 * 1.5 / 2.5.
        cores, impact = model.compressor_cores(1.5, 0.5, 1.5)
        self.assertAlmostEqual(1.1, cores)
        self.assertAlmostEqual(0.4, impact)

    def test_nothing_known_keeps_the_floor(self):
        self.assertEqual((model.MIN_COMPRESSOR_CORES, 0.0),
                         model.compressor_cores(2.0, 0.0, 0.0))

    def test_smooth_in_the_idle_cpu(self):
        # A 7-point swing of measured idle CPU on two cores moves the
        # compressors' cores by little (no threshold to cross).
        high = model.compressor_cores(1.0, 0.62, 1.38)[0]
        low = model.compressor_cores(1.0, 0.46, 1.54)[0]
        self.assertLess(abs(high - low) / high, 0.1)


class ContentionChoiceTest(base.TestCase):
    """The adaptive policy's decisions on the issue's cases."""

    def setUp(self):
        super().setUp()
        # The lab's levers (throttling, four channels), which the
        # scenarios were measured with: unset, the options follow Nova's
        # [libvirt] switches (one connection: no multifd compression).
        self.flags(model_calibration=CALIBRATION, **base.WIDENED)
        self.policy = adaptive.AdaptivePolicy(self.conf)
        self.policy.load()

    def plan(self, facts):
        return self.policy.plan(facts)

    def predicted(self, facts, plan):
        return predictive.predict(facts, plan, self.policy.calibration)

    def test_scale_model_text_guest_compresses_at_31_and_23_pct_idle(self):
        # 250 Mbit/s, 1.5 GiB, ~20 MiB/s of text pages (the issue's
        # runs: zstd 30.7 s against nova_default's 95 s; the 23% run lost
        # zstd to cpu_idle_threshold = 25 and took 93.6 s).
        plans = {idle: self.plan(lab_facts(idle)) for idle in (31.0, 23.0)}
        for idle, plan in plans.items():
            self.assertEqual('zstd', plan.method, idle)
        times = [self.predicted(lab_facts(idle), plan).total_s
                 for idle, plan in plans.items()]
        plain = self.predicted(lab_facts(23.0),
                               datamodel.Plan(policy='adaptive'))
        # Both about 3x faster than plain pre-copy, and about the same.
        for total in times:
            self.assertLess(total * 2.5, plain.total_s)
        self.assertLess(abs(times[0] - times[1]) / min(times), 0.1)

    def test_scale_model_even_at_0_pct_idle(self):
        plan = self.plan(lab_facts(0.0))
        self.assertEqual('zstd', plan.method)
        self.assertReason("the compressors share busy cores",
                          plan.reasons)

    def test_committed_text_rewrite_at_0_pct_idle_compresses(self):
        # The committed record: 0% idle on two cores; the gate closed
        # zstd and adaptive took 24.2 s, zstd1x4 converged in 12.3 s.
        name = 'benchmarks:15:text-rewrite'
        record = next(r for r in test_replay.RECORDS if r[0] == name)
        facts = test_replay.rebuild(record[1])
        self.assertEqual(0.0, facts.host.cpu_idle_pct)
        self.assertEqual(2, facts.host.cpus)
        runs = {}
        with open(os.path.join(test_replay.ROOT, 'benchmarks',
                               'results.jsonl')) as f:
            for line in f:
                row = json.loads(line)
                if row['scenario'] == 'text-rewrite':
                    runs[row['plan']] = row
        self.assertLess(runs['zstd1x4']['total_s'],
                        runs['adaptive']['total_s'] / 1.5)
        plan = self.plan(facts)
        self.assertEqual('zstd', plan.method)
        self.assertFalse(plan.auto_converge)

    def test_random_pages_are_not_compressed(self):
        for idle in (0.0, 31.0, 100.0):
            plan = self.plan(lab_facts(idle, ratio=0.93, memory_mb=1024,
                                       dirty=90.0, link_mbit=1000))
            self.assertNotIn(plan.method, ('zstd', 'zlib'), idle)

    def test_barely_compressible_pages_on_busy_cores_lose(self):
        # Pages that compress to 0.84 (just under the incompressible
        # gate): on busy cores the compressors move fewer pages than a
        # plain stream, so the model itself rules zstd out.
        facts = lab_facts(0.0, ratio=0.84, memory_mb=1024, dirty=60.0,
                          link_mbit=1000)
        zstd = datamodel.Plan(policy='adaptive', method='zstd', level=1,
                              parallel_connections=2)
        plain = datamodel.Plan(policy='adaptive')
        self.assertGreater(self.predicted(facts, zstd).total_s,
                           self.predicted(facts, plain).total_s)
        self.assertNotIn(self.plan(facts).method, ('zstd', 'zlib'))

    def test_link_faster_than_busy_cores_compress(self):
        # 10 Gbit/s, two cores busy: the compressors would get one core
        # (200 MiB/s of pages) where a plain stream copies 300 MiB/s.
        facts = lab_facts(0.0, ratio=0.45, memory_mb=1024, dirty=90.0,
                          link_mbit=10000)
        zstd = datamodel.Plan(policy='adaptive', method='zstd', level=1,
                              parallel_connections=2)
        plain = datamodel.Plan(policy='adaptive', parallel_connections=2)
        self.assertGreater(self.predicted(facts, zstd).total_s,
                           self.predicted(facts, plain).total_s)
        self.assertNotIn(self.plan(facts).method, ('zstd', 'zlib'))


class GuestImpactCapTest(base.TestCase):
    """``max_guest_cpu_impact_pct`` replaces ``cpu_idle_threshold``."""

    def setUp(self):
        super().setUp()
        # The lab's levers (throttling, four channels), which the
        # scenarios were measured with: unset, the options follow Nova's
        # [libvirt] switches (one connection: no multifd compression).
        self.flags(model_calibration=CALIBRATION, **base.WIDENED)

    def plan(self, facts):
        policy = adaptive.AdaptivePolicy(self.conf)
        policy.load()
        return policy.plan(facts)

    def test_impact_predicted(self):
        cal = predictive.calibration(self.conf)
        zstd = datamodel.Plan(policy='adaptive', method='zstd', level=1,
                              parallel_connections=2)
        # Idle cores enough: nothing taken from the busy work.
        self.assertEqual(0.0, predictive.cpu_impact_pct(
            lab_facts(31.0), zstd, cal))
        busy = predictive.cpu_impact_pct(lab_facts(0.0), zstd, cal)
        self.assertGreater(busy, 10.0)
        self.assertLess(busy, 30.0)
        self.assertEqual(0.0, predictive.cpu_impact_pct(
            lab_facts(0.0), zstd.because(method='none'), cal))

    def test_cap_closes_compression_that_costs_more(self):
        self.flags(max_guest_cpu_impact_pct=5)
        plan = self.plan(lab_facts(0.0))
        self.assertNotIn(plan.method, ('zstd', 'zlib'))
        self.assertReason('max_guest_cpu_impact_pct 5%', plan.reasons)

    def test_cap_zero_still_compresses_on_idle_cores(self):
        self.flags(max_guest_cpu_impact_pct=0)
        self.assertEqual('zstd', self.plan(lab_facts(31.0)).method)

    def test_deprecated_threshold_honoured_when_set(self):
        # The third run: 23% idle under cpu_idle_threshold = 25.
        self.flags(cpu_idle_threshold=25)
        plan = self.plan(lab_facts(23.0))
        self.assertNotIn(plan.method, ('zstd', 'zlib'))
        self.assertReason('cpu_idle_threshold 25%', plan.reasons)
        self.assertEqual('zstd', self.plan(lab_facts(31.0)).method)

    def test_threshold_unset_by_default(self):
        self.assertIsNone(self.conf.qat_migration.cpu_idle_threshold)
        self.assertEqual(50, self.conf.qat_migration.max_guest_cpu_impact_pct)
