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

* round 0 sends all of RAM; later rounds send what the guest dirtied
  meanwhile (never more than its writable working set);
* a round's rate is the smallest of the link (after the compression ratio
  or XBZRLE's delta savings), the compressors (channels x per-core
  throughput, or QAT) and the per-stream copy limit;
* zero pages cost almost nothing on the wire;
* auto-converge throttles the dirty rate once rounds stop shrinking,
  starting at ``throttle_initial`` and growing by ``throttle_increment``
  per round, as QEMU does;
* pre-copy completes when the rest fits in the downtime; post-copy, when
  permitted, finishes after ``post_copy_after_stalled`` stalled rounds by
  sending the rest once.

All rates are MiB/s of guest pages unless named ``wire``. Pure Python and
cheap (a few microseconds per candidate) so every candidate can be scored.
"""

from __future__ import annotations

import dataclasses
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

    def describe(self) -> str:
        if not self.converges:
            return 'never converges (%s)' % self.why
        how = ' via post-copy' if self.post_copy else ''
        thr = ' throttled to %d%%' % self.throttle_pct if self.throttle_pct \
            else ''
        return '%.1f s / %.0f ms%s%s' % (self.total_s, self.downtime_ms,
                                         how, thr)


MAX_ROUNDS = 200


def xbzrle_wire(plan: datamodel.Plan, load: Workload,
                cal: datamodel.Calibration) -> float:
    """Wire bytes per re-sent page byte under XBZRLE.

    A page must still be in the cache to be sent as a delta, so a cache
    smaller than the working set (all of RAM when unknown) covers
    proportionally fewer pages; the rest go whole.
    """
    working = load.working_set_mb or load.ram_mb
    coverage = 1.0
    if plan.xbzrle_cache_mb and working > 0:
        coverage = min(1.0, plan.xbzrle_cache_mb / working)
    delta = max(cal.xbzrle_residue, 1.0 - load.xbzrle_friendly)
    return coverage * min(1.0, delta) + (1.0 - coverage)


def rates(plan: datamodel.Plan, load: Workload, link_mbps: float,
          cal: datamodel.Calibration,
          idle_cores: float) -> tuple[float, float, float]:
    """(pages/s for fresh pages, pages/s for re-sent pages, wire/page).

    Channels only add copy throughput while there are idle cores to run
    them; re-sent pages differ only for XBZRLE, whose cache turns them
    into deltas.
    """
    channels = max(1, plan.parallel_connections)
    copy_cap = cal.stream_mbps * min(channels, max(1.0, idle_cores))
    method = plan.method
    if method in ('zlib', 'zstd'):
        cores = max(0.5, min(channels, idle_cores))
        per_core = cal.compress_mbps if method == 'zstd' else cal.zlib_mbps
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


def predict(plan: datamodel.Plan, load: Workload, link_mbps: float,
            idle_cores: float = 1.0,
            cal: datamodel.Calibration = datamodel.Calibration(),
            time_limit_s: float = 3600.0) -> Prediction:
    """Predict ``plan`` for ``load`` over a ``link_mbps`` MiB/s link."""
    fresh_rate, resend_rate, wire_per_page = rates(plan, load, link_mbps,
                                                    cal, idle_cores)
    downtime_s = plan.max_downtime_ms / 1000.0
    working = load.working_set_mb
    if working is None:
        working = load.ram_mb
    working = max(0.0, min(working, load.ram_mb))
    nonzero = load.ram_mb * (1.0 - load.zero_fraction)
    zero = load.ram_mb - nonzero

    # Round 0: every page once (zero pages nearly free).
    elapsed = cal.setup_s + nonzero / fresh_rate + \
        zero * cal.zero_cost / link_mbps
    wire = nonzero * wire_per_page + zero * cal.zero_cost
    throttle = 0
    stalled = 0
    prev = float('inf')
    round_time = elapsed
    rounds = 1
    xbz_wire = xbzrle_wire(plan, load, cal) if plan.method == 'xbzrle' \
        else wire_per_page
    while rounds < MAX_ROUNDS:
        dirty = load.dirty_mbps * (1.0 - throttle / 100.0)
        remaining = min(working, dirty * round_time)
        if remaining / resend_rate + cal.switchover_s <= downtime_s or \
                remaining <= 0.0:
            down = remaining / resend_rate + cal.switchover_s
            return Prediction(True, elapsed + down, down * 1000.0, rounds,
                              wire + remaining * xbz_wire,
                              throttle_pct=throttle)
        if remaining >= prev * 0.95:
            stalled += 1
        else:
            stalled = 0
        if plan.post_copy and plan.post_copy_after_stalled and \
                stalled >= plan.post_copy_after_stalled:
            # Post-copy: the guest runs on the destination at once; the
            # rest arrives once, on demand or in the background.
            rest = remaining / fresh_rate
            return Prediction(True, elapsed + cal.switchover_s + rest,
                              cal.switchover_s * 1000.0, rounds,
                              wire + remaining * wire_per_page,
                              post_copy=True, throttle_pct=throttle)
        # QEMU throttles when a round dirtied more than half of what it
        # sent, and steps the throttle up each further round.
        if plan.throttle_initial is not None and \
                dirty * round_time > 0.5 * resend_rate * round_time:
            if throttle == 0:
                throttle = plan.throttle_initial
            else:
                throttle = min(99, throttle + (plan.throttle_increment or 10))
        prev = remaining
        round_time = remaining / resend_rate
        elapsed += round_time
        wire += remaining * xbz_wire
        rounds += 1
        if elapsed > time_limit_s:
            break
    return Prediction(False, float('inf'), float('inf'), rounds, wire,
                      throttle_pct=throttle,
                      why='%.0f MiB/s dirtied vs %.0f MiB/s sent'
                      % (load.dirty_mbps * (1 - throttle / 100.0),
                         resend_rate))
