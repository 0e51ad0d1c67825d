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

``_live_migration`` (caller's thread)
    gathers the facts, runs the policy, translates the plan, takes a QAT
    lease when the plan wants one and registers a :class:`MigrationSession`
    under the instance UUID for the duration of this migration only; then
    Nova's ``_live_migration`` runs unchanged.
``_live_migration_operation`` (Nova's migration thread)
    hands Nova a :class:`~nova.virt.libvirt.guest.Guest` whose domain is a
    :class:`_PlannedDomain`: Nova builds its params and flags as always and
    the proxy's ``migrateToURI3`` swaps in the planned flags and merges the
    planned params. If libvirt refuses the plan before the migration
    starts, the proxy retries once with exactly what Nova built. A plan
    whose method libvirt does not know (``qatzip``, backend
    ``qemu-passthrough``) is set on the source QEMU through the monitor
    passthrough and on the destination with ``-global`` in the live
    destination XML only; a refused command means the software plan, a
    failed migration restores the source's method.
``_live_migration_monitor`` (caller's thread)
    the monitor sees this migration's flags through a thread-local read by
    ``_get_migration_flags``, and a proxied domain whose ``jobStats()``
    feeds the progress tracker and the policy's escalations, and whose
    ``migrateSetMaxDowntime`` scales Nova's downtime steps to the plan's
    maximum downtime.

Nothing host-wide is mutated (``_live_migration_flags`` stays Nova's), so
concurrent migrations each see only their own plan.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from typing import Any, Optional

from nova.compute import vm_states
from nova import exception
from nova import objects
from nova.virt.libvirt import driver as nova_driver
from nova.virt.libvirt import guest as libvirt_guest
from nova.virt.libvirt import migration as libvirt_migrate
from oslo_log import log as logging

from nova_qat_migration import conf as qat_conf
from nova_qat_migration import datamodel
from nova_qat_migration import history as qat_history
from nova_qat_migration.policy import base
from nova_qat_migration.policy import hints as qat_hints
from nova_qat_migration.policy import loader
from nova_qat_migration.policy import predictive
from nova_qat_migration import report
from nova_qat_migration.virt.libvirt import budget as qat_budget
from nova_qat_migration.virt.libvirt import capabilities
from nova_qat_migration.virt.libvirt import constants as c
from nova_qat_migration.virt.libvirt import measure
from nova_qat_migration.virt.libvirt import passthrough
from nova_qat_migration.virt.libvirt import tracker
from nova_qat_migration.virt.libvirt import translate

CONF = qat_conf.CONF
LOG = logging.getLogger(__name__)

NOVA_DEFAULT = 'nova_default'

#: libvirt error codes that mean "this call's arguments are not supported"
#: (raised while libvirt validates the call, before anything is sent).
#: Looked up by name at run time: the fake libvirt in Nova's tests uses
#: other numbers than the real library for some of them.
_REFUSAL_CODES = ('VIR_ERR_ARGUMENT_UNSUPPORTED', 'VIR_ERR_CONFIG_UNSUPPORTED',
                  'VIR_ERR_INVALID_ARG', 'VIR_ERR_OPERATION_UNSUPPORTED')
#: libvirt's values, used when the loaded module lacks a name.
_REFUSAL_DEFAULTS = {'VIR_ERR_ARGUMENT_UNSUPPORTED': 74,
                     'VIR_ERR_CONFIG_UNSUPPORTED': 67,
                     'VIR_ERR_INVALID_ARG': 8,
                     'VIR_ERR_OPERATION_UNSUPPORTED': 84}

_JOB_UNBOUNDED = 2
#: A job that has sent nothing for this long runs over a dead link (or to
#: a hung peer): it is never switched to post-copy.
DEAD_LINK_S = 5.0
#: How long the report waits for libvirt's job-completed event.
JOB_EVENT_WAIT_S = 2.0


def _libvirt() -> Any:
    """The libvirt module Nova's driver uses (the fake one in tests)."""
    return nova_driver.libvirt


def _refusal_codes() -> frozenset:
    lv = _libvirt()
    return frozenset(getattr(lv, name, _REFUSAL_DEFAULTS[name])
                     for name in _REFUSAL_CODES)


def _qat_manager_class() -> Any:
    """The QAT device manager class, or None while it is not installed."""
    try:
        from nova_qat_migration import qat
    except ImportError:
        return None
    cls = getattr(qat, 'QATManager', None)
    if cls is None:
        try:
            from nova_qat_migration.qat import manager
        except ImportError:
            return None
        cls = getattr(manager, 'QATManager', None)
    return cls


def link_mbps(conf: Any) -> float:
    """``[qat_migration] link_gbps`` in MiB/s (the unit plans use)."""
    return conf.qat_migration.link_gbps * 1e9 / 8 / datamodel.MIB


class MigrationSession:
    """Everything about one running migration, shared by its threads.

    Created in ``_live_migration`` and looked up by instance UUID from the
    operation thread and the monitor; an instance has at most one live
    migration at a time (Nova's ``active_migrations`` relies on the same).
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
        self.software_call: Optional[translate.MigrationCall] = None
        self.sent_params: Optional[dict] = None
        self.sent_flags: Optional[int] = None
        self.outcome = report.OUTCOME_FAILED
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

    def fall_back_to_nova(self, why: str) -> None:
        """Run the rest of this migration as Nova would have."""
        with self.lock:
            self.notes.append(why)
            self.call = self.nova_call

    def fall_back_to_software(self, why: str) -> None:
        """Drop the QEMU passthrough: the plan with libvirt's methods."""
        with self.lock:
            self.notes.append(why)
            self.call = self.software_call or self.nova_call


class _PlannedDomain:
    """A ``virDomain`` stand-in for one migration.

    Delegates everything to the real domain except the calls the plan
    changes. One instance wraps the domain for Nova's operation thread
    (``migrateToURI3``) and another for its monitor (job stats, downtime).
    """

    def __init__(self, domain: Any, session: MigrationSession,
                 guest: Any = None, observe: bool = False) -> None:
        self._qat_domain = domain
        self._qat_session = session
        self._qat_guest = guest
        self._qat_observe = observe
        #: bytes the job had sent, and when that count last grew
        self._qat_sent: Optional[float] = None
        self._qat_sent_at: Optional[float] = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._qat_domain, name)

    # -- the migration call ------------------------------------------------

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
                                'params': _loggable(sent_params)},
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
                         'params': _loggable(sent_params), 'exc': exc,
                         'nflags': '|'.join(c.flag_names(flags)),
                         'nparams': _loggable(params)},
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
                    getattr(_libvirt(), 'VIR_DOMAIN_RUNNING', 1))
        except Exception:  # noqa: BLE001 - unknown: not running
            return False

    def abortJob(self, *args: Any) -> Any:
        """Nova's monitor aborting the job (completion timeout)."""
        self._qat_session.abort_requested = True
        return self._qat_domain.abortJob(*args)

    def _qat_build(self, call: translate.MigrationCall, params: dict,
                   flags: int) -> tuple[dict, int]:
        """The params and flags ``call`` sends, given what Nova built.

        Pure: touches neither the source nor libvirt.
        """
        session = self._qat_session
        if call.plan.nova_baseline:
            # Nova's own plan: exactly what Nova built, less our leftovers.
            return passthrough.clean_params(params), flags
        planned_flags = call.flags
        # NOTE(qat-migration): Nova's Guest.migrate() drops NON_SHARED_INC
        # when no disk is copied (a libvirt binding quirk would copy all
        # of them, volumes included) and its operation drops POSTCOPY for
        # paused guests. Keep both decisions for the planned flags too.
        if not params.get('migrate_disks'):
            planned_flags &= ~c.VIR_MIGRATE_NON_SHARED_INC
        if (session.nova_call.flags & c.VIR_MIGRATE_POSTCOPY and
                not flags & c.VIR_MIGRATE_POSTCOPY):
            planned_flags &= ~c.VIR_MIGRATE_POSTCOPY
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
        return dict(call.passthrough), previous

    def _qat_reset_stale(self, params: dict, flags: int,
                         applied: dict) -> dict:
        """Make both ends agree on the multifd method.

        A QEMU that arrived through the passthrough backend was started
        with ``-global migration.multifd-compression=<m>``: that is its
        default. A multifd migration that sets no method of its own (none
        through libvirt's params, none through the passthrough) would send
        with ``<m>`` to a destination that now starts clean. Set the source
        back to ``none`` where the operator allows monitor commands;
        otherwise keep ``<m>`` on the destination (live XML only).
        """
        session = self._qat_session
        if (not flags & c.VIR_MIGRATE_PARALLEL or
                params.get(c.PARAM_COMPRESSION) or
                'multifd-compression' in applied):
            return params
        try:
            stale = passthrough.globals_of(self._qat_domain.XMLDesc(0))
        except Exception:  # noqa: BLE001 - no definition: nothing stale
            return params
        method = stale.get('multifd-compression', 'none')
        if method == 'none':
            return params
        if CONF.qat_migration.qemu_monitor_passthrough:
            try:
                passthrough.apply_source(self._qat_domain,
                                         {'multifd-compression': 'none'})
                session.notes.append('source multifd method %s (left by an '
                                     'earlier migration) reset to none'
                                     % method)
                return params
            except passthrough.PassthroughError as exc:
                LOG.warning('Could not reset the source\'s multifd method '
                            '%(m)s: %(exc)s', {'m': method, 'exc': exc},
                            instance=session.instance)
        session.notes.append('source multifd method %s kept on both ends'
                             % method)
        return passthrough.rewrite_params(params,
                                          {'multifd-compression': method})

    # -- the monitor -------------------------------------------------------

    def jobStats(self, *args: Any, **kwargs: Any) -> dict:
        stats = self._qat_domain.jobStats(*args, **kwargs)
        if self._qat_observe:
            try:
                self._qat_note_sent(stats)
                self._qat_escalate(stats)
            except Exception:  # noqa: BLE001 - never break Nova's monitor
                LOG.exception('Migration escalation failed; Nova\'s monitor '
                              'continues without it.',
                              instance=self._qat_session.instance)
        return stats

    def migrateSetMaxDowntime(self, downtime: int, *args: Any) -> Any:
        """Nova's downtime steps, scaled to the plan's maximum downtime."""
        session = self._qat_session
        value = int(downtime)
        if session.planned:
            nova_max = max(1, CONF.libvirt.live_migration_downtime)
            value = max(1, int(round(downtime * session.plan.max_downtime_ms
                                     / nova_max)))
            if value <= session.tracker.downtime_ms:
                LOG.debug('Downtime step %(nova)d ms (scaled %(value)d ms) '
                          'not applied: escalation already set %(cur)d ms',
                          {'nova': downtime, 'value': value,
                           'cur': session.tracker.downtime_ms},
                          instance=session.instance)
                return 0
        result = self._qat_domain.migrateSetMaxDowntime(value, *args)
        session.tracker.applied(
            datamodel.Action(datamodel.ACTION_DOWNTIME, value))
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
        if policy is None:
            return
        actions = list(policy.on_progress(plan, progress) or ())
        for action in actions:
            self._qat_apply(action)

    def _qat_note_sent(self, stats: dict) -> None:
        """Remember when the job last sent anything."""
        if not stats or stats.get('type') != _JOB_UNBOUNDED:
            return
        sent = stats.get('memory_processed', stats.get('data_processed'))
        if sent is None:
            return
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
        lv = _libvirt()
        if action.kind == datamodel.ACTION_ABORT and any(
                a.kind == datamodel.ACTION_ABORT for a in session.actions):
            # The job is being cancelled (it may take the peer's answer,
            # e.g. over a link that returns later): one abort is enough.
            return
        idle = self._qat_idle_s()
        if action.kind == datamodel.ACTION_POST_COPY and idle >= DEAD_LINK_S:
            # NOTE(qat-migration): nothing reaches the destination (link
            # cut, peer hung). Post-copy would stop the guest here and
            # start it there without its memory: frozen until the link
            # returns, lost if it does not. Aborting keeps it running here
            # with all of its memory.
            action = datamodel.Action(
                datamodel.ACTION_ABORT,
                reason='%s; nothing sent for %.0f s: abort instead of '
                       'post-copy' % (action.reason, idle))
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
    lv = _libvirt()
    if not isinstance(exc, getattr(lv, 'libvirtError', ())):
        return False
    try:
        return exc.get_error_code() in _refusal_codes()
    except Exception:  # noqa: BLE001 - a malformed error is no refusal
        return False


