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
"""Progress of a running migration, from libvirt's job stats.

:class:`ProgressTracker` turns successive ``virDomainGetJobStats()`` dicts
into :class:`~nova_qat_migration.datamodel.Progress` values, adding the
memory a single sample lacks: the lowest remaining data and when the
migration last made progress, how many iterations passed without a new
low, the XBZRLE cache miss rate since the cache last changed. Free of
libvirt calls and I/O, so it is tested with recorded job-stat sequences.

A block migration (``VIR_MIGRATE_NON_SHARED_INC``) runs in two phases.
libvirt first copies the local disks with an NBD drive-mirror and waits
until every mirror is in sync; only then does it start QEMU's memory
migration. Until then the job's ``memory_*`` stats are all 0 and its
``disk_*`` stats (``disk_total``, ``disk_processed``, ``disk_remaining``,
``disk_bps``) carry the copy; afterwards the mirrors follow the guest's
writes and ``disk_remaining`` stays near 0. So progress is disk data
copied while the disks are being copied, and a new low of the data left
(memory and disk) once the memory migration runs.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

from nova_qat_migration import datamodel
from nova_qat_migration import timeline

#: Pages that must have been looked up since the last cache change before
#: the miss rate is trusted (one sample right after a resize says nothing).
XBZRLE_MIN_PAGES = 1024
#: A new low of remaining data must beat the previous one by this fraction
#: of the total (or 10% of the low, if less); QEMU's remaining counter
#: jitters by a few pages.
NEW_LOW_EPSILON = 0.005
#: Disk data (MiB) that must have been copied since the last progress for
#: a disk copy to count as moving (a copy that creeps slower than this per
#: progress timeout is stalled).
DISK_MOVED_MB = 1.0
#: Disk data (MiB) mirrors in sync may still owe the destination: the
#: guest's latest writes. More than this and the disks are still being
#: copied (the escalation does not ask for post-copy then).
#: NOTE(qat-migration): libvirt completes the mirrors while the guest is
#: paused at the switch-over (QEMU's pause-before-switchover), post-copy's
#: included, so what they owe then adds to the pause: 64 MiB is about half
#: a second on a 1 Gbit/s link.
DISK_SYNCED_MB = 64.0


def _num(stats: Mapping[str, Any], key: str, default: float = 0) -> float:
    value = stats.get(key, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return float(default)
    # A NaN or infinite counter is no measurement (int() of it raises).
    return number if math.isfinite(number) else float(default)


class ProgressTracker:
    """Memory of one running migration's job stats.

    Not thread-safe on purpose: one tracker belongs to one migration and is
    only fed from that migration's monitor loop.

    :param downtime_ms: the max downtime in force when the migration starts
        (libvirt's default is QEMU's 300 ms; Nova's first step sets less).
    """

    def __init__(self) -> None:
        self.samples = 0
        self.last: dict = {}
        self.lowest_remaining_mb = float('inf')
        self.lowest_at_s = 0.0
        self.stalled_iterations = 0
        self.downtime_ms = 0
        self.xbzrle_cache_mb = 0.0
        self.post_copy_active = False
        self.max_dirty_rate_mbps = 0.0
        self.max_throttle_pct = 0
        self._iteration: Optional[int] = None
        self._new_low_this_iteration = False
        #: the least remaining data seen at the start of a pass
        self._lowest_pass_start_mb = float('inf')
        self._misses_base: Optional[float] = None
        self._pages_base: Optional[float] = None
        #: the first iteration whose XBZRLE misses are trusted: the cache
        #: is cold before it (the first XBZRLE pass, a pass after a resize)
        self._xbzrle_warm_from = datamodel.XBZRLE_WARM_ITERATION
        #: the last sample's ``memory_iteration``
        self._iteration_seen = 0
        self._start_s: Optional[float] = None
        #: disk data copied when the disk copy last counted as progress
        self._disk_mark_mb = 0.0
        #: the last sample's ``Progress.disk_copying``
        self.disk_copying = False
        #: the last sample showed a block migration's disks being copied
        #: before QEMU's memory migration started: post-copy cannot run
        #: (the driver refuses it whoever asks)
        self.memory_waits_for_disks = False
        #: elapsed seconds when QEMU's memory migration was first seen
        #: running (after a block migration's disk copy)
        self.memory_started_s: Optional[float] = None
        #: the samples and actions ``nova-qat-migration timeline`` draws
        self.series = timeline.Series()

    # -- feeding -----------------------------------------------------------

    def update(self, stats: Mapping[str, Any],
               now_s: Optional[float] = None) -> datamodel.Progress:
        """Fold one ``jobStats()`` dict in and return the progress.

        :param stats: libvirt job stats (``memory_*`` in bytes,
            ``memory_dirty_rate`` in pages/s, ``time_elapsed`` in ms).
        :param now_s: wall clock, only used when the stats carry no
            ``time_elapsed`` (old libvirt, fake libvirt).
        """
        self.samples += 1
        self.last = dict(stats)
        if 'time_elapsed' in stats:
            elapsed = _num(stats, 'time_elapsed') / 1000.0
        else:
            if self._start_s is None:
                self._start_s = now_s or 0.0
            elapsed = (now_s or 0.0) - self._start_s

        total_mb = _num(stats, 'memory_total') / datamodel.MIB
        remaining_mb = _num(stats, 'memory_remaining') / datamodel.MIB
        page = _num(stats, 'memory_page_size', 4096) or 4096
        dirty_mbps = _num(stats, 'memory_dirty_rate') * page / datamodel.MIB
        self.max_dirty_rate_mbps = max(self.max_dirty_rate_mbps, dirty_mbps)
        throttle = int(_num(stats, 'auto_converge_throttle'))
        self.max_throttle_pct = max(self.max_throttle_pct, throttle)
        iteration = int(_num(stats, 'memory_iteration'))
        disk_total_mb = _num(stats, 'disk_total') / datamodel.MIB
        disk_processed_mb = _num(stats, 'disk_processed') / datamodel.MIB
        disk_remaining_mb = _num(stats, 'disk_remaining') / datamodel.MIB

        # NOTE(qat-migration): libvirt reports every memory_* stat as 0
        # until QEMU's memory migration runs: while a block migration's
        # disks are copied, and for a moment after any job starts. A
        # remaining 0 then is no low (nothing later could beat it: the
        # progress timeout would fire however fast the data moves).
        memory_started = ('memory_remaining' in stats and
                          (total_mb > 0 or 'memory_total' not in stats))
        if memory_started and self.memory_started_s is None:
            self.memory_started_s = elapsed
        self.memory_waits_for_disks = disk_total_mb > 0 and not memory_started
        self.disk_copying = self.memory_waits_for_disks or (
            disk_total_mb > 0 and disk_remaining_mb > DISK_SYNCED_MB)
        if (self.disk_copying and
                disk_processed_mb >= self._disk_mark_mb + DISK_MOVED_MB):
            # Disk data moving is progress while the disks are copied.
            self._disk_mark_mb = disk_processed_mb
            self.lowest_at_s = elapsed
            self._new_low_this_iteration = True
        # What is left to send: the memory and what the mirrors owe.
        data_mb = remaining_mb + disk_remaining_mb

        # Stalled iterations: an iteration that ended without a new low.
        # Counted from the first sample of the memory migration.
        pass_start = False
        if memory_started and self._iteration is None:
            self._iteration = iteration
        elif memory_started and iteration > self._iteration:
            if self._new_low_this_iteration:
                self.stalled_iterations = 0
            else:
                self.stalled_iterations += iteration - self._iteration
            self._iteration = iteration
            self._new_low_this_iteration = False
            pass_start = True

        # NOTE(qat-migration): relative to the low itself near the end,
        # where a few MiB are the whole difference between iterations.
        epsilon = min(total_mb * NEW_LOW_EPSILON,
                      self.lowest_remaining_mb * NEW_LOW_EPSILON * 20)
        if (memory_started and
                (data_mb < self.lowest_remaining_mb - epsilon or
                 self.lowest_remaining_mb == float('inf'))):
            self.lowest_remaining_mb = data_mb
            self.lowest_at_s = elapsed
            self._new_low_this_iteration = True
        # NOTE(qat-migration): libvirt may report almost nothing remaining
        # at the very end of a pass, a low no later sample can beat. A
        # pass that starts with less to re-send than every pass before it
        # is progress too (the dirty set shrinks: the migration converges).
        # The second pass sets the mark; later ones must beat it.
        if pass_start:
            if self._lowest_pass_start_mb == float('inf'):
                self._lowest_pass_start_mb = data_mb
            elif data_mb < self._lowest_pass_start_mb - max(
                    epsilon, total_mb * NEW_LOW_EPSILON):
                self._lowest_pass_start_mb = data_mb
                self.lowest_at_s = elapsed
                self._new_low_this_iteration = True

        # XBZRLE cache: libvirt reports the cache size it really uses.
        if 'compression_cache' in stats:
            cache_mb = _num(stats, 'compression_cache') / datamodel.MIB
            if cache_mb and self.xbzrle_cache_mb and \
                    cache_mb != self.xbzrle_cache_mb:
                self._cache_resized(iteration)
            elif cache_mb and cache_mb != self.xbzrle_cache_mb:
                # The size first seen: no resize, a fresh window.
                self._reset_miss_window()
            self.xbzrle_cache_mb = cache_mb or self.xbzrle_cache_mb
        self._iteration_seen = iteration
        if iteration < self._xbzrle_warm_from:
            # A cold cache misses on every page it has not seen yet: the
            # misses say nothing about its size, so the window opens once
            # a full XBZRLE pass has filled it.
            self._reset_miss_window()
        miss_rate = self._miss_rate(stats)

        progress = datamodel.Progress(
            elapsed_s=elapsed,
            remaining_mb=remaining_mb,
            total_mb=total_mb,
            dirty_rate_mbps=dirty_mbps,
            iteration=iteration,
            throttle_pct=throttle,
            xbzrle_cache_mb=self.xbzrle_cache_mb,
            xbzrle_cache_miss_rate=miss_rate,
            bandwidth_mbps=_num(stats, 'memory_bps') / datamodel.MIB,
            lowest_remaining_mb=self.lowest_remaining_mb,
            lowest_at_s=self.lowest_at_s,
            stalled_iterations=self.stalled_iterations,
            downtime_ms=self.downtime_ms,
            post_copy_active=self.post_copy_active,
            disk_total_mb=disk_total_mb,
            disk_processed_mb=disk_processed_mb,
            disk_remaining_mb=disk_remaining_mb,
            disk_bandwidth_mbps=_num(stats, 'disk_bps') / datamodel.MIB,
            disk_copying=self.disk_copying)
        self.series.add(progress, stats)
        return progress

    def _reset_miss_window(self) -> None:
        self._misses_base = None
        self._pages_base = None

    def _cache_resized(self, iteration: int) -> None:
        """The XBZRLE cache was replaced by an empty one at ``iteration``:
        the rest of that pass and the next refill it.
        """
        self._reset_miss_window()
        self._xbzrle_warm_from = max(self._xbzrle_warm_from, iteration + 2)

    def _miss_rate(self, stats: Mapping[str, Any]) -> float:
        if 'compression_cache_misses' not in stats:
            return 0.0
        misses = _num(stats, 'compression_cache_misses')
        pages = _num(stats, 'compression_pages')
        if self._misses_base is None:
            self._misses_base, self._pages_base = misses, pages
            return 0.0
        d_miss = misses - self._misses_base
        d_pages = pages - (self._pages_base or 0.0)
        looked_up = d_miss + d_pages
        if looked_up < XBZRLE_MIN_PAGES or d_miss < 0:
            return 0.0
        return d_miss / looked_up

    def applied(self, action: datamodel.Action) -> None:
        """Record that the driver applied ``action`` successfully."""
        self.series.event(action.kind, action.value, action.reason)
        if (action.kind == datamodel.ACTION_DOWNTIME and
                action.value is not None):
            self.downtime_ms = max(self.downtime_ms, action.value)
        elif action.kind == datamodel.ACTION_XBZRLE_CACHE and action.value:
            self.xbzrle_cache_mb = float(action.value)
            self._cache_resized(self._iteration_seen)
        elif action.kind == datamodel.ACTION_POST_COPY:
            self.post_copy_active = True

    def summary(self) -> dict:
        """Counters worth a log line and a history entry."""
        last = self.last
        pages = _num(last, 'compression_pages')
        misses = _num(last, 'compression_cache_misses')
        hit_ratio = None
        if pages + misses > 0:
            hit_ratio = pages / (pages + misses)
        return {
            'samples': self.samples,
            'iterations': int(_num(last, 'memory_iteration')),
            'max_dirty_rate_mbps': round(self.max_dirty_rate_mbps, 1),
            'max_throttle_pct': self.max_throttle_pct,
            'lowest_remaining_mb': (None if math.isinf(
                self.lowest_remaining_mb) else round(
                    self.lowest_remaining_mb, 1)),
            'stalled_iterations': self.stalled_iterations,
            'downtime_ms': self.downtime_ms,
            'post_copy': self.post_copy_active,
            'xbzrle_cache_mb': self.xbzrle_cache_mb,
            'xbzrle_hit_ratio': hit_ratio,
            'compression_bytes': int(_num(last, 'compression_bytes')),
            'compression_overflow': int(_num(last, 'compression_overflow')),
        }
