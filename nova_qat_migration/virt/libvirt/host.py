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
"""What this host can do for a migration, and how it tells placement.

Also where the host's migration history and QAT device manager are made.

:class:`QATHostMixin` holds the driver's view of its hypervisor: probed at
start-up, re-probed through a running domain while the multifd methods are
provisional (from a local binary, or unknown), and published as
``CUSTOM_MIGRATION_*`` traits by Nova's periodic ``update_provider_tree``
(with the QAT device manager's own providers and host trait).
"""

from __future__ import annotations

import time
from typing import Any, Optional

from oslo_log import log as logging

from nova_qat_migration import conf as qat_conf
from nova_qat_migration import datamodel
from nova_qat_migration import history as qat_history
from nova_qat_migration.qat import manager as qat_manager
from nova_qat_migration.virt.libvirt import capabilities
from nova_qat_migration.virt.libvirt import introspect
from nova_qat_migration.virt.libvirt import migration_traits

CONF = qat_conf.CONF
LOG = logging.getLogger(__name__)


class QATHostMixin(introspect.QATIntrospectionMixin):
    """The hypervisor's capabilities and the host's traits.

    Mixed into :class:`~.driver.QATMigrationMixin`, which owns the
    attributes (``_qat_caps``, ``_qat_reprobe_after``, ``_qat_manager``)
    and the probe (``qat_probe_hypervisor``, replaceable in tests).
    """

    _qat_reprobe_after: float
    _host: Any
    qat_probe_hypervisor: Any

    @staticmethod
    def _qat_enabled() -> bool:
        return bool(CONF.qat_migration.enabled)

    def _qat_probe(self) -> datamodel.HypervisorCaps:
        """Probe at start-up (see :func:`.capabilities.probe_methods`).

        Provisional methods (from a local binary, or unknown) are
        re-probed through libvirt by :meth:`_qat_reprobe` and
        :meth:`_qat_source_caps`.
        """
        self._qat_reprobe_after = (time.monotonic() +
                                   capabilities.REPROBE_INTERVAL_S)
        try:
            return self.qat_probe_hypervisor(self._host.get_connection())
        except Exception as exc:  # degrade, never fail start
            LOG.warning('Could not probe migration capabilities (%s); only '
                        'plans that need no hypervisor feature are used.',
                        exc)
            # NOTE(qat-migration): conservative: no multifd compression
            # (libvirt 0), no mt (QEMU >= 9.1), no post-copy; provisional,
            # so a later re-probe may read the real versions and methods.
            return datamodel.HypervisorCaps(
                libvirt_version=(0, 0, 0), qemu_version=(9, 1, 0),
                multifd_methods=frozenset({'none'}), postcopy=False,
                methods_source=capabilities.SOURCE_UNKNOWN)

    def _qat_reprobe(self) -> None:
        """Re-probe provisional multifd methods through a running domain.

        At start-up no domain may be running yet (a new host), so the
        methods may have come from a local binary or be unknown. Called
        from Nova's periodic ``update_provider_tree``, so the traits follow;
        at most once per :data:`.capabilities.REPROBE_INTERVAL_S`, and only
        while :func:`.capabilities.needs_reprobe`. Never raises.
        """
        caps = self._qat_caps
        if not capabilities.needs_reprobe(caps):
            return
        now = time.monotonic()
        if now < self._qat_reprobe_after:
            return
        self._qat_reprobe_after = now + capabilities.REPROBE_INTERVAL_S
        try:
            self._qat_caps = capabilities.reprobe(
                self._host.get_connection(), caps)
        except Exception as exc:  # periodic, best effort
            LOG.warning('Could not re-probe the multifd compression '
                        'methods: %s', exc)

    def _qat_source_caps(self, instance: Any) -> datamodel.HypervisorCaps:
        """This host's capabilities for planning ``instance``'s migration.

        NOTE(qat-migration): while the host's methods are provisional, the
        domain being migrated is a running QEMU that can be asked through
        libvirt (see :func:`.capabilities.reprobe`): what it says holds
        for this migration, and for the host when its QEMU is libvirt's
        current one (traits follow at the next ``update_provider_tree``).
        """
        caps = self._qat_caps
        if not capabilities.needs_reprobe(caps):
            return caps
        try:
            domain = self._host.get_guest(instance)._domain
            found = capabilities.reprobe(self._host.get_connection(), caps,
                                         domain=domain)
        except Exception as exc:  # plan with what we have
            LOG.warning('Could not read the multifd compression methods '
                        'through the migrating domain: %s', exc,
                        instance=instance)
            return caps
        if found.methods_source == capabilities.SOURCE_QMP:
            self._qat_caps = found
        return found

    def update_provider_tree(self, provider_tree: Any, nodename: str,
                             allocations: Optional[dict] = None) -> None:
        super().update_provider_tree(provider_tree, nodename,
                                     allocations=allocations)
        enabled = self._qat_enabled() and self._qat_caps is not None
        if enabled:
            self._qat_reprobe()
        if enabled and self._qat_manager is not None:
            # NOTE(qat-migration): QAT's own providers, and the host trait
            # saying whether this host can lend QAT to a migration
            # (``qat.placement.HOST_TRAIT``): the manager is their one
            # writer.
            try:
                self._qat_manager.update_provider_tree(
                    provider_tree, nodename, allocations)
            except Exception as exc:
                LOG.warning('QAT inventory not updated: %s', exc)
        ours = (migration_traits.traits_for(self._qat_caps) if enabled
                else set())
        try:
            current = set(provider_tree.data(nodename).traits)
        except ValueError as exc:   # the provider is not in the tree
            LOG.debug('No provider %s in the tree: %s', nodename, exc)
            current = set()
        # NOTE(qat-migration): only our own namespace is ever removed, so
        # Nova's traits (and an operator's) survive; stale ones of ours
        # (e.g. after a QEMU downgrade or disabling the planner) do not.
        stale = {t for t in current
                 if t.startswith(migration_traits.TRAIT_PREFIX)} - ours
        if ours:
            provider_tree.add_traits(nodename, *sorted(ours))
        if stale:
            provider_tree.remove_traits(nodename, *sorted(stale))

    @staticmethod
    def _qat_make_history() -> qat_history.HistoryStore:
        try:
            return qat_history.HistoryStore.from_conf(CONF)
        except Exception as exc:
            LOG.warning('Migration history unavailable (%s); kept in memory',
                        exc)
            return qat_history.HistoryStore(
                None, CONF.qat_migration.history_max_entries)

    @staticmethod
    def _qat_make_manager() -> Any:
        try:
            return qat_manager.QATManager(CONF)
        except Exception as exc:
            LOG.warning('QAT device manager failed to start (%s): plans use '
                        'no QAT.', exc)
            return None