def _loggable(params: Optional[dict]) -> dict:
    return {k: v for k, v in (params or {}).items()
            if k not in (c.PARAM_DESTINATION_XML, c.PARAM_PERSIST_XML)}


class QATMigrationMixin:
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
        self._qat_local = threading.local()
        self._qat_policies: Optional[loader.PolicySet] = None
        self._qat_caps: Optional[datamodel.HypervisorCaps] = None
        self._qat_history: Optional[qat_history.HistoryStore] = None
        self._qat_manager: Any = None
        #: this compute's ``host`` (from ``init_host``), for the report
        self._qat_host_name: Optional[str] = None

    # -- start-up ----------------------------------------------------------

    @staticmethod
    def _qat_enabled() -> bool:
        return bool(CONF.qat_migration.enabled)

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
                      capabilities.traits_for(self._qat_caps)))})
        return result

    def _qat_start(self) -> None:
        """Check options, load policies, probe capabilities (once).

        :raises ConfigError, UnknownPolicy: for ``init_host`` to turn into
            a start-up failure naming the option or the installed policies.
        """
        qat_conf.check(CONF)
        policies = loader.PolicySet(CONF)
        # Load the fallback now so a broken install fails at start-up.
        policies.get(NOVA_DEFAULT)
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
                    except Exception as exc:  # noqa: BLE001
                        LOG.warning('Live-migration planner unavailable '
                                    '(%s); Nova\'s own plan is used.', exc)
                        return False
        return True

    def _qat_probe(self) -> datamodel.HypervisorCaps:
        try:
            return self.qat_probe_hypervisor(self._host.get_connection())
        except Exception as exc:  # noqa: BLE001 - degrade, never fail start
            LOG.warning('Could not probe migration capabilities (%s); only '
                        'plans that need no hypervisor feature are used.',
                        exc)
            # NOTE(qat-migration): conservative: no multifd compression
            # (libvirt 0), no mt (QEMU >= 9.1), no post-copy.
            return datamodel.HypervisorCaps(libvirt_version=(0, 0, 0),
                                            qemu_version=(9, 1, 0),
                                            multifd_methods=frozenset(
                                                {'none'}),
                                            postcopy=False)

    @staticmethod
    def _qat_make_history() -> qat_history.HistoryStore:
        try:
            return qat_history.HistoryStore.from_conf(CONF)
        except Exception as exc:  # noqa: BLE001
            LOG.warning('Migration history unavailable (%s); kept in memory',
                        exc)
            return qat_history.HistoryStore(
                None, CONF.qat_migration.history_max_entries)

    @staticmethod
    def _qat_make_manager() -> Any:
        cls = _qat_manager_class()
        if cls is None:
            LOG.info('QAT device manager not installed: plans use no QAT.')
            return None
        try:
            return cls(CONF)
        except Exception as exc:  # noqa: BLE001
            LOG.warning('QAT device manager failed to start (%s): plans use '
                        'no QAT.', exc)
            return None

    # -- placement ---------------------------------------------------------

    def update_provider_tree(self, provider_tree: Any, nodename: str,
                             allocations: Optional[dict] = None) -> None:
        super().update_provider_tree(provider_tree, nodename,
                                     allocations=allocations)
        enabled = self._qat_enabled() and self._qat_caps is not None
        qat_endpoints = 0
        if enabled and self._qat_manager is not None:
            # NOTE(qat-migration): QAT's own providers first; their plan
            # says whether this host can lend QAT to a migration, without
            # the QATzip self-test that state() would run.
            try:
                host_plan = self._qat_manager.update_provider_tree(
                    provider_tree, nodename, allocations)
                qat_endpoints = getattr(host_plan, 'endpoints', 0) or 0
            except Exception as exc:  # noqa: BLE001
                LOG.warning('QAT inventory not updated: %s', exc)
        ours: set = set()
        if enabled:
            ours = capabilities.traits_for(self._qat_caps,
                                           qat_healthy=qat_endpoints > 0)
        try:
            current = set(provider_tree.data(nodename).traits)
        except Exception:  # noqa: BLE001 - provider not in the tree
            current = set()
        # NOTE(qat-migration): only our own namespace is ever removed, so
        # Nova's traits (and an operator's) survive; stale ones of ours
        # (e.g. after a QEMU downgrade or disabling the planner) do not.
        stale = {t for t in current
                 if t.startswith(capabilities.TRAIT_PREFIX)} - ours
        if ours:
            provider_tree.add_traits(nodename, *sorted(ours))
        if stale:
            provider_tree.remove_traits(nodename, *sorted(stale))

    # -- pre-checks --------------------------------------------------------

    def _qat_check_hints(self, instance: Any) -> datamodel.Hints:
        """Validated hints of ``instance``.

        Flavor extra specs are the operator's: a bad one fails the check.
        Image properties are the tenant's: a bad one is ignored with a
        warning (and one that would widen a limit is narrowed), so a
        tenant cannot make its server impossible to live-migrate.

        :raises MigrationPreCheckError: naming the bad flavor key, so the
            request fails before anything happens to the instance.
        """
        try:
            hints = qat_hints.from_instance(
                _extra_specs(instance), None, _system_metadata(instance),
                conf=CONF,
                memory_mb=_field(_field(instance, 'flavor'), 'memory_mb'),
                instance=instance)
            if hints.policy and self._qat_policies is not None:
                self._qat_policies.get(hints.policy)
            return hints
        except (qat_hints.InvalidHint, loader.UnknownPolicy) as exc:
            raise exception.MigrationPreCheckError(
                reason='invalid live-migration hint: %s' % exc)

    def check_can_live_migrate_source(self, context: Any, instance: Any,
                                      dest_check_data: Any,
                                      block_device_info: Any = None) -> Any:
        if self._qat_ready():
            self._qat_check_hints(instance)
        return super().check_can_live_migrate_source(
            context, instance, dest_check_data,
            block_device_info=block_device_info)

    # -- planning ----------------------------------------------------------

    def _qat_destination(self, context: Any, dest: str,
                         migrate_data: Any) -> datamodel.DestinationCaps:
        """The destination's capabilities from its Placement traits."""
        try:
            migration = _field(migrate_data, 'migration')
            node = _field(migration, 'dest_node') if migration else None
            if node:
                nodes = [objects.ComputeNode.get_by_host_and_nodename(
                    context, dest, node)]
            else:
                nodes = objects.ComputeNodeList.get_all_by_host(context, dest)
            reportclient = self.virtapi.reportclient
            traits: set = set()
            for cn in nodes:
                traits |= set(reportclient.get_provider_traits(
                    context, cn.uuid).traits)
            return capabilities.destination_from_traits(traits)
        except Exception as exc:  # noqa: BLE001 - unknown is a valid answer
            LOG.warning('Could not read the traits of destination %(dest)s '
                        '(%(exc)s): only plans needing nothing from it.',
                        {'dest': dest, 'exc': exc})
            return datamodel.DestinationCaps()

    def _qat_gather(self, context: Any, instance: Any, dest: str,
                    migrate_data: Any, hints: datamodel.Hints,
                    measured: bool) -> datamodel.Facts:
        """The facts of one migration.

        :param measured: sample host load, dirty rate and QAT state (not
            needed by Nova's own plan, and not free: they take ~1 s).
        """
        flavor = _field(instance, 'flavor')
        paused = _field(instance, 'vm_state') == vm_states.PAUSED
        memory_mb = int(_field(flavor, 'memory_mb', 0) or
                        _field(instance, 'memory_mb', 0) or 0)
        measurements: dict = {}
        host = datamodel.HostLoad()
        qat = datamodel.QATState()
        if measured:
            host = measure.host_load()
            seconds = CONF.qat_migration.dirty_rate_sample_seconds
            if seconds and not paused:
                try:
                    guest = self._host.get_guest(instance)
                    measurements = measure.instance_fields(
                        guest._domain, memory_mb, seconds)
                except Exception as exc:  # noqa: BLE001
                    LOG.info('Guest not measured: %s', exc,
                             instance=instance)
            if self._qat_manager is not None:
                try:
                    qat = self._qat_manager.state()
                except Exception as exc:  # noqa: BLE001
                    LOG.warning('QAT state unavailable: %s', exc)
        inst = datamodel.InstanceFacts(
            uuid=instance.uuid, name=_field(instance, 'name', ''),
            memory_mb=memory_mb,
            vcpus=int(_field(flavor, 'vcpus', 0) or
                      _field(instance, 'vcpus', 0) or 1),
            paused=paused, hints=hints, **measurements)
        history = (self._qat_history.get(instance.uuid)
                   if self._qat_history is not None else datamodel.History())
        return datamodel.Facts(
            instance=inst, host=host, qat=qat,
            hypervisor=self._qat_caps or datamodel.HypervisorCaps(),
            destination=(self._qat_destination(context, dest, migrate_data)
                         if measured else datamodel.DestinationCaps()),
            nova=datamodel.NovaSettings.from_conf(CONF),
            history=history, link_mbps=link_mbps(CONF),
            block_migration=bool(_field(migrate_data, 'block_migration',
                                        False)),
            passthrough_allowed=CONF.qat_migration.qemu_monitor_passthrough,
            in_flight=self._qat_budget.snapshot())

    def _qat_plan(self, context: Any, instance: Any, dest: str,
                  migrate_data: Any) -> MigrationSession:
        policies = self._qat_policies
        nova_policy = policies.get(NOVA_DEFAULT)
        try:
            hints = qat_hints.from_instance(
                _extra_specs(instance), None, _system_metadata(instance),
                conf=CONF,
                memory_mb=_field(_field(instance, 'flavor'), 'memory_mb'),
                instance=instance)
        except qat_hints.InvalidHint as exc:
            # The pre-check refuses these; a flavor changed since then.
            LOG.warning('Ignoring invalid live-migration hints (%s).', exc,
                        instance=instance)
            hints = datamodel.Hints()
        try:
            policy = policies.for_hints(hints)
        except loader.UnknownPolicy as exc:
            LOG.warning('%s; using %s', exc, NOVA_DEFAULT, instance=instance)
            policy = nova_policy
        # NOTE(qat-migration): Nova's own plan needs no measurement; skip
        # the ~1 s of sampling so nova_default costs what Nova costs.
        measured = policy.name != NOVA_DEFAULT
        facts = self._qat_gather(context, instance, dest, migrate_data,
                                 hints, measured)
        try:
            requested = policy.plan(facts)
        except Exception:  # noqa: BLE001 - a plugin bug must not fail LM
            LOG.exception('Migration policy %s failed; using %s',
                          policy.name, NOVA_DEFAULT, instance=instance)
            policy = nova_policy
            requested = nova_policy.plan(facts)
        nova_plan = nova_policy.plan(facts)
        nova_call = translate.to_libvirt(nova_plan, facts)
        try:
            call = translate.to_libvirt(requested, facts)
        except Exception:  # noqa: BLE001
            LOG.exception('Could not translate plan %s; using Nova\'s',
                          requested.describe(), instance=instance)
            call = nova_call
        session = MigrationSession(instance, facts, policy, requested, call,
                                   nova_call,
                                   _field(migrate_data, 'migration'))
        if call.backend == translate.BACKEND_PASSTHROUGH:
            # What runs if the monitor command is refused: the same plan
            # with only the methods libvirt knows.
            session.software_call = translate.to_libvirt(
                requested, dataclasses.replace(facts,
                                               passthrough_allowed=False))
        return session

    def _qat_session(self, instance: Any) -> Optional[MigrationSession]:
        uuid = _field(instance, 'uuid')
        with self._qat_sessions_lock:
            return self._qat_sessions.get(uuid)

    # -- Nova's live-migration path ---------------------------------------

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
                # own share before the next plan is made.
                with self._qat_plan_lock:
                    session = self._qat_plan(context, instance, dest,
                                             migrate_data)
                    self._qat_take_lease(stack, session)
                    self._qat_budget.reserve(session)
                    session.budget = self._qat_budget
                    stack.callback(self._qat_budget.release, session)
            except Exception:  # noqa: BLE001 - never worse than Nova
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
                self._qat_report(session)
                self._qat_unwatch_job(session)
                with self._qat_sessions_lock:
                    self._qat_sessions.pop(instance.uuid, None)

    def _qat_watch_job(self, session: MigrationSession, domain: Any) -> None:
        """Catch libvirt's statistics of the completed job.

        NOTE(qat-migration): Nova migrates with UNDEFINE_SOURCE, so the
        source domain (and its completed job: downtime, totals) is gone
        once the job ends; libvirt hands them over in its job-completed
        event instead, on the event loop's thread.
        """
        lv = _libvirt()
        event_id = getattr(lv, 'VIR_DOMAIN_EVENT_ID_JOB_COMPLETED', None)
        if event_id is None:
            return

        def completed(conn: Any, dom: Any, params: Any, opaque: Any) -> None:
            session.completed_stats = dict(params or {})
            session.completed_event.set()

        try:
            conn = self._host.get_connection()
            session.job_watch = (conn, conn.domainEventRegisterAny(
                domain, event_id, completed, None))
        except Exception as exc:  # noqa: BLE001 - statistics are optional
            LOG.debug('No job-completed event: %s', exc,
                      instance=session.instance)

    @staticmethod
    def _qat_unwatch_job(session: MigrationSession) -> None:
        if session.job_watch is None:
            return
        conn, callback_id = session.job_watch
        session.job_watch = None
        try:
            conn.domainEventDeregisterAny(callback_id)
        except Exception as exc:  # noqa: BLE001 - connection gone
            LOG.debug('Job-completed event not deregistered: %s', exc)

    def _qat_take_lease(self, stack: contextlib.ExitStack,
                        session: MigrationSession) -> None:
        """Hold a QAT lease for a plan that needs one, or re-plan without.

        The lease is released by ``stack`` on every exit path.
        """
        if not session.plan.qat_lease:
            return
        lease = None
        if self._qat_manager is not None:
            try:
                lease = stack.enter_context(
                    self._qat_manager.lease(session.instance_uuid))
            except Exception as exc:  # noqa: BLE001
                LOG.warning('QAT lease failed: %s', exc,
                            instance=session.instance)
        if lease is not None:
            session.notes.append('holding QAT lease %s' % (lease,))
            return
        facts = dataclasses.replace(
            session.facts, qat=dataclasses.replace(session.facts.qat,
                                                   free_leases=0))
        session.facts = facts
        session.call = translate.to_libvirt(session.requested, facts)
        session.notes.append('no QAT lease free: re-planned to %s'
                             % session.plan.describe())
        LOG.warning('No QAT lease free; plan degraded to %s',
                    session.plan.describe(), instance=session.instance)

    def _qat_report(self, session: MigrationSession) -> None:
        if (session.outcome == report.OUTCOME_COMPLETED and
                session.job_watch is not None):
            # The event may trail Nova's monitor by a moment.
            session.completed_event.wait(JOB_EVENT_WAIT_S)
        try:
            record = report.build(
                instance_uuid=session.instance_uuid,
                instance_name=_field(session.instance, 'name', ''),
                requested=session.requested, call=session.call,
                outcome=session.outcome,
                total_s=time.monotonic() - session.started,
                last_stats=session.tracker.last,
                completed_stats=session.completed_stats,
                summary=session.tracker.summary(),
                sent_params=session.sent_params,
                sent_flags=(c.flag_names(session.sent_flags)
                            if session.sent_flags is not None else None),
                actions=session.actions, notes=session.notes,
                # Nova's own plan measures nothing: no facts to report.
                facts=(None if session.policy.name == NOVA_DEFAULT
                       else session.facts),
                host=self._qat_host_name or CONF.host,
                prediction=_prediction(session))
            report.emit(record, self._qat_history)
        except Exception:  # noqa: BLE001 - reporting is best effort
            LOG.exception('Could not report the migration',
                          instance=session.instance)

    def _live_migration_operation(self, context: Any, instance: Any,
                                  dest: str, block_migration: bool,
                                  migrate_data: Any, guest: Any,
                                  device_names: Any) -> Any:
        session = self._qat_session(instance)
        # NOTE(qat-migration): Nova's own plan goes through the proxy too:
        # it sends exactly Nova's flags and params, less the -global pairs
        # an earlier passthrough migration left in the definition.
        if session is not None:
            guest = libvirt_guest.Guest(
                _PlannedDomain(guest._domain, session))
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
        domain = _PlannedDomain(guest._domain, session, observe=True)
        planned_guest = libvirt_guest.Guest(domain)
        domain._qat_guest = planned_guest

        self._qat_watch_job(session, guest._domain)

        # The monitor is where Nova decides the outcome: it calls exactly
        # one of these when the job completes, fails or is cancelled.
        def post(*args: Any, **kwargs: Any) -> Any:
            session.outcome = report.OUTCOME_COMPLETED
            return post_method(*args, **kwargs)

        def recover(*args: Any, **kwargs: Any) -> Any:
            status = kwargs.get('migration_status')
            session.outcome = (
                report.OUTCOME_ABORTED if session.aborted_by_us else
                report.OUTCOME_CANCELLED if (status == 'cancelled' or
                                             session.abort_requested) else
                report.OUTCOME_FAILED)
            return recover_method(*args, **kwargs)

        self._qat_local.session = session
        try:
            return super()._live_migration_monitor(
                context, instance, planned_guest, dest, post, recover,
                block_migration, migrate_data, future, disk_paths)
        finally:
            self._qat_local.session = None

    def _get_migration_flags(self, is_block_migration: bool) -> int:
        """This migration's flags inside its monitor, else Nova's."""
        session = getattr(self._qat_local, 'session', None)
        if session is not None:
            flags = session.call.flags
            if not is_block_migration:
                flags &= ~c.VIR_MIGRATE_NON_SHARED_INC
            return flags
        return super()._get_migration_flags(is_block_migration)


