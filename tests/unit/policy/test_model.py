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
"""The convergence model against cases computable by hand."""

import math

import testtools

from nova_qat_migration import datamodel
from nova_qat_migration.policy import model

CAL = datamodel.Calibration(stream_mbps=1e9, compress_mbps=100.0,
                        qat_mbps=1000.0, xbzrle_mbps=1e9,
                        xbzrle_residue=0.1, zero_cost=0.0, setup_s=0.0,
                        switchover_s=0.0)


def plan(**kw):
    kw.setdefault('max_downtime_ms', 500)
    return datamodel.Plan(policy='test', **kw)


class TestPredict(testtools.TestCase):

    def test_idle_guest_is_ram_over_bandwidth(self):
        p = model.predict(plan(), model.Workload(ram_mb=1000), 100.0,
                          cal=CAL)
        self.assertTrue(p.converges)
        self.assertAlmostEqual(10.0, p.total_s)
        self.assertEqual(1, p.rounds)
        self.assertAlmostEqual(1000.0, p.wire_mb)

    def test_zero_pages_are_nearly_free(self):
        p = model.predict(plan(), model.Workload(ram_mb=1000,
                                                 zero_fraction=0.9),
                          100.0, cal=CAL)
        self.assertAlmostEqual(1.0, p.total_s)

    def test_dirty_above_bandwidth_never_converges_uncompressed(self):
        load = model.Workload(ram_mb=1000, dirty_mbps=150.0)
        for p in (plan(), plan(parallel_connections=4)):
            pred = model.predict(p, load, 100.0, cal=CAL)
            self.assertFalse(pred.converges, p)
            self.assertTrue(math.isinf(pred.total_s))

    def test_geometric_rounds_when_dirty_below_bandwidth(self):
        # 1000 MiB at 100 MiB/s: 10 s; then 50 MiB/s dirty -> 500 MiB
        # (5 s), 250 (2.5 s), 125 (1.25 s), 62.5 (0.625 s), then 31.25 MiB
        # fits 500 ms of downtime (0.3125 s).
        load = model.Workload(ram_mb=1000, dirty_mbps=50.0)
        pred = model.predict(plan(), load, 100.0, cal=CAL)
        self.assertTrue(pred.converges)
        self.assertAlmostEqual(10 + 5 + 2.5 + 1.25 + 0.625 + 0.3125,
                               pred.total_s)
        self.assertAlmostEqual(312.5, pred.downtime_ms)

    def test_working_set_bounds_each_round(self):
        load = model.Workload(ram_mb=1000, dirty_mbps=50.0,
                              working_set_mb=40.0)
        pred = model.predict(plan(), load, 100.0, cal=CAL)
        # Round 0 then the 40 MiB working set fits in 0.4 s of downtime.
        self.assertAlmostEqual(10.4, pred.total_s)

    def test_compression_halves_wire_and_is_cpu_bound(self):
        load = model.Workload(ram_mb=1000, compress_ratio=0.5)
        # 4 channels x 100 MiB/s CPU = 400 MiB/s; link 100/0.5 = 200.
        pred = model.predict(plan(method='zstd', parallel_connections=4),
                             load, 100.0, idle_cores=4, cal=CAL)
        self.assertAlmostEqual(5.0, pred.total_s)
        self.assertAlmostEqual(500.0, pred.wire_mb)
        # One idle core: CPU-bound at 100 MiB/s.
        pred = model.predict(plan(method='zstd', parallel_connections=4),
                             load, 100.0, idle_cores=1, cal=CAL)
        self.assertAlmostEqual(10.0, pred.total_s)

    def test_compression_lets_a_busy_guest_converge(self):
        load = model.Workload(ram_mb=1000, dirty_mbps=150.0,
                              working_set_mb=500, compress_ratio=0.25)
        self.assertFalse(model.predict(plan(), load, 100.0,
                                       cal=CAL).converges)
        pred = model.predict(plan(method='qatzip', parallel_connections=4),
                             load, 100.0, cal=CAL)
        self.assertTrue(pred.converges)

    def test_xbzrle_resends_deltas(self):
        load = model.Workload(ram_mb=1000, dirty_mbps=150.0,
                              working_set_mb=300, xbzrle_friendly=1.0)
        pred = model.predict(plan(method='xbzrle', xbzrle_cache_mb=512),
                             load, 100.0, cal=CAL)
        self.assertTrue(pred.converges)
        # Re-sent pages go at 100 / 0.1 = 1000 MiB/s: round 1 carries the
        # 300 MiB working set in 0.3 s, which fits the downtime.
        self.assertAlmostEqual(10.3, pred.total_s)

    def test_throttle_makes_it_converge(self):
        load = model.Workload(ram_mb=1000, dirty_mbps=150.0)
        pred = model.predict(plan(throttle_initial=20,
                                  throttle_increment=10), load, 100.0,
                             cal=CAL)
        self.assertTrue(pred.converges)
        self.assertGreaterEqual(pred.throttle_pct, 40)

    def test_post_copy_finishes_after_stalled_rounds(self):
        load = model.Workload(ram_mb=1000, dirty_mbps=150.0,
                              working_set_mb=600)
        pred = model.predict(plan(post_copy=True, post_copy_after_stalled=2),
                             load, 100.0, cal=CAL)
        self.assertTrue(pred.converges)
        self.assertTrue(pred.post_copy)
        self.assertEqual(0.0, pred.downtime_ms)
