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
"""``adaptive``: choose the plan from the host's resources and the instance.

The strategy of the Inspur/Intel deployment, done per instance and with a
reason for every choice:

* QAT: page compression offloaded to QuickAssist (multifd ``qatzip``) when
  the host has a healthy, free QAT lease and both ends can run it — it
  costs the source almost no CPU;
* idle CPU: software multifd compression (zstd, else zlib) with one channel
  per idle core, when it raises the effective throughput over the link;
* spare memory: an XBZRLE cache for busy guests that rewrite small parts of
  pages (sized from the working set and the memory above the headroom);
* a guest that will not converge: stepped auto-converge throttling, from
  the schedule step that closes the gap between dirty rate and link;
* post-copy only where the operator and the instance permit it.

History of the instance's last migration refines the guesses: an
incompressible guest is not compressed again, a guest whose XBZRLE hit
rate was poor is not given a cache again.

Concurrent migrations from the same source share it: every decision uses
this migration's share (``facts.in_flight``, see :mod:`.common`) -- its
part of the link, the idle cores and spare memory the others have not
taken, the QAT leases they do not hold.
"""

from __future__ import annotations

import math
from typing import Optional

from nova_qat_migration import datamodel
from nova_qat_migration.policy import base
from nova_qat_migration.policy import common
from nova_qat_migration.policy import predictive

#: zstd/zlib level-1 input throughput of one core (MiB/s): a conservative
#: figure for server cores; multifd runs one compressor per channel.
SW_COMPRESS_MBPS_PER_CORE = 350.0
#: Assumed compressed/original ratio of guest pages before any history.
DEFAULT_RATIO = 0.5
#: A guest with history above this ratio is treated as incompressible.
INCOMPRESSIBLE_RATIO = 0.85
#: XBZRLE hit rate below which a cache is not worth its memory.
POOR_XBZRLE_HIT = 0.3
#: Fraction of re-dirtied bytes XBZRLE still sends (small in-page writes).
XBZRLE_RESIDUE = 0.3
#: A guest dirtying less than this share of the link counts as quiet.
QUIET_SHARE = 0.1
#: Links at or above this (MiB/s, ~2.5 Gbit/s) outrun one migration stream.
FAST_LINK_MBPS = 300.0
#: Pre-copy converges when the dirty rate stays under this share of the
#: effective throughput.
CONVERGE_SHARE = 0.8