def _prediction(session: MigrationSession) -> Optional[dict]:
    """The convergence model's prediction for the plan that ran, for the
    report (what the planner expected beside what happened).
    """
    if session.policy.name == NOVA_DEFAULT:
        return None   # Nova's own plan: nothing was measured
    try:
        return predictive.predict_dict(CONF, session.facts, session.plan)
    except Exception as exc:  # noqa: BLE001 - informational only
        LOG.debug('No prediction for the report: %s', exc)
        return None


def _field(obj: Any, name: str, default: Any = None) -> Any:
    """``getattr`` for versioned objects.

    NOTE(qat-migration): an unset field of a Nova object raises
    NotImplementedError ("Cannot load ... in the base class"), not
    AttributeError, so plain ``getattr(obj, name, default)`` is not safe.
    """
    try:
        return getattr(obj, name, default)
    except Exception:  # noqa: BLE001
        return default


def _extra_specs(instance: Any) -> dict:
    flavor = _field(instance, 'flavor')
    try:
        return dict(_field(flavor, 'extra_specs') or {})
    except Exception:  # noqa: BLE001 - a lazy-load failure means none
        return {}


def _system_metadata(instance: Any) -> dict:
    try:
        return dict(_field(instance, 'system_metadata') or {})
    except Exception:  # noqa: BLE001
        return {}


class QATLibvirtDriver(QATMigrationMixin, nova_driver.LibvirtDriver):
    """Nova's libvirt driver with per-instance live-migration plans.

    ``[DEFAULT] compute_driver = qat_migration.QATLibvirtDriver``
    """
