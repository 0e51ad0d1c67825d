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

import dataclasses
import math

import testtools

from nova_qat_migration import datamodel
from nova_qat_migration.policy import model

CAL = datamodel.Calibration(stream_mbps=1e9, compress_mbps=100.0,
                            qat_mbps=1000.0, xbzrle_mbps=1e9,
                            xbzrle_residue=0.1, zero_cost=0.0,
                            zero_mbps=1e12, setup_s=0.0, switchover_s=0.0,
                            downtime_overshoot=0.0)


def plan(**kw):
    kw.setdefault('max_downtime_ms', 500)
    return datamodel.Plan(policy='test', **kw)


def dirtied(working, rate, seconds):
    return working * (1.0 - math.exp(-rate * seconds / working))


class TestDirtied(testtools.TestCase):

    def test_about_rate_times_time_while_small(self):
        self.assertAlmostEqual(1.0, model.dirtied(10000.0, 10.0, 0.1),
                               places=3)

    def test_never_more_than_the_working_set(self):
        self.assertLess(model.dirtied(100.0, 1000.0, 60.0), 100.0 + 1e-9)
        self.assertGreater(model.dirtied(100.0, 1000.0, 60.0), 99.9)
        self.assertEqual(0.0, model.dirtied(0.0, 1000.0, 60.0))
        self.assertEqual(0.0, model.dirtied(100.0, 0.0, 60.0))

    def test_working_set_is_the_non_zero_pages_without_a_hint(self):
        self.assertEqual(250.0, model.working_set(model.Workload(
            ram_mb=1000, zero_fraction=0.75)))
        self.assertEqual(40.0, model.working_set(model.Workload(
            ram_mb=1000, zero_fraction=0.75, working_set_mb=40.0)))
        # A guest dirtying more per second than it holds in non-zero
        # pages writes some of its zero pages too.
        self.assertEqual(400.0, model.working_set(model.Workload(
            ram_mb=1000, zero_fraction=0.9, dirty_mbps=400.0)))


