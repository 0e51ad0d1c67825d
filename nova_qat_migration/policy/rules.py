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
"""Rank candidate plans by rules of thumb instead of the model.

Used when ``[qat_migration_adaptive] adaptive_model`` is off, and when the
model finds no candidate that converges within the limits (then a plan must
still be chosen, and these rules pick the one most likely to finish).
The rules choose among the same candidates (:mod:`.candidates`) with the
same machine constants (:class:`~.datamodel.Calibration`), in the order the
host's resources suggest:

1. QAT: page compression offloaded to QuickAssist when a lease is free
   and both ends run it -- it costs the source almost no CPU;
2. spare memory: an XBZRLE cache for a busy guest, unless its hit rate
   was poor last time or compression worked last time;
3. idle CPU: software multifd compression, when it moves pages faster
   than the link would (or the guest is busy);
4. a fast link: plain multifd; else plain pre-copy.

Then, for a guest that will not converge with that shape, the throttle
step that closes the gap between its dirty rate and what the shape moves,
and post-copy as the backstop where permitted.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

from nova_qat_migration import datamodel
from nova_qat_migration.policy import candidates as cands_mod
from nova_qat_migration.policy import common
from nova_qat_migration.policy import model

#: A guest dirtying less than this share of the link counts as quiet.
QUIET_SHARE = 0.1
#: Links at or above this (MiB/s, ~2.5 Gbit/s) outrun one migration stream.
FAST_LINK_MBPS = 300.0
#: Pre-copy converges when the dirty rate stays under this share of what
#: the plan moves per second.
CONVERGE_SHARE = 0.8
#: XBZRLE hit rate below which a cache is not worth its memory.
POOR_XBZRLE_HIT = 0.3
#: Software compression is worth its CPU when it moves pages this much
#: faster than the link alone.
BEAT_LINK = 1.1


def _same(plan: datamodel.Plan) -> datamodel.Plan:
    return dataclasses.replace(plan, reasons=())


def _find(plans: Any, template: datamodel.Plan,
          **changes: Any) -> Optional[datamodel.Plan]:
    """The candidate equal to ``template`` with ``changes`` (reasons
    aside), or None.
    """
    want = _same(dataclasses.replace(template, **changes))
    return next((p for p in plans if _same(p) == want), None)


def _shape(plans: list, **fields: Any) -> Optional[datamodel.Plan]:
    """The first shape whose fields equal ``fields``."""
    return next((p for p in plans
                 if all(getattr(p, k) == v for k, v in fields.items())),
                None)


def moved_mbps(d: common.Derived, plan: datamodel.Plan,
               load: model.Workload, cal: datamodel.Calibration) -> float:
    """Pages per second (MiB/s) the plan re-sends once pre-copy iterates
    (XBZRLE's deltas included).

    :param d: the facts' derived quantities (:func:`.common.derive`).
    """
    _fresh, resend, _wire = model.rates(plan, load, d.link_mbps, cal,
                                        d.idle_cores, d.busy_cores)
    return resend


def choose(conf: Any, facts: datamodel.Facts, lim: common.Limits,
           cands: cands_mod.Candidates, load: model.Workload,
           cal: datamodel.Calibration,
           derived: Optional[common.Derived] = None) -> datamodel.Plan:
    """The rules' plan among ``cands``.

    :param derived: :func:`.common.derive` of ``facts`` (worked out here
        when None): the rules read the link, cores, memory and pages from
        it, once.
    """
    d = derived if derived is not None else common.derive(conf, facts)
    shape = (_forced_shape(facts, d, lim, cands.shapes) if cands.forced
             else _pick_shape(conf, facts, d, lim, cands, load, cal))
    return _converge(conf, facts, d, lim, cands, shape, load, cal)


def _forced_shape(facts: datamodel.Facts, d: common.Derived,
                  lim: common.Limits, shapes: list) -> datamodel.Plan:
    """The shape of a method a hint fixed.

    A flavor's method leaves one shape; an image's leaves that method's
    shapes the operator's gates allow, of which the rules take the
    channel count they would give the method.
    """
    if len(shapes) == 1:
        return shapes[0]
    method = shapes[0].method
    if method == 'qatzip':
        want = cands_mod.qat_channels(facts, lim)
    elif method in ('zstd', 'zlib'):
        want = cands_mod.software_channels(facts, lim)
    elif (d.link_mbps >= FAST_LINK_MBPS and
          facts.host.cpus > 1):
        want = cands_mod.plain_channels(facts, lim)
    else:
        want = 1
    return next((p for p in shapes if p.parallel_connections == want),
                shapes[0])


def _pick_shape(conf: Any, facts: datamodel.Facts, d: common.Derived,
                lim: common.Limits, cands: cands_mod.Candidates,
                load: model.Workload,
                cal: datamodel.Calibration) -> datamodel.Plan:
    group = conf.qat_migration
    shapes = cands.shapes
    link = d.link_mbps
    dirty = d.dirty_rate
    hist = facts.history
    squeezed = d.incompressible
    reasons = []
    if squeezed:
        reasons.append('pages compress to %.2f: incompressible'
                       % d.measured_ratio)

    # 1. QAT offload.
    channels = cands_mod.qat_channels(facts, lim)
    qat = _shape(shapes, method='qatzip', parallel_connections=channels)
    if qat:
        return qat.because(*reasons, 'QAT: %d healthy endpoint(s), a lease '
                           'free, qatzip on both ends: compression '
                           'offloaded, %d channels'
                           % (facts.qat.endpoints, channels))
    mt = _shape(shapes, method='mt')
    if mt:
        return mt.because(*reasons, 'QAT through the legacy mt path '
                          '([qat_migration] legacy_mt_uses_qat): %d '
                          'compression threads' % mt.mt_threads)
    if 'qatzip' in lim.methods and facts.qat.endpoints and not squeezed:
        reasons.append(cands_mod.why_not_qat(facts, lim))

    # 2. XBZRLE for busy guests when memory is spare.
    busy = dirty is not None and dirty > QUIET_SHARE * link
    xbzrle = _shape(shapes, method='xbzrle')
    poor = (hist.xbzrle_hit_ratio is not None and
            hist.xbzrle_hit_ratio < POOR_XBZRLE_HIT)
    compressed_fine = (hist.compression_ratio is not None and
                       hist.method in datamodel.MULTIFD_METHODS and
                       not squeezed and hist.converged)
    if busy and xbzrle and not poor and not compressed_fine:
        return xbzrle.because(*reasons, 'busy guest (dirty %.0f MiB/s vs '
                              'link %.0f MiB/s) and %d MiB spare above the '
                              'headroom: XBZRLE cache %d MiB'
                              % (dirty, link, d.spare_mb,
                                 xbzrle.xbzrle_cache_mb))
    if busy and poor:
        reasons.append('XBZRLE hit rate was %.0f%% last time: no cache'
                       % (100 * hist.xbzrle_hit_ratio))
    elif busy and not xbzrle and 'xbzrle' in lim.methods:
        reasons.append('not enough spare memory for an XBZRLE cache')

    # 3. Software multifd compression on idle CPUs.
    software = [m for m in ('zstd', 'zlib')
                if cands_mod.sendable(facts, lim, m)]
    channels = cands_mod.software_channels(facts, lim)
    compressed = next((p for p in (
        _shape(shapes, method=m, parallel_connections=channels)
        for m in software) if p), None)
    idle_pct = d.cpu_idle_pct
    if compressed:
        effective = moved_mbps(d, compressed, load, cal)
        if effective > BEAT_LINK * link or busy:
            return compressed.because(
                *reasons, '%.0f%% CPU idle%s: %s multifd x%d, about '
                '%.0f MiB/s of pages over a %.0f MiB/s link'
                % (idle_pct, _cpu_cost(conf, facts, d, compressed, cal),
                   compressed.method, channels, effective, link))
        reasons.append('compression would not beat the %.0f MiB/s link '
                       'with %.1f idle core(s)'
                       % (link, d.idle_cores))
    elif software and not cands_mod.cpu_ok(conf, facts):
        reasons.append('%.0f%% CPU idle < %d%%: no software compression'
                       % (idle_pct, group.cpu_idle_threshold))
    elif software and not squeezed and not facts.nova.tunnelled:
        reasons.append('software compression would cost the busy vCPUs '
                       'more than [qat_migration] max_guest_cpu_impact_pct '
                       '%d%%' % group.max_guest_cpu_impact_pct)
    elif software and facts.nova.tunnelled:
        reasons.append('multifd cannot run tunnelled: no software '
                       'compression')
    elif not software and not squeezed:
        reasons.append('no software compression method both ends run')

    # 4. Plain multifd on fast links, else plain pre-copy.
    channels = cands_mod.plain_channels(facts, lim)
    multifd = _shape(shapes, method='none', parallel_connections=channels)
    if link >= FAST_LINK_MBPS and facts.host.cpus > 1 and multifd:
        return multifd.because(*reasons, 'fast link (%.0f MiB/s): plain '
                               'multifd x%d' % (link, channels))
    plain = _shape(shapes, method='none', parallel_connections=1)
    return plain.because(*reasons, 'plain pre-copy')


def _cpu_cost(conf: Any, facts: datamodel.Facts, d: common.Derived,
              plan: datamodel.Plan, cal: datamodel.Calibration) -> str:
    """What running ``plan``'s compressors costs, for its reason."""
    threshold = conf.qat_migration.cpu_idle_threshold
    if threshold is not None:
        return ' (>= %d%%)' % threshold
    cost = common.cpu_cost(facts, plan, cal, d)
    return ' (%s)' % cost.split(': ', 1)[1] if cost else ''


def _converge(conf: Any, facts: datamodel.Facts, d: common.Derived,
              lim: common.Limits, cands: cands_mod.Candidates,
              shape: datamodel.Plan, load: model.Workload,
              cal: datamodel.Calibration) -> datamodel.Plan:
    """``shape``, or its throttled/post-copy variant if it will not
    converge.
    """
    dirty = d.dirty_rate
    failed_before = facts.history.converged is False
    if dirty is None and not failed_before:
        return shape.because('dirty rate unknown: no throttling planned')
    dirty = dirty or 0.0
    moved = moved_mbps(d, shape, load, cal)
    if dirty < CONVERGE_SHARE * moved and not failed_before:
        return shape.because('converges: %.0f MiB/s dirtied vs %.0f MiB/s '
                             'moved' % (dirty, moved))
    reasons = [('will not converge: %.0f MiB/s dirtied vs %.0f MiB/s moved'
                % (dirty, moved)) if not failed_before or dirty
               else 'did not converge last time']
    changes: dict = {}
    if lim.throttle:
        needed = 100.0 * (1.0 - CONVERGE_SHARE * moved / max(dirty, 1e-6))
        steps = common.throttle_steps(conf)
        start, step = next(((s, i) for s, i in steps if s >= needed),
                           steps[-1])
        changes.update(throttle_initial=start, throttle_increment=step)
        reasons.append('stepped auto-converge from %d%% (+%d%%), about '
                       '%d%% needed' % (start, step,
                                        max(0, math.ceil(needed))))
    if lim.post_copy and not cands_mod.post_copy_possible(facts, lim,
                                                          shape):
        single = _shape(cands.shapes, method='none', parallel_connections=1)
        if shape.multifd and not lim.throttle and single is not None:
            shape = single.because(*shape.reasons)
            reasons.append('post-copy is the only way to finish and cannot '
                           'run with multifd here: single stream')
        elif shape.multifd:
            reasons.append('post-copy cannot run with multifd on these '
                           'QEMUs: not planned')
    if cands_mod.post_copy_possible(facts, lim, shape):
        changes['post_copy'] = True
        reasons.append('post-copy permitted after %d stalled iterations'
                       % shape.post_copy_after_stalled)
    if not lim.throttle and not lim.post_copy:
        reasons.append('neither throttling nor post-copy permitted: '
                       'the progress timeout will abort if it stalls')
    chosen = _find(cands.plans, shape, **changes) if changes else shape
    if chosen is None:
        # Every variant of every shape is a candidate; this cannot happen
        # unless the two modules disagree -- keep the shape, say so.
        return shape.because(*reasons, 'no candidate for %s: shape kept'
                             % changes)
    return dataclasses.replace(chosen, reasons=shape.reasons).because(
        *reasons)
