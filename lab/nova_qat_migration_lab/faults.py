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
"""Faults in the middle of real migrations, and what must survive them.

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

After every fault, :func:`check` runs the same checks (see its docstring)
and :func:`run_fault` returns one JSON-able row; :func:`run_matrix` runs
fault x plan cells, each on a freshly booted guest, and
:func:`write_summary` writes ``summary.md`` beside ``results.jsonl``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import threading
import time
from typing import Any, Callable, Iterator, Optional

from oslo_log import log as logging

from nova_qat_migration import datamodel
from nova_qat_migration import outcomes
from nova_qat_migration.virt.libvirt import passthrough
from nova_qat_migration_lab import cloud as cloud_mod
from nova_qat_migration_lab import hosts as hosts_mod
from nova_qat_migration_lab import introspect
from nova_qat_migration_lab import jsonlines
from nova_qat_migration_lab import repo
from nova_qat_migration_lab import runner
from nova_qat_migration_lab import scenarios as sc

LOG = logging.getLogger(__name__)

#: ``[qat_migration]`` options the QAT sysfs fixture sets on both computes.
QAT_FIXTURE_OPTIONS = ('sysfs_root', 'debugfs_root',
                       'qat_endpoints_for_migration',
                       'qatzip_software_allowed')

#: A busy guest whose first pass takes ~10 s on the lab's 200 Mbit/s link:
#: long enough to hit it in pre-copy, short enough for CI. 256 MiB filled
#: and all of it rewritten at 2000 pages/s (8 MiB/s): every plan converges
#: without a fault.
FAULT_SCENARIO = sc.Scenario(
    'fault-busy', memory_mb=512, touch_mb=256, hot_mb=256, rate=2000,
    pattern='small', link_mbit=200,
    description='256 MiB rewritten at 2000 pages/s over a 200 Mbit/s link')

#: Completion timeout (Nova's, scaled per GiB by the runner) of a fault run.
TIMEOUT_S = 60.0
#: A run that has not ended this long after the request is given up (the
#: checks then say what was left): e.g. a post-copy that cannot finish.
GIVE_UP_S = 240.0
#: ``[DEFAULT] manager_shutdown_timeout`` of the stopped nova-compute
#: (Nova 34's default: in-progress tasks get 140 s of it).
SHUTDOWN_TIMEOUT_S = 160
#: How long the checks wait for the other end to be cleaned up.
SETTLE_S = 30.0
#: Pre-copy is "under way" once this much was sent (the destination QEMU
#: exists and receives).
PRECOPY_BYTES = 24 * 1024 * 1024
#: Pages/s the guest jumps to in the dirty-rate fault (~117 MiB/s asked;
#: a TCG vCPU reaches what it can, well above the 200 Mbit/s link).
JUMP_RATE = 30000

#: The source QEMU's multifd parameters the driver itself sets (through
#: the monitor passthrough): they must be exactly back after a failure.
STRICT_PARAMS = ('multifd-compression', 'multifd-zlib-level',
                 'multifd-zstd-level', 'multifd-qatzip-level')
#: Parameters that never say anything about a migration's leftovers.
_VOLATILE_PARAMS = ('tls-creds', 'tls-hostname', 'tls-authz')
#: The source QEMU's migration parameters compared before and after a
#: fault: the multifd ones (:data:`STRICT_PARAMS`, judged) and those a
#: plan sets through libvirt (reported).
WATCHED_PARAMS = STRICT_PARAMS + (
    'multifd-channels', 'downtime-limit', 'max-bandwidth',
    'max-postcopy-bandwidth', 'xbzrle-cache-size', 'cpu-throttle-initial',
    'cpu-throttle-increment', 'cpu-throttle-tailslow')

TERMINAL = cloud_mod.TERMINAL_MIGRATION
DRIVER_NOVA = 'libvirt.LibvirtDriver'

#: The plans of the fault matrix, one per column of its summary.
PASSTHROUGH_ZSTD = sc.PlanSpec(
    'passthrough-zstd', policy='static', options=tuple(sorted(
        dict(sc.static_options(datamodel.Plan(
            policy='static', method='zstd', level=1,
            parallel_connections=4)),
             qemu_monitor_passthrough=True).items())))
MATRIX_PLANS = {
    'nova_default': sc.PLANS['nova_default'],
    'adaptive': sc.PLANS['adaptive'],
    'passthrough-zstd': PASSTHROUGH_ZSTD,
    'xbzrle': dataclasses.replace(sc.PLANS['xbzrle128'], name='xbzrle'),
    'autoconverge': dataclasses.replace(sc.PLANS['autoconv20+10'],
                                        name='autoconverge'),
    'postcopy': dataclasses.replace(sc.PLANS['postcopy2'], name='postcopy'),
}
#: QAT fault only: a static qatzip plan (needs a lease).
QATZIP = sc.PlanSpec(
    'qatzip', policy='static', options=tuple(sorted(
        dict(sc.static_options(datamodel.Plan(
            policy='static', method='qatzip', level=1,
            parallel_connections=4)),
             qemu_monitor_passthrough=True).items())))


# -- context -----------------------------------------------------------------

@dataclasses.dataclass
class Check:
    """One check after a fault. ``ok`` None: informational."""

    name: str
    ok: Optional[bool]
    detail: str = ''


class FaultContext:
    """One fault run: the lab, the guest and what was true before."""

    def __init__(self, nlab: runner.NovaLab, session: runner.GuestSession,
                 spec: sc.PlanSpec, options: dict) -> None:
        self.nlab = nlab
        self.lab: hosts_mod.Lab = nlab.lab
        self.cloud: cloud_mod.LabCloud = nlab.cloud
        self.session = session
        self.spec = spec
        self.options = options
        self.server_id: str = session.server_id
        self.source = self.lab.host(session.host)
        self.dest = next(h for h in self.lab.hosts if h is not self.source)
        self.link_mbit = self.lab.link_mbit
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.events: list = []
        self.state: dict = {}
        self.error = ''
        self.our_driver = nlab.driver != DRIVER_NOVA
        self._conn: Any = None
        self._src_dom: Any = None
        dom = self.source_domain()
        self.domain_name = dom.name()
        self.source_pid = self.source.qemu_pid(self.domain_name)
        self.params_before = _source_params(dom)
        self.globals_before = passthrough.globals_of(dom.XMLDesc(0))
        self.migrations_before = {m['id'] for m in
                                  self.cloud.migrations(self.server_id)}
        self.n_reports = len(self.cloud.reports.records)
        self.history_before = _history(self.cloud, self.server_id)

    def event(self, text: str) -> None:
        t = round(time.monotonic() - self.started, 2)
        LOG.info('fault t=%.2f: %s', t, text)
        self.events.append([t, text])

    def source_domain(self) -> Any:
        """The guest's domain on the source, on the lab's own connection
        (Nova's connections are Nova's).
        """
        if self._src_dom is None:
            self._conn = self.lab.connect(self.source)
            self._src_dom = self._conn.lookupByUUIDString(self.server_id)
        return self._src_dom

    def job(self) -> dict:
        """The source's migration job statistics ({} when none runs)."""
        try:
            stats = self.source_domain().jobStats()
        except Exception:  # noqa: BLE001 - the domain left: no job
            return {}
        return stats if stats.get('type') == 2 else {}

    def precopy_running(self, min_bytes: int = PRECOPY_BYTES) -> bool:
        """Pre-copy under way: a job that has sent ``min_bytes`` while the
        guest still runs on the source.
        """
        stats = self.job()
        sent = stats.get('memory_processed') or stats.get(
            'data_processed') or 0
        return bool(stats) and sent >= min_bytes and \
            self.source_state()[0] == 1

    def source_state(self) -> tuple:
        try:
            return tuple(self.source_domain().state())
        except Exception:  # noqa: BLE001
            return (0, 0)

    def in_post_copy(self) -> bool:
        # libvirt: VIR_DOMAIN_PAUSED (3), reason POSTCOPY (12)
        return self.source_state() == (3, 12) and bool(self.job())

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - a killed daemon's socket
                pass
        self._conn = self._src_dom = None


