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
"""Escalation logic against job-stat sequences of three kinds of guests.

The sequences have the shape of libvirt ``jobStats()`` output sampled every
0.5 s (Nova's monitor interval) from a 4 GiB guest on a 10 Gbit/s link:
converging (idle guest), stalling (a working set the link cannot drain)
and an exploding dirty rate (a guest that starts writing mid-migration).
"""

import dataclasses

import testtools

from nova_qat_migration import datamodel
from nova_qat_migration.policy import base
from nova_qat_migration.policy import escalation
from nova_qat_migration.virt.libvirt import tracker

MIB = datamodel.MIB
TOTAL = 4096 * MIB


def _stats(t_ms, iteration, remaining_mib, dirty_pps=0, bps_mib=1100,
           **extra):
    stats = {
        'type': 2,                      # VIR_DOMAIN_JOB_UNBOUNDED
        'time_elapsed': t_ms,
        'memory_total': TOTAL,
        'memory_remaining': int(remaining_mib * MIB),
        'memory_processed': TOTAL - int(remaining_mib * MIB),
        'memory_iteration': iteration,
        'memory_dirty_rate': dirty_pps,
        'memory_page_size': 4096,
        'memory_bps': int(bps_mib * MIB),
    }
    stats.update(extra)
    return stats


# An idle guest: the first pass sends almost everything, later passes are
# small and each reaches a new low.
CONVERGING = [
    _stats(500, 1, 3500), _stats(1000, 1, 2950), _stats(1500, 1, 2400),
    _stats(2000, 1, 1850), _stats(2500, 1, 1300), _stats(3000, 1, 750),
    _stats(3500, 1, 200), _stats(4000, 2, 60, 2000), _stats(4500, 2, 20),
    _stats(5000, 3, 8, 1500), _stats(5500, 3, 2),
]

# A guest rewriting ~1.5 GiB/s of a 1.5 GiB working set: after the first
# pass every iteration ends where the previous one did.
STALLING = ([_stats(500 * i, 1, 4096 - 449.4 * i) for i in range(1, 7)] +
            [_stats(3000 + 500 * i, 1 + (i + 1) // 2,
                    1400 + (i % 2) * 300, 400000)
             for i in range(1, 30)])

# Converging at first, then the guest starts writing: the dirty rate goes
# from nothing to well above the link and remaining climbs back.
EXPLODING = (CONVERGING[:7] +
             [_stats(4000 + 500 * i, 2 + i, 200 + 250 * i, 100000 * i)
              for i in range(1, 12)])


def _plan(**kw):
    defaults = dict(policy='adaptive', max_downtime_ms=500,
                    progress_timeout_s=0)
    defaults.update(kw)
    return datamodel.Plan(**defaults)


def _run(plan, sequence, trk=None):
    """Feed ``sequence``; apply every action; return all actions."""
    trk = trk or tracker.ProgressTracker()
    seen = []
    for stats in sequence:
        progress = trk.update(stats)
        for action in escalation.escalate(plan, progress):
            seen.append((stats['time_elapsed'], action))
            trk.applied(action)
    return trk, seen


