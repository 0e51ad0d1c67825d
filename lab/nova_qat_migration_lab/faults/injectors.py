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
"""The faults: each does one real thing to the lab at its moment.

Each :class:`Fault` is injected from the poll of
:meth:`~nova_qat_migration_lab.runner.GuestSession.migrate` (its
``during`` callback, every 0.25 s while Nova's migration record is open):
it waits for its moment (pre-copy under way on the source, or post-copy),
does one real thing to the lab (``SIGKILL`` to the destination QEMU, a
libvirt daemon killed and restarted, ``tc netem`` loss on the veth, a
slower link, ``nova-compute`` stopped and started, the guest's dirty rate
raised through its serial console, a QAT device failing in the sysfs tree
the QAT manager reads) and undoes what can be undone when the migration
has ended. Nothing here plans, escalates, aborts or cleans up the
migration itself: that is Nova's and the driver's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import threading
import time
from typing import Any, Callable, Optional

from oslo_log import log as logging

from nova_qat_migration_lab import cloud as cloud_mod
from nova_qat_migration_lab.faults import context
from nova_qat_migration_lab.faults.context import Check
from nova_qat_migration_lab.faults.context import FaultContext
from nova_qat_migration_lab import hosts as hosts_mod
from nova_qat_migration_lab import introspect
from nova_qat_migration_lab import repo
from nova_qat_migration_lab import scenarios as sc

LOG = logging.getLogger(__name__)


class Fault:
    """One fault. Subclasses set the class attributes and override
    :meth:`inject` (called on every poll until the run ends) and, where
    something must be undone, :meth:`restore`.
    """

    name = ''
    title = ''
    #: what should happen, for the summary
    expect = ''
    #: ``[qat_migration]`` options of the runs (over the plan's)
    options: dict = {}

    def skip(self, spec: sc.PlanSpec, driver: str) -> Optional[str]:
        """Why this fault does not apply to ``spec`` (None: it does)."""
        return None

    def prepare(self, ctx: FaultContext) -> None:
        """Before the migration is requested."""

    def inject(self, ctx: FaultContext, elapsed: float) -> None:
        """Called on every poll while the migration runs."""

    def restore(self, ctx: FaultContext) -> None:
        """After the migration ended (whatever happened)."""

    def checks(self, ctx: FaultContext) -> list:
        """This fault's own checks, beside :func:`check`'s."""
        return []

    def fired(self, ctx: FaultContext) -> bool:
        return 'fired_at' in ctx.state

    def fire(self, ctx: FaultContext, elapsed: float, text: str) -> None:
        ctx.state['fired_at'] = elapsed
        ctx.event(text)


class DestQemuKilled(Fault):
    name = 'dest-qemu-killed'
    title = 'destination QEMU killed (SIGKILL) during pre-copy'
    expect = ('the job fails, the guest runs on at the source, the '
              'migration ends failed/error, the source QEMU is as before')

    def inject(self, ctx: FaultContext, elapsed: float) -> None:
        if self.fired(ctx) or not ctx.precopy_running():
            return
        pid = ctx.dest.qemu_pid(ctx.domain_name)
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL)
        self.fire(ctx, elapsed, 'SIGKILL destination QEMU pid %d on %s'
                  % (pid, ctx.dest.name))


class DestLibvirtdRestarted(Fault):
    name = 'dest-libvirtd-restarted'
    title = ('destination libvirt daemon killed (SIGKILL) during pre-copy, '
             'restarted 5 s later')
    expect = ('the source job fails (peer connection lost), the restarted '
              'daemon kills the half-migrated incoming QEMU, the guest runs '
              'on at the source')
    down_s = 5.0

    def inject(self, ctx: FaultContext, elapsed: float) -> None:
        if self.fired(ctx) or not ctx.precopy_running():
            return
        ctx.lab.kill_daemon(ctx.dest)
        self.fire(ctx, elapsed, 'SIGKILL libvirtd of %s' % ctx.dest.name)
        time.sleep(self.down_s)
        self._restart(ctx)

    def _restart(self, ctx: FaultContext) -> None:
        if ctx.state.get('restarted'):
            return
        ctx.lab.restart_daemon(ctx.dest)
        ctx.state['restarted'] = True
        ctx.event('libvirtd of %s restarted' % ctx.dest.name)

    def restore(self, ctx: FaultContext) -> None:
        if self.fired(ctx):
            self._restart(ctx)
        # Nova's compute reconnects on its next call (and re-enables
        # itself if it disabled the service when the connection dropped).
        _wait_nova_connection(ctx, ctx.dest)


class LinkCut(Fault):
    name = 'link-cut'
    title = ('link cut (netem loss 100%, or both veth ends down where the '
             'kernel has no netem) for longer than the progress timeout, '
             'then restored')
    expect = ('planned migrations: the driver aborts on the progress '
              'timeout and the guest stays at the source; Nova\'s plan '
              'has no progress timeout: it resumes when the link returns')
    progress_timeout_s = 8
    options = {'progress_timeout': progress_timeout_s}
    cut_s = progress_timeout_s + 10.0

    def inject(self, ctx: FaultContext, elapsed: float) -> None:
        if not self.fired(ctx) and ctx.precopy_running():
            how = ctx.lab.cut_link()
            self.fire(ctx, elapsed, 'link cut (%s)' % how)
            # A timer, not the poll: the poll can wait on Nova's API while
            # libvirt waits on the dead peer.
            _restore_later(ctx, self.cut_s, self.restore)

    def restore(self, ctx: FaultContext) -> None:
        with ctx.lock:
            if self.fired(ctx) and not ctx.state.get('restored'):
                ctx.lab.restore_link()
                ctx.state['restored'] = True
                ctx.event('link restored (%d Mbit/s)' % ctx.link_mbit)


class LinkDegraded(Fault):
    name = 'link-degraded'
    title = 'link degraded to 1/8 of its rate during pre-copy'
    expect = ('the planned prediction no longer holds: escalation copes '
              '(completes) or the migration is aborted cleanly by a '
              'timeout with the guest at the source')
    factor = 8

    def inject(self, ctx: FaultContext, elapsed: float) -> None:
        if self.fired(ctx) or not ctx.precopy_running():
            return
        mbit = max(1, ctx.link_mbit // self.factor)
        ctx.lab.set_link(mbit)
        self.fire(ctx, elapsed, 'link degraded %d -> %d Mbit/s'
                  % (ctx.link_mbit, mbit))

    def restore(self, ctx: FaultContext) -> None:
        if self.fired(ctx):
            ctx.lab.set_link(ctx.link_mbit)
            ctx.event('link back to %d Mbit/s' % ctx.link_mbit)


class SourceComputeRestarted(Fault):
    name = 'source-compute-restarted'
    title = ('source nova-compute stopped (Nova 34 graceful shutdown, as '
             'on SIGTERM) during pre-copy and started again')
    expect = ('Nova\'s graceful shutdown waits for the in-progress live '
              'migration, which ends as without the fault; the new '
              'nova-compute finds nothing to clean up')

    def inject(self, ctx: FaultContext, elapsed: float) -> None:
        if self.fired(ctx) or not ctx.precopy_running():
            return
        self.fire(ctx, elapsed, 'stopping nova-compute on %s'
                  % ctx.source.name)
        thread = threading.Thread(target=self._restart, args=(ctx,),
                                  name='lab-compute-restart', daemon=True)
        ctx.state['thread'] = thread
        thread.start()

    def _restart(self, ctx: FaultContext) -> None:
        try:
            restart_compute(ctx.cloud, ctx.source)
            ctx.event('nova-compute on %s started again' % ctx.source.name)
        except Exception as exc:  # recorded, checked after
            LOG.exception('compute restart failed')
            ctx.event('nova-compute restart failed: %s' % exc)
            ctx.state['restart_error'] = str(exc)

    def restore(self, ctx: FaultContext) -> None:
        thread = ctx.state.get('thread')
        if thread is not None:
            thread.join(timeout=context.GIVE_UP_S)
            if thread.is_alive():
                ctx.event('nova-compute restart still running')


class DirtyRateJump(Fault):
    name = 'dirty-rate-jump'
    title = ('guest dirty rate raised to %d pages/s after the plan was '
             'made' % context.JUMP_RATE)
    expect = ('the escalation copes or a timeout aborts cleanly; the '
              'guest stays intact wherever it ends up')

    def inject(self, ctx: FaultContext, elapsed: float) -> None:
        if self.fired(ctx) or not ctx.precopy_running(8 * 1024 * 1024):
            return
        ctx.session.console.send('RATE %d' % context.JUMP_RATE)
        self.fire(ctx, elapsed, 'guest asked for RATE %d' % context.JUMP_RATE)

    def restore(self, ctx: FaultContext) -> None:
        _restore_rate(ctx)


class PostcopyLinkCut(Fault):
    name = 'postcopy-link-cut'
    title = ('link cut (netem loss 100%) for 40 s, longer than libvirt\'s '
             'keepalive between the daemons (5 s x 5), once the migration is '
             'in post-copy (the dirty rate is raised first so that the plan '
             'switches)')
    expect = ('documented, not promised: in post-copy the guest\'s memory '
              'is split between the hosts; nothing (neither Nova nor '
              'libvirt without VIR_MIGRATE_POSTCOPY_RESUME) recovers it')
    cut_s = 40.0

    def skip(self, spec: sc.PlanSpec, driver: str) -> Optional[str]:
        if not dict(spec.options).get('permit_post_copy'):
            return ('the plan does not permit post-copy (checked in every '
                    'cell: post-copy only where permitted)')
        return None

    def inject(self, ctx: FaultContext, elapsed: float) -> None:
        if 'rate_at' not in ctx.state:
            if ctx.precopy_running(8 * 1024 * 1024):
                ctx.session.console.send('RATE %d' % context.JUMP_RATE)
                ctx.state['rate_at'] = elapsed
                ctx.event('guest asked for RATE %d' % context.JUMP_RATE)
            return
        if not self.fired(ctx) and ctx.in_post_copy():
            how = ctx.lab.cut_link()
            self.fire(ctx, elapsed, 'in post-copy: link cut (%s)' % how)
            _restore_later(ctx, self.cut_s, self._link_back)

    def _link_back(self, ctx: FaultContext) -> None:
        with ctx.lock:
            if self.fired(ctx) and not ctx.state.get('restored'):
                ctx.lab.restore_link()
                ctx.state['restored'] = True
                ctx.event('link restored')

    def restore(self, ctx: FaultContext) -> None:
        self._link_back(ctx)
        _restore_rate(ctx)


class QATUnhealthy(Fault):
    name = 'qat-unhealthy'
    title = ('the QAT device whose endpoint a migration leases goes down '
             '(state down, heartbeat failed) during the migration')
    expect = ('the lease is released when the migration ends, the QAT '
              'manager then reports no healthy endpoint, so the next plan '
              'uses no QAT')
    address = '0000:6b:00.0'

    def skip(self, spec: sc.PlanSpec, driver: str) -> Optional[str]:
        if driver == context.DRIVER_NOVA:
            return 'plain Nova takes no QAT lease'
        if spec.name not in ('qatzip', 'adaptive'):
            return 'only a plan that may take a QAT lease (qatzip, adaptive)'
        return None

    def prepare(self, ctx: FaultContext) -> None:
        qat_sysfs = repo.load_fixture('qat_sysfs')
        tree = qat_sysfs.QATSysfs()
        tree.setUp()
        ctx.state['tree'] = tree
        tree.add_pf(self.address, '4xxx', numvfs=4, services='dc')
        # No QAT hardware here: QATzip's self-test runs in software, which
        # only a test bed's option lets the plan count as QAT.
        ctx.options.update(sysfs_root=tree.sysfs, debugfs_root=tree.debugfs,
                           qat_endpoints_for_migration=1,
                           qatzip_software_allowed=True,
                           qemu_monitor_passthrough=True)
        from oslo_config import cfg
        for name in context.QAT_FIXTURE_OPTIONS:
            cfg.CONF.set_override(name, ctx.options[name],
                                  group='qat_migration')
        # Both hosts "can" qatzip (Debian's QEMU cannot: the source QEMU
        # refuses the method and the driver runs the software plan, with
        # the lease held all the same).
        pretending = contextlib.ExitStack()
        pretending.enter_context(introspect.pretend(
            ctx.cloud.computes,
            multifd_methods=lambda methods: methods | {'qatzip'}))
        ctx.state['caps'] = pretending
        ctx.cloud._run_periodics()
        ctx.event('QAT PF %s up with 4 VFs; qatzip advertised' % self.address)

    def inject(self, ctx: FaultContext, elapsed: float) -> None:
        if self.fired(ctx) or not ctx.precopy_running():
            return
        held = _leases_in_use(ctx.cloud)
        tree = ctx.state['tree']
        tree.set_state(self.address, 'down')
        tree.set_heartbeat(self.address, -1)
        self.fire(ctx, elapsed, 'QAT PF %s down (leases held: %d)'
                  % (self.address, held))
        ctx.state['leases_held_at_fault'] = held

    def restore(self, ctx: FaultContext) -> None:
        from oslo_config import cfg
        src = ctx.cloud.computes.get(ctx.source.name)
        manager = (introspect.manager(src.driver) if src is not None
                   else None)
        if manager is not None:
            state = manager.state()
            ctx.state['qat_after'] = dataclasses.asdict(state)
            ctx.event('QAT state after: %s' % ctx.state['qat_after'])
        for name in context.QAT_FIXTURE_OPTIONS:
            cfg.CONF.clear_override(name, group='qat_migration')
        pretending = ctx.state.get('caps')
        if pretending is not None:
            pretending.close()
        tree = ctx.state.get('tree')
        if tree is not None:
            tree.cleanUp()
        # Placement forgets the fixture's devices and the qatzip trait.
        ctx.cloud._run_periodics()

    def checks(self, ctx: FaultContext) -> list:
        held = ctx.state.get('leases_held_at_fault')
        after = ctx.state.get('qat_after') or {}
        return [
            # Informational: without a lease held the fault tested less.
            Check('lease_held_at_fault', None, 'QAT leases held when the '
                  'device went down: %s' % held),
            Check('qat_failure_seen', after.get('endpoints') == 0 and
                  after.get('free_leases') == 0,
                  'QAT state after: %s (the next plan may use no QAT)'
                  % after)]


FAULTS = {f.name: f for f in (
    DestQemuKilled(), DestLibvirtdRestarted(), LinkCut(), LinkDegraded(),
    SourceComputeRestarted(), DirtyRateJump(), QATUnhealthy(),
    # last: a guest lost in post-copy may leave Nova's monitor busy
    PostcopyLinkCut())}


def _restore_later(ctx: FaultContext, delay: float,
                   restore: Callable[[FaultContext], None]) -> None:
    def run() -> None:
        try:
            restore(ctx)
        except Exception as exc:  # recorded
            ctx.event('restore failed: %s' % exc)
    timer = threading.Timer(delay, run)
    timer.daemon = True
    timer.start()


def _restore_rate(ctx: FaultContext) -> None:
    if 'fired_at' not in ctx.state and 'rate_at' not in ctx.state:
        return
    try:
        ctx.session.reattach()
        ctx.session.console.set_rate(ctx.session.scenario.rate, timeout=20)
        ctx.event('guest back to RATE %d' % ctx.session.scenario.rate)
    except Exception as exc:  # the guest may be gone
        ctx.event('could not restore the guest rate: %s' % exc)


def _wait_nova_connection(ctx: FaultContext, host: hosts_mod.LabHost,
                          timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ctx.cloud.connection(host).getVersion()
            return
        except Exception:  # reconnecting
            time.sleep(0.5)
    ctx.event('Nova\'s compute on %s did not reconnect' % host.name)


def restart_compute(cloud: cloud_mod.LabCloud,
                    host: hosts_mod.LabHost) -> Any:
    """Stop ``host``'s nova-compute as SIGTERM does (Nova 34's graceful
    shutdown: in-progress tasks first) and start a new one, as
    ``restart_compute_service`` of Nova's test base does.

    NOTE(qat-migration): two in-process differences from a real restart,
    both about the shared process: Nova's shutdown ends every thread pool
    *of the process*, which here also serves the other compute, the
    conductor and the scheduler (so it is skipped: a separate nova-compute
    process ends only its own); and the old driver's libvirt
    connection-event thread loops for ever (it is ended as the lab's
    tear-down does).
    """
    from unittest import mock

    from oslo_config import cfg
    old = cloud.computes[host.name]
    # Nova's test base sets manager_shutdown_timeout to 0 (no waiting);
    # nova-compute's own default lets in-progress tasks finish.
    saved = cfg.CONF.manager_shutdown_timeout
    cfg.CONF.set_override('manager_shutdown_timeout',
                          context.SHUTDOWN_TIMEOUT_S)
    try:
        with mock.patch('nova.thread_pool_factory.shutdown_all_executors'):
            old.stop()
    finally:
        cfg.CONF.set_override('manager_shutdown_timeout', saved)
    try:
        old.driver._host._conn_event_handler_queue.put(
            cloud_mod._stop_thread)
    except Exception:  # no such thread
        pass
    return cloud.start_lab_compute(host)


def _leases_in_use(cloud: cloud_mod.LabCloud) -> int:
    total = 0
    for compute in cloud.computes.values():
        manager = introspect.manager(compute.driver)
        if manager is not None:
            total += manager.pool.in_use
    return total