def _source_params(dom: Any) -> dict:
    """:data:`WATCHED_PARAMS` of the QEMU running ``dom``, asked as the
    driver asks it (:func:`passthrough.query_source`); {} when QEMU cannot
    be asked (e.g. it is gone).
    """
    try:
        return passthrough.query_source(dom, WATCHED_PARAMS)
    except passthrough.PassthroughError as exc:
        LOG.info('query-migrate-parameters failed: %s', exc)
        return {}


def _history(cloud: cloud_mod.LabCloud, server_id: str) -> Optional[dict]:
    for compute in cloud.computes.values():
        store = introspect.view(compute.driver).get('history')
        if store is not None:
            return dataclasses.asdict(store.get(server_id))
    return None


# -- faults ------------------------------------------------------------------

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
        except Exception as exc:  # noqa: BLE001 - recorded, checked after
            LOG.exception('compute restart failed')
            ctx.event('nova-compute restart failed: %s' % exc)
            ctx.state['restart_error'] = str(exc)

    def restore(self, ctx: FaultContext) -> None:
        thread = ctx.state.get('thread')
        if thread is not None:
            thread.join(timeout=GIVE_UP_S)
            if thread.is_alive():
                ctx.event('nova-compute restart still running')


class DirtyRateJump(Fault):
    name = 'dirty-rate-jump'
    title = ('guest dirty rate raised to %d pages/s after the plan was '
             'made' % JUMP_RATE)
    expect = ('the escalation copes or a timeout aborts cleanly; the '
              'guest stays intact wherever it ends up')

    def inject(self, ctx: FaultContext, elapsed: float) -> None:
        if self.fired(ctx) or not ctx.precopy_running(8 * 1024 * 1024):
            return
        ctx.session.console.send('RATE %d' % JUMP_RATE)
        self.fire(ctx, elapsed, 'guest asked for RATE %d' % JUMP_RATE)

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
                ctx.session.console.send('RATE %d' % JUMP_RATE)
                ctx.state['rate_at'] = elapsed
                ctx.event('guest asked for RATE %d' % JUMP_RATE)
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
        if driver == DRIVER_NOVA:
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
        for name in QAT_FIXTURE_OPTIONS:
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
        for name in QAT_FIXTURE_OPTIONS:
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
        except Exception as exc:  # noqa: BLE001 - recorded
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
    except Exception as exc:  # noqa: BLE001 - the guest may be gone
        ctx.event('could not restore the guest rate: %s' % exc)


