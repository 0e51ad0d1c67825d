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
"""Running one planned live migration on the source's libvirt domain.

The driver plans a migration and hands the result over as a
:class:`MigrationSession`; Nova's own live-migration code then runs with
two stand-ins for its ``virDomain``:

:class:`PlannedDomain` (Nova's operation thread)
    its ``migrateToURI3`` sends the planned flags and params instead of the
    ones Nova built: it sets a method libvirt does not know on the source
    QEMU through the monitor passthrough, resets a multifd method an
    earlier migration left behind, and, when libvirt refuses the plan
    before anything ran, retries once with exactly Nova's call.
:class:`MonitoredDomain` (Nova's monitor)
    its ``jobStats`` feeds the session's progress tracker and applies the
    policy's escalations; its ``migrateSetMaxDowntime`` scales Nova's
    downtime steps to the plan's maximum downtime, its ``abortJob``
    records that an abort was asked for, and its ``migrateStartPostCopy``
    refuses while a block migration's memory migration waits for the
    disks to be copied.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any, Callable, Optional

from nova.virt.libvirt import driver as nova_driver
from nova.virt.libvirt import guest as libvirt_guest
from nova.virt.libvirt import migration as libvirt_migrate
from oslo_log import log as logging

from nova_qat_migration import budget as qat_budget
from nova_qat_migration import conf as qat_conf
from nova_qat_migration import datamodel
from nova_qat_migration import outcomes
from nova_qat_migration.policy import base
from nova_qat_migration.policy import escalation
from nova_qat_migration.virt.libvirt import constants as c
from nova_qat_migration.virt.libvirt import passthrough
from nova_qat_migration.virt.libvirt import report
from nova_qat_migration.virt.libvirt import tracker
from nova_qat_migration.virt.libvirt import translate

CONF = qat_conf.CONF
LOG = logging.getLogger(__name__)

#: libvirt's ``VIR_DOMAIN_JOB_UNBOUNDED``: a job that is still running.
_JOB_UNBOUNDED = 2
#: Nova's migration status once its post-copy switch went through.
_POSTCOPY_STATUS = 'running (post-copy)'


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
    ``nova_call``,                budget), before the session is
    ``software_call``,            registered; read-only afterwards
    ``migration``, ``budget``,
    ``started``
    ``call``, ``notes``,          Nova's operation thread, in
    ``sent_params``,              :meth:`PlannedDomain.migrateToURI3`
    ``sent_flags``,               (``call`` only through
    ``passthrough``               :meth:`replace_call`, under ``lock``:
                                  the fall-backs); before registration
                                  the caller thread (lease re-plan,
                                  through :meth:`replace_call` too)
    ``tracker``, ``actions``,     Nova's monitor (the caller thread):
    ``abort_requested``,          :class:`MonitoredDomain`'s ``jobStats``
    ``aborted_by_us``             (escalations), ``migrateSetMaxDowntime``
                                  and ``abortJob`` (Nova's completion
                                  timeout)
    ``outcome``                   Nova's monitor, through
                                  :meth:`completed` or :meth:`rolled_back`
    ``job_watch``                 the caller thread (:meth:`watch_job`
                                  from the monitor hook,
                                  :meth:`unwatch_job` after it)
    ``completed_stats``,          libvirt's event-loop thread, in the
    ``completed_event``           job-completed callback (the caller
                                  thread waits on the event, then reads)
    ============================  =======================================

    An abort through Nova's API (``live_migration_abort``) acts on the
    domain Nova looks up itself, not on these stand-ins: it writes nothing
    here, and Nova's monitor reports the migration cancelled.

    ``lock`` makes ``call`` and the plan read from it consistent for the
    monitor while the operation thread falls back.
    """

    def __init__(self, instance: Any, facts: datamodel.Facts,
                 policy: base.Policy, requested: datamodel.Plan,
                 call: translate.MigrationCall,
                 nova_call: translate.MigrationCall,
                 migration: Any = None) -> None:
        self.instance = instance
        self.instance_uuid = instance.uuid
        self.facts = facts
        self.policy = policy
        self.requested = requested
        self.call = call
        self.nova_call = nova_call
        self.migration = migration
        self.tracker = tracker.ProgressTracker()
        self.started = time.monotonic()
        self.actions: list = []
        self.notes: list = []
        #: the plan with libvirt's methods only, for a refused passthrough
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

    def fall_back_to_nova(self, why: str) -> None:
        """Run the rest of this migration as Nova would have."""
        self.replace_call(self.nova_call, why)

    def fall_back_to_software(self, why: str) -> None:
        """Drop the QEMU passthrough: the plan with libvirt's methods."""
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
        if (self.nova_call.flags & c.VIR_MIGRATE_POSTCOPY and
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
        except Exception as exc:  # noqa: BLE001 - statistics are optional
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
        except Exception as exc:  # noqa: BLE001 - connection gone
            LOG.debug('Job-completed event not deregistered: %s', exc)


class _DomainProxy:
    """Delegates everything to the real ``virDomain`` but what a subclass
    defines.
    """

    def __init__(self, domain: Any, session: MigrationSession) -> None:
        self._qat_domain = domain
        self._qat_session = session

    def __getattr__(self, name: str) -> Any:
        return getattr(self._qat_domain, name)


class PlannedDomain(_DomainProxy):
    """The domain Nova's operation thread migrates: the planned call."""

    def migrateToURI3(self, dconnuri: str, params: dict, flags: int) -> Any:
        """Run this migration's call instead of the one Nova built.

        Everything is built before the source QEMU is touched, so a plan
        that cannot be built costs nothing: the software plan (or Nova's)
        runs instead, with the source unchanged. Whatever the plan, the
        ``-global`` pairs an earlier passthrough migration left in the
        running definition are stripped from both XMLs: Nova builds every
        migration's XML from the running definition.
        """
        session = self._qat_session
        call = session.call
        try:
            sent_params, sent_flags = self._qat_build(call, params, flags)
        except Exception as exc:  # noqa: BLE001 - e.g. an XML that fails
            call = self._qat_degrade(call, 'plan %s could not be built (%s)'
                                     % (call.plan.describe(), exc))
            sent_params, sent_flags = self._qat_build(call, params, flags)
        applied, previous = self._qat_passthrough(call)
        if call is not session.call:
            # The monitor command was refused: the software plan.
            call = session.call
            sent_params, sent_flags = self._qat_build(call, params, flags)
        sent_params = self._qat_reset_stale(sent_params, sent_flags, applied)
        LOG.info('Live migration plan %(plan)s: flags %(flags)s, params '
                 '%(params)s', {'plan': call.plan.describe(),
                                'flags': '|'.join(c.flag_names(sent_flags)),
                                'params': report.visible_params(sent_params)},
                 instance=session.instance)
        session.sent_params, session.sent_flags = sent_params, sent_flags
        try:
            return self._qat_domain.migrateToURI3(
                dconnuri, params=sent_params, flags=sent_flags)
        except Exception as exc:
            if applied:
                # The guest stays here: leave its QEMU as we found it so
                # the next attempt (or Nova's retry below) starts clean.
                if not passthrough.restore_source(self._qat_domain, applied,
                                                  previous):
                    LOG.warning('Could not restore the source QEMU\'s '
                                'multifd parameters %s after a failed '
                                'migration', previous,
                                instance=session.instance)
            if session.abort_requested and self._qat_source_running():
                # NOTE(qat-migration): an abort (Nova's completion timeout
                # or our progress timeout) was asked for and the guest runs
                # on here. QEMU 10 may end such a job as *failed* ("Channel
                # error") rather than cancelled; raising would make Nova
                # put the instance in ERROR. Nova's monitor sees the job end
                # and rolls the migration back either way.
                LOG.warning('Live migration aborted as requested (libvirt: '
                            '%s); the instance continues on this host.',
                            exc, instance=session.instance)
                session.notes.append('aborted as requested; libvirt said: '
                                     '%s' % exc)
                return None
            if call.plan.nova_baseline or not _is_refusal(exc):
                # The report says what ended it (a peer that died, a link
                # that dropped), beside Nova's outcome.
                session.notes.append('migration failed: %s' % exc)
                if self._qat_source_running():
                    # NOTE(qat-migration): the job failed (the destination
                    # QEMU or its daemon died, the peer connection broke)
                    # and the guest runs on here: libvirt resumes the
                    # source only when the destination did not start it.
                    # As for a requested abort, Nova's monitor sees the
                    # job end and rolls back; raising would also make Nova
                    # put the running instance in ERROR.
                    LOG.warning('Live migration failed (libvirt: %s); the '
                                'instance continues on this host.', exc,
                                instance=session.instance)
                    return None
                raise
            LOG.warning('libvirt refused the planned migration (%(plan)s, '
                        'flags %(flags)s, params %(params)s): %(exc)s; '
                        'retrying once with the call Nova would have made '
                        '(flags %(nflags)s, params %(nparams)s).',
                        {'plan': call.plan.describe(),
                         'flags': '|'.join(c.flag_names(sent_flags)),
                         'params': report.visible_params(sent_params),
                         'exc': exc,
                         'nflags': '|'.join(c.flag_names(flags)),
                         'nparams': report.visible_params(params)},
                        instance=session.instance)
            session.fall_back_to_nova(
                'libvirt refused %s (%s): ran Nova\'s plan instead'
                % (call.plan.describe(), exc))
            nova_params = self._qat_reset_stale(
                passthrough.clean_params(params), flags, {})
            session.sent_params, session.sent_flags = nova_params, flags
            return self._qat_domain.migrateToURI3(
                dconnuri, params=nova_params, flags=flags)

    def _qat_source_running(self) -> bool:
        """Whether the guest still runs here (not paused, not gone)."""
        try:
            return (self._qat_domain.state()[0] ==
                    getattr(libvirt_module(), 'VIR_DOMAIN_RUNNING', 1))
        except Exception:  # noqa: BLE001 - unknown: not running
            return False

    def _qat_build(self, call: translate.MigrationCall, params: dict,
                   flags: int) -> tuple[dict, int]:
        """The params and flags ``call`` sends, given what Nova built.

        Pure: touches neither the source nor libvirt.
        """
        session = self._qat_session
        if call.plan.nova_baseline:
            # Nova's own plan: exactly what Nova built, less our leftovers.
            return passthrough.clean_params(params), flags
        # NOTE(qat-migration): Nova's Guest.migrate() drops NON_SHARED_INC
        # when no disk is copied (a libvirt binding quirk would copy all
        # of them, volumes included) and its operation drops POSTCOPY for
        # paused guests; flags_for keeps both decisions.
        planned_flags = session.flags_for(flags)
        planned_params = passthrough.clean_params(
            translate.merge_params(params, call))
        if call.backend == translate.BACKEND_PASSTHROUGH and call.passthrough:
            # The destination QEMU starts with the same method (-global in
            # the live XML only; the persistent XML stays clean).
            planned_params = passthrough.rewrite_params(planned_params,
                                                        call.passthrough)
        return planned_params, planned_flags

    def _qat_degrade(self, call: translate.MigrationCall,
                     why: str) -> translate.MigrationCall:
        """The next plan down after ``call`` failed before it started."""
        session = self._qat_session
        LOG.warning('%s; running the next plan down.', why,
                    instance=session.instance)
        if (call.backend == translate.BACKEND_PASSTHROUGH and
                session.software_call is not None):
            session.fall_back_to_software(why + ': software plan')
        else:
            session.fall_back_to_nova(why + ': Nova\'s plan')
        return session.call

    def _qat_passthrough(self, call: translate.MigrationCall,
                         ) -> tuple[dict, dict]:
        """Set the planned method on the source QEMU, if the plan has one.

        :returns: the arguments applied and the source's values before
            (both empty when there are none or the command failed; then
            the session runs the software plan).
        """
        session = self._qat_session
        if (call.backend != translate.BACKEND_PASSTHROUGH or
                not call.passthrough):
            return {}, {}
        try:
            previous = passthrough.query_source(self._qat_domain,
                                                call.passthrough)
        except passthrough.PassthroughError as exc:
            LOG.info('Could not read the source QEMU\'s multifd '
                     'parameters (%s); QEMU defaults restore a failure.',
                     exc, instance=session.instance)
            previous = {}
        try:
            passthrough.apply_source(self._qat_domain, call.passthrough)
        except passthrough.PassthroughError as exc:
            LOG.warning('QEMU refused %(args)s through the monitor '
                        'passthrough (%(exc)s); running %(plan)s instead.',
                        {'args': call.passthrough, 'exc': exc,
                         'plan': (session.software_call or
                                  session.nova_call).plan.describe()},
                        instance=session.instance)
            session.fall_back_to_software(
                'monitor passthrough refused (%s): software plan' % exc)
            return {}, {}
        LOG.info('Source QEMU set to %s through the monitor passthrough '
                 '(libvirt marks the domain tainted)', call.passthrough,
                 instance=session.instance)
        session.notes.append('passthrough %s' % (call.passthrough,))
        session.passthrough = dict(call.passthrough)
        return dict(call.passthrough), previous

    def _qat_reset_stale(self, params: dict, flags: int,
                         applied: dict) -> dict:
        session = self._qat_session
        return reset_stale_method(self._qat_domain, params, flags, applied,
                                  session.notes, session.instance)


def reset_stale_method(domain: Any, params: dict, flags: int,
                       applied: dict, notes: list, instance: Any) -> dict:
    """Make both ends agree on the multifd method.

    A QEMU that arrived through the passthrough backend was started with
    ``-global migration.multifd-compression=<m>``: that is its default. A
    multifd migration that sets no method of its own (none through
    libvirt's params, none through the passthrough) would send with
    ``<m>`` to a destination that now starts clean. Set the source back to
    ``none`` where the operator allows monitor commands; otherwise keep
    ``<m>`` on the destination (live XML only).

    :param applied: what the plan set through the passthrough already.
    :param notes: where what was done is recorded (the report's notes).
    :returns: the params to send.
    """
    if (not flags & c.VIR_MIGRATE_PARALLEL or
            params.get(c.PARAM_COMPRESSION) or
            'multifd-compression' in applied):
        return params
    try:
        stale = passthrough.globals_of(domain.XMLDesc(0))
    except Exception:  # noqa: BLE001 - no definition: nothing stale
        return params
    method = stale.get('multifd-compression', 'none')
    if method == 'none':
        return params
    if CONF.qat_migration.qemu_monitor_passthrough:
        try:
            passthrough.apply_source(domain, {'multifd-compression': 'none'})
            notes.append('source multifd method %s (left by an earlier '
                         'migration) reset to none' % method)
            return params
        except passthrough.PassthroughError as exc:
            LOG.warning('Could not reset the source\'s multifd method '
                        '%(m)s: %(exc)s', {'m': method, 'exc': exc},
                        instance=instance)
    notes.append('source multifd method %s kept on both ends' % method)
    return passthrough.rewrite_params(params, {'multifd-compression': method})


class CleanDomain:
    """The domain of a migration that runs Nova's call unplanned.

    NOTE(qat-migration): with the planner disabled, or when planning
    failed, Nova's own call still starts from the running definition, so
    the ``-global`` pairs an earlier passthrough migration put there would
    be persisted at the destination, and a source QEMU started with one
    would send with that method by default. Every migration this driver
    runs, planned or not, goes out clean.
    """

    def __init__(self, domain: Any, instance: Any) -> None:
        self._qat_domain = domain
        self._qat_instance = instance
        #: what was done, for the log (there is no session to report it)
        self.notes: list = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._qat_domain, name)

    def migrateToURI3(self, dconnuri: str, params: dict, flags: int) -> Any:
        sent = reset_stale_method(self._qat_domain,
                                  passthrough.clean_params(params), flags,
                                  {}, self.notes, self._qat_instance)
        for note in self.notes:
            LOG.info('Unplanned live migration: %s', note,
                     instance=self._qat_instance)
        return self._qat_domain.migrateToURI3(dconnuri, params=sent,
                                              flags=flags)


