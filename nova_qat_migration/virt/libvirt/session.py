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
"""One planned live migration, as the driver's and Nova's threads share it.

The driver plans a migration and registers a :class:`MigrationSession`
under the instance UUID; Nova's own live-migration code then runs with
two stand-ins for its ``virDomain``, named for Nova's threads:
:class:`~.operation.PlannedDomain` (Nova's ``_live_migration_operation``)
sends the planned call, :class:`~.monitor.MonitoredDomain` (Nova's
``_live_migration_monitor``) follows the progress and applies the
policy's escalations. Both read and write the session only as its table
of writers says.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any, Callable, Optional

from nova.virt.libvirt import driver as nova_driver
from oslo_log import log as logging

from nova_qat_migration import budget as qat_budget
from nova_qat_migration import datamodel
from nova_qat_migration import outcomes
from nova_qat_migration.policy import base
from nova_qat_migration.virt.libvirt import constants as c
from nova_qat_migration.virt.libvirt import tracker
from nova_qat_migration.virt.libvirt import translate

LOG = logging.getLogger(__name__)


def libvirt_module() -> Any:
    """The libvirt module Nova's driver uses (the fake one in tests)."""
    return nova_driver.libvirt


class MigrationSession:
    """Everything about one running migration, shared by its threads.

    Created while the driver plans the migration and registered under the
    instance UUID for as long as Nova's ``_live_migration`` runs; an
    instance has at most one live migration at a time (Nova's
    ``active_migrations`` relies on the same).

    Each field has one writer once the session is registered (Nova runs
    its monitor in the thread that called ``_live_migration``):

    ============================  =======================================
    fields                        written by
    ============================  =======================================
    ``instance``, ``facts``,      the caller thread in ``_live_migration``
    ``policy``, ``requested``,    while planning (policy, QAT lease,
    ``nova_plan``,                budget), before the session is
    ``nova_flags``,               registered; read-only afterwards
    ``migration``, ``budget``,
    ``started``
    ``call``, ``notes``,          Nova's operation thread, in
    ``sent_params``,              ``operation.PlannedDomain.migrateToURI3``
    ``sent_flags``,               (``call`` only through
    ``passthrough``,              :meth:`replace_call`, under ``lock``:
    ``software_call``,            the fall-backs, which translate the
    ``nova_call``                 plan they fall back to the first time
                                  it is needed); before registration
                                  the caller thread (lease re-plan,
                                  through :meth:`replace_call` too)
    ``tracker``, ``actions``,     Nova's monitor (the caller thread):
    ``abort_requested``,          ``monitor.MonitoredDomain.jobStats``
    ``aborted_by_us``             (escalations), ``migrateSetMaxDowntime``
                                  and ``abortJob`` (Nova's completion
                                  timeout)
    ``outcome``                   Nova's monitor, through
                                  :meth:`completed` or :meth:`rolled_back`
    ``job_watch``                 the caller thread (:meth:`watch_job`
                                  from the monitor hook,
                                  :meth:`unwatch_job` after it)
    ``monitor_thread``            the caller thread, in the monitor hook
                                  (set while Nova's monitor runs)
    ``completed_stats``,          libvirt's event-loop thread, in the
    ``completed_event``           job-completed callback (the caller
                                  thread waits on the event, then reads)
    ============================  =======================================

    An abort through Nova's API (``live_migration_abort``) acts on the
    domain Nova looks up itself, not on these stand-ins: it writes nothing
    here, and Nova's monitor reports the migration cancelled.

    ``lock`` makes ``call`` and the plan read from it consistent for the
    monitor while the operation thread falls back.

    One translation per plan: the driver translates the plan it runs
    (``call``), and again only when that plan is replaced (the lease
    re-plan). Nova's plan and the plan without the monitor passthrough
    are translated here when a fall-back first runs them: most
    migrations never do.
    """

    def __init__(self, instance: Any, facts: datamodel.Facts,
                 policy: base.Policy, requested: datamodel.Plan,
                 call: translate.MigrationCall,
                 nova_plan: datamodel.Plan,
                 migration: Any = None) -> None:
        self.instance = instance
        self.instance_uuid = instance.uuid
        self.facts = facts
        self.policy = policy
        self.requested = requested
        self.call = call
        #: Nova's own plan: what :meth:`fall_back_to_nova` runs
        self.nova_plan = nova_plan
        #: Nova's own flags for this migration (:meth:`flags_for`)
        self.nova_flags = translate.baseline_flags(facts)
        #: Nova's call, once translated (the running one when it is
        #: Nova's plan already)
        self._nova_call: Optional[translate.MigrationCall] = (
            call if call.plan == nova_plan else None)
        self.migration = migration
        self.tracker = tracker.ProgressTracker()
        self.started = time.monotonic()
        self.actions: list = []
        self.notes: list = []
        #: the plan with libvirt's methods only, for a refused passthrough
        #: (translated by :meth:`fall_back_to_software` when needed)
        self.software_call: Optional[translate.MigrationCall] = None
        self.sent_params: Optional[dict] = None
        self.sent_flags: Optional[int] = None
        #: the multifd parameters set on the source QEMU through the
        #: monitor passthrough (the report's ``passthrough.globals``)
        self.passthrough: dict = {}
        self.outcome = outcomes.OUTCOME_FAILED
        #: libvirt's statistics of the completed job (its event).
        self.completed_stats: dict = {}
        self.completed_event = threading.Event()
        #: (connection, callback id) of the job-completed event watch
        self.job_watch: Optional[tuple] = None
        #: the thread Nova's monitor runs in, while it runs: how the
        #: driver's ``_get_migration_flags`` finds this session
        self.monitor_thread: Optional[int] = None
        self.aborted_by_us = False
        #: an abort of the job was asked for (by Nova or by us)
        self.abort_requested = False
        #: the host's budget once this migration's share is reserved
        self.budget: Optional[qat_budget.HostBudget] = None
        self.lock = threading.Lock()

    @property
    def plan(self) -> datamodel.Plan:
        """The plan running, with the XBZRLE cache ceiling the budget
        grants now (it rises when another migration frees memory).
        """
        plan = self.call.plan
        if self.budget is not None and plan.xbzrle_cache_max_mb:
            ceiling = self.budget.xbzrle_ceiling(self.instance_uuid)
            if ceiling and ceiling != plan.xbzrle_cache_max_mb:
                plan = dataclasses.replace(plan, xbzrle_cache_max_mb=ceiling)
        return plan

    @property
    def planned(self) -> bool:
        """Whether this migration deviates from Nova's own call at all."""
        return not self.call.plan.nova_baseline

    def replace_call(self, call: translate.MigrationCall, why: str) -> None:
        """Run ``call`` instead of the current one; ``why`` is noted.

        The one writer of ``call`` once the session exists: the driver's
        re-plan without a QAT lease and the operation thread's fall-backs
        all go through here, under ``lock``.
        """
        with self.lock:
            self.notes.append(why)
            self.call = call

    @property
    def nova_call(self) -> translate.MigrationCall:
        """Nova's own call, translated the first time it is asked for."""
        if self._nova_call is None:
            self._nova_call = translate.to_libvirt(self.nova_plan,
                                                   self.facts)
        return self._nova_call

    def fall_back_to_nova(self, why: str) -> None:
        """Run the rest of this migration as Nova would have."""
        self.replace_call(self.nova_call, why)

    def fall_back_to_software(self, why: str) -> None:
        """Drop the QEMU passthrough: the plan with libvirt's methods.

        Translated here, the first time (a refused passthrough is rare);
        Nova's call if that translation fails.
        """
        if self.software_call is None:
            try:
                self.software_call = translate.to_libvirt(
                    self.requested, dataclasses.replace(
                        self.facts, passthrough_allowed=False))
            except Exception:  # never worse than Nova
                LOG.exception('Could not translate plan %s without the '
                              'monitor passthrough; using Nova\'s',
                              self.requested.describe(),
                              instance=self.instance)
        self.replace_call(self.software_call or self.nova_call, why)

    def flags_for(self, nova_flags: int) -> int:
        """The flags this migration runs with, given the ones Nova built.

        The one place both of Nova's threads get them from: the operation
        thread from the flags Nova passes to ``migrateToURI3``, the
        monitor from Nova's host flags. A plan decides
        :data:`~.constants.PLANNED_FLAGS` only; Nova every other flag,
        including its per-migration decisions (no ``NON_SHARED_INC``
        without disks to copy). ``POSTCOPY`` stays off when Nova dropped
        it for this migration (a paused guest): Nova's call had it, what
        Nova passes has not.
        """
        call = self.call
        if call.plan.nova_baseline:
            return nova_flags
        flags = (nova_flags & ~c.PLANNED_FLAGS |
                 call.flags & c.PLANNED_FLAGS)
        if (self.nova_flags & c.VIR_MIGRATE_POSTCOPY and
                not nova_flags & c.VIR_MIGRATE_POSTCOPY):
            flags &= ~c.VIR_MIGRATE_POSTCOPY
        return flags

    # -- how it ended ------------------------------------------------------

    def completed(self) -> None:
        """Nova's monitor saw the job complete (its ``post_method``)."""
        self.outcome = outcomes.OUTCOME_COMPLETED

    def rolled_back(self, migration_status: Optional[str] = None) -> None:
        """Nova's monitor rolls the migration back (its
        ``recover_method``): aborted by our escalation, cancelled (asked
        for by Nova or its API), or failed.
        """
        self.outcome = (
            outcomes.OUTCOME_ABORTED if self.aborted_by_us else
            outcomes.OUTCOME_CANCELLED if (migration_status == 'cancelled' or
                                         self.abort_requested) else
            outcomes.OUTCOME_FAILED)

    def watch_job(self, connect: Callable[[], Any], domain: Any) -> None:
        """Catch libvirt's statistics of the completed job.

        NOTE(qat-migration): Nova migrates with UNDEFINE_SOURCE, so the
        source domain (and its completed job: downtime, totals) is gone
        once the job ends; libvirt hands them over in its job-completed
        event instead, on the event loop's thread.

        :param connect: returns the libvirt connection to register on.
        """
        event_id = getattr(libvirt_module(),
                           'VIR_DOMAIN_EVENT_ID_JOB_COMPLETED', None)
        if event_id is None:
            return

        def completed(conn: Any, dom: Any, params: Any, opaque: Any) -> None:
            self.completed_stats = dict(params or {})
            self.completed_event.set()

        try:
            conn = connect()
            self.job_watch = (conn, conn.domainEventRegisterAny(
                domain, event_id, completed, None))
        except Exception as exc:  # statistics are optional
            LOG.debug('No job-completed event: %s', exc,
                      instance=self.instance)

    def unwatch_job(self) -> None:
        """Stop :meth:`watch_job`'s watch, if there is one."""
        if self.job_watch is None:
            return
        conn, callback_id = self.job_watch
        self.job_watch = None
        try:
            conn.domainEventDeregisterAny(callback_id)
        except Exception as exc:  # connection gone
            LOG.debug('Job-completed event not deregistered: %s', exc)


class DomainProxy:
    """Delegates everything to the real ``virDomain`` but what a subclass
    defines.
    """

    def __init__(self, domain: Any, session: MigrationSession) -> None:
        self._qat_domain = domain
        self._qat_session = session

    def __getattr__(self, name: str) -> Any:
        return getattr(self._qat_domain, name)
