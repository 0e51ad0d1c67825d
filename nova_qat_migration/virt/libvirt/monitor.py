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
"""Nova's monitor thread: progress and escalations.

:class:`MonitoredDomain` stands in for the ``virDomain`` Nova's
``_live_migration_monitor`` watches: its ``jobStats`` feeds the session's
progress tracker and applies the policy's escalations
(:mod:`~nova_qat_migration.policy.escalation` decides, this applies); its
``migrateSetMaxDowntime`` scales Nova's downtime steps to the plan's
maximum downtime, its ``abortJob`` records that an abort was asked for,
and its ``migrateStartPostCopy`` refuses while a block migration's memory
migration waits for the disks to be copied.
"""

from __future__ import annotations

import time
from typing import Any, Optional

from nova.virt.libvirt import guest as libvirt_guest
from nova.virt.libvirt import migration as libvirt_migrate
from oslo_log import log as logging

from nova_qat_migration import conf as qat_conf
from nova_qat_migration import datamodel
from nova_qat_migration.policy import escalation
from nova_qat_migration.virt.libvirt import session as lm_session

CONF = qat_conf.CONF
LOG = logging.getLogger(__name__)

#: libvirt's ``VIR_DOMAIN_JOB_UNBOUNDED``: a job that is still running.
_JOB_UNBOUNDED = 2
#: Nova's migration status once its post-copy switch went through.
_POSTCOPY_STATUS = 'running (post-copy)'


class MonitoredDomain(lm_session.DomainProxy):
    """The domain Nova's monitor watches: progress and escalations."""

    def __init__(self, domain: Any,
                 session: lm_session.MigrationSession) -> None:
        super().__init__(domain, session)
        #: the Nova ``Guest`` wrapping this proxy, for Nova's own
        #: post-copy switch (set once the guest is built around it)
        self._qat_guest: Any = None
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
        except Exception:  # never break Nova's monitor
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
            raise lm_session.libvirt_module().libvirtError(
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
        lv = lm_session.libvirt_module()
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
