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

One engine, three steps:

1. :func:`.common.limits`: what the operator's options and the instance's
   hints permit (methods, downtime, throttling, post-copy, channels);
2. :func:`.candidates.generate`: every plan those limits and both hosts
   allow -- QAT offload when a lease is free, software compression on
   idle cores, an XBZRLE cache from spare memory, plain multifd, plain
   pre-copy, each with its throttled and post-copy variants -- using this
   migration's share of the source when others are in flight;
3. a ranking: the convergence model (:mod:`.predictive`) predicts every
   candidate and keeps the fastest that converges, or a gentler one
   predicted nearly as fast (``gentle_tolerance``);
   with ``[qat_migration_adaptive] adaptive_model`` off, or when the model
   finds nothing that converges, the rules (:mod:`.rules`) choose among the
   same candidates with the same constants.

An image's hints only narrow: its method is chosen among the candidates
the operator's gates produced, its level and channels only lower theirs,
and when the narrowed plan is predicted not to converge while the
operator's plan does, the operator's runs (:mod:`.tenant`).

History of the instance's last migration and a sample of its pages refine
the guesses: an incompressible guest is not compressed, a guest whose
XBZRLE hit rate was poor gets no cache. Every decision is given a reason.
"""

from __future__ import annotations

from typing import Any, Optional

from nova_qat_migration.conf import policies as qat_opts
from nova_qat_migration import datamodel
from nova_qat_migration.policy import base
from nova_qat_migration.policy import candidates
from nova_qat_migration.policy import common
from nova_qat_migration.policy import predictive
from nova_qat_migration.policy import rules
from nova_qat_migration.policy import tenant


class AdaptivePolicy(base.Policy):
    name = 'adaptive'
    # Defined with the other options so that the start-up check can read
    # them without importing this policy.
    CONFIG_GROUP = qat_opts.adaptive_group
    CONFIG_OPTS = tuple(qat_opts.adaptive_opts)

    def __init__(self, options: Any = None,
                 shared: Optional[base.SharedOptions] = None) -> None:
        super().__init__(options, shared)
        self.calibration = datamodel.Calibration()

    def load(self) -> None:
        """Read the model's constants (``[qat_migration]
        model_calibration``) before any plan is made.
        """
        self.calibration = common.calibration(self.shared)

    def plan(self, facts: datamodel.Facts) -> datamodel.Plan:
        """The plan for ``facts``; the operator's when the image's hints
        would keep the guest from converging (:mod:`.tenant`).
        """
        return tenant.operator_last_word(facts, self._plan,
                                         self.calibration)

    def _plan(self, facts: datamodel.Facts) -> datamodel.Plan:
        lim = common.limits(self.shared, facts)
        cands = candidates.generate(self.shared, facts, lim)
        # The facts both rankings read, worked out once.
        derived = common.derive(self.shared, facts)
        load = derived.load
        plan = None
        if self.options.adaptive_model:
            picked = predictive.choose(
                facts, lim, cands.plans, load, self.calibration,
                tolerance=self.options.gentle_tolerance, derived=derived)
            if picked is not None:
                best, prediction, scored, trade = picked
                notes = [trade] if trade else []
                cost = common.cpu_cost(facts, best, self.calibration,
                                       derived)
                notes += [cost] if cost else []
                notes += cands.notes
                if derived.dirty_rate is None:
                    notes.append('dirty rate unknown: predicted as an idle '
                                 'guest')
                plan = best.because(
                    predictive.explain(best, prediction, scored), *notes)
        if plan is None:
            plan = rules.choose(self.shared, facts, lim, cands, load,
                                self.calibration, derived)
            if self.options.adaptive_model:
                plan = plan.because(
                    'model: no candidate converges within %d ms; rule-based '
                    'plan kept' % lim.max_downtime_ms)
        sharing = common.sharing_reason(facts)
        return plan.because(sharing) if sharing else plan
