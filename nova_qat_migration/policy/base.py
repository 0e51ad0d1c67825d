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
from nova_qat_migration import exception
from nova_qat_migration.policy import escalation


#: Defined in :mod:`nova_qat_migration.exception`; importable from here.
InvalidPlan = exception.InvalidPlan


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


#: The prefix of a policy's own option group: ``qat_migration_<name>``.
GROUP_PREFIX = 'qat_migration_'


def group_name(name: str) -> str:
    """The option group of the policy ``name``: ``qat_migration_<name>``."""
    return GROUP_PREFIX + name


class SharedOptions:
    """What a policy may read besides its own group, handed to it
    explicitly by the loader.

    * ``qat_migration``: the ``[qat_migration]`` options every policy
      shares (the operator's limits: allowed methods, downtime, channels,
      memory headroom, the model's calibration...);
    * ``libvirt``: Nova's ``[libvirt]`` options, which ``[qat_migration]``
      follows while unset (:func:`nova_qat_migration.conf.nova_ceiling`).

    Nothing else of nova.conf is reachable from it: a policy does not read
    another policy's group. Read-only by construction (oslo.config groups
    refuse assignment).
    """

    GROUPS = ('qat_migration', 'libvirt')

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self._conf = conf

    @property
    def qat_migration(self) -> Any:
        return self._conf.qat_migration

    @property
    def libvirt(self) -> Any:
        return self._conf.libvirt

    def __contains__(self, group: str) -> bool:
        return group in self.GROUPS and group in self._conf


def register_opts(conf: cfg.ConfigOpts, plugin: type) -> Optional[Any]:
    """Register ``plugin``'s ``CONFIG_OPTS`` in ``[qat_migration_<name>]``.

    Registering the same options again is harmless.

    :returns: the group's values (what the policy gets as ``options``), or
        None when the policy declares no options.
    :raises PolicyLoadError: when ``CONFIG_GROUP`` names another group, or
        the options clash with registered ones.
    """
    if not plugin.CONFIG_OPTS:
        return None
    name = group_name(plugin.name)
    group = plugin.CONFIG_GROUP
    if group is None:
        group = name
    if getattr(group, 'name', group) != name:
        raise exception.PolicyLoadError(
            'Migration policy %r declares its options in [%s]; they '
            'belong in [%s]' % (plugin.name, getattr(group, 'name', group),
                                name))
    try:
        conf.register_opts(list(plugin.CONFIG_OPTS), group=group)
    except (cfg.Error, ValueError, TypeError) as exc:
        raise exception.PolicyLoadError(
            'Migration policy %r: its options cannot be registered: %s'
            % (plugin.name, exc))
    return conf[name]


class Policy(metaclass=abc.ABCMeta):
    """A migration policy: facts in, plan out.

    The contract between a policy and the driver that loads it (as
    os-vif's ``PluginBase.load`` and watcher's loader do):

    * **Options.** A policy's own options go in its own group,
      ``[qat_migration_<name>]``: ``CONFIG_OPTS`` lists them, and
      ``CONFIG_GROUP`` may give that group as a ``cfg.OptGroup`` (for its
      title and help in the sample file); another group name makes the
      policy fail to load. The loader registers them before constructing
      the policy, and ``oslo-config-generator`` lists them in the sample
      file and the configuration reference. ``[qat_migration]`` options
      are shared by all policies; read them, do not add to them.
    * **Construction** gets ``options``, the policy's own group (None when
      it declares no options), and ``shared``, a :class:`SharedOptions`
      (``[qat_migration]`` and Nova's ``[libvirt]``): never the whole
      configuration. Reading anything belongs in :meth:`load`. (Given one
      ``cfg.ConfigOpts`` instead, as tests and tools do, the policy
      registers its options and takes both parts from it, as the loader
      would.)
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
    * ``reproduces_nova`` says the policy's plans are exactly Nova's own
      (the driver then leaves Nova's flags, monitor and measurements
      alone); the driver asks this attribute, never a policy's name.
    """

    #: The entry-point name, used in plans and logs.
    name: str = ''

    #: ``[qat_migration_<name>]`` as a ``cfg.OptGroup`` (title, help), or
    #: None (the loader then registers the group by name).
    CONFIG_GROUP: Optional[Union[str, cfg.OptGroup]] = None

    #: The policy's own options (``cfg.Opt`` instances).
    CONFIG_OPTS: Sequence[cfg.Opt] = ()

    #: Whether this policy's plan is exactly Nova's own (nothing measured,
    #: nothing reported as a planner's prediction).
    reproduces_nova: bool = False

    def __init__(self, options: Any = None,
                 shared: Optional[SharedOptions] = None) -> None:
        if isinstance(options, cfg.ConfigOpts):
            conf = options
            options = register_opts(conf, type(self))
            shared = SharedOptions(conf)
        #: The policy's own group (``[qat_migration_<name>]``) or None.
        self.options = options
        #: ``[qat_migration]`` and ``[libvirt]`` (:class:`SharedOptions`).
        self.shared = shared

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
