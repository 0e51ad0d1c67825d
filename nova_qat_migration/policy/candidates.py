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
"""Every plan the host and the instance allow for one migration.

The adaptive policy ranks these candidates (by the convergence model, or
by its rules when the model is off or gives up); nothing else builds a
plan, so what a lever needs is written once, here:

* a *shape* is a page-transfer choice: plain pre-copy, plain multifd,
  software multifd compression (zstd, zlib), QAT offload (multifd
  ``qatzip``, or the legacy ``mt`` threads on a vendor build) or XBZRLE;
* each shape comes with its *variants*: stepped auto-converge from every
  step of ``[qat_migration] throttle_schedule``, post-copy, and both,
  where the operator, the instance and both QEMUs permit them.

A lever is only offered when both ends can run it and the operator's
options and the instance's hints allow it; why a lever is closed is kept
as a note, so the chosen plan can say why it is not, say, QAT.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from nova_qat_migration import datamodel
from nova_qat_migration.policy import common

#: Pages that compress worse than this (compressed/original) are not
#: worth a compressor (:data:`.common.INCOMPRESSIBLE_RATIO`).
INCOMPRESSIBLE_RATIO = common.INCOMPRESSIBLE_RATIO
#: Plain multifd never uses more channels than this: past a few streams
#: the copy is no longer the bottleneck.
PLAIN_MULTIFD_MAX = 4
#: QAT plans use at least this many channels, so the endpoints are fed.
QAT_MIN_CHANNELS = 4
#: Legacy ``mt`` compression threads: two per QAT endpoint, up to this.
MT_MAX_THREADS = 8


@dataclasses.dataclass(frozen=True)
class Candidates:
    """The plans to rank and why some levers are closed.

    :param plans: every candidate; each shape first, then its variants.
    :param notes: reasons a lever is not offered (kept in the plan).
    :param forced: the instance's ``qat_migration:method`` hint fixed the
        method: the flavor's (one shape) or the image's (the shapes of
        that method the operator's gates allow).
    """

    plans: tuple
    notes: tuple = ()
    forced: bool = False

    @property
    def shapes(self) -> list:
        """The candidates without throttling or post-copy."""
        return [p for p in self.plans
                if not p.auto_converge and not p.post_copy]


# -- what the guest's pages are like: in :mod:`.common` (both rankings read
# them), importable from here.
measured_ratio = common.measured_ratio
incompressible = common.incompressible
dirty_rate = common.dirty_rate


# -- which levers are open ---------------------------------------------------

def sendable(facts: datamodel.Facts, lim: common.Limits,
             method: str) -> bool:
    """Allowed here, sent by the source and decoded by the destination."""
    return (method in lim.methods and facts.can_send(method)
            and facts.destination.accepts(method))


def cpu_ok(conf: Any, facts: datamodel.Facts) -> bool:
    """Whether the deprecated ``[qat_migration] cpu_idle_threshold``, when
    the operator set it, lets software compressors run.

    Unset (the default), the cost of compressing on busy cores is judged
    per plan instead (:func:`impact_closed`).
    """
    threshold = conf.qat_migration.cpu_idle_threshold
    return threshold is None or common.cpu_idle_pct(facts) >= threshold


def _threshold_note(conf: Any, facts: datamodel.Facts) -> str:
    return ('%.0f%% CPU idle < [qat_migration] cpu_idle_threshold %d%%'
            % (common.cpu_idle_pct(facts),
               conf.qat_migration.cpu_idle_threshold))


def impact_closed(conf: Any, facts: datamodel.Facts,
                  plan: datamodel.Plan) -> Optional[str]:
    """Why ``plan``'s software compressors would cost the guests too much
    CPU, or None.

    The compressors share busy cores with the guests' vCPUs (the
    migrating guest's own included); the share of CPU time that work is
    predicted to lose (:func:`.common.cpu_impact_pct`) must stay within
    ``[qat_migration] max_guest_cpu_impact_pct``.
    """
    if plan.method not in ('zlib', 'zstd'):
        return None
    cap = conf.qat_migration.max_guest_cpu_impact_pct
    impact = common.cpu_impact_pct(facts, plan, common.calibration(conf))
    if impact <= cap:
        return None
    return ('%s x%d: %.0f%% CPU idle, the compressors would take %.0f%% of '
            'the busy vCPUs\' time > [qat_migration] '
            'max_guest_cpu_impact_pct %d%%'
            % (plan.method, plan.parallel_connections,
               common.cpu_idle_pct(facts), impact, cap))


def software_fallbacks(conf: Any, facts: datamodel.Facts,
                       lim: common.Limits) -> tuple:
    """Software methods a QAT plan falls back to, when the source's CPU
    can run them (:func:`cpu_ok`, :func:`impact_closed` on two channels).
    """
    if not cpu_ok(conf, facts):
        return ()
    return tuple((m, common.capped_level(lim, common.default_level(conf, m)))
                 for m in ('zstd', 'zlib') if m in lim.methods and
                 impact_closed(conf, facts, base_plan(
                     conf, facts, lim, method=m,
                     parallel_connections=2)) is None)


def qat_open(facts: datamodel.Facts, lim: common.Limits) -> bool:
    """Whether a ``qatzip`` plan can run: a free lease, both ends, the
    passthrough backend (libvirt does not know the method) and pages that
    compress.
    """
    return (common.qat_available(facts) and facts.passthrough_allowed and
            sendable(facts, lim, 'qatzip') and not facts.nova.tunnelled and
            not incompressible(facts))


def mt_open(conf: Any, facts: datamodel.Facts, lim: common.Limits) -> bool:
    """Whether the legacy ``mt`` threads may run on QAT (a vendor build)."""
    return (conf.qat_migration.legacy_mt_uses_qat and
            common.qat_available(facts) and sendable(facts, lim, 'mt') and
            not incompressible(facts))


def closed(conf: Any, facts: datamodel.Facts, lim: common.Limits,
           method: str) -> Optional[str]:
    """Why the operator's gates give no plan of ``method``, or None.

    The same gates :func:`generate` applies to the plans it offers: an
    image's ``qat_migration:method`` may only choose a method that passes
    them (the ``static`` policy asks this directly).
    """
    if method == 'none':
        return None
    if method not in lim.methods:
        return 'not in [qat_migration] allowed_methods'
    if method == 'xbzrle':
        if common.xbzrle_cache_mb(conf, facts) is None:
            return ('not enough memory above [qat_migration] '
                    'memory_headroom_mb for an XBZRLE cache')
        return None
    if method == 'qatzip':
        return None if qat_open(facts, lim) else why_not_qat(facts, lim)
    if method == 'mt':
        return None if mt_open(conf, facts, lim) else (
            'the legacy mt threads only run on QAT here ([qat_migration] '
            'legacy_mt_uses_qat, a free lease)')
    # zstd, zlib
    if not sendable(facts, lim, method):
        return 'not run by both hosts'
    if facts.nova.tunnelled:
        return 'multifd cannot run tunnelled'
    if not cpu_ok(conf, facts):
        return _threshold_note(conf, facts)
    if incompressible(facts):
        return ('pages compress to %.2f: incompressible'
                % measured_ratio(facts))
    fewest = base_plan(conf, facts, lim, method=method,
                       parallel_connections=2)
    return impact_closed(conf, facts, fewest)


def why_not_qat(facts: datamodel.Facts, lim: common.Limits) -> str:
    """The first reason the QAT path is closed."""
    if incompressible(facts):
        return ('QAT: pages compress to %.2f: incompressible'
                % measured_ratio(facts))
    if not common.qat_available(facts):
        return 'QAT: no free lease (%d endpoint(s) busy or reserved ' \
               'elsewhere): software path' % facts.qat.endpoints
    if not facts.passthrough_allowed:
        return ('QAT: qatzip needs [qat_migration] '
                'qemu_monitor_passthrough: software path')
    if not facts.hypervisor.accepts('qatzip'):
        return 'QAT: this QEMU has no qatzip: software path'
    if facts.nova.tunnelled:
        return 'QAT: multifd cannot run tunnelled: software path'
    return 'QAT: the destination cannot decode qatzip: software path'


# -- channel counts ----------------------------------------------------------

def software_channels(facts: datamodel.Facts, lim: common.Limits) -> int:
    """One compressor channel per idle core (at least 2)."""
    return min(lim.max_channels, max(2, int(common.idle_cores(facts))))


def plain_channels(facts: datamodel.Facts, lim: common.Limits) -> int:
    return min(lim.max_channels, max(2, min(int(common.idle_cores(facts)),
                                            PLAIN_MULTIFD_MAX)))


def qat_channels(facts: datamodel.Facts, lim: common.Limits) -> int:
    """One channel per QAT endpoint, at least :data:`QAT_MIN_CHANNELS`."""
    return min(lim.max_channels, max(2, facts.qat.endpoints,
                                     QAT_MIN_CHANNELS))


def mt_threads(facts: datamodel.Facts) -> tuple:
    """(compression, decompression) threads of a QAT ``mt`` plan."""
    threads = min(MT_MAX_THREADS, max(2, facts.qat.endpoints * 2))
    return threads, max(1, threads // 2)


# -- the plans ---------------------------------------------------------------

def base_plan(conf: Any, facts: datamodel.Facts, lim: common.Limits,
              **fields: Any) -> datamodel.Plan:
    """A plan with the operator's limits every candidate shares.

    A level (and a fallback's) is lowered to the image's cap, if any.
    """
    group = conf.qat_migration
    if fields.get('level') is not None:
        fields['level'] = common.capped_level(lim, fields['level'])
    return datamodel.Plan(
        policy='adaptive', max_downtime_ms=lim.max_downtime_ms,
        post_copy_after_stalled=group.post_copy_after_stalled,
        progress_timeout_s=group.progress_timeout,
        bandwidth_mbps=facts.nova.bandwidth_mbps, **fields)


def _xbzrle_fields(conf: Any, facts: datamodel.Facts,
                   cache: Optional[int]) -> dict:
    return dict(method='xbzrle', xbzrle_cache_mb=cache,
                xbzrle_cache_max_mb=common.xbzrle_cache_max_mb(conf, facts))


def _forced_shape(conf: Any, facts: datamodel.Facts, lim: common.Limits,
                  ) -> datamodel.Plan:
    """The one shape a ``qat_migration:method`` hint leaves.

    A hint narrows what the operator permits, never widens it: a method
    the operator does not allow becomes plain pre-copy.
    """
    group = conf.qat_migration
    method = lim.forced_method
    reasons = ['method %s forced by qat_migration:method' % method]
    if method not in lim.methods:
        reasons.append('%s is not in [qat_migration] allowed_methods: '
                       'using none' % method)
        method = 'none'
    forced_level = lim.forced_level
    if method == 'qatzip' and not common.qat_available(facts):
        # QATzip without a QAT endpoint runs in software at several
        # times zstd's CPU: a failing or busy device degrades the plan.
        soft = software_fallbacks(conf, facts, lim)
        method = soft[0][0] if soft else 'none'
        forced_level = None
        reasons.append('%s: using %s' % (
            facts.qat.unusable or 'QAT: no free lease', method))
    channels = (min(lim.forced_channels, lim.max_channels)
                if lim.forced_channels else
                min(lim.max_channels, PLAIN_MULTIFD_MAX)
                if method in datamodel.MULTIFD_METHODS else 1)
    level = (forced_level if forced_level is not None
             else common.default_level(conf, method))
    fields: dict = {}
    if method == 'xbzrle':
        fields = _xbzrle_fields(conf, facts, common.xbzrle_cache_mb(
            conf, facts) or group.xbzrle_cache_min_mb)
    # mt only runs on QAT in a vendor build.
    lease = (method == 'qatzip' or (
        method == 'mt' and group.legacy_mt_uses_qat)) and \
        common.qat_available(facts)
    fields.setdefault('method', method)
    return base_plan(conf, facts, lim, level=level,
                     parallel_connections=channels, qat_lease=lease,
                     fallbacks=software_fallbacks(conf, facts, lim),
                     reasons=tuple(reasons), **fields)


def _level(conf: Any, lim: common.Limits, method: str) -> Optional[int]:
    """The flavor's level, else the method's option (an image's cap is
    applied by :func:`base_plan`).
    """
    return (lim.forced_level if lim.forced_level is not None
            else common.default_level(conf, method))


def _after(conf: Any, lim: common.Limits, method: str) -> tuple:
    """The software methods a ``method`` plan falls back to (zstd falls
    back to zlib).
    """
    order = [m for m in ('zstd', 'zlib') if m in lim.methods]
    return tuple((m, common.capped_level(lim, common.default_level(conf, m)))
                 for m in order[order.index(method) + 1:])


def _shapes(conf: Any, facts: datamodel.Facts, lim: common.Limits,
            notes: list) -> list:
    multifd_ok = not facts.nova.tunnelled
    counts = {2, 4, lim.max_channels, software_channels(facts, lim),
              plain_channels(facts, lim), qat_channels(facts, lim)}
    if lim.forced_channels:
        counts = {lim.max_channels}
    counts = sorted(n for n in counts if 2 <= n <= lim.max_channels)
    idle = max(2, int(common.idle_cores(facts)))
    squeezed = incompressible(facts)
    shapes = [base_plan(conf, facts, lim, method='none')]
    if multifd_ok:
        shapes += [base_plan(conf, facts, lim, method='none',
                             parallel_connections=n) for n in counts]
    for method in ('zstd', 'zlib'):
        if not sendable(facts, lim, method) or not multifd_ok:
            continue
        if not cpu_ok(conf, facts):
            notes.append('%s: %s' % (method, _threshold_note(conf, facts)))
            continue
        if squeezed:
            continue
        offered = [base_plan(conf, facts, lim, method=method,
                             level=_level(conf, lim, method),
                             parallel_connections=n,
                             fallbacks=_after(conf, lim, method))
                   for n in counts if n <= idle]
        costly = [(p, impact_closed(conf, facts, p)) for p in offered]
        shapes += [p for p, why in costly if why is None]
        notes += [why for _p, why in costly if why is not None][:1]
    fallbacks = software_fallbacks(conf, facts, lim)
    if qat_open(facts, lim):
        shapes += [base_plan(conf, facts, lim, method='qatzip',
                             level=_level(conf, lim, 'qatzip'),
                             parallel_connections=n, qat_lease=True,
                             fallbacks=fallbacks) for n in counts]
    elif 'qatzip' in lim.methods and facts.qat.endpoints:
        notes.append(why_not_qat(facts, lim))
    if mt_open(conf, facts, lim):
        threads, dthreads = mt_threads(facts)
        shapes.append(base_plan(conf, facts, lim, method='mt',
                                level=_level(conf, lim, 'mt'),
                                mt_threads=threads,
                                mt_dthreads=dthreads, qat_lease=True,
                                fallbacks=fallbacks))
    if 'xbzrle' in lim.methods:
        cache = common.xbzrle_cache_mb(conf, facts)
        if cache:
            shapes.append(base_plan(conf, facts, lim,
                                    **_xbzrle_fields(conf, facts, cache)))
        else:
            notes.append('xbzrle: not enough spare memory for a cache')
    return shapes


#: Shared with the rules, in :mod:`.common`; importable from here.
throttle_steps = common.throttle_steps


def post_copy_possible(facts: datamodel.Facts, lim: common.Limits,
                       plan: datamodel.Plan) -> bool:
    """Permitted, and both QEMUs can switch this plan to post-copy."""
    if not (lim.post_copy and facts.hypervisor.postcopy):
        return False
    return not plan.multifd or (facts.hypervisor.postcopy_with_multifd and
                                facts.destination.postcopy_with_multifd)


def _variants(conf: Any, facts: datamodel.Facts, lim: common.Limits,
              shape: datamodel.Plan) -> list:
    steps = throttle_steps(conf) if lim.throttle else []
    post_copy = post_copy_possible(facts, lim, shape)
    out = [shape.because(throttle_initial=start, throttle_increment=step)
           for start, step in steps]
    if post_copy:
        out.append(shape.because(post_copy=True))
        out += [shape.because(throttle_initial=start,
                              throttle_increment=step, post_copy=True)
                for start, step in steps]
    return out


def generate(conf: Any, facts: datamodel.Facts,
             lim: common.Limits) -> Candidates:
    """Every candidate plan for this migration."""
    notes: list = []
    forced = bool(lim.forced_method)
    if forced:
        shapes = [_forced_shape(conf, facts, lim)]
    else:
        shapes = _shapes(conf, facts, lim, notes)
    if facts.instance.hints.operator is not None and not forced:
        # An image narrows: its plans use only methods the operator's own
        # limits and gates offer (fewer channels must not open software
        # compression the operator's channel count kept off the idle
        # cores), and its method chooses among those.
        theirs = common.operator_view(facts)
        offered = {s.method for s in _shapes(
            conf, theirs, common.limits(conf, theirs), [])}
        shapes = [s for s in shapes if s.method in offered]
    if lim.image_method and not forced:
        chosen = [s for s in shapes if s.method == lim.image_method]
        if chosen:
            forced = True
            shapes = [s.because('method %s chosen by the image'
                                % lim.image_method) for s in chosen]
        else:
            notes.append('image property qat_migration:method=%s ignored: '
                         '%s' % (lim.image_method,
                                 closed(conf, facts, lim, lim.image_method)
                                 or 'no plan of it here'))
    plans = []
    for shape in shapes:
        plans.append(shape)
        plans += _variants(conf, facts, lim, shape)
    return Candidates(tuple(plans), tuple(notes), forced=forced)
