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
"""The policy plugin interface.

A policy is loaded by name from the ``nova_qat_migration.policies``
entry-point namespace (see :mod:`.loader`). It gets the facts the driver
gathered (:mod:`nova_qat_migration.datamodel`) and returns a plan; the
driver executes the plan and asks the policy again on every progress
sample.
"""

from __future__ import annotations

import abc
from typing import Any, Sequence

from nova_qat_migration import datamodel
from nova_qat_migration.policy import escalation


class Policy(metaclass=abc.ABCMeta):
    """A migration policy: facts in, plan out.

    Loaded by name from the ``nova_qat_migration.policies`` entry-point
    namespace. Implementations must be pure (no I/O, no libvirt): the
    driver gathers facts and executes plans.
    """

    #: The entry-point name, used in plans and logs.
    name: str = ''

    def __init__(self, conf: Any) -> None:
        self.conf = conf

    @abc.abstractmethod
    def plan(self, facts: datamodel.Facts) -> datamodel.Plan:
        """Choose a plan for one migration."""

    def on_progress(self, plan: datamodel.Plan, progress: datamodel.Progress,
                    ) -> Sequence[datamodel.Action]:
        """Escalations to apply while the migration runs.

        The default is :func:`.escalation.escalate`; policies may
        override.
        """
        return escalation.escalate(plan, progress)
