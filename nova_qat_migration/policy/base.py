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
from typing import Any, Optional, Sequence, Union

from oslo_config import cfg

from nova_qat_migration import datamodel
from nova_qat_migration.policy import escalation


class Policy(metaclass=abc.ABCMeta):
    """A migration policy: facts in, plan out.

    The contract between a policy and the driver that loads it:

    * **Options.** A policy's own options go in its own group:
      ``CONFIG_GROUP`` names it (a name or a ``cfg.OptGroup``, e.g.
      ``qat_migration_<name>``) and ``CONFIG_OPTS`` lists them. The loader
      registers them on the configuration before constructing the policy,
      and ``oslo-config-generator`` lists them in the sample file and the
      configuration reference. ``[qat_migration]`` options are shared by
      all policies; read them, do not add to them.
    * **Construction** gets the configuration object and keeps it;
      reading anything belongs in :meth:`load`.
    * :meth:`load` reads what the policy needs from outside the
      configuration (files such as a calibration). The loader calls it once
      after construction, before the policy's first :meth:`plan`. The
      loader does not re-read nova.conf (mutable options such as
      ``[qat_migration] policy`` are read per migration), so it is not
      called again: a policy instance lives as long as nova-compute. An
      exception it raises makes the policy fail to load: nova-compute
      refuses to start for the configured policy, and an instance naming
      the policy gets Nova's own plan.
    * :meth:`plan` and :meth:`on_progress` are pure: no I/O, no file reads,
      no libvirt, no sleeping. The driver gathers the facts before and
      executes the plan after; it makes one plan at a time, and calls
      :meth:`on_progress` from each running migration's thread. If
      :meth:`plan` raises, the migration gets Nova's own plan.
    """

    #: The entry-point name, used in plans and logs.
    name: str = ''

    #: The group of the policy's own options, or None when it has none.
    CONFIG_GROUP: Optional[Union[str, cfg.OptGroup]] = None

    #: The policy's own options (``cfg.Opt`` instances) in ``CONFIG_GROUP``.
    CONFIG_OPTS: Sequence[cfg.Opt] = ()

    def __init__(self, conf: Any) -> None:
        self.conf = conf

    def load(self) -> None:
        """Read the policy's inputs from outside nova.conf (files).

        Called by the loader after construction, before the first
        :meth:`plan`. The default does nothing.
        """

    @abc.abstractmethod
    def plan(self, facts: datamodel.Facts) -> datamodel.Plan:
        """Choose a plan for one migration (pure: see the class)."""

    def on_progress(self, plan: datamodel.Plan, progress: datamodel.Progress,
                    ) -> Sequence[datamodel.Action]:
        """Escalations to apply while the migration runs.

        The default is :func:`.escalation.escalate`; policies may
        override.
        """
        return escalation.escalate(plan, progress)
