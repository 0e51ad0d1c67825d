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
"""The order ``drain`` empties a host in: guests classified quiet, busy or
hard by the convergence model, and grouped so that every migration running
at once converges with its share of the link (see :mod:`.drain`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from nova_qat_migration.conf import CONF
from nova_qat_migration import datamodel
from nova_qat_migration.policy import model
from nova_qat_migration.policy import predictive
from nova_qat_migration.policy import rules

QUIET, BUSY, HARD = 'quiet', 'busy', 'hard'


@dataclasses.dataclass
class Guest:
    """A server on the host, as far as the drain needs to know it."""

    id: str
    name: str
    memory_mb: int
    vcpus: int
    status: str = 'ACTIVE'
    task_state: Optional[str] = None
    history: datamodel.History = datamodel.History()
    hints: datamodel.Hints = datamodel.Hints()
    kind: str = QUIET
    alone_s: Optional[float] = None     # predicted, with the whole link
    why: str = ''


@dataclasses.dataclass
class Group:
    members: list
    predicted_s: Optional[float]        # None: unknown (needs escalation)


# -- the order -------------------------------------------------------------

def predict(guest: Guest, link_mbps: float, share: float,
             conf: Any) -> model.Prediction:
    """Plain pre-copy for ``guest`` with ``share`` of the link.

    NOTE(qat-migration): the source's policy may do better (compression,
    XBZRLE); the drain orders by what the guest does, so it predicts the
    plan every host can run.
    """
    facts = datamodel.Facts(
        instance=datamodel.InstanceFacts(
            uuid=guest.id, memory_mb=guest.memory_mb,
            vcpus=guest.vcpus, hints=guest.hints,
            paused=guest.status == 'PAUSED'),
        history=guest.history, link_mbps=link_mbps)
    from nova_qat_migration import conf as qat_conf
    plan = datamodel.Plan(policy='drain', max_downtime_ms=(
        guest.hints.max_downtime_ms or
        qat_conf.nova_ceiling(conf, 'downtime_ms')))
    return model.predict(plan, predictive.workload(facts),
                         link_mbps * share, idle_cores=1.0,
                         cal=predictive.calibration(conf))


def classify(guest: Guest, link_mbps: float, conf: Any) -> Guest:
    """Set ``guest.kind``, ``alone_s`` and ``why`` from its evidence."""
    hist = guest.history
    dirty = 0.0 if guest.status == 'PAUSED' else hist.dirty_rate_mbps
    alone = predict(guest, link_mbps, 1.0, conf)
    guest.alone_s = alone.total_s if alone.converges else None
    if hist.converged is False:
        guest.kind, guest.why = HARD, 'did not converge last time'
    elif not alone.converges:
        guest.kind = HARD
        guest.why = 'needs throttling or post-copy (%s)' % alone.describe()
    elif dirty is not None and dirty > rules.QUIET_SHARE * link_mbps:
        guest.kind = BUSY
        guest.why = 'busy: dirtied %.0f MiB/s last time' % dirty
    else:
        guest.kind = QUIET
        guest.why = ('quiet: dirtied %.0f MiB/s last time' % dirty
                     if dirty is not None else 'quiet: no history')
    return guest


def schedule(guests: list, concurrency: int, link_mbps: float,
             conf: Any = CONF) -> list:
    """The groups to migrate, in order (see the module's docstring)."""
    for guest in guests:
        classify(guest, link_mbps, conf)
    quiet = sorted((g for g in guests if g.kind == QUIET),
                   key=lambda g: (g.memory_mb, g.name))
    groups: list = []
    current: list = []
    for guest in quiet:
        trial = current + [guest]
        preds = [predict(g, link_mbps, 1.0 / len(trial), conf)
                 for g in trial]
        if len(trial) <= concurrency and all(p.converges for p in preds):
            current = trial
            continue
        if current:
            groups.append(current)
        current = [guest]
    if current:
        groups.append(current)
    busy = sorted((g for g in guests if g.kind == BUSY),
                  key=lambda g: (g.alone_s, g.name))
    hard = sorted((g for g in guests if g.kind == HARD),
                  key=lambda g: (g.alone_s is None, g.alone_s or 0.0,
                                 g.memory_mb, g.name))
    groups += [[g] for g in busy] + [[g] for g in hard]
    # NOTE(qat-migration): members of a group share the link, so together
    # they take about as long as one after the other would (the link moves
    # the same bytes); the grouping only saves the gaps between them.
    return [Group(members, sum(g.alone_s for g in members)
                  if all(g.alone_s is not None for g in members) else None)
            for members in groups]