class ProgressTrackerTest(testtools.TestCase):

    def test_converging_reaches_new_lows(self):
        trk = tracker.ProgressTracker()
        for stats in CONVERGING:
            progress = trk.update(stats)
        self.assertEqual(0, progress.stalled_iterations)
        self.assertAlmostEqual(2, progress.lowest_remaining_mb, places=3)
        self.assertEqual(5.5, progress.lowest_at_s)
        self.assertEqual(3, progress.iteration)
        self.assertEqual(4096, progress.total_mb)

    def test_stalling_counts_iterations_without_new_low(self):
        trk = tracker.ProgressTracker()
        for stats in STALLING:
            progress = trk.update(stats)
        self.assertGreaterEqual(progress.stalled_iterations, 10)
        self.assertAlmostEqual(1400, progress.lowest_remaining_mb, delta=1)
        # The first 1400 MiB was seen at the end of the first pass.
        self.assertEqual(3.0, progress.lowest_at_s)

    def test_shrinking_passes_are_progress_when_passes_end_near_zero(self):
        # libvirt may report almost nothing remaining as a pass ends; a
        # migration whose passes start with less and less to re-send is
        # still converging and must not time out on the end-of-pass low.
        passes = [800, 600, 450, 300, 200, 120]
        sequence = [_stats(500 * i, 1, 4096 - 600 * i) for i in range(1, 7)]
        t = 3000
        for iteration, start_mb in enumerate(passes, start=2):
            sequence += [_stats(t + 500, iteration, start_mb),
                         _stats(t + 1000, iteration, start_mb / 2),
                         _stats(t + 1500, iteration, 0.01)]
            t += 1500
        trk, seen = _run(_plan(progress_timeout_s=3), sequence)
        self.assertEqual([], [a for _t, a in seen
                              if a.kind == datamodel.ACTION_ABORT], seen)
        self.assertEqual(t - 1000, trk.lowest_at_s * 1000)
        # The same passes not shrinking: the timeout fires.
        flat = [_stats(500 * i, 1, 4096 - 600 * i) for i in range(1, 7)]
        t = 3000
        for iteration in range(2, 9):
            flat += [_stats(t + 500, iteration, 800),
                     _stats(t + 1000, iteration, 400),
                     _stats(t + 1500, iteration, 0.01)]
            t += 1500
        _tracker, seen = _run(_plan(progress_timeout_s=3), flat)
        self.assertIn(datamodel.ACTION_ABORT, [a.kind for _t, a in seen])

    def test_dirty_rate_is_pages_times_page_size(self):
        trk = tracker.ProgressTracker()
        progress = trk.update(_stats(500, 1, 100, dirty_pps=256000))
        self.assertEqual(1000, progress.dirty_rate_mbps)
        progress = trk.update(_stats(1000, 1, 100, dirty_pps=1000,
                                     memory_page_size=2 * MIB))
        self.assertEqual(2000, progress.dirty_rate_mbps)
        self.assertEqual(2000, trk.summary()['max_dirty_rate_mbps'])

    def test_without_time_elapsed_uses_clock(self):
        trk = tracker.ProgressTracker()
        trk.update({'type': 2, 'memory_remaining': MIB}, now_s=100.0)
        progress = trk.update({'type': 2, 'memory_remaining': MIB},
                              now_s=102.5)
        self.assertEqual(2.5, progress.elapsed_s)

    def test_garbage_values_do_not_raise(self):
        trk = tracker.ProgressTracker()
        progress = trk.update({'type': 2, 'memory_remaining': 'x',
                               'memory_iteration': None})
        self.assertEqual(0, progress.remaining_mb)

    def test_xbzrle_miss_rate_window_resets_on_resize(self):
        trk = tracker.ProgressTracker()
        xb = dict(compression_cache=256 * MIB)
        trk.update(_stats(500, 3, 900, compression_cache_misses=0,
                          compression_pages=0, **xb))
        progress = trk.update(_stats(1000, 3, 800,
                                     compression_cache_misses=6000,
                                     compression_pages=4000, **xb))
        self.assertAlmostEqual(0.6, progress.xbzrle_cache_miss_rate)
        trk.applied(datamodel.Action(datamodel.ACTION_XBZRLE_CACHE, 512))
        progress = trk.update(_stats(1500, 3, 700,
                                     compression_cache_misses=6500,
                                     compression_pages=4100,
                                     compression_cache=512 * MIB))
        self.assertEqual(0, progress.xbzrle_cache_miss_rate)
        self.assertEqual(512, progress.xbzrle_cache_mb)
        # The new cache starts empty: the rest of pass 3 and pass 4 fill
        # it, whatever they miss.
        progress = trk.update(_stats(2000, 4, 600,
                                     compression_cache_misses=16500,
                                     compression_pages=4100,
                                     compression_cache=512 * MIB))
        self.assertEqual(0, progress.xbzrle_cache_miss_rate)
        trk.update(_stats(2500, 5, 500, compression_cache_misses=16500,
                          compression_pages=4100,
                          compression_cache=512 * MIB))
        progress = trk.update(_stats(3000, 5, 400,
                                     compression_cache_misses=17500,
                                     compression_pages=13100,
                                     compression_cache=512 * MIB))
        self.assertAlmostEqual(0.1, progress.xbzrle_cache_miss_rate)

    def test_first_xbzrle_pass_misses_everything_and_counts_nothing(self):
        # QEMU sends pass 1 whole and starts XBZRLE in pass 2, whose
        # lookups all miss (the cache is empty): the "100% miss rate" that
        # doubled the demo's cache (and emptied it again) is no signal.
        trk = tracker.ProgressTracker()
        trk.xbzrle_cache_mb = 512
        xb = dict(compression_cache=512 * MIB)
        trk.update(_stats(500, 2, 900, compression_cache_misses=0,
                          compression_pages=0, **xb))
        progress = trk.update(_stats(1000, 2, 800,
                                     compression_cache_misses=50000,
                                     compression_pages=0, **xb))
        self.assertEqual(0, progress.xbzrle_cache_miss_rate)
        plan = _plan(method='xbzrle', xbzrle_cache_mb=512,
                     xbzrle_cache_max_mb=2048)
        self.assertEqual([], [a for a in escalation.escalate(plan, progress)
                              if a.kind == 'xbzrle_cache'])


