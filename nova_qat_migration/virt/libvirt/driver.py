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
"""Nova's libvirt driver, planning every live migration per instance.

:class:`QATMigrationMixin` hooks Nova's own live-migration path without
copying any of its methods:

``init_host``, ``update_provider_tree``
    start the planner (options, policies, hypervisor probe, history, QAT
    device manager) and publish what this host can receive as
    ``CUSTOM_MIGRATION_*`` traits.
(no pre-check of our own)
    a bad ``qat_migration:*`` flavor extra spec or image property never
    refuses a migration: it is ignored with a warning naming it (log,
    report notes, notification) when the migration is planned.
``_live_migration`` (the caller's thread)
    plans the migration (:mod:`.planning`: gathers the facts, runs the
    policy, translates the plan, takes a QAT lease when the plan wants
    one), reserves the migration's share of the host (:mod:`.budget`) and
    registers a
    :class:`~.session.MigrationSession` under the instance UUID for the
    duration of this migration only; then Nova's ``_live_migration`` runs
    unchanged, and the report is emitted when it returns.
``_live_migration_operation`` (Nova's operation thread)
    hands Nova a :class:`~nova.virt.libvirt.guest.Guest` whose domain is an
    :class:`~.operation.PlannedDomain`: Nova builds its params and flags as
    always and the proxy sends the planned call instead.
``_live_migration_monitor`` (the caller's thread)
    hands Nova's monitor a Guest whose domain is an
    :class:`~.monitor.MonitoredDomain` (it runs the policy's escalations
    and scales Nova's downtime steps) and marks the session as monitored
    in this thread: ``_get_migration_flags``, where Nova's monitor asks
    for its flags, finds the session in the same registry.

Both threads reach the session through one channel, the registry keyed
by instance UUID (:meth:`QATMigrationMixin._qat_session`), and both get
their flags from :meth:`~.session.MigrationSession.flags_for`.

Checks from outside (the lab) read the planner's state through
:meth:`~.introspect.QATIntrospectionMixin.qat_introspect`.

Nothing host-wide is mutated (``_live_migration_flags`` stays Nova's), so
concurrent migrations each see only their own plan.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Optional

from nova import exception
from nova.virt.libvirt import driver as nova_driver
from nova.virt.libvirt import guest as libvirt_guest
from oslo_log import log as logging

from nova_qat_migration import budget as qat_budget
from nova_qat_migration import conf as qat_conf
from nova_qat_migration import datamodel
from nova_qat_migration import history as qat_history
from nova_qat_migration.policy import loader
from nova_qat_migration.virt.libvirt import capabilities
from nova_qat_migration.virt.libvirt import facts as qat_facts
from nova_qat_migration.virt.libvirt import finish
from nova_qat_migration.virt.libvirt import migration_traits
from nova_qat_migration.virt.libvirt import monitor as lm_monitor
from nova_qat_migration.virt.libvirt import operation as lm_operation
from nova_qat_migration.virt.libvirt import planning
from nova_qat_migration.virt.libvirt import session as lm_session
from nova_qat_migration.virt.libvirt import socket_queues

CONF = qat_conf.CONF
LOG = logging.getLogger(__name__)


class QATMigrationMixin(planning.QATPlanningMixin):
    """Per-instance live-migration planning for ``LibvirtDriver``.

    Mix in before ``LibvirtDriver``. With ``[qat_migration] enabled =
    False`` every hook calls straight through to Nova.
    """

    #: Replaceable in tests (Nova's fake libvirt has no QEMU to ask).
    qat_probe_hypervisor = staticmethod(capabilities.probe_hypervisor)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._qat_sessions: dict = {}
        self._qat_sessions_lock = threading.Lock()
        self._qat_start_lock = threading.Lock()
        #: what the migrations in flight hold (link, cores, memory, QAT)
        self._qat_budget = qat_budget.HostBudget(CONF)
        #: plans are made one at a time, each against the others' shares
        self._qat_plan_lock = threading.Lock()
        self._qat_policies: Optional[loader.PolicySet] = None
        self._qat_caps: Optional[datamodel.HypervisorCaps] = None
        #: when provisional multifd methods may be re-probed (monotonic s)
        self._qat_reprobe_after = 0.0
        self._qat_history: Optional[qat_history.HistoryStore] = None
        self._qat_manager: Any = None
        #: this compute's ``host`` (from ``init_host``), for the report
        self._qat_host_name: Optional[str] = None

    # -- start-up ----------------------------------------------------------

    def init_host(self, host: str) -> Any:
        result = super().init_host(host)
        self._qat_host_name = host
        if not self._qat_enabled():
            LOG.info('[qat_migration] enabled is False: live migrations use '
                     'Nova\'s own plan.')
            return result
        try:
            self._qat_start()
        except (qat_conf.ConfigError, loader.UnknownPolicy) as exc:
            raise exception.InvalidConfiguration(str(exc))
        LOG.info('Live-migration planning enabled: policy %(policy)s, '
                 'traits %(traits)s',
                 {'policy': CONF.qat_migration.policy,
                  'traits': ', '.join(sorted(
                      migration_traits.traits_for(self._qat_caps)))})
        warning = socket_queues.advice_from_conf(
            CONF, socket_queues.unsent_cap_bytes())
        if warning:
            LOG.warning(warning)
        return result

    def _qat_start(self) -> None:
        """Check options, load policies, probe capabilities (once).

        :raises ConfigError, UnknownPolicy: for ``init_host`` to turn into
            a start-up failure naming the option or the installed policies.
        """
        qat_conf.check(CONF)
        policies = loader.PolicySet(CONF)
        # Load the fallback now so a broken install fails at start-up.
        policies.get(planning.NOVA_DEFAULT)
        for name in CONF.qat_migration.image_policies:
            try:
                policies.get(name)
            except loader.UnknownPolicy as exc:
                raise qat_conf.ConfigError(
                    '[qat_migration] image_policies: %s' % exc)
        self._qat_caps = self._qat_probe()
        self._qat_history = self._qat_make_history()
        self._qat_manager = self._qat_make_manager()
        self._qat_policies = policies

    def _qat_ready(self) -> bool:
        """Whether migrations are planned; starts the planner if needed.

        NOTE(qat-migration): ``init_host`` starts it; the lazy start covers
        drivers used without ``init_host`` (Nova's own unit tests, which we
        run against this class). A failure here means Nova's own plan.
        """
        if not self._qat_enabled():
            return False
        if self._qat_policies is None:
            # NOTE(qat-migration): its own lock: the start probes QEMU
            # (seconds), and running migrations must still find their
            # sessions meanwhile.
            with self._qat_start_lock:
                if self._qat_policies is None:
                    try:
                        self._qat_start()
                    except Exception as exc:
                        LOG.warning('Live-migration planner unavailable '
                                    '(%s); Nova\'s own plan is used.', exc)
                        return False
        return True

    # -- Nova's live-migration path ---------------------------------------

    def _qat_session(self, instance: Any,
                     ) -> Optional[lm_session.MigrationSession]:
        """The session of ``instance``'s migration while it runs here.

        The one channel from Nova's threads to a session: the operation
        hook and the monitor hook look it up here, and
        ``_get_migration_flags`` in the same registry
        (:meth:`_qat_monitored_session`). The proxies around Nova's
        domain carry it no further than the domain calls: Nova's monitor
        asks for its flags naming neither the instance nor the guest, and
        only a wrapper around its ``migrate_data`` (a versioned object
        Nova hands on to the compute manager) could carry the session
        there. The registry also bounds every lookup to the migration's
        own lifetime (``_live_migration``).
        """
        uuid = qat_facts.field(instance, 'uuid')
        with self._qat_sessions_lock:
            return self._qat_sessions.get(uuid)

    def _qat_monitored_session(self,
                               ) -> Optional[lm_session.MigrationSession]:
        """The registered session whose monitor runs in this thread."""
        here = threading.get_ident()
        with self._qat_sessions_lock:
            for session in self._qat_sessions.values():
                if session.monitor_thread == here:
                    return session
        return None

    def _live_migration(self, context: Any, instance: Any, dest: str,
                        post_method: Any, recover_method: Any,
                        block_migration: bool, migrate_data: Any) -> Any:
        if not self._qat_ready():
            return super()._live_migration(
                context, instance, dest, post_method, recover_method,
                block_migration, migrate_data)
        with contextlib.ExitStack() as stack:
            try:
                # NOTE(qat-migration): concurrent migrations share this
                # host: each plan sees what the others hold, and holds its
                # own share before the next plan is made. The facts are
                # gathered before the lock: measuring one guest (seconds)
                # must not hold up another migration's planning.
                gathered = self._qat_gather(context, instance, dest,
                                            migrate_data)
                with self._qat_plan_lock:
                    session = self._qat_plan(context, instance, dest,
                                             migrate_data, gathered)
                    self._qat_take_lease(stack, session)
                    self._qat_budget.reserve(session)
                    session.budget = self._qat_budget
                    stack.callback(self._qat_budget.release, session)
            except Exception:  # never worse than Nova
                LOG.exception('Live-migration planning failed; Nova\'s own '
                              'plan is used.', instance=instance)
                stack.close()
                return super()._live_migration(
                    context, instance, dest, post_method, recover_method,
                    block_migration, migrate_data)
            LOG.info('Live migration planned: %(plan)s (%(reasons)s)',
                     {'plan': session.plan.describe(),
                      'reasons': '; '.join(session.call.reasons) or '-'},
                     instance=instance)
            with self._qat_sessions_lock:
                self._qat_sessions[instance.uuid] = session
            try:
                return super()._live_migration(
                    context, instance, dest, post_method, recover_method,
                    block_migration, migrate_data)
            finally:
                self._qat_report(session, dest,
                                 getattr(context, 'request_id', None))
                session.unwatch_job()
                with self._qat_sessions_lock:
                    self._qat_sessions.pop(instance.uuid, None)

    def _qat_report(self, session: lm_session.MigrationSession,
                    dest: Optional[str] = None,
                    request_id: Optional[str] = None) -> None:
        finish.report_session(session, self._qat_host_name or CONF.host,
                              self._qat_history, dest, request_id)

    def _live_migration_operation(self, context: Any, instance: Any,
                                  dest: str, block_migration: bool,
                                  migrate_data: Any, guest: Any,
                                  device_names: Any) -> Any:
        session = self._qat_session(instance)
        # NOTE(qat-migration): Nova's own plan goes through the proxy too:
        # it sends exactly Nova's flags and params, less the -global pairs
        # an earlier passthrough migration left in the definition. So does
        # a migration that is not planned at all (planner disabled, or
        # planning failed): it must not persist those pairs either.
        if session is not None:
            guest = libvirt_guest.Guest(
                lm_operation.PlannedDomain(guest._domain, session))
        elif not isinstance(guest._domain, lm_operation.CleanDomain):
            # The Guest Nova made for this migration alone: its domain
            # goes out clean whoever calls it.
            guest._domain = lm_operation.CleanDomain(guest._domain, instance)
        return super()._live_migration_operation(
            context, instance, dest, block_migration, migrate_data, guest,
            device_names)

    def _live_migration_monitor(self, context: Any, instance: Any,
                                guest: Any, dest: str, post_method: Any,
                                recover_method: Any, block_migration: bool,
                                migrate_data: Any, future: Any,
                                disk_paths: Any) -> Any:
        session = self._qat_session(instance)
        if session is None:
            return super()._live_migration_monitor(
                context, instance, guest, dest, post_method, recover_method,
                block_migration, migrate_data, future, disk_paths)
        domain = lm_monitor.MonitoredDomain(guest._domain, session)
        planned_guest = libvirt_guest.Guest(domain)

        session.watch_job(self._host.get_connection, guest._domain)

        # The monitor is where Nova decides the outcome: it calls exactly
        # one of these when the job completes, fails or is cancelled.
        def post(*args: Any, **kwargs: Any) -> Any:
            session.completed()
            return post_method(*args, **kwargs)

        def recover(*args: Any, **kwargs: Any) -> Any:
            session.rolled_back(kwargs.get('migration_status'))
            return recover_method(*args, **kwargs)

        # The cycle this makes is broken in ``finally``, below.
        domain._qat_guest = planned_guest
        session.monitor_thread = threading.get_ident()
        try:
            return super()._live_migration_monitor(
                context, instance, planned_guest, dest, post, recover,
                block_migration, migrate_data, future, disk_paths)
        finally:
            session.monitor_thread = None
            # NOTE(qat-migration): the proxy and its Guest refer to each
            # other; the cycle would keep the session (its facts, XMLs,
            # time series) alive until a full garbage collection, which a
            # nova-compute with millions of long-lived objects runs
            # rarely: its memory grew with every migration.
            domain._qat_guest = None

    def _get_migration_flags(self, is_block_migration: bool) -> int:
        """This migration's flags inside its monitor, else Nova's.

        Nova's monitor reads them here once, when it starts (Nova 34 has
        no other caller); the operation thread gets them from the same
        :meth:`~.session.MigrationSession.flags_for`, through its proxy.
        """
        flags = super()._get_migration_flags(is_block_migration)
        session = self._qat_monitored_session()
        if session is not None:
            return session.flags_for(flags)
        return flags


class QATLibvirtDriver(QATMigrationMixin, nova_driver.LibvirtDriver):
    """Nova's libvirt driver with per-instance live-migration plans.

    ``[DEFAULT] compute_driver = qat_migration.QATLibvirtDriver``
    """