class AdaptivePolicy(base.Policy):
    name = 'adaptive'

    def plan(self, facts: datamodel.Facts) -> datamodel.Plan:
        plan = self._plan(facts)
        sharing = common.sharing_reason(facts)
        return plan.because(sharing) if sharing else plan

    def _plan(self, facts: datamodel.Facts) -> datamodel.Plan:
        lim = common.limits(self.conf, facts)
        if lim.forced_method:
            return self._converge(facts, lim, self._forced(facts, lim))
        rule_plan = self._converge(facts, lim, self._choose(facts, lim))
        if not self.conf.qat_migration.adaptive_model:
            return rule_plan
        notes: list = []
        candidates = self._candidates(facts, lim, notes)
        picked = predictive.choose(self.conf, facts, lim, candidates)
        if picked is None:
            return rule_plan.because(
                'model: no candidate converges within %d ms; rule-based '
                'plan kept' % lim.max_downtime_ms)
        best, prediction, scored = picked
        if self._dirty_rate(facts) is None:
            notes.append('dirty rate unknown: predicted as an idle guest')
        return best.because(predictive.explain(best, prediction, scored),
                            *notes)

    def _candidates(self, facts: datamodel.Facts, lim: common.Limits,
                    notes: list) -> list:
        """Every plan the levers allow here, for the model to score."""
        group = self.conf.qat_migration
        multifd_ok = not facts.nova.tunnelled
        idle = self._idle_cores(facts)
        channel_choices = sorted({n for n in (2, 4, lim.max_channels)
                                  if 2 <= n <= lim.max_channels})
        if lim.forced_channels:
            channel_choices = [n for n in (lim.max_channels,) if n >= 2]
        incompressible = self._incompressible(facts)
        fallbacks = self._software_fallbacks(facts, lim)
        shapes: list = [dict(method='none')]
        if multifd_ok:
            shapes += [dict(method='none', parallel_connections=n)
                       for n in channel_choices]
        idle_pct = common.cpu_idle_pct(facts)
        cpu_ok = idle_pct >= group.cpu_idle_threshold
        for method in ('zstd', 'zlib'):
            if not self._sendable(facts, lim, method) or not multifd_ok:
                continue
            if not cpu_ok:
                notes.append('%s: %.0f%% CPU idle < %d%%'
                             % (method, idle_pct,
                                group.cpu_idle_threshold))
                continue
            if incompressible:
                continue
            shapes += [dict(method=method, parallel_connections=n,
                            level=common.default_level(self.conf, method))
                       for n in channel_choices if n <= max(2, idle)]
        if (common.qat_available(facts) and facts.passthrough_allowed and
                self._sendable(facts, lim, 'qatzip') and multifd_ok and
                not incompressible):
            shapes += [dict(method='qatzip', parallel_connections=n,
                            level=group.qatzip_level, qat_lease=True,
                            fallbacks=fallbacks)
                       for n in channel_choices]
        elif 'qatzip' in lim.methods and facts.qat.endpoints:
            notes.append(self._why_not_qat(facts, lim))
        if (group.legacy_mt_uses_qat and common.qat_available(facts) and
                self._sendable(facts, lim, 'mt') and not incompressible):
            threads = min(8, max(2, facts.qat.endpoints * 2))
            shapes.append(dict(method='mt', level=group.mt_level,
                               mt_threads=threads,
                               mt_dthreads=max(1, threads // 2),
                               qat_lease=True, fallbacks=fallbacks))
        if 'xbzrle' in lim.methods:
            cache = common.xbzrle_cache_mb(self.conf, facts)
            if cache:
                shapes.append(dict(
                    method='xbzrle', xbzrle_cache_mb=cache,
                    xbzrle_cache_max_mb=common.xbzrle_cache_max_mb(
                        self.conf, facts)))
            else:
                notes.append('xbzrle: not enough spare memory for a cache')
        schedule = list(group.throttle_schedule)
        plans = []
        for shape in shapes:
            plans.append(self._base(facts, lim, **shape))
            if lim.throttle:
                for i, start in enumerate(schedule[:-1] or schedule):
                    step = (schedule[i + 1] - start if i + 1 < len(schedule)
                            else group.auto_converge_increment)
                    plans.append(self._base(facts, lim,
                                            throttle_initial=start,
                                            throttle_increment=step,
                                            **shape))
            multifd = shape.get('parallel_connections', 1) > 1
            if lim.post_copy and facts.hypervisor.postcopy and (
                    not multifd or (facts.hypervisor.postcopy_with_multifd
                                    and facts.destination
                                    .postcopy_with_multifd)):
                plans.append(self._base(facts, lim, post_copy=True, **shape))
        return plans

    # -- helpers ---------------------------------------------------------

    def _sendable(self, facts: datamodel.Facts, lim: common.Limits,
                  method: str) -> bool:
        return (method in lim.methods and facts.can_send(method)
                and facts.destination.accepts(method))

    def _ratio(self, facts: datamodel.Facts) -> float:
        ratio = self._measured_ratio(facts)
        if ratio is not None:
            return max(0.05, min(1.0, ratio))
        return DEFAULT_RATIO

    def _measured_ratio(self, facts: datamodel.Facts) -> Optional[float]:
        """Compressibility from a page sample, else from history."""
        if facts.instance.compress_ratio is not None:
            return facts.instance.compress_ratio
        hist = facts.history
        if hist.compression_ratio is not None and \
                hist.method in datamodel.MULTIFD_METHODS:
            return hist.compression_ratio
        return None

    def _incompressible(self, facts: datamodel.Facts) -> bool:
        ratio = self._measured_ratio(facts)
        return ratio is not None and ratio > INCOMPRESSIBLE_RATIO

    def _dirty_rate(self, facts: datamodel.Facts) -> Optional[float]:
        if facts.instance.paused:
            return 0.0
        if facts.instance.dirty_rate_mbps is not None:
            return facts.instance.dirty_rate_mbps
        return facts.history.dirty_rate_mbps

    def _idle_cores(self, facts: datamodel.Facts) -> int:
        return int(common.idle_cores(facts))

    def _base(self, facts: datamodel.Facts, lim: common.Limits,
              **fields) -> datamodel.Plan:
        group = self.conf.qat_migration
        return datamodel.Plan(
            policy=self.name, max_downtime_ms=lim.max_downtime_ms,
            post_copy_after_stalled=group.post_copy_after_stalled,
            progress_timeout_s=group.progress_timeout,
            bandwidth_mbps=facts.nova.bandwidth_mbps, **fields)

    def _software_fallbacks(self, facts: datamodel.Facts,
                            lim: common.Limits) -> tuple:
        threshold = self.conf.qat_migration.cpu_idle_threshold
        if common.cpu_idle_pct(facts) < threshold:
            return ()
        return tuple((m, common.default_level(self.conf, m))
                     for m in ('zstd', 'zlib') if m in lim.methods)

    # -- choosing ----------------------------------------------------------

    def _forced(self, facts: datamodel.Facts,
                lim: common.Limits) -> datamodel.Plan:
        method = lim.forced_method
        reasons = ['method %s forced by qat_migration:method' % method]
        if method not in lim.methods:
            reasons.append('%s is not in [qat_migration] allowed_methods: '
                           'using none' % method)
            method = 'none'
        # A hint narrows what the operator permits, never widens it.
        channels = (min(lim.forced_channels, lim.max_channels)
                    if lim.forced_channels else
                    min(lim.max_channels, 4)
                    if method in datamodel.MULTIFD_METHODS else 1)
        level = (lim.forced_level if lim.forced_level is not None
                 else common.default_level(self.conf, method))
        fields: dict = {}
        if method == 'xbzrle':
            fields['xbzrle_cache_mb'] = (common.xbzrle_cache_mb(
                self.conf, facts) or self.conf.qat_migration
                .xbzrle_cache_min_mb)
            fields['xbzrle_cache_max_mb'] = common.xbzrle_cache_max_mb(
                self.conf, facts)
        return self._base(facts, lim, method=method, level=level,
                          parallel_connections=channels,
                          # mt only runs on QAT in a vendor build.
                          qat_lease=(method == 'qatzip' or (
                              method == 'mt' and
                              self.conf.qat_migration.legacy_mt_uses_qat))
                          and common.qat_available(facts),
                          fallbacks=self._software_fallbacks(facts, lim),
                          reasons=tuple(reasons), **fields)

    def _choose(self, facts: datamodel.Facts,
                lim: common.Limits) -> datamodel.Plan:
        group = self.conf.qat_migration
        link = common.link_mbps(facts)
        dirty = self._dirty_rate(facts)
        hist = facts.history
        incompressible = self._incompressible(facts)
        idle = self._idle_cores(facts)
        fallbacks = self._software_fallbacks(facts, lim)
        reasons = []
        if incompressible:
            reasons.append('pages compress to %.2f: incompressible'
                           % self._measured_ratio(facts))

        # 1. QAT offload.
        if not incompressible and common.qat_available(facts) and \
                self._sendable(facts, lim, 'qatzip') and \
                facts.passthrough_allowed:
            channels = min(lim.max_channels, max(2, facts.qat.endpoints, 4))
            return self._base(
                facts, lim, method='qatzip',
                level=group.qatzip_level, parallel_connections=channels,
                qat_lease=True, fallbacks=fallbacks,
                reasons=tuple(reasons) + (
                    'QAT: %d healthy endpoint(s), a lease free, qatzip on '
                    'both ends: compression offloaded, %d channels'
                    % (facts.qat.endpoints, channels),))
        if (not incompressible and group.legacy_mt_uses_qat and
                common.qat_available(facts) and
                self._sendable(facts, lim, 'mt')):
            threads = min(8, max(2, facts.qat.endpoints * 2))
            return self._base(
                facts, lim, method='mt', level=group.mt_level,
                mt_threads=threads, mt_dthreads=max(1, threads // 2),
                qat_lease=True, fallbacks=fallbacks,
                reasons=tuple(reasons) + (
                    'QAT through the legacy mt path ([qat_migration] '
                    'legacy_mt_uses_qat): %d compression threads' % threads,))
        if 'qatzip' in lim.methods and facts.qat.endpoints and \
                not incompressible:
            reasons.append(self._why_not_qat(facts, lim))

        busy = dirty is not None and dirty > QUIET_SHARE * link
        # 2. XBZRLE for busy guests when memory is spare.
        cache = (common.xbzrle_cache_mb(self.conf, facts)
                 if 'xbzrle' in lim.methods else None)
        xbzrle_poor = (hist.xbzrle_hit_ratio is not None and
                       hist.xbzrle_hit_ratio < POOR_XBZRLE_HIT)
        prefer_compression = (hist.compression_ratio is not None and
                              hist.method in datamodel.MULTIFD_METHODS and
                              not incompressible and hist.converged)
        if busy and cache and not xbzrle_poor and not prefer_compression:
            return self._base(
                facts, lim, method='xbzrle', xbzrle_cache_mb=cache,
                xbzrle_cache_max_mb=common.xbzrle_cache_max_mb(self.conf,
                                                               facts),
                reasons=tuple(reasons) + (
                    'busy guest (dirty %.0f MiB/s vs link %.0f MiB/s) and '
                    '%d MiB spare above the headroom: XBZRLE cache %d MiB'
                    % (dirty, link, common.spare_mb(self.conf, facts),
                       cache),))
        if busy and xbzrle_poor:
            reasons.append('XBZRLE hit rate was %.0f%% last time: no cache'
                           % (100 * hist.xbzrle_hit_ratio))
        elif busy and not cache and 'xbzrle' in lim.methods:
            reasons.append('not enough spare memory for an XBZRLE cache')

        # 3. Software multifd compression on idle CPUs.
        software = [m for m in ('zstd', 'zlib')
                    if self._sendable(facts, lim, m)]
        idle_pct = common.cpu_idle_pct(facts)
        cpu_ok = idle_pct >= group.cpu_idle_threshold
        if software and cpu_ok and not incompressible:
            channels = min(lim.max_channels, max(2, idle))
            capacity = channels * SW_COMPRESS_MBPS_PER_CORE
            ratio = self._ratio(facts)
            effective = min(capacity, link / ratio)
            if effective > 1.1 * link or busy:
                method = software[0]
                return self._base(
                    facts, lim, method=method,
                    level=common.default_level(self.conf, method),
                    parallel_connections=channels,
                    fallbacks=tuple(fallbacks[1:]),
                    reasons=tuple(reasons) + (
                        '%.0f%% CPU idle (>= %d%%): %s multifd x%d, about '
                        '%.0f MiB/s of pages over a %.0f MiB/s link'
                        % (idle_pct, group.cpu_idle_threshold,
                           method, channels, effective, link),))
            reasons.append('compression would not beat the %.0f MiB/s link '
                           'with %d idle core(s)' % (link, idle))
        elif software and not cpu_ok:
            reasons.append('%.0f%% CPU idle < %d%%: no software compression'
                           % (idle_pct, group.cpu_idle_threshold))
        elif not software and not incompressible:
            reasons.append('no software compression method both ends run')

        # 4. Plain multifd on fast links, else plain pre-copy.
        if link >= FAST_LINK_MBPS and facts.host.cpus > 1 and \
                facts.destination.accepts('none') and \
                not facts.nova.tunnelled:
            channels = min(lim.max_channels, max(2, min(idle, 4)))
            return self._base(
                facts, lim, method='none', parallel_connections=channels,
                reasons=tuple(reasons) + (
                    'fast link (%.0f MiB/s): plain multifd x%d'
                    % (link, channels),))
        return self._base(facts, lim, method='none',
                          reasons=tuple(reasons) + ('plain pre-copy',))

    def _why_not_qat(self, facts: datamodel.Facts, lim: common.Limits) -> str:
        if self._incompressible(facts):
            return ('QAT: pages compress to %.2f: incompressible'
                    % self._measured_ratio(facts))
        if not common.qat_available(facts):
            return 'QAT: no free lease (%d endpoint(s) busy or reserved ' \
                   'elsewhere): software path' % facts.qat.endpoints
        if not facts.passthrough_allowed:
            return ('QAT: qatzip needs [qat_migration] '
                    'qemu_monitor_passthrough: software path')
        if not facts.hypervisor.accepts('qatzip'):
            return 'QAT: this QEMU has no qatzip: software path'
        return 'QAT: the destination cannot decode qatzip: software path'

    # -- convergence -------------------------------------------------------

    def _throughput(self, facts: datamodel.Facts,
                    plan: datamodel.Plan) -> float:
        """Guest MiB/s of pages the plan moves per second (rough)."""
        link = common.link_mbps(facts)
        if plan.method in ('zlib', 'zstd'):
            return min(plan.parallel_connections * SW_COMPRESS_MBPS_PER_CORE,
                       link / self._ratio(facts))
        if plan.method in ('qatzip', 'mt'):
            return link / self._ratio(facts)
        return link

    def _converge(self, facts: datamodel.Facts, lim: common.Limits,
                  plan: datamodel.Plan) -> datamodel.Plan:
        dirty = self._dirty_rate(facts)
        hist_failed = facts.history.converged is False
        if dirty is None and not hist_failed:
            return plan.because('dirty rate unknown: no throttling planned')
        dirty = dirty or 0.0
        effective_dirty = dirty * (XBZRLE_RESIDUE if plan.method == 'xbzrle'
                                   else 1.0)
        throughput = self._throughput(facts, plan)
        if effective_dirty < CONVERGE_SHARE * throughput and not hist_failed:
            return plan.because(
                'converges: %.0f MiB/s dirtied vs %.0f MiB/s moved'
                % (effective_dirty, throughput))
        why = ('will not converge: %.0f MiB/s dirtied vs %.0f MiB/s moved'
               % (effective_dirty, throughput) if not hist_failed or dirty
               else 'did not converge last time')
        changes: dict = {}
        reasons = [why]
        if lim.throttle:
            schedule = list(self.conf.qat_migration.throttle_schedule)
            needed = 100.0 * (1.0 - CONVERGE_SHARE * throughput /
                              max(effective_dirty, 1e-6))
            start = next((s for s in schedule if s >= needed), schedule[-1])
            idx = schedule.index(start)
            increment = (schedule[idx + 1] - start if idx + 1 < len(schedule)
                         else max(1, schedule[-1] - schedule[-2])
                         if len(schedule) > 1 else 10)
            changes.update(throttle_initial=start,
                           throttle_increment=max(1, increment))
            reasons.append('stepped auto-converge from %d%% (+%d%%), about '
                           '%d%% needed' % (start, increment,
                                            max(0, math.ceil(needed))))
        if lim.post_copy:
            if plan.multifd and not (
                    facts.hypervisor.postcopy_with_multifd and
                    facts.destination.postcopy_with_multifd):
                if not lim.throttle:
                    changes.update(method='none', level=None,
                                   parallel_connections=1, fallbacks=())
                    reasons.append('post-copy is the only way to finish and '
                                   'cannot run with multifd here: single '
                                   'stream')
            changes['post_copy'] = True
            reasons.append('post-copy permitted after %d stalled iterations'
                           % plan.post_copy_after_stalled)
        if not lim.throttle and not lim.post_copy:
            reasons.append('neither throttling nor post-copy permitted: '
                           'the progress timeout will abort if it stalls')
        return plan.because(*reasons, **changes)