class EscalateTest(testtools.TestCase):

    def test_converging_needs_nothing(self):
        plan = _plan(post_copy=True, post_copy_after_stalled=2,
                     progress_timeout_s=3)
        _, seen = _run(plan, CONVERGING)
        self.assertEqual([], seen)

    def test_stalling_steps_downtime_to_limit_once_per_iteration(self):
        # The steps climb to QEMU's limit, the target less the headroom
        # its estimate needs: 500 ms asked, 375 ms given to QEMU.
        plan = _plan(max_downtime_ms=500)
        self.assertEqual(375, plan.downtime_limit_ms)
        trk, seen = _run(plan, STALLING)
        values = [a.value for _, a in seen if a.kind == 'downtime']
        self.assertEqual([75, 150, 225, 300, 375], values)
        self.assertTrue(all(a.kind == 'downtime' for _, a in seen))
        self.assertEqual(375, trk.downtime_ms)

    def test_every_planned_multifd_plan_climbs_to_the_larger_headroom(self):
        # Every policy's multifd plan, compressed or not: 500 ms asked,
        # 300 ms given to QEMU (MULTIFD_DOWNTIME_HEADROOM).
        for policy in ('adaptive', 'static'):
            for method, channels in (('zstd', 4), ('none', 2),
                                     ('qatzip', 4)):
                plan = _plan(policy=policy, method=method,
                             parallel_connections=channels)
                self.assertEqual(300, plan.downtime_limit_ms)
                trk, seen = _run(plan, STALLING)
                values = [a.value for _, a in seen if a.kind == 'downtime']
                self.assertEqual([60, 120, 180, 240, 300], values)
                self.assertEqual(300, trk.downtime_ms)

    def test_stalling_switches_to_post_copy_when_permitted(self):
        plan = _plan(post_copy=True, post_copy_after_stalled=3)
        trk, seen = _run(plan, STALLING)
        kinds = [a.kind for _, a in seen]
        self.assertEqual(1, kinds.count('post_copy'))
        # Nothing after the switch: aborting now would lose the guest.
        self.assertEqual('post_copy', kinds[-1])
        self.assertTrue(trk.post_copy_active)

    def test_stalling_without_post_copy_aborts_on_progress_timeout(self):
        plan = _plan(progress_timeout_s=10)
        _, seen = _run(plan, STALLING)
        aborts = [(t, a) for t, a in seen if a.kind == 'abort']
        self.assertTrue(aborts)
        t_ms, action = aborts[0]
        # The low (1400 MiB) was reached at 3 s; over 10 s later it aborts.
        self.assertEqual(13500, t_ms)
        self.assertIn('progress timeout 10 s', action.reason)

    def test_progress_timeout_prefers_post_copy_when_permitted(self):
        plan = _plan(progress_timeout_s=2, post_copy=True,
                     post_copy_after_stalled=100)
        _, seen = _run(plan, STALLING)
        self.assertEqual('post_copy', seen[-1][1].kind)
        self.assertNotIn('abort', [a.kind for _, a in seen])

    def test_exploding_dirty_rate_escalates(self):
        plan = _plan(max_downtime_ms=1000, post_copy=True,
                     post_copy_after_stalled=4)
        trk, seen = _run(plan, EXPLODING)
        kinds = [a.kind for _, a in seen]
        self.assertIn('downtime', kinds)
        self.assertEqual('post_copy', kinds[-1])
        self.assertGreater(trk.summary()['max_dirty_rate_mbps'], 3000)

    def test_downtime_jumps_to_what_is_needed_when_it_fits(self):
        plan = _plan(max_downtime_ms=2000)
        progress = datamodel.Progress(elapsed_s=10, remaining_mb=550,
                                      bandwidth_mbps=1100,
                                      stalled_iterations=1)
        (action,) = escalation.escalate(plan, progress)
        self.assertEqual('downtime', action.kind)
        self.assertEqual(600, action.value)     # 0.5 s * 1.2 margin

    def test_xbzrle_cache_doubles_up_to_max(self):
        plan = _plan(method='xbzrle', xbzrle_cache_mb=256,
                     xbzrle_cache_max_mb=1024)
        trk = tracker.ProgressTracker()
        trk.xbzrle_cache_mb = 256
        grown = []
        misses = pages = 0
        cache = 256
        for i in range(1, 20):
            misses += 5000
            pages += 1000
            progress = trk.update(_stats(
                500 * i, i, 500 - i, compression_cache=cache * MIB,
                compression_cache_misses=misses, compression_pages=pages))
            for action in escalation.escalate(plan, progress):
                if action.kind == 'xbzrle_cache':
                    grown.append(action.value)
                    cache = action.value
                trk.applied(action)
        self.assertEqual([512, 1024], grown)

    def test_xbzrle_cache_not_grown_in_the_first_pass(self):
        plan = _plan(method='xbzrle', xbzrle_cache_mb=256,
                     xbzrle_cache_max_mb=1024)
        for cold in (1, 2):
            first = datamodel.Progress(elapsed_s=1, remaining_mb=900,
                                       iteration=cold, xbzrle_cache_mb=256,
                                       xbzrle_cache_miss_rate=1.0)
            self.assertEqual([], [a for a in escalation.escalate(plan, first)
                                  if a.kind == 'xbzrle_cache'], cold)
        later = dataclasses.replace(first, iteration=3)
        self.assertEqual([512], [a.value for a in
                                 escalation.escalate(plan, later)
                                 if a.kind == 'xbzrle_cache'])

    def test_first_pass_misses_do_not_count(self):
        trk = tracker.ProgressTracker()
        trk.xbzrle_cache_mb = 256
        cache = 256 * MIB
        # Pass 1 sends every page whole; pass 2, the first XBZRLE pass,
        # misses on every lookup while the cache fills.
        trk.update(_stats(500, 1, 900, compression_cache=cache,
                          compression_cache_misses=0,
                          compression_pages=0))
        trk.update(_stats(1000, 2, 600, compression_cache=cache,
                          compression_cache_misses=0,
                          compression_pages=0))
        progress = trk.update(_stats(1200, 2, 500, compression_cache=cache,
                                     compression_cache_misses=50000,
                                     compression_pages=0))
        self.assertEqual(0, progress.xbzrle_cache_miss_rate)
        # Iteration 3: hits from now on.
        trk.update(_stats(1500, 3, 300, compression_cache=cache,
                          compression_cache_misses=50000,
                          compression_pages=0))
        progress = trk.update(_stats(
            2000, 3, 200, compression_cache=cache,
            compression_cache_misses=50100, compression_pages=5000))
        self.assertLess(progress.xbzrle_cache_miss_rate, 0.05)

    def test_xbzrle_not_grown_for_other_methods(self):
        plan = _plan(method='zstd', xbzrle_cache_max_mb=1024)
        progress = datamodel.Progress(elapsed_s=1, remaining_mb=10,
                                      xbzrle_cache_mb=64,
                                      xbzrle_cache_miss_rate=0.9)
        self.assertEqual([], escalation.escalate(plan, progress))

    def test_nothing_in_post_copy(self):
        plan = _plan(progress_timeout_s=1, post_copy=True,
                     post_copy_after_stalled=1)
        progress = datamodel.Progress(elapsed_s=100, remaining_mb=10,
                                      lowest_remaining_mb=5, lowest_at_s=1,
                                      stalled_iterations=50,
                                      post_copy_active=True)
        self.assertEqual([], escalation.escalate(plan, progress))

    def test_policy_default_on_progress_delegates(self):
        class P(base.Policy):
            name = 'p'

            def plan(self, facts):
                return _plan()

        progress = datamodel.Progress(elapsed_s=1, remaining_mb=100,
                                      stalled_iterations=1)
        self.assertEqual(escalation.escalate(_plan(), progress),
                         list(P(None).on_progress(_plan(), progress)))