def _wait_nova_connection(ctx: FaultContext, host: hosts_mod.LabHost,
                          timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ctx.cloud.connection(host).getVersion()
            return
        except Exception:  # noqa: BLE001 - reconnecting
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
                          SHUTDOWN_TIMEOUT_S)
    try:
        with mock.patch('nova.thread_pool_factory.shutdown_all_executors'):
            old.stop()
    finally:
        cfg.CONF.set_override('manager_shutdown_timeout', saved)
    try:
        old.driver._host._conn_event_handler_queue.put(
            cloud_mod._stop_thread)
    except Exception:  # noqa: BLE001 - no such thread
        pass
    return cloud.start_lab_compute(host)


def _leases_in_use(cloud: cloud_mod.LabCloud) -> int:
    total = 0
    for compute in cloud.computes.values():
        manager = introspect.manager(compute.driver)
        if manager is not None:
            total += manager.pool.in_use
    return total


# -- the checks --------------------------------------------------------------

def check(ctx: FaultContext, res: Optional[runner.RunResult]) -> list:
    """Everything that must hold after a fault, whatever it was.

    * ``one_host``: the guest runs (not paused) on exactly one host and is
      defined nowhere else;
    * ``memory``: its memory check passes (the runner asks the dirtier on
      the host Nova says runs it);
    * ``nova_record``: Nova's server record says that host, ACTIVE, no task
      (and Nova did not put it in ERROR on the way);
    * ``migration_terminal``: Nova's migration record ended (completed,
      error, failed, cancelled);
    * ``clean_definitions``: no ``-global migration.multifd-*`` the current
      plan did not set, in any live or persistent definition;
    * ``source_params``: the QEMU the guest runs in has the multifd method
      the next migration expects (before's values if it stayed, the plan's
      if it moved); other parameter changes are listed (``params_other``);
    * ``leases_released``: no QAT lease held, no migration session left;
    * ``report``: the driver's ``qat_migration report:`` record exists and
      its outcome matches Nova's migration status; ``history`` counts it;
    * ``post_copy_permitted``: post-copy only where the operator allowed it.
    """
    checks: list = []
    # libvirt and Nova clean the other end up asynchronously (a cancelled
    # incoming domain, Nova's rollback at the destination): give them a
    # moment before calling a leftover a leftover.
    deadline = time.monotonic() + SETTLE_S
    while True:
        where = _where(ctx)
        running = [h for h, info in where.items() if info.get('running')]
        defined = [h for h, info in where.items() if info.get('defined')]
        if (len(running) == 1 and len(defined) <= 1) or \
                time.monotonic() > deadline:
            break
        time.sleep(1)
    checks.append(Check(
        'one_host', len(running) == 1 and len(defined) <= 1,
        json.dumps(where, sort_keys=True)))
    here = running[0] if len(running) == 1 else None

    if res is None:
        checks.append(Check('memory', False, 'no result: %s' % ctx.error))
    else:
        checks.append(Check('memory', res.integrity == 'ok' and
                            (not here or res.verified_on == here),
                            '%s on %s: %s' % (res.integrity, res.verified_on,
                                              res.verdict or res.error)))

    server = ctx.cloud.api.get_server(ctx.server_id)
    nova_host = server['OS-EXT-SRV-ATTR:host']
    went_error = bool(res and any('left the server in ERROR' in n
                                  for n in res.notes))
    checks.append(Check(
        'nova_record',
        nova_host == here and server['status'] == 'ACTIVE' and
        not server.get('OS-EXT-STS:task_state') and not went_error,
        'host %s, status %s, task %s%s' % (
            nova_host, server['status'], server.get('OS-EXT-STS:task_state'),
            '; Nova had put it in ERROR (reset by the lab)'
            if went_error else '')))

    migration = _last_migration(ctx)
    status = migration.get('status') if migration else None
    checks.append(Check('migration_terminal', status in TERMINAL,
                        'migration %s: %s' % (
                            migration.get('id') if migration else '-',
                            status)))

    record = _report(ctx, res)
    expected = expected_globals(ctx.globals_before, record,
                                moved=here is not None and
                                here != ctx.source.name)
    checks.append(_check_definitions(ctx, where, expected))
    checks.extend(_check_params(ctx, here, expected))

    if ctx.our_driver:
        checks.append(_check_released(ctx))
        ok, detail = judge_report(status, record)
        checks.append(Check('report', ok, detail))
        after = _history(ctx.cloud, ctx.server_id) or {}
        before = ctx.history_before or {}
        checks.append(Check(
            'history',
            after.get('migrations', 0) == before.get('migrations', 0) + 1
            and after.get('converged') == (status == 'completed'),
            'migrations %s -> %s, converged %s'
            % (before.get('migrations'), after.get('migrations'),
               after.get('converged'))))
    ok, detail = post_copy_permitted(record, res, ctx.options)
    checks.append(Check('post_copy_permitted', ok, detail))
    return checks


