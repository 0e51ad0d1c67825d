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
"""A pre-copy convergence model: predict a plan's outcome before starting.

Nova, KubeVirt, oVirt and Proxmox react after a migration stalls; this
predicts, from the facts, how long each candidate plan takes, how long the
switch-over pauses the guest, and whether it finishes at all, so the
adaptive policy can pick the cheapest plan that converges within the
operator's limits.

The model follows QEMU's pre-copy loop round by round:

* round 0 sends all of RAM, zero pages for the cost of reading them and a
  header; every later round sends the distinct pages the guest dirtied
  during the previous one: ``W * (1 - exp(-rate * t / W))`` for writes
  spread over a working set ``W`` (the hint, else the guest's non-zero
  pages), since the dirty bitmap holds a page once however often it was
  written;
* a block migration first copies the instance's local disks: libvirt
  runs an NBD drive-mirror per disk, uncompressed and outside multifd,
  and starts QEMU's memory migration only once every mirror is in sync,
  so the copy adds its bytes over the link (this migration's share)
  before round 0; round 0 then sends all of RAM whatever the guest
  dirtied meanwhile;
* a round's rate is the smallest of the link (after the compression ratio
  or XBZRLE's delta savings), the compressors (channels x per-core
  throughput, or QAT) and the per-stream copy limit;
* XBZRLE starts after the first pass: the first re-send finds the cache
  cold and fills it with whole pages, deltas come from the second re-send
  on (:data:`~nova_qat_migration.datamodel.XBZRLE_WARM_ITERATION`, the
  pass from which the escalation trusts the cache's misses), for the
  share of the working set the cache holds;
* auto-converge follows QEMU 10's trigger: at a bitmap sync (at most one a
  second), a period that dirtied more than half the bytes it put on the
  wire is "high", and every second high period starts the throttle at
  ``throttle_initial`` or adds ``throttle_increment``;
* pre-copy completes when the rest fits ``Plan.downtime_limit_ms`` (the
  limit QEMU is given), with the pause it causes reported with a margin
  (``Calibration.downtime_overshoot``); post-copy, when permitted,
  switches once the tracker counts ``post_copy_after_stalled`` stalled
  passes, and the rest arrives once, at the fresh-page rate.

* software compressors take the idle cores and share the busy ones with
  the work running there (:func:`compressor_cores`); the migrating
  guest's vCPUs are part of that work, so its dirty rate drops by the
  share they lose (:func:`cpu_impact`).

The lab's records show what this leaves out: a guest that writes at a
fixed rate with CPU to spare keeps its rate under a throttle (or beside
compressors) that leaves it that CPU; the guest's CPU need is not among
the facts, so the model takes its dirtying as bound by its CPU.

All rates are MiB/s of guest pages unless named ``wire``. Pure Python and
cheap (a few microseconds per candidate) so every candidate can be scored.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

from nova_qat_migration import datamodel


@dataclasses.dataclass(frozen=True)
class Workload:
    """What the guest does, as far as the facts tell."""

    ram_mb: float
    dirty_mbps: float = 0.0
    working_set_mb: Optional[float] = None
    #: share of RAM that is zero pages (never touched or zeroed)
    zero_fraction: float = 0.0
    #: compressed/original for the guest's non-zero pages
    compress_ratio: float = 0.5
    #: share of re-sent bytes XBZRLE saves (1.0: tiny in-page writes)
    xbzrle_friendly: float = 0.7
    #: MiB of local disk a block migration copies before the memory
    disk_mb: float = 0.0


@dataclasses.dataclass(frozen=True)
class Prediction:
    converges: bool
    total_s: float
    downtime_ms: float
    rounds: int
    wire_mb: float
    post_copy: bool = False
    throttle_pct: int = 0
    why: str = ''
    #: seconds of a block migration's disk copy (included in ``total_s``)
    disk_s: float = 0.0
    #: share of CPU time the source's busy work (the guest's vCPUs among
    #: it) loses to the plan's software compressors (:func:`cpu_impact`)
    cpu_impact: float = 0.0

    def describe(self) -> str:
        disk = ' after a %.1f s disk copy' % self.disk_s if self.disk_s \
            else ''
        if not self.converges:
            return 'never converges%s (%s)' % (disk, self.why)
        how = ' via post-copy' if self.post_copy else ''
        thr = ' throttled to %d%%' % self.throttle_pct if self.throttle_pct \
            else ''
        return '%.1f s / %.0f ms%s%s%s' % (self.total_s, self.downtime_ms,
                                           how, thr, disk)


MAX_ROUNDS = 200

#: QEMU's ``throttle-trigger-threshold`` default: a sync period whose
#: newly dirtied bytes exceed this share of the bytes it transferred is a
#: "dirty rate high" period.
THROTTLE_TRIGGER = 0.5
#: QEMU raises (or starts) the throttle on every second such period.
THROTTLE_TRIGGER_COUNT = 2
#: QEMU checks the trigger at a bitmap sync at most once a second.
THROTTLE_PERIOD_S = 1.0
#: ``max-cpu-throttle`` default.
THROTTLE_MAX = 99
#: The tracker counts a pass as stalled unless it starts with clearly less
#: to re-send than every pass before it; the lab's records show passes
#: 9% smaller still counted as stalled, so "clearly" is taken as 20%.
STALL_SHRINK = 0.8


def xbzrle_wire(plan: datamodel.Plan, load: Workload,
                cal: datamodel.Calibration) -> float:
    """Wire bytes per re-sent page byte under XBZRLE.

    A page must still be in the cache to be sent as a delta, so a cache
    smaller than the working set (all of RAM when unknown) covers
    proportionally fewer pages; the rest go whole.
    """
    working = working_set(load)
    coverage = 1.0
    if plan.xbzrle_cache_mb and working > 0:
        coverage = min(1.0, plan.xbzrle_cache_mb / working)
    delta = max(cal.xbzrle_residue, 1.0 - load.xbzrle_friendly)
    return coverage * min(1.0, delta) + (1.0 - coverage)


#: Cores software compressors are assumed to get when nothing says how
#: busy the host is (no idle core measured and no busy core known).
MIN_COMPRESSOR_CORES = 0.5


def compressor_cores(want: float, idle_cores: float,
                     busy_cores: float) -> tuple[float, float]:
    """(cores the compressors get, share of CPU time the busy work loses).

    Compression threads first take the idle cores. What they want beyond
    those they share with the work already running -- the guests' vCPUs,
    the migrating guest's own among them, and both QEMUs' migration
    threads where they run here -- which the scheduler shares about in
    proportion to demand: ``extra`` cores wanted on ``busy`` busy cores
    get ``extra * busy / (busy + extra)`` of them, and the busy work
    keeps ``busy / (busy + extra)`` of its CPU time. So compression at 0%
    idle still gets a share (fewer bytes can still mean fewer passes),
    the share changes smoothly with the idle CPU measured (a few points
    of measuring noise move the prediction a little, not a decision
    across a threshold), and the cost to the guests is a number an
    operator can cap (``[qat_migration] max_guest_cpu_impact_pct``).

    With no busy core known (``busy_cores`` 0) the compressors get the
    idle cores alone, at least :data:`MIN_COMPRESSOR_CORES`.
    """
    want = max(0.0, want)
    idle = max(0.0, idle_cores)
    busy = max(0.0, busy_cores)
    if want <= idle:
        return want, 0.0
    if busy <= 0.0:
        return max(MIN_COMPRESSOR_CORES, idle), 0.0
    extra = want - idle
    return idle + extra * busy / (busy + extra), extra / (busy + extra)


def _compressor_demand(plan: datamodel.Plan, load: Workload,
                       link_mbps: float,
                       cal: datamodel.Calibration) -> tuple[float, float]:
    """(input MiB/s of one compressor core, cores the compressors want).

    They want what keeps the link full after compression, on at most one
    core per channel.
    """
    per_core = cal.compress_mbps if plan.method == 'zstd' else cal.zlib_mbps
    pages = link_mbps / max(load.compress_ratio, 1e-3)
    return per_core, min(max(1, plan.parallel_connections),
                         pages / per_core)


def cpu_impact(plan: datamodel.Plan, load: Workload, link_mbps: float,
               cal: datamodel.Calibration, idle_cores: float,
               busy_cores: float) -> float:
    """Share (0-1) of CPU time the source's busy work loses to ``plan``'s
    software compressors (:func:`compressor_cores`); 0 for every other
    method (QAT offloads, XBZRLE and plain copies run on one thread).
    """
    if plan.method not in ('zlib', 'zstd'):
        return 0.0
    _per_core, want = _compressor_demand(plan, load, link_mbps, cal)
    return compressor_cores(want, idle_cores, busy_cores)[1]


def rates(plan: datamodel.Plan, load: Workload, link_mbps: float,
          cal: datamodel.Calibration, idle_cores: float,
          busy_cores: float = 0.0) -> tuple[float, float, float]:
    """(pages/s for fresh pages, pages/s for re-sent pages, wire/page).

    Channels only add copy throughput while there are idle cores to run
    them; software compressors get the idle cores and a share of the
    busy ones (:func:`compressor_cores`); re-sent pages differ only for
    XBZRLE, whose cache turns them into deltas.
    """
    channels = max(1, plan.parallel_connections)
    copy_cap = cal.stream_mbps * min(channels, max(1.0, idle_cores))
    method = plan.method
    if method in ('zlib', 'zstd'):
        per_core, want = _compressor_demand(plan, load, link_mbps, cal)
        cores, _impact = compressor_cores(want, idle_cores, busy_cores)
        wire_per_page = load.compress_ratio
        rate = min(link_mbps / wire_per_page, per_core * cores, copy_cap)
        return rate, rate, wire_per_page
    if method in ('qatzip', 'mt'):
        wire_per_page = load.compress_ratio
        rate = min(link_mbps / wire_per_page, cal.qat_mbps * channels,
                   copy_cap)
        return rate, rate, wire_per_page
    fresh = min(link_mbps, copy_cap)
    if method == 'xbzrle':
        wire = xbzrle_wire(plan, load, cal)
        resend = min(link_mbps / max(wire, 1e-3), cal.xbzrle_mbps, copy_cap)
        return fresh, resend, 1.0
    return fresh, fresh, 1.0


def working_set(load: Workload) -> float:
    """The pages the guest keeps rewriting (MiB).

    The hint when given; otherwise the guest's non-zero pages, since a
    page the guest writes is no longer a zero page (only what the guest
    dirties within a second is counted when that is more).
    """
    if load.working_set_mb is not None:
        return max(0.0, min(load.working_set_mb, load.ram_mb))
    nonzero = load.ram_mb * (1.0 - load.zero_fraction)
    return max(0.0, min(load.ram_mb, max(nonzero, load.dirty_mbps)))


def dirtied(working: float, dirty_mbps: float, seconds: float) -> float:
    """Distinct MiB dirtied in ``seconds`` by ``dirty_mbps`` of writes.

    QEMU's dirty bitmap records a page once however often it is written
    between two syncs: writes spread over a working set ``W`` dirty
    ``W * (1 - exp(-rate * t / W))`` distinct pages, about ``rate * t``
    while that is small against ``W`` and never more than ``W``.
    """
    if working <= 0.0 or dirty_mbps <= 0.0 or seconds <= 0.0:
        return 0.0
    return working * -math.expm1(-dirty_mbps * seconds / working)


def next_throttle(plan: datamodel.Plan, throttle: int, high_periods: int,
                  dirty_mb: float, sent_mb: float) -> tuple[int, int]:
    """(throttle %, high periods) after a sync period, as QEMU 10 does it.

    A period that dirtied more than :data:`THROTTLE_TRIGGER` of the bytes
    it put on the wire counts as high (a period below it does not reset
    the count); every :data:`THROTTLE_TRIGGER_COUNT`-th high period starts
    the throttle at ``cpu-throttle-initial`` or adds
    ``cpu-throttle-increment`` (``cpu-throttle-tailslow`` off, QEMU's
    default), up to :data:`THROTTLE_MAX`.
    """
    if dirty_mb <= THROTTLE_TRIGGER * sent_mb:
        return throttle, high_periods
    high_periods += 1
    if high_periods < THROTTLE_TRIGGER_COUNT:
        return throttle, high_periods
    if throttle == 0:
        throttle = plan.throttle_initial or 0
    else:
        throttle += plan.throttle_increment or 10
    return min(THROTTLE_MAX, throttle), 0


def disk_copy_s(load: Workload, link_mbps: float) -> float:
    """Seconds a block migration copies the disks before the memory.

    The disk data crosses the link once, uncompressed. The guest's disk
    writes during the copy are copied as well, and the mirrors share the
    link with the memory rounds afterwards; how much the guest writes to
    its disks is not among the facts, so neither is counted.
    """
    if load.disk_mb <= 0.0 or link_mbps <= 0.0:
        return 0.0
    return load.disk_mb / link_mbps


def _downtime_ms(transfer_s: float, cal: datamodel.Calibration,
                 multifd: bool = False) -> float:
    # The pause QEMU causes: the last transfer plus the fixed switch-over,
    # and never less than the transfer with the overshoot of QEMU's own
    # estimate seen in the lab (device state, the final bitmap sync; for
    # multifd every channel's flush and sync). With the default margins, a
    # plan switching at its downtime_limit_ms is predicted at the
    # operator's target, which the headroom keeps (DOWNTIME_HEADROOM,
    # MULTIFD_DOWNTIME_HEADROOM).
    overshoot = (cal.multifd_downtime_overshoot if multifd
                 else cal.downtime_overshoot)
    return 1000.0 * max(transfer_s + cal.switchover_s,
                        transfer_s * (1.0 + overshoot))


def predict(plan: datamodel.Plan, load: Workload, link_mbps: float,
            idle_cores: float = 1.0,
            cal: datamodel.Calibration = datamodel.Calibration(),
            time_limit_s: float = 3600.0,
            busy_cores: float = 0.0,
            trace: Optional[list] = None) -> Prediction:
    """Predict ``plan`` for ``load`` over a ``link_mbps`` MiB/s link.

    QEMU switches over once what remains can be sent within
    ``plan.downtime_limit_ms`` (the limit it is given); the downtime
    reported is the pause that causes, with a margin
    (``cal.downtime_overshoot``), so it is not optimistic. A block
    migration's disk copy (:func:`disk_copy_s`) comes first and counts in
    the total time; ``time_limit_s`` bounds the memory rounds after it
    (whether the whole fits Nova's completion timeout is the caller's
    judgement, :func:`~.predictive.choose`).

    :param trace: if given, receives the predicted remaining data as
        ``(seconds, MiB)`` corners of a line: each pass starts with what
        the guest dirtied during the previous one and falls to nothing
        as it is sent (what ``nova-qat-migration timeline`` draws beside
        libvirt's ``memory_remaining``).
    """
    fresh_rate, resend_rate, wire_per_page = rates(plan, load, link_mbps,
                                                    cal, idle_cores,
                                                    busy_cores)
    xbzrle = plan.method == 'xbzrle'
    # The migrating guest's vCPUs are among the busy work the compressors
    # share cores with: they run (and dirty pages) that much slower.
    impact = cpu_impact(plan, load, link_mbps, cal, idle_cores, busy_cores)
    slowed = 1.0 - impact
    limit_s = plan.downtime_limit_ms / 1000.0
    working = working_set(load)
    nonzero = load.ram_mb * (1.0 - load.zero_fraction)
    zero = load.ram_mb - nonzero

    # A block migration's disks first: QEMU's memory migration starts
    # once the mirrors are in sync.
    disk_s = disk_copy_s(load, link_mbps)
    # Round 0: every page once. Zero pages cost a read (QEMU checks every
    # page for zeroes) and a header on the wire.
    elapsed = cal.setup_s + disk_s + nonzero / fresh_rate + \
        zero / cal.zero_mbps + zero * cal.zero_cost / link_mbps
    wire = nonzero * wire_per_page + zero * cal.zero_cost
    disk_wire = max(0.0, load.disk_mb)
    round_time = elapsed - cal.setup_s - disk_s
    if trace is not None:
        start = cal.setup_s + disk_s
        if disk_s:
            trace += [(cal.setup_s, load.disk_mb), (start, 0.0)]
        trace.append((start, load.ram_mb))
    round_wire = wire
    xbz_wire = xbzrle_wire(plan, load, cal) if xbzrle else wire_per_page
    throttle = 0
    high_periods = 0
    period_dirty = period_wire = period_s = 0.0
    # The first pass never sets a new low the tracker can see again.
    stalled = 1
    lowest_start = float('inf')
    rounds = 1
    while rounds < MAX_ROUNDS:
        dirty = load.dirty_mbps * (1.0 - throttle / 100.0) * slowed
        remaining = dirtied(working, dirty, round_time)
        if trace is not None:
            trace += [(elapsed, 0.0), (elapsed, remaining)]
        # XBZRLE caches a page only when it is first re-sent (QEMU starts
        # XBZRLE after the first pass), so the first re-send is of whole
        # pages; deltas only from the second.
        rate, per_page = (resend_rate, xbz_wire) if rounds >= 2 or \
            not xbzrle else (fresh_rate, wire_per_page)
        if remaining <= 0.0 or remaining / rate <= limit_s:
            transfer = remaining / rate
            if trace is not None:
                trace.append((elapsed + transfer + cal.switchover_s, 0.0))
            return Prediction(True, elapsed + transfer + cal.switchover_s,
                              _downtime_ms(transfer, cal, plan.multifd),
                              rounds,
                              wire + remaining * per_page + disk_wire,
                              throttle_pct=throttle, disk_s=disk_s,
                              cpu_impact=impact)
        if rounds >= 2 and remaining <= lowest_start * STALL_SHRINK:
            stalled = 0
        elif rounds >= 2:
            stalled += 1
        lowest_start = min(lowest_start, remaining)
        if plan.post_copy and plan.post_copy_after_stalled and \
                stalled >= plan.post_copy_after_stalled:
            # Post-copy: the guest runs on the destination at once; the
            # rest arrives once, pushed in the background or faulted in.
            rest = remaining / fresh_rate
            if trace is not None:
                trace += [(elapsed + cal.switchover_s, remaining),
                          (elapsed + cal.switchover_s + rest, 0.0)]
            return Prediction(True, elapsed + cal.switchover_s + rest,
                              cal.switchover_s * 1000.0, rounds,
                              wire + remaining * wire_per_page + disk_wire,
                              post_copy=True, throttle_pct=throttle,
                              disk_s=disk_s, cpu_impact=impact)
        # Auto-converge, checked at a bitmap sync at least a second after
        # the last check (see :func:`next_throttle`).
        period_dirty += remaining
        period_wire += round_wire
        period_s += round_time
        if plan.throttle_initial is not None and \
                period_s >= THROTTLE_PERIOD_S:
            throttle, high_periods = next_throttle(
                plan, throttle, high_periods, period_dirty, period_wire)
            period_dirty = period_wire = period_s = 0.0
        round_time = remaining / rate
        round_wire = remaining * per_page
        elapsed += round_time
        wire += round_wire
        rounds += 1
        if elapsed - disk_s > time_limit_s:
            break
    return Prediction(False, float('inf'), float('inf'), rounds,
                      wire + disk_wire, throttle_pct=throttle, disk_s=disk_s,
                      cpu_impact=impact,
                      why='%.0f MiB/s dirtied vs %.0f MiB/s sent'
                      % (load.dirty_mbps * (1 - throttle / 100.0) * slowed,
                         resend_rate))