class TestPredict(testtools.TestCase):

    def test_idle_guest_is_ram_over_bandwidth(self):
        p = model.predict(plan(), model.Workload(ram_mb=1000), 100.0,
                          cal=CAL)
        self.assertTrue(p.converges)
        self.assertAlmostEqual(10.0, p.total_s)
        self.assertEqual(1, p.rounds)
        self.assertAlmostEqual(1000.0, p.wire_mb)

    def test_zero_pages_cost_a_read_not_the_link(self):
        load = model.Workload(ram_mb=1000, zero_fraction=0.9)
        p = model.predict(plan(), load, 100.0, cal=CAL)
        self.assertAlmostEqual(1.0, p.total_s)
        # Checking 900 MiB of zero pages at 1000 MiB/s takes 0.9 s more.
        cal = dataclasses.replace(CAL, zero_mbps=1000.0)
        p = model.predict(plan(), load, 100.0, cal=cal)
        self.assertAlmostEqual(1.9, p.total_s)

    def test_dirty_above_bandwidth_never_converges_uncompressed(self):
        load = model.Workload(ram_mb=1000, dirty_mbps=150.0)
        for p in (plan(), plan(parallel_connections=4)):
            pred = model.predict(p, load, 100.0, cal=CAL)
            self.assertFalse(pred.converges, p)
            self.assertTrue(math.isinf(pred.total_s))

    def test_rounds_resend_the_distinct_pages_dirtied(self):
        # 1000 MiB at 100 MiB/s: 10 s; then each round re-sends what
        # 50 MiB/s of writes over the 1000 MiB dirtied meanwhile, until it
        # fits QEMU's limit (375 ms of the 500 ms target).
        load = model.Workload(ram_mb=1000, dirty_mbps=50.0)
        pred = model.predict(plan(), load, 100.0, cal=CAL)
        expected, t = 10.0, 10.0
        while True:
            t = dirtied(1000.0, 50.0, t) / 100.0
            expected += t
            if t <= 0.375:
                break
        self.assertTrue(pred.converges)
        self.assertAlmostEqual(expected, pred.total_s)
        self.assertAlmostEqual(1000.0 * t, pred.downtime_ms)

    def test_working_set_bounds_each_round(self):
        load = model.Workload(ram_mb=1000, dirty_mbps=50.0,
                              working_set_mb=40.0)
        pred = model.predict(plan(max_downtime_ms=1000), load, 100.0,
                             cal=CAL)
        # Round 0 then (nearly all of) the 40 MiB working set.
        self.assertAlmostEqual(10.0 + dirtied(40.0, 50.0, 10.0) / 100.0,
                               pred.total_s)
        self.assertLess(pred.total_s, 10.4 + 1e-9)

    def test_switch_over_uses_the_limit_qemu_is_given(self):
        # 45 MiB at 100 MiB/s is 450 ms: within Nova's own 500 ms, not
        # within the 375 ms a planned migration gives QEMU for its 500 ms
        # target (DOWNTIME_HEADROOM).
        load = model.Workload(ram_mb=1000, dirty_mbps=50.0,
                              working_set_mb=45.0)
        planned = plan()
        baseline = plan(nova_baseline=True)
        self.assertEqual(375, planned.downtime_limit_ms)
        self.assertEqual(500, baseline.downtime_limit_ms)
        cal = dataclasses.replace(CAL, downtime_overshoot=1.0 / 3.0,
                                  switchover_s=0.05)
        nova = model.predict(baseline, load, 100.0, cal=cal)
        ours = model.predict(planned, load, 100.0, cal=cal)
        self.assertEqual(1, nova.rounds)
        self.assertGreater(ours.rounds, 1)
        # The pause reported is not optimistic: the transfer plus the
        # fixed switch-over, and at least the transfer plus a third.
        transfer = dirtied(45.0, 50.0, 10.0) / 100.0
        self.assertAlmostEqual(transfer * 4.0 / 3.0 * 1000.0,
                               nova.downtime_ms)
        self.assertGreater(nova.downtime_ms, 1000.0 * (transfer + 0.05))
        # A planned migration switches within 375 ms: predicted within
        # the operator's 500 ms.
        self.assertLessEqual(ours.downtime_ms, 500.0)
        small = model.Workload(ram_mb=1000, dirty_mbps=1.0,
                               working_set_mb=1.0)
        tiny = model.predict(planned, small, 100.0, cal=cal)
        self.assertAlmostEqual(
            1000.0 * (dirtied(1.0, 1.0, 10.0) / 100.0 + 0.05),
            tiny.downtime_ms)

    def test_multifd_switch_over_keeps_the_larger_headroom(self):
        # A multifd plan gives QEMU 300 ms of a 500 ms target; with the
        # overshoot measured on multifd (two thirds), switching at the
        # limit is predicted at the target, never above it.
        multifd = plan(method='zstd', parallel_connections=4)
        single = plan()
        self.assertEqual(300, multifd.downtime_limit_ms)
        self.assertEqual(375, single.downtime_limit_ms)
        cal = dataclasses.replace(CAL, downtime_overshoot=1.0 / 3.0,
                                  multifd_downtime_overshoot=2.0 / 3.0)
        load = model.Workload(ram_mb=1000, dirty_mbps=80.0,
                              working_set_mb=60.0, compress_ratio=1.0)
        for p in (multifd, single):
            pred = model.predict(p, load, 100.0, idle_cores=4, cal=cal)
            self.assertTrue(pred.converges, p)
            self.assertLessEqual(pred.downtime_ms, 500.0 + 1e-6, p)
        pred = model.predict(multifd, load, 100.0, idle_cores=4, cal=cal)
        # The last transfer fit 300 ms; the pause predicted is 5/3 of it.
        self.assertGreater(pred.downtime_ms, 0.0)
        self.assertLessEqual(pred.downtime_ms / (5.0 / 3.0), 300.0 + 1e-6)

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

    def test_xbzrle_on_tiny_writes_converges_where_plain_does_not(self):
        load = model.Workload(ram_mb=1000, dirty_mbps=150.0,
                              working_set_mb=300, xbzrle_friendly=1.0)
        self.assertFalse(model.predict(plan(), load, 100.0,
                                       cal=CAL).converges)
        pred = model.predict(plan(method='xbzrle', xbzrle_cache_mb=512),
                             load, 100.0, cal=CAL)
        self.assertTrue(pred.converges)
        self.assertEqual(0, pred.throttle_pct)
        # The first re-send fills the cache with whole pages (100 MiB/s);
        # the second goes as deltas at 100 / 0.1 = 1000 MiB/s and fits.
        first = dirtied(300.0, 150.0, 10.0) / 100.0
        second = dirtied(300.0, 150.0, first) / 1000.0
        self.assertAlmostEqual(10.0 + first + second, pred.total_s)

    def test_xbzrle_cache_smaller_than_the_working_set_sends_whole(self):
        load = model.Workload(ram_mb=1000, working_set_mb=400,
                              xbzrle_friendly=1.0)
        full = model.xbzrle_wire(plan(method='xbzrle', xbzrle_cache_mb=512),
                                 load, CAL)
        quarter = model.xbzrle_wire(
            plan(method='xbzrle', xbzrle_cache_mb=100), load, CAL)
        self.assertAlmostEqual(0.1, full)
        self.assertAlmostEqual(0.25 * 0.1 + 0.75, quarter)

    def test_throttle_makes_it_converge(self):
        load = model.Workload(ram_mb=1000, dirty_mbps=150.0)
        pred = model.predict(plan(throttle_initial=20,
                                  throttle_increment=10), load, 100.0,
                             cal=CAL)
        self.assertTrue(pred.converges)
        self.assertGreaterEqual(pred.throttle_pct, 40)

    def test_no_throttle_below_qemus_trigger(self):
        # 10 MiB/s dirtied against 100 MiB/s sent: never half of it.
        load = model.Workload(ram_mb=1000, dirty_mbps=10.0)
        pred = model.predict(plan(throttle_initial=20,
                                  throttle_increment=10), load, 100.0,
                             cal=CAL)
        self.assertTrue(pred.converges)
        self.assertEqual(0, pred.throttle_pct)

    def test_post_copy_finishes_after_stalled_rounds(self):
        load = model.Workload(ram_mb=1000, dirty_mbps=150.0,
                              working_set_mb=600)
        pred = model.predict(plan(post_copy=True, post_copy_after_stalled=2),
                             load, 100.0, cal=CAL)
        self.assertTrue(pred.converges)
        self.assertTrue(pred.post_copy)
        self.assertEqual(0.0, pred.downtime_ms)
        # The first pass, then one re-send of the (saturated) working
        # set; the next pass starts no smaller: the switch, then the rest
        # once.
        first = dirtied(600.0, 150.0, 10.0) / 100.0
        rest = dirtied(600.0, 150.0, first) / 100.0
        self.assertEqual(2, pred.rounds)
        self.assertAlmostEqual(10.0 + first + rest, pred.total_s)