def _where(ctx: FaultContext) -> dict:
    """{host: {defined, active, running, state}} from fresh connections."""
    out = {}
    for host in ctx.lab.hosts:
        info: dict = {'defined': False, 'running': False}
        try:
            conn = ctx.lab.connect(host)
        except Exception as exc:  # noqa: BLE001 - a daemon down
            out[host.name] = {'error': str(exc)}
            continue
        try:
            dom = conn.lookupByUUIDString(ctx.server_id)
        except Exception:  # noqa: BLE001 - not there
            dom = None
        if dom is not None:
            state = tuple(dom.state())
            info.update(defined=True, active=bool(dom.isActive()),
                        persistent=bool(dom.isPersistent()),
                        state=list(state), running=state[0] == 1)
        conn.close()
        out[host.name] = info
    return out


def _last_migration(ctx: FaultContext) -> Optional[dict]:
    new = [m for m in ctx.cloud.migrations(ctx.server_id)
           if m['id'] not in ctx.migrations_before]
    return max(new, key=lambda m: m['id']) if new else None


def _report(ctx: FaultContext, res: Optional[runner.RunResult],
            ) -> Optional[dict]:
    if res is not None and res.report:
        return res.report
    for rec in ctx.cloud.reports.records[ctx.n_reports:]:
        if rec.get('instance') == ctx.server_id:
            return rec
    return None


def expected_globals(before: dict, record: Optional[dict],
                     moved: bool) -> dict:
    """The ``-global`` multifd pairs the running definition may carry.

    A guest that stayed keeps what its QEMU was started with; one that
    moved was started by this migration: the plan's passthrough pairs
    (the report's ``passthrough`` field), or none.
    """
    if not moved:
        return dict(before)
    done = (record or {}).get('passthrough') or {}
    return dict(done.get('globals') or {})


