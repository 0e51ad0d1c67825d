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
gentle_tolerance`` of its time.

The model's view of the guest (``workload``), of this host's constants
(``calibration``) and of what compressors cost (``cpu_cost``) live in
:mod:`.common`, below both rankings and the candidates; they stay
importable from here for the report, the drain command and the lab.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

from nova_qat_migration import datamodel
from nova_qat_migration.policy import common
from nova_qat_migration.policy import model


#: How much further (a share of the fastest prediction, on top of the
#: gentle tolerance) a throttle or post-copy must be predicted to beat the
#: fastest plan that does neither, when the guest's working set is
#: assumed (no ``working_set_mb`` hint). The model then takes all the
#: guest's non-zero memory as rewritten, which overstates every pass after
#: the first, and a plan that never slows the guest has the most passes:
#: on the lab's scale model (random pages rewritten over 256 MiB of a
#: 1.5 GiB guest at 0.6 of a 250 Mbit/s link) it predicted plain pre-copy
#: at 136 s against 79 s measured, and chose a throttle (75 s measured,
#: the guest slowed to 40%) that the gentle tolerance alone allowed. Not
#: applied with ``gentle_tolerance = 0`` (the fastest, whatever it does).
ASSUMED_WORKING_SET_SLACK = 0.5


def tier(plan: datamodel.Plan) -> int:
    """How intrusive a plan is.

    0: plain levers; 1: throttles the guest's vCPUs; 2: may run the guest
    on the destination before all its memory arrived (post-copy: a failure
    then loses the guest).
    """
    if plan.post_copy:
        return 2
    return 1 if plan.auto_converge else 0


#: In :mod:`.common` (both rankings and the candidates read them);
#: importable from here.
idle_cores = common.idle_cores
busy_cores = common.busy_cores
workload = common.workload
cpu_cost = common.cpu_cost
cpu_impact_pct = common.cpu_impact_pct
calibration = common.calibration
load_calibration = common.load_calibration


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
    one's, and the fastest of those. A throttle or post-copy must clear
    :data:`ASSUMED_WORKING_SET_SLACK` more while the working set is
    assumed.

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
    trade = _trade((best_plan, best_pred), fastest, good, tolerance)
    # An operator's zero tolerance asks for the fastest prediction, slack
    # or not.
    if (tier(best_plan) > 0 and tolerance > 0 and
            load.working_set_mb is None):
        wider = fastest[1].total_s * (1.0 + tolerance +
                                      ASSUMED_WORKING_SET_SLACK)
        gentle = [item for item in good
                  if tier(item[0]) == 0 and item[1].total_s <= wider]
        if gentle:
            harsh = (best_plan, best_pred)
            best_plan, best_pred = min(gentle, key=lambda item: _cost(*item))
            trade = ('no %s: the working set is assumed (no hint), which '
                     'overstates the passes of a plan that does not slow '
                     'the guest, and %s is predicted within %d%% of the '
                     'fastest (%s: %s)'
                     % ('post-copy' if harsh[0].post_copy else 'throttle',
                        _short(best_plan),
                        int(round(100 * (tolerance +
                                         ASSUMED_WORKING_SET_SLACK))),
                        _short(fastest[0]), fastest[1].describe()))
    return best_plan, best_pred, scored, trade


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
