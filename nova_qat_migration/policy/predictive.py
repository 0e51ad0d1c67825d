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
"""Rank candidate plans by the convergence model.

:mod:`~nova_qat_migration.policy.model` predicts what each candidate of
:mod:`.candidates` would do for this instance; the best is the fastest
plan that converges with a downtime within the limit and before Nova's
completion timeout (a block migration's disk copy counted in both),
unless a gentler one (no throttling, then throttling starting low, then
post-copy) is predicted within ``[qat_migration_adaptive]
gentle_tolerance`` of its time. Also the model's view of the guest
(:func:`workload`) and of this host's constants (:func:`calibration`),
which the adaptive policy, the driver's report and the drain command
share.
"""

from __future__ import annotations

import functools
from typing import Any, Iterable, Optional

from oslo_log import log as logging

from nova_qat_migration import conf as qat_conf
from nova_qat_migration import datamodel
from nova_qat_migration.policy import common
from nova_qat_migration.policy import model

LOG = logging.getLogger(__name__)

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


def cpu_cost(facts: datamodel.Facts, plan: datamodel.Plan,
             cal: datamodel.Calibration) -> Optional[str]:
    """A reason saying what ``plan``'s compressors take from the busy
    vCPUs, or None when they run on idle cores alone.
    """
    impact = cpu_impact_pct(facts, plan, cal)
    if impact < 0.5:
        return None
    return ('%.0f%% CPU idle: the compressors share busy cores, about '
            '%.0f%% of the busy vCPUs\' time' % (common.cpu_idle_pct(facts),
                                                 impact))


def tier(plan: datamodel.Plan) -> int:
    """How intrusive a plan is.

    0: plain levers; 1: throttles the guest's vCPUs; 2: may run the guest
    on the destination before all its memory arrived (post-copy: a failure
    then loses the guest).
    """
    if plan.post_copy:
        return 2
    return 1 if plan.auto_converge else 0


#: In :mod:`.common` (both rankings read them); importable from here.
idle_cores = common.idle_cores
busy_cores = common.busy_cores


def predict(facts: datamodel.Facts, plan: datamodel.Plan,
            cal: datamodel.Calibration,
            load: Optional[model.Workload] = None,
            trace: Optional[list] = None,
            derived: Optional[common.Derived] = None) -> model.Prediction:
    """The model's prediction of ``plan`` on this host for this guest.

    :param derived: the link and cores of ``facts``, when the caller
        worked them out already (:func:`.common.derive`).
    """
    if derived is None:
        link, idle, busy = (common.link_mbps(facts),
                            common.idle_cores(facts),
                            common.busy_cores(facts))
    else:
        link, idle, busy = (derived.link_mbps, derived.idle_cores,
                            derived.busy_cores)
    return model.predict(plan, load or workload(facts), link,
                         idle_cores=idle, cal=cal, busy_cores=busy,
                         trace=trace)


def cpu_impact_pct(facts: datamodel.Facts, plan: datamodel.Plan,
                   cal: datamodel.Calibration) -> float:
    """Percent of CPU time the source's busy work is predicted to lose to
    ``plan``'s software compressors (:func:`.model.cpu_impact`).
    """
    return 100.0 * model.cpu_impact(plan, workload(facts),
                                    common.link_mbps(facts), cal,
                                    common.idle_cores(facts),
                                    common.busy_cores(facts))


def intrusion(plan: datamodel.Plan,
              pred: Optional[model.Prediction] = None) -> tuple:
    """How much a plan does to the guest, least first.

    The tier (:func:`tier`), then how hard it slows the guests: the
    throttle it starts with (a guest slowed to 20% from the first
    throttled round loses more than one slowed by 20%), or the share of
    CPU time its compressors take from the busy vCPUs when they share
    cores (``pred.cpu_impact``), whichever is more.
    """
    impact = int(round(100.0 * pred.cpu_impact)) if pred else 0
    return (tier(plan), max(plan.throttle_initial or 0, impact))


def _cost(plan: datamodel.Plan, pred: model.Prediction) -> tuple:
    """Sort key among equally intrusive plans: fastest first, software
    compression's CPU counted, fewer channels on a tie.
    """
    cpu = 0.02 if plan.method in ('zlib', 'zstd') else 0.0
    return (pred.total_s * (1.0 + cpu), plan.parallel_connections)