class TestBlockMigration(testtools.TestCase):
    """Issue 21: a block migration copies its disks before the memory."""

    def test_disk_copy_makes_the_prediction_longer_by_disk_over_link(self):
        # 1000 MiB of RAM dirtied at 50 MiB/s over 100 MiB/s, and 6000 MiB
        # of disk: the mirrors copy it (uncompressed, outside multifd)
        # first, the memory rounds run as before after it.
        load = model.Workload(ram_mb=1000, dirty_mbps=50.0)
        disk = dataclasses.replace(load, disk_mb=6000.0)
        for p in (plan(), plan(method='zstd', parallel_connections=4),
                  plan(post_copy=True, post_copy_after_stalled=1)):
            memory = model.predict(p, load, 100.0, cal=CAL)
            both = model.predict(p, disk, 100.0, cal=CAL)
            self.assertTrue(both.converges, p)
            self.assertAlmostEqual(60.0, both.disk_s)
            self.assertAlmostEqual(memory.total_s + 60.0, both.total_s)
            self.assertEqual(memory.rounds, both.rounds)
            self.assertAlmostEqual(memory.downtime_ms, both.downtime_ms)
            self.assertAlmostEqual(memory.wire_mb + 6000.0, both.wire_mb)
            self.assertIn('after a 60.0 s disk copy', both.describe())
        self.assertEqual(0.0, model.predict(plan(), load, 100.0,
                                            cal=CAL).disk_s)

    def test_a_long_disk_copy_does_not_stop_the_rounds(self):
        # Two hours of disk copy: the rounds after it are still predicted
        # (whether that fits Nova's timeout is the ranking's judgement).
        load = model.Workload(ram_mb=1000, dirty_mbps=50.0,
                              disk_mb=100.0 * 7200)
        pred = model.predict(plan(), load, 100.0, cal=CAL,
                             time_limit_s=3600.0)
        self.assertTrue(pred.converges)
        self.assertGreater(pred.total_s, 7200.0)

    def test_a_guest_that_never_converges_still_does_not(self):
        load = model.Workload(ram_mb=1000, dirty_mbps=150.0, disk_mb=500.0)
        pred = model.predict(plan(), load, 100.0, cal=CAL)
        self.assertFalse(pred.converges)
        self.assertIn('never converges after a 5.0 s disk copy',
                      pred.describe())


class TestThrottleSchedule(testtools.TestCase):
    """QEMU 10: every second period over the trigger steps the throttle."""

    def test_initial_then_increments_every_second_high_period(self):
        p = plan(throttle_initial=20, throttle_increment=10)
        throttle, high = 0, 0
        seen = []
        for _ in range(6):
            throttle, high = model.next_throttle(p, throttle, high,
                                                 dirty_mb=60.0,
                                                 sent_mb=100.0)
            seen.append(throttle)
        self.assertEqual([0, 20, 20, 30, 30, 40], seen)

    def test_a_period_at_or_below_half_does_not_count(self):
        p = plan(throttle_initial=20, throttle_increment=10)
        self.assertEqual((0, 0), model.next_throttle(p, 0, 0, 50.0, 100.0))
        # Nor does it reset the count of high periods (as in QEMU).
        self.assertEqual((0, 1), model.next_throttle(p, 0, 1, 10.0, 100.0))
        self.assertEqual((20, 0), model.next_throttle(p, 0, 1, 51.0, 100.0))

    def test_capped_at_qemus_maximum(self):
        p = plan(throttle_initial=20, throttle_increment=50)
        self.assertEqual((model.THROTTLE_MAX, 0),
                         model.next_throttle(p, 80, 1, 100.0, 100.0))

    def test_compressed_wire_bytes_trigger_sooner(self):
        # The trigger compares with bytes on the wire: 40 MiB dirtied
        # against 100 MiB of pages sent at ratio 0.5 is over half.
        p = plan(throttle_initial=20, throttle_increment=10)
        self.assertEqual((0, 0), model.next_throttle(p, 0, 0, 40.0, 100.0))
        self.assertEqual((0, 1), model.next_throttle(p, 0, 0, 40.0, 50.0))
