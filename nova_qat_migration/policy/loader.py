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
"""Loading migration policies from the ``nova_qat_migration.policies``
entry-point namespace (stevedore).

Loading a policy registers its options (``CONFIG_OPTS``) in its own group,
``[qat_migration_<name>]``, constructs it with that group and the shared
options (:class:`.base.SharedOptions`) and calls its ``load()``, in that
order (see :class:`.base.Policy`).
"""

from __future__ import annotations

import threading
from typing import Any

from stevedore import driver
from stevedore import exception as stevedore_exc
from stevedore import extension

from nova_qat_migration.conf import opts as conf_opts
from nova_qat_migration import datamodel
from nova_qat_migration import exception
from nova_qat_migration.policy import base

NAMESPACE = conf_opts.POLICY_NAMESPACE


#: Defined in :mod:`nova_qat_migration.exception`; importable from here.
#: ``UnknownPolicy`` is the base of the two others.
UnknownPolicy = exception.UnknownPolicy
PolicyNotFound = exception.PolicyNotFound
PolicyLoadError = exception.PolicyLoadError


def available() -> list:
    """Names of the installed policies (stevedore imports each)."""
    mgr = extension.ExtensionManager(NAMESPACE, invoke_on_load=False)
    return sorted(mgr.names())


def register_opts(conf: Any, plugin: type) -> Any:
    """Register ``plugin``'s options in ``[qat_migration_<name>]``; see
    :func:`.base.register_opts`.
    """
    return base.register_opts(conf, plugin)


def load_policy(name: str, conf: Any) -> base.Policy:
    """Load the policy ``name``: register its options, construct it with
    its own group and the shared options, and call its ``load()``.

    :raises PolicyNotFound: naming the installed policies, when ``name``
        is not one.
    :raises PolicyLoadError: when its plugin fails to import, is not a
        :class:`.base.Policy`, or its options, construction or ``load()``
        fail.
    """
    def _failed(manager, entrypoint, exc):
        raise PolicyLoadError('Migration policy %r failed to load: %s'
                              % (entrypoint.name, exc))

    try:
        mgr = driver.DriverManager(NAMESPACE, name, invoke_on_load=False,
                                   on_load_failure_callback=_failed)
    except stevedore_exc.NoMatches:
        raise PolicyNotFound(
            'Unknown migration policy %r ([qat_migration] policy or the '
            'qat_migration:policy extra spec); installed policies: %s'
            % (name, ', '.join(available()) or 'none'))
    plugin = mgr.extensions[0].plugin
    if not (isinstance(plugin, type) and issubclass(plugin, base.Policy)):
        raise PolicyLoadError('Migration policy %r is not a Policy (%r)'
                              % (name, plugin))
    options = register_opts(conf, plugin)
    # NOTE(qat-migration): a third-party plugin's constructor and load()
    # may raise anything; whatever it is, the policy is unusable, and
    # the caller decides (nova-compute refuses to start, or one instance
    # gets Nova's plan), so the error is carried, with its message.
    try:
        policy = plugin(options, base.SharedOptions(conf))
        policy.load()
    except Exception as exc:
        raise PolicyLoadError('Migration policy %r failed to load: %s'
                              % (name, exc)) from exc
    return policy


class PolicySet:
    """The configured policy plus any named by instances, loaded once.

    Shared by concurrent migrations (each on its own thread): the cache is
    filled under a lock so two first uses of a name load one instance.
    """

    def __init__(self, conf: Any) -> None:
        self.conf = conf
        self._loaded: dict = {}
        self._lock = threading.Lock()
        # Loaded now so that a bad name stops nova-compute at start-up.
        self.get(conf.qat_migration.policy)

    @property
    def default(self) -> base.Policy:
        """The configured policy, read per migration: ``policy`` is a
        mutable option (a SIGHUP after editing nova.conf switches it).
        """
        return self.get(self.conf.qat_migration.policy)

    def get(self, name: str) -> base.Policy:
        """The policy ``name``, loaded on first use.

        :raises UnknownPolicy: see :func:`load_policy` (not cached, so a
            plugin installed later loads on the next use).
        """
        with self._lock:
            policy = self._loaded.get(name)
            if policy is None:
                policy = self._loaded[name] = load_policy(name, self.conf)
            return policy

    def for_hints(self, hints: datamodel.Hints) -> base.Policy:
        return self.get(hints.policy) if hints.policy else self.default