def choose(facts: datamodel.Facts, lim: common.Limits,
           candidates: Iterable[datamodel.Plan], load: model.Workload,
           cal: datamodel.Calibration, tolerance: float = 0.2,
           derived: Optional[common.Derived] = None,
           ) -> Optional[tuple[datamodel.Plan, model.Prediction, list,
                               str]]:
    """The gentlest candidate predicted to be nearly as fast as the best.

    Among the candidates predicted to converge within the downtime limit
    and Nova's completion timeout, the least intrusive (:func:`intrusion`)
    whose predicted time is within ``tolerance`` (a share) of the fastest
    one's, and the fastest of those.

    :param derived: :func:`.common.derive` of ``facts``, read for every
        candidate (when None, each prediction reads ``facts``).
    :returns: None when no candidate converges, else the plan, its
        prediction, every candidate's prediction and a reason naming the
        trade made (empty when the fastest plan was also the gentlest).
    """
    scored = [(plan, predict(facts, plan, cal, load, derived=derived))
              for plan in candidates]
    # Nova aborts a migration at its completion timeout: a plan predicted
    # to need longer does not converge for our purposes. Its timeout and
    # the predicted time both count a block migration's disks.
    deadline = facts.completion_timeout_s()
    good = [(p, pr) for p, pr in scored
            if pr.converges and pr.downtime_ms <= lim.max_downtime_ms and
            pr.total_s <= deadline]
    if not good:
        return None
    fastest = min(good, key=lambda item: _cost(*item))
    bound = fastest[1].total_s * (1.0 + max(0.0, tolerance))
    near = [item for item in good if item[1].total_s <= bound]
    best_plan, best_pred = min(
        near, key=lambda item: (intrusion(*item), _cost(*item)))
    return (best_plan, best_pred, scored,
            _trade((best_plan, best_pred), fastest, good, tolerance))


def _trade(best: tuple, fastest: tuple, good: list,
           tolerance: float) -> str:
    """What the choice gave up for the guest, or why it did not."""
    pct = int(round(tolerance * 100))
    parts = []
    if intrusion(*best) < intrusion(*fastest):
        parts.append('gentler than the fastest (%s: %s), predicted within '
                     '%d%% of it' % (_short(fastest[0]),
                                     fastest[1].describe(), pct))
    gentler = [item for item in good if intrusion(*item) < intrusion(*best)]
    if gentler:
        alt = min(gentler,
                  key=lambda item: (intrusion(*item), _cost(*item)))
        parts.append('no gentler plan predicted within %d%%: %s predicted '
                     '%s' % (pct, _short(alt[0]), alt[1].describe()))
    return '; '.join(parts)


def explain(best: datamodel.Plan, pred: model.Prediction, scored: list) -> str:
    """'predicted 11 s / 40 ms with zstd-1 x4 vs never converges plain'."""
    plain = next((pr for p, pr in scored
                  if p.method == 'none' and p.parallel_connections == 1 and
                  not p.auto_converge and not p.post_copy), None)
    text = 'predicted %s with %s' % (pred.describe(), _short(best))
    if plain is not None and _short(best) != 'plain':
        text += ' vs %s plain' % plain.describe()
    return text + ' (%d candidates)' % len(scored)


def _short(plan: datamodel.Plan) -> str:
    name = 'plain' if plan.method == 'none' else plan.method
    if plan.level is not None:
        name += '-%d' % plan.level
    if plan.parallel_connections > 1:
        name += ' x%d' % plan.parallel_connections
    if plan.xbzrle_cache_mb:
        name += ' %dMiB' % plan.xbzrle_cache_mb
    if plan.auto_converge:
        name += ' +throttle %d%%' % plan.throttle_initial
    if plan.post_copy:
        name += ' +post-copy'
    return name


def predict_dict(conf: Any, facts: datamodel.Facts,
                 plan: datamodel.Plan,
                 trace: Optional[list] = None) -> dict:
    """The model's prediction for ``plan`` as a loggable dict.

    :param trace: receives the predicted remaining data over time (see
        :func:`~.model.predict`).
    """
    pred = predict(facts, plan, calibration(conf), trace=trace)
    return {'converges': pred.converges,
            'total_s': (round(pred.total_s, 2) if pred.converges
                        else None),
            'downtime_ms': (round(pred.downtime_ms, 1) if pred.converges
                            else None),
            'post_copy': pred.post_copy, 'rounds': pred.rounds,
            # a block migration's disk copy, included in total_s
            'disk_s': round(pred.disk_s, 2),
            'summary': pred.describe()}