class MonitoredDomain(_DomainProxy):
    """The domain Nova's monitor watches: progress and escalations.

    :param guest: the Nova ``Guest`` wrapping this proxy, for Nova's own
        post-copy switch (set after construction when the guest is built
        around the proxy).
    """

    def __init__(self, domain: Any, session: MigrationSession,
                 guest: Any = None) -> None:
        super().__init__(domain, session)
        self._qat_guest = guest
        #: bytes the job had sent, and when that count last grew
        self._qat_sent: Optional[float] = None
        self._qat_sent_at: Optional[float] = None
        #: a block migration's disk copy was seen, and the memory
        #: migration after it (each logged once)
        self._qat_disk_seen = False
        self._qat_disk_done = False

    def jobStats(self, *args: Any, **kwargs: Any) -> dict:
        stats = self._qat_domain.jobStats(*args, **kwargs)
        try:
            self._qat_note_sent(stats)
            self._qat_escalate(stats)
        except Exception:  # noqa: BLE001 - never break Nova's monitor
            LOG.exception('Migration escalation failed; Nova\'s monitor '
                          'continues without it.',
                          instance=self._qat_session.instance)
        return stats

    def migrateSetMaxDowntime(self, downtime: int, *args: Any) -> Any:
        """Nova's downtime steps, scaled to the plan's limit for QEMU.

        Nova's steps climb to ``[libvirt] live_migration_downtime``; a
        planned migration's climb to its downtime target less the
        headroom QEMU's estimate needs (:attr:`~nova_qat_migration.
        datamodel.Plan.downtime_limit_ms`).
        """
        session = self._qat_session
        value = int(downtime)
        if session.planned:
            nova_max = max(1, CONF.libvirt.live_migration_downtime)
            value = max(1, int(round(downtime * session.plan.downtime_limit_ms
                                     / nova_max)))
            if value <= session.tracker.downtime_ms:
                LOG.debug('Downtime step %(nova)d ms (scaled %(value)d ms) '
                          'not applied: escalation already set %(cur)d ms',
                          {'nova': downtime, 'value': value,
                           'cur': session.tracker.downtime_ms},
                          instance=session.instance)
                return 0
        result = self._qat_domain.migrateSetMaxDowntime(value, *args)
        session.tracker.applied(datamodel.Action(
            datamodel.ACTION_DOWNTIME, value,
            reason="Nova's downtime step %d ms" % downtime))
        return result

    def abortJob(self, *args: Any) -> Any:
        """Nova's monitor aborting the job (completion timeout)."""
        self._qat_session.abort_requested = True
        self._qat_session.tracker.series.event(
            datamodel.ACTION_ABORT, reason="Nova's completion timeout")
        return self._qat_domain.abortJob(*args)

    def migrateStartPostCopy(self, *args: Any) -> Any:
        """Post-copy, unless the memory migration waits for the disks.

        NOTE(qat-migration): libvirt copies a block migration's disks
        before it starts QEMU's memory migration. A switch asked for
        meanwhile (Nova's force-complete, its completion timeout's
        ``force_complete`` action, or an escalation) is refused by QEMU
        ("Postcopy must be started after migration has been started") or,
        on a QEMU whose earlier migration failed, accepted and dropped
        when the memory migration starts; Nova would then believe the
        guest runs on the destination and stop its completion timeout.
        Refused here with a libvirt error, as QEMU would: Nova logs it and
        its timeouts stay in force, and a later request (once the memory
        migration runs) goes through.
        """
        if self._qat_session.tracker.memory_waits_for_disks:
            raise libvirt_module().libvirtError(
                'post-copy refused: the block migration is still copying '
                'the disks (the memory migration has not started)')
        result = self._qat_domain.migrateStartPostCopy(*args)
        self._qat_session.tracker.series.event(datamodel.ACTION_POST_COPY)
        return result

    def _qat_escalate(self, stats: dict) -> None:
        session = self._qat_session
        if not stats or stats.get('type') != _JOB_UNBOUNDED:
            return
        with session.lock:
            progress = session.tracker.update(stats, now_s=time.monotonic())
            plan = session.plan
            policy = (session.policy if session.planned
                      else None)
        self._qat_note_disks(progress)
        if policy is None:
            return
        actions = list(policy.on_progress(plan, progress) or ())
        for action in actions:
            self._qat_apply(action)

    def _qat_note_disks(self, progress: datamodel.Progress) -> None:
        """Log when a block migration's memory migration starts.

        The disk copy's length is what the planned one is checked against
        (``disk_s`` of the report's prediction).
        """
        session = self._qat_session
        if progress.disk_copying and not self._qat_disk_seen:
            self._qat_disk_seen = True
            LOG.info('Block migration: copying %.0f MiB of disk before the '
                     'memory', progress.disk_total_mb,
                     instance=session.instance)
        elif (self._qat_disk_seen and not self._qat_disk_done and
              session.tracker.memory_started_s is not None):
            self._qat_disk_done = True
            LOG.info('Block migration: disks in sync after %.1f s '
                     '(%.0f MiB copied); memory migration running',
                     session.tracker.memory_started_s,
                     progress.disk_processed_mb, instance=session.instance)

    def _qat_note_sent(self, stats: dict) -> None:
        """Remember when the job last sent anything (memory or disk)."""
        if not stats or stats.get('type') != _JOB_UNBOUNDED:
            return
        sent = stats.get('memory_processed', stats.get('data_processed'))
        if sent is None:
            return
        try:
            # A block migration's disk copy sends too (memory_processed
            # stays 0 until the memory migration starts).
            sent = float(sent) + float(stats.get('disk_processed') or 0)
        except (TypeError, ValueError):
            pass
        if sent != self._qat_sent:
            self._qat_sent = sent
            self._qat_sent_at = time.monotonic()

    def _qat_idle_s(self) -> float:
        """Seconds since the job last sent a byte (0 when unknown)."""
        if self._qat_sent_at is None:
            return 0.0
        return time.monotonic() - self._qat_sent_at

    def _qat_apply(self, action: datamodel.Action) -> None:
        session = self._qat_session
        instance = session.instance
        lv = libvirt_module()
        if action.kind == datamodel.ACTION_ABORT and any(
                a.kind == datamodel.ACTION_ABORT for a in session.actions):
            # The job is being cancelled (it may take the peer's answer,
            # e.g. over a link that returns later): one abort is enough.
            return
        action = escalation.guard_dead_link(action, self._qat_idle_s())
        LOG.info('Migration escalation: %(kind)s %(value)s (%(reason)s)',
                 {'kind': action.kind, 'value': action.value or '',
                  'reason': action.reason}, instance=instance)
        try:
            if action.kind == datamodel.ACTION_DOWNTIME:
                self._qat_domain.migrateSetMaxDowntime(int(action.value))
            elif action.kind == datamodel.ACTION_XBZRLE_CACHE:
                self._qat_domain.migrateSetCompressionCache(
                    int(action.value) * datamodel.MIB)
            elif action.kind == datamodel.ACTION_POST_COPY:
                guest = self._qat_guest or libvirt_guest.Guest(self)
                # Nova's own switch: it also marks the migration
                # 'running (post-copy)', which stops Nova's timeout.
                if session.migration is not None:
                    libvirt_migrate.trigger_postcopy_switch(
                        guest, instance, session.migration)
                    # NOTE(qat-migration): Nova logs a refused switch and
                    # returns; only its status says whether it went
                    # through. A switch that did not is not applied: the
                    # escalation goes on and may ask again.
                    if (getattr(session.migration, 'status', None) !=
                            _POSTCOPY_STATUS):
                        return
                else:
                    guest.migrate_start_postcopy()
            elif action.kind == datamodel.ACTION_ABORT:
                session.aborted_by_us = session.abort_requested = True
                self._qat_domain.abortJob()
            else:
                LOG.warning('Unknown escalation %s ignored', action.kind,
                            instance=instance)
                return
        except lv.libvirtError as exc:
            LOG.warning('Escalation %(kind)s failed: %(exc)s',
                        {'kind': action.kind, 'exc': exc}, instance=instance)
            return
        session.tracker.applied(action)
        session.actions.append(action)


def _is_refusal(exc: Exception) -> bool:
    """Whether libvirt refused the call before anything was sent."""
    lv = libvirt_module()
    if not isinstance(exc, getattr(lv, 'libvirtError', ())):
        return False
    try:
        return exc.get_error_code() in c.refused_error_codes(lv)
    except Exception:  # noqa: BLE001 - a malformed error is no refusal
        return False