def _check_definitions(ctx: FaultContext, where: dict,
                       expected: dict) -> Check:
    import libvirt
    bad = []
    for host in ctx.lab.hosts:
        if not where.get(host.name, {}).get('defined'):
            continue
        conn = ctx.lab.connect(host)
        try:
            dom = conn.lookupByUUIDString(ctx.server_id)
            if dom.isActive():
                live = passthrough.globals_of(dom.XMLDesc(0))
                if live != expected:
                    bad.append('%s live %s (expected %s)'
                               % (host.name, live, expected))
            if dom.isPersistent():
                inactive = passthrough.globals_of(
                    dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
                if inactive:
                    bad.append('%s persistent %s' % (host.name, inactive))
        finally:
            conn.close()
    return Check('clean_definitions', not bad,
                 '; '.join(bad) or 'expected live %s, persistent {}'
                 % (expected,))


def param_diff(before: dict, after: dict) -> dict:
    """{key: [before, after]} for every parameter that changed."""
    keys = (set(before) | set(after)) - set(_VOLATILE_PARAMS)
    return {k: [before.get(k), after.get(k)] for k in sorted(keys)
            if before.get(k) != after.get(k)}


def _check_params(ctx: FaultContext, here: Optional[str],
                  expected: dict) -> list:
    if here is None:
        return [Check('source_params', False, 'the guest runs nowhere')]
    host = ctx.lab.host(here)
    conn = ctx.lab.connect(host)
    try:
        params = _source_params(conn.lookupByUUIDString(ctx.server_id))
    finally:
        conn.close()
    same_qemu = (here == ctx.source.name and
                 host.qemu_pid(ctx.domain_name) == ctx.source_pid)
    if same_qemu:
        diff = param_diff(ctx.params_before, params)
        strict = {k: v for k, v in diff.items() if k in STRICT_PARAMS}
        return [Check('source_params', not strict,
                      'source QEMU: %s' % (strict or 'multifd as before')),
                Check('params_other', None,
                      json.dumps({k: v for k, v in diff.items()
                                  if k not in STRICT_PARAMS}))]
    want = expected.get('multifd-compression', 'none')
    got = params.get('multifd-compression')
    return [Check('source_params', got == want,
                  'new QEMU on %s: multifd-compression %s (expected %s)'
                  % (here, got, want))]


def _check_released(ctx: FaultContext, timeout: float = 15) -> Check:
    deadline = time.monotonic() + timeout
    while True:
        leases = _leases_in_use(ctx.cloud)
        sessions = sum(len(introspect.view(c.driver).get('sessions') or {})
                       for c in ctx.cloud.computes.values())
        budgets = sum(_budget_held(c.driver)
                      for c in ctx.cloud.computes.values())
        done = leases == 0 and sessions == 0 and budgets == 0
        if done or time.monotonic() > deadline:
            return Check('leases_released', done,
                         'QAT leases held %d, migration sessions %d, '
                         'budget shares %d' % (leases, sessions, budgets))
        time.sleep(0.5)


def _budget_held(driver: Any) -> int:
    """Migrations the driver's host budget still counts (0 without one).
    """
    budget = introspect.view(driver).get('budget')
    return len(budget.shares()) if budget is not None else 0


def judge_report(status: Optional[str], record: Optional[dict],
                 ) -> tuple[bool, str]:
    """Whether the driver's record says what Nova's migration record says.
    """
    if record is None:
        return False, 'no qat_migration report record'
    outcome = record.get('outcome')
    detail = 'report outcome %s, migration %s; actions %s; notes %s' % (
        outcome, status, [(a.get('kind'), a.get('reason'))
                          for a in record.get('actions') or ()],
        record.get('notes'))
    if status == 'completed':
        return outcome == outcomes.OUTCOME_COMPLETED, detail
    if status in ('error', 'failed', 'cancelled'):
        return outcome in (outcomes.OUTCOME_FAILED, outcomes.OUTCOME_CANCELLED,
                           outcomes.OUTCOME_ABORTED), detail
    return False, detail


def post_copy_permitted(record: Optional[dict],
                        res: Optional[runner.RunResult],
                        options: dict) -> tuple[bool, str]:
    """Post-copy (flag or switch) only where ``permit_post_copy`` is on."""
    flags = list((record or {}).get('flags') or (res.flags if res else ()))
    actions = [a.get('kind') for a in (record or {}).get('actions') or ()]
    used = 'POSTCOPY' in flags or 'post_copy' in actions
    permitted = bool(options.get('permit_post_copy'))
    return (permitted or not used,
            'POSTCOPY flag %s, switch %s, permit_post_copy %s'
            % ('POSTCOPY' in flags, 'post_copy' in actions, permitted))


# -- one run, the matrix -----------------------------------------------------

@contextlib.contextmanager
def plan_setup(nlab: runner.NovaLab, spec: sc.PlanSpec) -> Iterator[None]:
    """What a plan needs from the lab's computes for the run.

    ``passthrough-zstd``: libvirt declared 9.3 (it cannot send zstd
    itself), so that zstd goes through the QEMU monitor passthrough, as
    qatzip would (Debian's QEMU has no qatzip).
    """
    with contextlib.ExitStack() as stack:
        if spec.name == PASSTHROUGH_ZSTD.name:
            stack.enter_context(introspect.pretend(
                nlab.cloud.computes, libvirt_version=(9, 3, 0)))
        yield


def run_fault(nlab: runner.NovaLab, session: runner.GuestSession,
              fault: Fault, spec: sc.PlanSpec,
              timeout_s: float = TIMEOUT_S) -> dict:
    """Migrate ``session``'s guest with ``spec`` while ``fault`` happens;
    check everything after. Returns the row (``passed``: every check).
    """
    options = dict(spec.options)
    options.update(fault.options)
    options['policy'] = spec.policy
    started = time.time()
    with plan_setup(nlab, spec):
        ctx = FaultContext(nlab, session, spec, options)
        res = None
        try:
            fault.prepare(ctx)
            run_spec = dataclasses.replace(spec, options=tuple(sorted(
                (k, v) for k, v in options.items() if k != 'policy')))

            def during(elapsed: float) -> None:
                if elapsed > GIVE_UP_S and not ctx.state.get('gave_up'):
                    # Once: the runner samples once more after the wait.
                    ctx.state['gave_up'] = True
                    ctx.event('gave up waiting for the migration record')
                    raise cloud_mod.CloudError(
                        'gave up: migration still open after %.0f s'
                        % GIVE_UP_S)
                if ctx.state.get('fault_error'):
                    return
                try:
                    fault.inject(ctx, elapsed)
                except Exception as exc:  # noqa: BLE001 - recorded
                    # Not a fault that happened: the row says fired False.
                    LOG.exception('fault %s failed', fault.name)
                    ctx.state['fault_error'] = str(exc)
                    ctx.event('fault action failed: %s' % exc)

            res = session.migrate(run_spec, timeout_s=timeout_s,
                                  during=during)
        except Exception as exc:  # noqa: BLE001 - the checks say what
            LOG.exception('fault run %s/%s', fault.name, spec.name)
            ctx.error = '%s: %s' % (type(exc).__name__, exc)
            ctx.event('run raised %s' % ctx.error)
        finally:
            try:
                fault.restore(ctx)
            except Exception as exc:  # noqa: BLE001
                LOG.exception('restore of %s failed', fault.name)
                ctx.event('restore failed: %s' % exc)
            ctx.close()
        if res is None:
            try:
                session.reattach()
            except Exception:  # noqa: BLE001 - the guest may be gone
                pass
        try:
            checks = check(ctx, res)
        except Exception as exc:  # noqa: BLE001 - e.g. a domain vanished
            LOG.exception('checks after %s/%s', fault.name, spec.name)
            checks = [Check('checks', False, 'the checks raised %s: %s'
                            % (type(exc).__name__, exc))]
        try:
            checks += fault.checks(ctx)
        except Exception as exc:  # noqa: BLE001 - a check that broke
            checks.append(Check('%s_checks' % fault.name, False, str(exc)))
    return make_row(fault, spec, nlab.driver, ctx, res, checks, started)


def make_row(fault: Fault, spec: sc.PlanSpec, driver: str,
             ctx: Optional[FaultContext], res: Optional[runner.RunResult],
             checks: list, started: float, skipped: str = '') -> dict:
    run = res.to_dict() if res is not None else {}
    record = run.pop('report', None) or {}
    judged = [c for c in checks if c.ok is not None]
    return {
        'fault': fault.name, 'plan': spec.name,
        'driver': 'nova' if driver == DRIVER_NOVA else 'qat',
        'skipped': skipped,
        'passed': (not skipped and bool(judged) and
                   all(c.ok for c in judged)),
        'fired': bool(ctx and 'fired_at' in ctx.state),
        'events': ctx.events if ctx else [],
        'error': ctx.error if ctx else '',
        'fault_error': ctx.state.get('fault_error', '') if ctx else '',
        'checks': [dataclasses.asdict(c) for c in checks],
        'outcome': run.get('outcome'),
        'migration_status': run.get('migration_status'),
        'effective_plan': run.get('effective_plan'),
        'report': {k: record.get(k) for k in (
            'outcome', 'plan', 'backend', 'flags', 'actions', 'notes',
            'total_s', 'monitor')} if record else {},
        'qat': ctx.state.get('qat_after') if ctx else None,
        # what this plan knew of the guest's earlier migrations
        'history_facts': {k: (run.get('facts') or {}).get(k) for k in (
            'history_migrations', 'history_method', 'history_converged')},
        'run': {k: v for k, v in run.items() if k not in (
            'facts', 'prediction', 'reasons', 'params', 'tracker',
            'compression', 'actions', 'notes', 'flags')},
        'started_at': started,
        'duration_s': round(time.time() - started, 1),
    }


def force_cleanup(nlab: runner.NovaLab, server_id: str) -> None:
    """Delete the server through Nova, then whatever libvirt still holds
    of it on either host (a guest a fault left half-migrated).
    """
    try:
        nlab.cloud.delete(server_id)
    except Exception as exc:  # noqa: BLE001
        LOG.warning('delete %s: %s', server_id, exc)
    for host in nlab.lab.hosts:
        try:
            conn = nlab.lab.connect(host)
            dom = conn.lookupByUUIDString(server_id)
        except Exception:  # noqa: BLE001 - gone: good
            continue
        try:
            if dom.isActive():
                dom.destroy()
            if dom.isPersistent():
                dom.undefine()
        except Exception as exc:  # noqa: BLE001
            LOG.warning('cleanup of %s on %s: %s', server_id, host.name, exc)
        finally:
            conn.close()


def run_matrix(faults: list, plans: list, out_dir: str,
               driver: str = cloud_mod.DRIVER, prefix: Optional[str] = None,
               timeout_s: float = TIMEOUT_S, append: bool = True,
               qat_options: Optional[dict] = None,
               say: Callable[[str], None] = print) -> list:
    """Every fault x plan cell, each on a freshly booted guest, appended
    to ``out_dir/results.jsonl`` as it finishes.
    """
    os.makedirs(out_dir, exist_ok=True)
    jsonl = os.path.join(out_dir, 'results.jsonl')
    if not append and os.path.exists(jsonl):
        os.unlink(jsonl)
    rows = []
    options = dict(qat_options or {})
    with runner.NovaLab(prefix, link_mbit=FAULT_SCENARIO.link_mbit,
                        qat_options=options, driver=driver,
                        log_path=os.path.abspath(os.path.join(
                            out_dir, 'nova-%s.log' % (
                                'nova' if driver == DRIVER_NOVA
                                else 'qat')))) as nlab:
        for fault_name in faults:
            fault = FAULTS[fault_name]
            for plan_name in plans:
                spec = QATZIP if plan_name == 'qatzip' else \
                    MATRIX_PLANS[plan_name]
                why = fault.skip(spec, driver)
                if why:
                    row = make_row(fault, spec, driver, None, None, [],
                                   time.time(), skipped=why)
                else:
                    row = _run_cell(nlab, fault, spec, timeout_s)
                rows.append(row)
                with open(jsonl, 'a') as f:
                    jsonlines.write(f, row, sort_keys=True)
                say('%-26s %-17s %-5s %s' % (
                    fault.name, spec.name, row['driver'],
                    'skipped: %s' % row['skipped'] if row['skipped'] else
                    ('PASS' if row['passed'] else 'FAIL: ' + ', '.join(
                        c['name'] for c in row['checks']
                        if c['ok'] is False))))
    return rows


def _run_cell(nlab: runner.NovaLab, fault: Fault, spec: sc.PlanSpec,
              timeout_s: float) -> dict:
    session = runner.GuestSession(
        nlab, FAULT_SCENARIO, name='fault-%s-%s' % (fault.name, spec.name))
    try:
        session.boot()
    except Exception as exc:  # noqa: BLE001 - recorded as the cell's
        row = make_row(fault, spec, nlab.driver, None, None,
                       [Check('boot', False, str(exc))], time.time())
        if session.server_id:
            force_cleanup(nlab, session.server_id)
        return row
    try:
        return run_fault(nlab, session, fault, spec, timeout_s)
    except Exception as exc:  # noqa: BLE001 - the next cell still runs
        LOG.exception('cell %s/%s', fault.name, spec.name)
        return make_row(fault, spec, nlab.driver, None, None,
                        [Check('run', False, '%s: %s' % (
                            type(exc).__name__, exc))], time.time())
    finally:
        if session.console is not None:
            session.console.close()
            session.console = None
        force_cleanup(nlab, session.server_id)


def write_summary(rows: list, out_dir: str) -> str:
    """``summary.md``: the matrix (the last row of each cell wins), then
    every failed check with the same fault under plain Nova.
    """
    path = os.path.join(out_dir, 'summary.md')
    with open(path, 'w') as f:
        f.write(summary_markdown(rows))
    return path


def _cell(row: Optional[dict]) -> str:
    if row is None:
        return 'not run'
    if row.get('skipped'):
        return 'n/a'
    mark = 'PASS' if row.get('passed') else 'FAIL'
    status = row.get('migration_status') or row.get('outcome') or '-'
    if not row.get('fired'):
        status += ', fault not reached'
    return '%s (%s)' % (mark, status)


def summary_markdown(rows: list) -> str:
    cells: dict = {}
    for row in rows:
        cells[(row['fault'], row['plan'], row.get('driver', 'qat'))] = row
    faults = [f for f in FAULTS if any(k[0] == f for k in cells)]
    plans = [p for p in list(MATRIX_PLANS) + ['qatzip']
             if any(k[1] == p and k[2] == 'qat' for k in cells)]
    has_nova = any(k[2] == 'nova' for k in cells)
    head = ['fault'] + plans + (['plain Nova (LibvirtDriver)']
                                if has_nova else [])
    out = ['# Fault matrix', '',
           'Each cell: a guest (%s) booted by Nova, live-migrated with '
           '`openstack server migrate --live-migration` while the fault '
           'happens, then checked (guest on exactly one host, memory '
           'check, Nova\'s server and migration records, definitions, '
           'QEMU parameters, QAT leases, the driver\'s report and history, '
           'post-copy only where permitted). PASS: every check held. The '
           'status is Nova\'s migration record.'
           % FAULT_SCENARIO.description, '',
           '| ' + ' | '.join(head) + ' |',
           '|' + '---|' * len(head)]
    for fault in faults:
        line = [fault] + [_cell(cells.get((fault, p, 'qat')))
                          for p in plans]
        if has_nova:
            line.append(_cell(cells.get((fault, 'nova_default', 'nova'))))
        out.append('| ' + ' | '.join(line) + ' |')
    out += ['', '## Faults', '']
    for fault in faults:
        f = FAULTS[fault]
        out.append('* **%s**: %s. Expected: %s.' % (fault, f.title,
                                                    f.expect))
    failed = [r for r in cells.values()
              if not r.get('skipped') and not r.get('passed')]
    if failed:
        out += ['', '## Failed checks, and plain Nova in the same fault',
                '']
        for row in failed:
            nova = cells.get((row['fault'], 'nova_default', 'nova'))
            out.append('### %s / %s (%s)' % (row['fault'], row['plan'],
                                             row.get('driver', 'qat')))
            for c in row['checks']:
                if c['ok'] is False:
                    out.append('* `%s`: %s' % (c['name'], c['detail']))
            if row.get('error'):
                out.append('* run: %s' % row['error'])
            out.append('* events: %s' % '; '.join(
                '%.1f s %s' % (t, e) for t, e in row.get('events') or ()))
            if nova is not None and row.get('driver') != 'nova':
                out.append('* plain Nova, same fault: %s%s' % (
                    _cell(nova), '' if nova.get('passed') else ' - ' + '; '
                    .join('%s: %s' % (c['name'], c['detail'])
                          for c in nova['checks'] if c['ok'] is False)))
            out.append('')
    return '\n'.join(out) + '\n'