# -- block migrations (issue 21) ---------------------------------------------
#
# libvirt copies the local disks with an NBD drive-mirror before it starts
# QEMU's memory migration: until then every memory_* stat is 0 and the
# disk_* stats carry the copy. A 20 GiB disk at 100 MiB/s copies for
# ~205 s, longer than the default progress timeout (150 s).

DISK_TOTAL = 20 * 1024 * MIB


def _disk_stats(t_ms, disk_remaining_mib, disk_mbps=100, memory=None):
    """A block migration's job stats while the disks are copied."""
    remaining = int(disk_remaining_mib * MIB)
    stats = {
        'type': 2,
        'time_elapsed': t_ms,
        'memory_total': 0,
        'memory_remaining': 0,
        'memory_processed': 0,
        'memory_iteration': 0,
        'memory_dirty_rate': 0,
        'memory_bps': 0,
        'disk_total': DISK_TOTAL,
        'disk_processed': DISK_TOTAL - remaining,
        'disk_remaining': remaining,
        'disk_bps': int(disk_mbps * MIB),
        'data_total': DISK_TOTAL,
        'data_processed': DISK_TOTAL - remaining,
        'data_remaining': remaining,
    }
    if memory is not None:
        stats.update(memory)
    return stats


def _disk_copy(seconds, rate_mbps=100, start_mib=20 * 1024, t0_ms=0,
               **kw):
    """Samples every 0.5 s of a disk copy at ``rate_mbps``."""
    return [_disk_stats(t0_ms + 500 * i,
                        max(0.0, start_mib - rate_mbps * 0.5 * i), **kw)
            for i in range(1, int(seconds * 2) + 1)]


