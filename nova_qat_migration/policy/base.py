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


class InvalidPlan(ValueError):
    """A plan no libvirt call can be made from; names the field."""


#: ``field: (minimum, maximum)`` of a plan's integer fields (None allowed
#: where the field is Optional). Generous: QEMU's own limits, not the
#: options' (Nova's plan comes from options without a maximum).
_PLAN_INTS = {
    'parallel_connections': (1, 255),          # multifd-channels is uint8
    'xbzrle_cache_mb': (1, 1 << 24),           # 16 TiB
    'xbzrle_cache_max_mb': (1, 1 << 24),
    'mt_threads': (1, 255),
    'mt_dthreads': (1, 255),
    'throttle_initial': (1, 100),
    'throttle_increment': (1, 100),
    'max_downtime_ms': (1, 2000000),           # QEMU: 2000 s
    'post_copy_after_stalled': (1, 1000000),
    'progress_timeout_s': (0, 1 << 31),
    'bandwidth_mbps': (0, 1 << 32),
}
_PLAN_BOOLS = ('post_copy', 'qat_lease', 'nova_baseline')


def _int_ok(value: Any, low: int, high: int) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool) and
            low <= value <= high)


def validate_plan(plan: Any) -> None:
    """Check a plan a policy returned before it is translated.

    The built-in policies make valid plans by construction; a plugin's
    could carry a negative ``bandwidth_mbps`` or a NaN that libvirt
    would receive unchecked. The driver falls back to Nova's own plan
    when this raises.

    :raises InvalidPlan: naming the first bad field.
    """
    if not isinstance(plan, datamodel.Plan):
        raise InvalidPlan('a policy must return a Plan, got %s'
                          % type(plan).__name__)
    problems = []
    if not isinstance(plan.policy, str):
        problems.append('policy %r is not a name' % (plan.policy,))
    if plan.method not in datamodel.METHODS:
        problems.append('method %r is not one of %s'
                        % (plan.method, ', '.join(datamodel.METHODS)))
    low, high = datamodel.LEVEL_RANGES.get(plan.method, (0, 20))
    if plan.level is not None and not _int_ok(plan.level, low, high):
        problems.append('level %r is not an integer in %d..%d for %s'
                        % (plan.level, low, high, plan.method))
    for name, (low, high) in _PLAN_INTS.items():
        value = getattr(plan, name)
        optional = name not in ('parallel_connections', 'max_downtime_ms',
                                'progress_timeout_s', 'bandwidth_mbps')
        if value is None and optional:
            continue
        if not _int_ok(value, low, high):
            problems.append('%s %r is not an integer in %d..%d'
                            % (name, value, low, high))
    for name in _PLAN_BOOLS:
        if not isinstance(getattr(plan, name), bool):
            problems.append('%s %r is not a boolean'
                            % (name, getattr(plan, name)))
    fallbacks = plan.fallbacks
    if not isinstance(fallbacks, (tuple, list)):
        problems.append('fallbacks %r is not a list' % (fallbacks,))
        fallbacks = ()
    for fallback in fallbacks:
        method, level = (fallback if isinstance(fallback, (tuple, list))
                         and len(fallback) == 2 else (fallback, None))
        low, high = datamodel.LEVEL_RANGES.get(method, (0, 20))
        if method not in datamodel.METHODS or (
                level is not None and not _int_ok(level, low, high)):
            problems.append('fallback %r is not a method (and level)'
                            % (fallback,))
    if not isinstance(plan.reasons, (tuple, list)) or not all(
            isinstance(r, str) for r in plan.reasons):
        problems.append('reasons must be strings')
    if problems:
        raise InvalidPlan('invalid plan from policy %s: %s'
                          % (plan.policy, '; '.join(problems)))


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
      :meth:`plan` raises, or returns a plan :func:`validate_plan`
      refuses, the migration gets Nova's own plan.
    """

    #: The entry-point name, used in plans and logs.
    name: str = ''

    #: Whether this policy's plan is exactly Nova's own (nothing measured,
    #: nothing reported as a planner's prediction).
    reproduces_nova: bool = False

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
