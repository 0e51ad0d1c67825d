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
"""The operator's last word over a tenant's image hints.

Image properties may only narrow what the operator allows (a lower
downtime, no post-copy, no throttling, a method among the gated ones),
and every narrowing is valid on its own -- but together with a busy
guest they can leave no plan that finishes: a guest that converges
under the operator's plan would then run into the progress timeout on
every attempt, and the operator could not move it off the host. So a
built-in policy plans with the image's hints, and when the convergence
model predicts that this plan does not finish while the plan made from
the operator's hints alone (the flavor's, :attr:`~.datamodel.Hints.
operator`) does, the operator's plan runs and its reasons say which
image hints were set aside.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from nova_qat_migration import datamodel
from nova_qat_migration.policy import common
from nova_qat_migration.policy import predictive


def converges(facts: datamodel.Facts, plan: datamodel.Plan,
              cal: datamodel.Calibration) -> bool:
    """Whether the model predicts ``plan`` finishes within its downtime
    and Nova's completion timeout (the test :func:`.predictive.choose`
    ranks by).
    """
    pred = predictive.predict(facts, plan, cal)
    deadline = facts.nova.completion_timeout_s(facts.instance.memory_mb)
    return (pred.converges and pred.downtime_ms <= plan.max_downtime_ms and
            pred.total_s <= deadline)


def narrowed(hints: datamodel.Hints) -> list:
    """``key=value`` of each hint the image changed."""
    operator = hints.operator or hints
    return ['%s=%s' % (f.name, getattr(hints, f.name))
            for f in dataclasses.fields(datamodel.Hints)
            if f.name != 'operator' and
            getattr(hints, f.name) != getattr(operator, f.name)]


def operator_last_word(facts: datamodel.Facts,
                       plan_with: Callable[[datamodel.Facts],
                                           datamodel.Plan],
                       cal: datamodel.Calibration) -> datamodel.Plan:
    """``plan_with(facts)``, or the operator's plan when the image's
    hints would keep a guest from converging that the operator's plan
    moves.

    :param plan_with: the policy's planning function (without this
        check).
    :param cal: the model's constants.
    """
    plan = plan_with(facts)
    hints = facts.instance.hints
    if hints.operator is None:
        return plan
    operator_facts = common.operator_view(facts)
    # NOTE(qat-migration): both plans are judged on the operator's view
    # of the guest: an image's working set (which the model reads) must
    # not talk the check into a convergence the measurements deny.
    if converges(operator_facts, plan, cal):
        return plan
    operator_plan = plan_with(operator_facts)
    if not converges(operator_facts, operator_plan, cal):
        # Neither finishes: the tenant's narrowing costs nothing more.
        return plan
    return operator_plan.because(
        'image hints %s set aside: with them the model predicts no '
        'convergence (%s), the operator\'s plan converges'
        % (', '.join(narrowed(hints)), plan.describe()))


def plan_any(conf: Any, facts: datamodel.Facts,
             plan_with: Callable[[datamodel.Facts], datamodel.Plan],
             ) -> datamodel.Plan:
    """:func:`operator_last_word` with ``conf``'s calibration (for the
    policies that do not load one themselves).
    """
    return operator_last_word(facts, plan_with, predictive.calibration(conf))