def _memory_after_disks(t0_ms, sequence):
    """``sequence`` (memory job stats) after the disk copy, mirrors in
    sync: its times shifted by ``t0_ms``, the disks copied.
    """
    out = []
    for stats in sequence:
        stats = dict(stats, time_elapsed=t0_ms + stats['time_elapsed'],
                     disk_total=DISK_TOTAL, disk_processed=DISK_TOTAL,
                     disk_remaining=0)
        out.append(stats)
    return out


class BlockMigrationTest(testtools.TestCase):
    """The progress rule counts a block migration's disk copy."""

    def test_disk_copy_longer_than_the_progress_timeout_is_progress(self):
        # memory_remaining stays flat (0: the memory migration has not
        # started) for 205 s while disk_remaining falls; then the memory
        # converges. Today's rule took the first 0 for a low nothing could
        # beat and aborted at 150 s.
        sequence = (_disk_copy(205) +
                    _memory_after_disks(205000, CONVERGING))
        plan = _plan(progress_timeout_s=150)
        trk, seen = _run(plan, sequence)
        self.assertEqual([], seen)
        self.assertEqual(3, trk.summary()['iterations'])
        self.assertAlmostEqual(2, trk.lowest_remaining_mb, places=3)
        self.assertEqual(205.5, trk.memory_started_s)
        # The disk phase counted no memory pass as stalled.
        self.assertEqual(0, trk.stalled_iterations)

    def test_flat_memory_stats_beside_a_moving_disk_copy(self):
        # The same copy where memory stats are reported flat at the whole
        # guest (a libvirt that fills them in early): the data left
        # (memory and disk) keeps reaching new lows.
        flat = {'memory_total': TOTAL, 'memory_remaining': TOTAL,
                'memory_iteration': 1}
        sequence = _disk_copy(205, memory=flat)
        _trk, seen = _run(_plan(progress_timeout_s=150), sequence)
        self.assertEqual([], seen)

    def test_stalled_disk_copy_still_ends_by_the_timeout(self):
        # 60 s of copying, then the copy stops (the NBD peer hangs):
        # disk_remaining and disk_processed stay put.
        moving = _disk_copy(60)
        stuck = [_disk_stats(60000 + 500 * i, 20 * 1024 - 100 * 60)
                 for i in range(1, 400)]
        _trk, seen = _run(_plan(progress_timeout_s=150), moving + stuck)
        aborts = [(t, a) for t, a in seen if a.kind == 'abort']
        self.assertTrue(aborts)
        t_ms, action = aborts[0]
        # Last progress at 60 s: aborted once 150 s passed without any.
        self.assertEqual(210500, t_ms)
        self.assertIn('disk copy stalled', action.reason)
        self.assertIn('progress timeout 150 s', action.reason)

    def test_disk_copy_that_never_moves_times_out(self):
        stuck = [_disk_stats(500 * i, 20 * 1024) for i in range(1, 40)]
        _trk, seen = _run(_plan(progress_timeout_s=10), stuck)
        self.assertEqual(['abort'], [a.kind for _t, a in seen][:1])
        self.assertEqual(10500, seen[0][0])

    def test_no_post_copy_while_the_disks_are_copied(self):
        # Post-copy permitted and the progress timeout passed: the disk
        # copy stalled, so abort -- QEMU's memory migration has not
        # started and cannot switch to post-copy.
        plan = _plan(progress_timeout_s=10, post_copy=True,
                     post_copy_after_stalled=1)
        moving = _disk_copy(5)
        stuck = [_disk_stats(5000 + 500 * i, 20 * 1024 - 500)
                 for i in range(1, 40)]
        _trk, seen = _run(plan, moving + stuck)
        kinds = [a.kind for _t, a in seen]
        self.assertNotIn('post_copy', kinds)
        self.assertEqual('abort', kinds[0])
        self.assertIn('no post-copy while the disks are copied',
                      seen[0][1].reason)

    def test_no_post_copy_while_mirrors_lag_behind(self):
        # The memory migration runs and stalls, but the guest writes its
        # disk faster than the mirrors copy: 2 GiB owed, no post-copy on
        # stalled passes (the pause would hold the mirrors' backlog).
        lagging = _memory_after_disks(0, STALLING)
        for stats in lagging:
            stats['disk_remaining'] = 2048 * MIB
        plan = _plan(post_copy=True, post_copy_after_stalled=3)
        _trk, seen = _run(plan, lagging)
        self.assertNotIn('post_copy', [a.kind for _t, a in seen])
        # Mirrors in sync: the same stalled guest switches.
        _trk, seen = _run(plan, _memory_after_disks(0, STALLING))
        self.assertIn('post_copy', [a.kind for _t, a in seen])

    def test_progress_says_what_the_disks_do(self):
        trk = tracker.ProgressTracker()
        progress = trk.update(_disk_stats(500, 10 * 1024, disk_mbps=80))
        self.assertTrue(progress.disk_copying)
        self.assertEqual(20 * 1024, progress.disk_total_mb)
        self.assertEqual(10 * 1024, progress.disk_remaining_mb)
        self.assertEqual(10 * 1024, progress.disk_processed_mb)
        self.assertEqual(80, progress.disk_bandwidth_mbps)
        self.assertEqual(float('inf'), progress.lowest_remaining_mb)
        self.assertEqual(0, progress.remaining_mb)
        progress = trk.update(_memory_after_disks(1000, CONVERGING[:1])[0])
        self.assertFalse(progress.disk_copying)
        self.assertEqual(3500, progress.lowest_remaining_mb)

    def test_memory_not_started_is_no_low_without_disks(self):
        # Any job's first sample may come before QEMU reports memory: a
        # 0 then must not be the low the progress timeout measures from.
        empty = {'type': 2, 'time_elapsed': 100, 'memory_total': 0,
                 'memory_remaining': 0, 'memory_iteration': 0}
        trk, seen = _run(_plan(progress_timeout_s=3),
                         [empty] + CONVERGING)
        self.assertEqual([], seen)
        self.assertAlmostEqual(2, trk.lowest_remaining_mb, places=3)


class DeadLinkTest(testtools.TestCase):
    """Post-copy over a link that sends nothing becomes an abort."""

    POST_COPY = datamodel.Action(datamodel.ACTION_POST_COPY,
                                 reason='progress timeout')

    def test_post_copy_kept_while_data_moves(self):
        self.assertIs(self.POST_COPY, escalation.guard_dead_link(
            self.POST_COPY, escalation.DEAD_LINK_S - 0.5))

    def test_post_copy_on_a_dead_link_aborts(self):
        action = escalation.guard_dead_link(self.POST_COPY,
                                            escalation.DEAD_LINK_S + 2)
        self.assertEqual(datamodel.ACTION_ABORT, action.kind)
        self.assertIn('progress timeout; nothing sent for 7 s', action.reason)

    def test_other_actions_untouched(self):
        downtime = datamodel.Action(datamodel.ACTION_DOWNTIME, value=100)
        self.assertIs(downtime, escalation.guard_dead_link(downtime, 60.0))
