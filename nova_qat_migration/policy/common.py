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
"""Pieces the built-in policies share: limits from options and hints,
this migration's share of the source (what migrations in flight leave),
what the guest's pages are like, the model's view of the guest
(:func:`workload`) and of this host (:func:`calibration`), what software
compressors cost the busy vCPUs (:func:`cpu_impact_pct`), and
:class:`Derived`, those quantities worked out once per plan.

Below both rankings (:mod:`.predictive`, :mod:`.rules`) and the candidate
generator, so that none of them borrows a helper from another.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Optional

from oslo_log import log as logging

from nova_qat_migration import conf as qat_conf
from nova_qat_migration import datamodel
from nova_qat_migration.policy import model

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Limits:
    """What the operator and the instance permit for one migration.

    The operator's hints (a flavor's extra specs) *fix* a method, level
    or channel count (``forced_*``). The tenant's (an image's) only
    narrow: ``image_method`` picks among the plans the operator's gates
    already allow (never past the CPU-idle threshold, the memory
    headroom or a missing QAT lease), ``level_cap`` and a lower
    ``max_channels`` only lower what the policy would choose.
    """

    methods: tuple
    max_downtime_ms: int
    post_copy: bool
    throttle: bool
    max_channels: int
    forced_method: Optional[str] = None
    forced_level: Optional[int] = None
    forced_channels: Optional[int] = None
    #: A method the image chose (the flavor sets none).
    image_method: Optional[str] = None
    #: The highest level the image allows (the flavor sets none).
    level_cap: Optional[int] = None


def limits(conf: Any, facts: datamodel.Facts) -> Limits:
    """What one migration may use.

    Throttling, post-copy, the downtime and the channels are bounded by
    Nova's ``[libvirt] live_migration_*`` switches unless ``[qat_migration]``
    sets them (:func:`~nova_qat_migration.conf.nova_ceiling`).
    """
    group = conf.qat_migration
    hints = facts.instance.hints
    # Without image values every hint is the operator's.
    operator = hints.operator or hints
    methods = tuple(m for m in group.allowed_methods if m != 'none')
    channels = qat_conf.nova_ceiling(conf, 'max_parallel_connections')
    return Limits(
        methods=methods + ('none',),
        max_downtime_ms=(hints.max_downtime_ms or
                         qat_conf.nova_ceiling(conf, 'downtime_ms')),
        post_copy=bool(qat_conf.nova_ceiling(conf, 'permit_post_copy') and
                       hints.allow_post_copy is not False),
        throttle=bool(qat_conf.nova_ceiling(conf, 'permit_auto_converge')
                      and hints.allow_throttle is not False),
        # A flavor's qat_migration:parallel_connections fixes the channel
        # count of multifd plans (within the host's bound); an image's
        # only bounds it.
        max_channels=min(channels, hints.parallel_connections or channels),
        forced_method=operator.method,
        forced_level=operator.level,
        forced_channels=operator.parallel_connections,
        image_method=(hints.method if hints.method != operator.method
                      else None),
        level_cap=hints.level if operator.level is None else None)


def operator_view(facts: datamodel.Facts) -> datamodel.Facts:
    """``facts`` with the operator's hints alone (without the image's)."""
    hints = facts.instance.hints
    if hints.operator is None:
        return facts
    return dataclasses.replace(
        facts, instance=dataclasses.replace(facts.instance,
                                            hints=hints.operator))


def default_level(conf: Any, method: str) -> Optional[int]:
    return getattr(conf.qat_migration, '%s_level' % method, None)


def capped_level(lim: Limits, level: Optional[int]) -> Optional[int]:
    """``level``, lowered to the image's ``level_cap``.

    Every method's range starts at or below the cap's minimum
    (:data:`~.hints.LEVEL_MIN`), so the result stays valid.
    """
    if level is None or lim.level_cap is None:
        return level
    return min(level, lim.level_cap)


# -- this migration's share of the source ----------------------------------
#
# NOTE(qat-migration): measured idle CPU and free memory already miss what
# running migrations use *now*, but not what they were planned to use and
# have not reached yet (a migration started a second ago). Taking the lower
# of the measurement and capacity minus the holdings never over-commits
# memory; at worst a cache already allocated is counted twice. Idle cores
# are the measurement less what the compressors in flight were planned
# on: a compressor already running is then counted twice (the host looks
# busier than it is), never an idle core given to two migrations.


def link_mbps(facts: datamodel.Facts) -> float:
    """The MiB/s of the link this migration can count on."""
    return facts.link_mbps * facts.in_flight.link_share


def idle_cores(facts: datamodel.Facts) -> float:
    """Idle cores not planned for the compressors of migrations in flight."""
    host = facts.host
    measured = min(host.cpus, host.cpus * host.cpu_idle_pct / 100.0)
    return max(0.0, measured - facts.in_flight.cores_held)


def busy_cores(facts: datamodel.Facts) -> float:
    """The source's cores that are not idle: the guests' vCPUs (the
    migrating guest's own included), the QEMUs and the compressors of
    migrations in flight. Software compressors share them
    (:func:`.model.compressor_cores`).
    """
    return max(0.0, facts.host.cpus - idle_cores(facts))


def cpu_idle_pct(facts: datamodel.Facts) -> float:
    """:func:`idle_cores` as a percentage of the host's cores."""
    return 100.0 * idle_cores(facts) / max(1, facts.host.cpus)


def spare_mb(conf: Any, facts: datamodel.Facts) -> int:
    """Memory above the headroom not held by caches in flight."""
    return (facts.host.mem_free_mb - conf.qat_migration.memory_headroom_mb -
            facts.in_flight.xbzrle_mb_held)


def qat_free_leases(facts: datamodel.Facts) -> int:
    """QAT leases free for this migration."""
    qat = facts.qat
    return max(0, min(qat.free_leases,
                      qat.endpoints - facts.in_flight.qat_leases_held))


def qat_available(facts: datamodel.Facts) -> bool:
    return facts.qat.endpoints > 0 and qat_free_leases(facts) > 0


def sharing_reason(facts: datamodel.Facts) -> Optional[str]:
    """A reason naming what the migrations in flight hold, if any."""
    held = facts.in_flight
    if not held.migrations:
        return None
    return ('sharing the source with %d migration(s): %.0f%% of the link '
            '(%.0f MiB/s), %.1f core(s), %d MiB of XBZRLE cache and %d QAT '
            'lease(s) held by them'
            % (held.migrations, 100.0 * held.link_share, link_mbps(facts),
               held.cores_held, held.xbzrle_mb_held, held.qat_leases_held))


def xbzrle_cache_mb(conf: Any, facts: datamodel.Facts) -> Optional[int]:
    """XBZRLE cache sized from the working set and spare memory.

    None when the host cannot spare the minimum useful cache.
    """
    group = conf.qat_migration
    spare = spare_mb(conf, facts)
    working_set = (facts.instance.hints.working_set_mb or
                   facts.instance.memory_mb)
    want = int(working_set * group.xbzrle_cache_ratio)
    size = min(max(want, group.xbzrle_cache_min_mb),
               group.xbzrle_cache_max_mb, facts.instance.memory_mb, spare)
    if size < group.xbzrle_cache_min_mb:
        return None
    return datamodel.pow2_floor(size)


def xbzrle_cache_max_mb(conf: Any, facts: datamodel.Facts) -> int:
    group = conf.qat_migration
    spare = spare_mb(conf, facts)
    return datamodel.pow2_floor(max(1, min(group.xbzrle_cache_max_mb,
                                           facts.instance.memory_mb, spare)))


# -- what the guest's pages are like -----------------------------------------

#: Compressed/original above which a guest's pages are not worth
#: compressing.
INCOMPRESSIBLE_RATIO = 0.85


def measured_ratio(facts: datamodel.Facts) -> Optional[float]:
    """Compressibility (compressed/original) from a page sample, else from
    the last migration when it was compressed; None when nothing says.
    """
    if facts.instance.compress_ratio is not None:
        return facts.instance.compress_ratio
    hist = facts.history
    if hist.compression_ratio is not None and \
            hist.method in datamodel.MULTIFD_METHODS:
        return hist.compression_ratio
    return None


def incompressible(facts: datamodel.Facts) -> bool:
    ratio = measured_ratio(facts)
    return ratio is not None and ratio > INCOMPRESSIBLE_RATIO


def dirty_rate(facts: datamodel.Facts) -> Optional[float]:
    """The guest's dirty rate (MiB/s): measured, else last time's."""
    if facts.instance.paused:
        return 0.0
    if facts.instance.dirty_rate_mbps is not None:
        return facts.instance.dirty_rate_mbps
    return facts.history.dirty_rate_mbps


# -- the model's view of the guest and of this host ---------------------------

#: Clamp of the compressed/original ratio the model uses: nothing
#: compresses to nothing, nothing grows past its size.
RATIO_RANGE = (0.02, 1.0)


@functools.lru_cache(maxsize=8)
def load_calibration(path: str) -> datamodel.Calibration:
    """The model's constants from a ``model_calibration`` file.

    The file is checked as at start-up (:func:`conf.check_calibration
    <nova_qat_migration.conf.check_calibration>`); one that became
    unusable since (edited, removed) gives the built-in constants, with
    a warning, rather than failing migrations.
    """
    if not path:
        return datamodel.Calibration()
    try:
        return datamodel.Calibration(**qat_conf.check_calibration(path))
    except qat_conf.ConfigError as exc:
        LOG.warning('Model calibration unusable (%(exc)s): using built-in '
                    'constants.', {'exc': exc})
        return datamodel.Calibration()


def calibration(conf: Any) -> datamodel.Calibration:
    return load_calibration(conf.qat_migration.model_calibration or '')


def workload(facts: datamodel.Facts) -> model.Workload:
    """The model's view of the guest, from measurements and history.

    What nothing measured keeps :class:`~.model.Workload`'s defaults; a
    block migration's disk bytes come from the facts (none when unknown).
    """
    inst = facts.instance
    hist = facts.history
    dirty = 0.0 if inst.paused else (
        inst.dirty_rate_mbps if inst.dirty_rate_mbps is not None
        else hist.dirty_rate_mbps or 0.0)
    fields: dict = {}
    if hist.compression_ratio is not None and \
            hist.method in datamodel.MULTIFD_METHODS:
        fields['compress_ratio'] = hist.compression_ratio
    elif hist.compression_ratio is not None and hist.method in (None,
                                                                'none'):
        # Uncompressed wire bytes below RAM size mean zero pages.
        fields['zero_fraction'] = max(0.0, min(
            0.95, 1.0 - hist.compression_ratio))
    if hist.xbzrle_hit_ratio is not None:
        fields['xbzrle_friendly'] = hist.xbzrle_hit_ratio
    # A sample of the guest's pages, taken just now, beats history.
    if inst.compress_ratio is not None:
        fields['compress_ratio'] = inst.compress_ratio
    if inst.zero_fraction is not None:
        fields['zero_fraction'] = max(0.0, min(0.99, inst.zero_fraction))
    if inst.xbzrle_friendly is not None:
        fields['xbzrle_friendly'] = inst.xbzrle_friendly
    if 'compress_ratio' in fields:
        low, high = RATIO_RANGE
        fields['compress_ratio'] = max(low, min(high,
                                                fields['compress_ratio']))
    if facts.block_migration and facts.disk_bytes:
        # The disks a block migration copies before the memory.
        fields['disk_mb'] = facts.disk_bytes / float(datamodel.MIB)
    return model.Workload(
        ram_mb=float(inst.memory_mb), dirty_mbps=float(dirty),
        working_set_mb=(float(inst.hints.working_set_mb)
                        if inst.hints.working_set_mb else None), **fields)


def cpu_impact_pct(facts: datamodel.Facts, plan: datamodel.Plan,
                   cal: datamodel.Calibration,
                   derived: Optional[Derived] = None) -> float:
    """Percent of CPU time the source's busy work is predicted to lose to
    ``plan``'s software compressors (:func:`.model.cpu_impact`).

    :param derived: :func:`derive` of ``facts``, when the caller worked
        it out already (a ranking); else ``facts`` is read here.
    """
    if derived is None:
        load, link, idle, busy = (workload(facts), link_mbps(facts),
                                  idle_cores(facts), busy_cores(facts))
    else:
        load, link, idle, busy = (derived.load, derived.link_mbps,
                                  derived.idle_cores, derived.busy_cores)
    return 100.0 * model.cpu_impact(plan, load, link, cal, idle, busy)


def cpu_cost(facts: datamodel.Facts, plan: datamodel.Plan,
             cal: datamodel.Calibration,
             derived: Optional[Derived] = None) -> Optional[str]:
    """A reason saying what ``plan``'s compressors take from the busy
    vCPUs, or None when they run on idle cores alone.

    :param derived: as for :func:`cpu_impact_pct`.
    """
    impact = cpu_impact_pct(facts, plan, cal, derived)
    if impact < 0.5:
        return None
    idle_pct = (derived.cpu_idle_pct if derived is not None
                else cpu_idle_pct(facts))
    return ('%.0f%% CPU idle: the compressors share busy cores, about '
            '%.0f%% of the busy vCPUs\' time' % (idle_pct, impact))


@dataclasses.dataclass(frozen=True)
class Derived:
    """What the rankings read of the facts, worked out once per plan.

    A ranking asks these for every candidate it weighs; computed once
    (:func:`derive`) they are one set of numbers for the whole choice, and
    the facts are read in one place.
    """

    #: MiB/s of the link this migration can count on (:func:`link_mbps`).
    link_mbps: float
    #: Idle cores not held by migrations in flight (:func:`idle_cores`).
    idle_cores: float
    #: Cores that are not idle (:func:`busy_cores`).
    busy_cores: float
    #: :attr:`idle_cores` as a percentage of the host's cores.
    cpu_idle_pct: float
    #: Memory above the headroom not held by caches in flight (MiB).
    spare_mb: int
    #: The guest's dirty rate (MiB/s), or None when nothing measured it.
    dirty_rate: Optional[float]
    #: Compressed/original of the guest's pages, or None.
    measured_ratio: Optional[float]
    #: Whether the pages are not worth compressing.
    incompressible: bool
    #: The model's view of the guest (:func:`workload`).
    load: model.Workload


def derive(conf: Any, facts: datamodel.Facts) -> Derived:
    """The :class:`Derived` quantities of ``facts``.

    :param conf: the shared options (``[qat_migration]``).
    """
    ratio = measured_ratio(facts)
    return Derived(
        link_mbps=link_mbps(facts),
        idle_cores=idle_cores(facts),
        busy_cores=busy_cores(facts),
        cpu_idle_pct=cpu_idle_pct(facts),
        spare_mb=spare_mb(conf, facts),
        dirty_rate=dirty_rate(facts),
        measured_ratio=ratio,
        incompressible=ratio is not None and ratio > INCOMPRESSIBLE_RATIO,
        load=workload(facts))


def throttle_steps(conf: Any) -> list:
    """(start, increment) of the throttle schedule's starting steps.

    A plan starts from any step but the last and climbs by the gap to the
    next one; the last step is where throttling ends up, never where it
    starts (99% from the first round is a paused guest, not a gentle
    one). A one-step schedule starts there and climbs by
    ``auto_converge_increment``.
    """
    group = conf.qat_migration
    schedule = list(group.throttle_schedule)
    if len(schedule) == 1:
        return [(schedule[0], max(1, group.auto_converge_increment))]
    return [(start, schedule[i + 1] - start)
            for i, start in enumerate(schedule[:-1])]
