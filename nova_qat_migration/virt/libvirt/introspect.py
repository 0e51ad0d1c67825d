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
"""What the driver holds, for checks from outside it (lab, tests).

The lab checks that migrations leave no session, share or lease behind
and which methods a host advertises; it reads them through
:meth:`QATIntrospectionMixin.qat_introspect` rather than the driver's
private attributes, which stay free to change. One test fixture may also
change what the driver believes about its hypervisor
(:meth:`QATIntrospectionMixin.qat_set_test_capabilities`), e.g. that a
host decodes ``qatzip`` where its QEMU does not; nothing in the product
calls it.
"""

from __future__ import annotations

from typing import Any, Optional

from oslo_log import log as logging

from nova_qat_migration import datamodel

LOG = logging.getLogger(__name__)


class QATIntrospectionMixin:
    """A read-only view of the planner's state, and one test hook.

    Mixed into :class:`~.driver.QATMigrationMixin`, which owns the
    attributes read here.
    """

    _qat_caps: Optional[datamodel.HypervisorCaps]
    _qat_sessions: dict
    _qat_budget: Any
    _qat_history: Any
    _qat_manager: Any

    def qat_introspect(self) -> dict:
        """The planner's state, for checks (the lab's, tests').

        :returns: ``{'capabilities': HypervisorCaps or None (not yet
            probed), 'sessions': {instance UUID: MigrationSession} (a
            copy: the migrations running now), 'budget': HostBudget,
            'history': HistoryStore or None, 'manager': the QAT device
            manager or None}``. The objects are the driver's own: read
            them, do not change them.
        """
        with self._qat_sessions_lock:
            sessions = dict(self._qat_sessions)
        return {'capabilities': self._qat_caps,
                'sessions': sessions,
                'budget': self._qat_budget,
                'history': self._qat_history,
                'manager': self._qat_manager}

    def qat_set_test_capabilities(
            self, caps: Optional[datamodel.HypervisorCaps],
    ) -> Optional[datamodel.HypervisorCaps]:
        """Test fixture: plan and advertise traits as if the hypervisor
        had ``caps``.

        For a lab or test that pretends a host can do what its QEMU
        cannot (decode ``qatzip``, or a libvirt too old to send ``zstd``
        itself); the next ``update_provider_tree`` publishes the traits.
        A re-probe of provisional methods may replace them, as it would
        the probed ones. Never called by the product.

        :param caps: the capabilities to use (None: not probed yet).
        :returns: the capabilities used before, to restore them with a
            second call.
        """
        previous = self._qat_caps
        LOG.warning('Test fixture: hypervisor capabilities set to %s '
                    '(were %s)', caps, previous)
        self._qat_caps = caps
        return previous
