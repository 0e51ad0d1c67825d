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
"""One real migration, driven like the driver drives it.

For a booted lab guest and a plan spec, :meth:`GuestSession.migrate`:

1. gathers the facts the driver would (host CPU idle and free memory,
   libvirt's dirty-rate calculation on the guest, the source's probed
   libvirt/QEMU capabilities, the destination's as published by its
   traits, the link rate);
2. gets the plan (the policy's, or the fixed one) and translates it with
   :func:`~nova_qat_migration.virt.libvirt.translate.to_libvirt`;
3. runs ``migrateToURI3`` peer-to-peer in a thread while this thread polls
   ``jobStats()`` every 0.5 s, applies Nova's downtime steps and the
   policy's escalations (downtime, XBZRLE cache, post-copy, abort) like
   the driver's monitor does, and aborts the job at the completion
   timeout (recorded as not converged);
4. asks the guest on whichever host now runs it to verify its memory, and
   records wire bytes (veth counters), source QEMU CPU seconds and the job
   statistics.

The guest then lives on the other host: the next migration goes back, so
one boot serves a whole series of plans.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from typing import Any, Callable, Optional

from nova_qat_migration.lab import guest as guest_mod
from nova_qat_migration.lab import hosts as hosts_mod
from nova_qat_migration.lab import scenarios as sc
from nova_qat_migration import monitor
from nova_qat_migration.policy import base
from nova_qat_migration.policy import predictive
from nova_qat_migration.virt.libvirt import capabilities
from nova_qat_migration.virt.libvirt import measure
from nova_qat_migration.virt.libvirt import passthrough
from nova_qat_migration.virt.libvirt import translate

LOG = logging.getLogger(__name__)

SAMPLE_INTERVAL_S = 0.5
DEFAULT_TIMEOUT_S = 60.0
POSTCOPY_GRACE_S = 60.0
BOOT_TIMEOUT_S = 120.0
VERIFY_TIMEOUT_S = 120.0
JOB_UNBOUNDED = 2
#: Nova's minimum data size for the downtime steps (``_live_migration``).
NOVA_MIN_DATA_GB = 2.0

OUTCOME_COMPLETED = 'completed'
OUTCOME_TIMEOUT = 'timeout'
OUTCOME_ABORTED = 'aborted'
OUTCOME_REJECTED = 'rejected'
OUTCOME_ERROR = 'error'


@dataclasses.dataclass
class RunResult:
    """Everything recorded about one migration (one JSON line)."""

    scenario: str
    plan: str
    repeat: int = 0
    source: str = ''
    dest: str = ''
    link_mbit: int = 0
    outcome: str = OUTCOME_ERROR
    converged: bool = False
    error: str = ''
    total_s: Optional[float] = None
    downtime_ms: Optional[int] = None
    wire_bytes: Optional[int] = None
    memory_total_bytes: Optional[int] = None
    data_processed_bytes: Optional[int] = None
    src_cpu_s: Optional[float] = None
    iterations: Optional[int] = None
    integrity: str = 'unknown'
    verdict: str = ''
    verified_on: str = ''
    guest_rate: Optional[float] = None
    facts: dict = dataclasses.field(default_factory=dict)
    #: the convergence model's prediction for the plan that ran
    prediction: dict = dataclasses.field(default_factory=dict)
    requested_plan: dict = dataclasses.field(default_factory=dict)
    effective_plan: str = ''
    reasons: list = dataclasses.field(default_factory=list)
    degradations: list = dataclasses.field(default_factory=list)
    flags: list = dataclasses.field(default_factory=list)
    params: dict = dataclasses.field(default_factory=dict)
    backend: str = ''
    actions: list = dataclasses.field(default_factory=list)
    tracker: dict = dataclasses.field(default_factory=dict)
    samples: list = dataclasses.field(default_factory=list)
    started_at: float = 0.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def nova_settings(timeout_s: float) -> base.NovaSettings:
    """Nova's defaults, with the completion timeout the lab enforces.

    The lab aborts a migration after ``timeout_s`` like Nova's
    ``live_migration_completion_timeout`` would (Nova counts at least
    2 GiB), so policies plan against the same deadline.
    """
    return base.NovaSettings(
        completion_timeout_s_per_gib=max(1, int(timeout_s / 2)))


def nova_downtime_steps(nova: base.NovaSettings, data_gb: float):
    """Nova 34's ``migration.downtime_steps``: (delay s, downtime ms)."""
    steps = max(1, nova.downtime_steps)
    delay = int(nova.downtime_delay_s * data_gb)
    base_ms = nova.downtime_ms / steps
    offset = (nova.downtime_ms - base_ms) / steps
    for i in range(steps + 1):
        yield int(delay * i), int(base_ms + offset * i)


def _proc_cpu_s(pid: int) -> Optional[float]:
    try:
        with open('/proc/%d/stat' % pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf(
            'SC_CLK_TCK')
    except (OSError, IndexError, ValueError):
        return None


class LabDriver:
    """The lab's stand-in for the compute driver: probes once, plans and
    translates per migration.

    :param conf: the oslo.config object policies are built with.
    """

    def __init__(self, lab: hosts_mod.Lab, conf: Any,
                 nova: Optional[base.NovaSettings] = None) -> None:
        import libvirt
        libvirt.registerErrorHandler(lambda *a: None, None)
        self.lab = lab
        self.conf = conf
        self.nova = nova or base.NovaSettings()
        self.conns = [lab.connect(h) for h in lab.hosts]
        self.caps = [capabilities.probe_hypervisor(c) for c in self.conns]
        self.images = guest_mod.build()
        self._policies: dict = {}

    def policy(self, name: str) -> base.Policy:
        from nova_qat_migration.policy import loader
        if name not in self._policies:
            self._policies[name] = loader.load_policy(name, self.conf)
        return self._policies[name]

    def destination_caps(self, index: int) -> base.DestinationCaps:
        """What the destination publishes, read back as the scheduler's
        traits (the path the driver takes).
        """
        return capabilities.destination_from_traits(
            capabilities.traits_for(self.caps[index]))

    def link_mbps(self) -> float:
        return self.lab.link_mbit * 1e6 / 8 / base.MIB

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - best effort at teardown
                pass


class GuestSession:
    """One booted lab guest and the migrations it goes through."""

    def __init__(self, driver: LabDriver, scenario: sc.Scenario,
                 name: str = 'lab-guest', seed: int = 1) -> None:
        self.driver = driver
        self.scenario = scenario
        self.name = name
        self.seed = seed
        self.where = 0           # index of the host running the guest
        self.dom = None
        self.console: Optional[guest_mod.Console] = None

    def log_path(self, index: int) -> str:
        return os.path.join(self.driver.lab.root,
                            'serial-%s-%s.log' % (self.name, 'ab'[index]))

    # -- life cycle --------------------------------------------------------
    def boot(self) -> float:
        """Define and start the guest on host A; wait for READY."""
        lab = self.driver.lab
        if lab.link_mbit != self.scenario.link_mbit:
            lab.set_link(self.scenario.link_mbit)
        xml = guest_mod.domain_xml(
            self.name, self.scenario.memory_mb, self.scenario.cmdline(
                self.seed), self.driver.images, self.log_path(0))
        started = time.monotonic()
        self.dom = self.driver.conns[0].createXML(xml, 0)
        self.where = 0
        self.console = guest_mod.Console(self.dom, self.log_path(0))
        self.console.wait_for(r'READY pages=\d+', BOOT_TIMEOUT_S)
        return time.monotonic() - started

    def destroy(self) -> None:
        if self.console is not None:
            self.console.close()
        for conn in self.driver.conns:
            try:
                dom = conn.lookupByName(self.name)
            except Exception:  # noqa: BLE001 - not on this host
                continue
            try:
                dom.destroy()
            except Exception:  # noqa: BLE001
                pass
            try:
                dom.undefine()
            except Exception:  # noqa: BLE001
                pass
        self.dom = None

    def __enter__(self) -> 'GuestSession':
        self.boot()
        return self

    def __exit__(self, *exc) -> None:
        self.destroy()

    def verify(self) -> tuple[bool, str]:
        return self.console.verify(VERIFY_TIMEOUT_S)

    # -- facts and plan ----------------------------------------------------
    def gather_facts(self) -> base.Facts:
        drv = self.driver
        src, dst = self.where, 1 - self.where
        inst = base.InstanceFacts(
            uuid=self.dom.UUIDString(), name=self.name,
            memory_mb=self.scenario.memory_mb, vcpus=1,
            **measure.instance_fields(self.dom, self.scenario.memory_mb))
        return base.Facts(
            instance=inst, host=measure.host_load(),
            hypervisor=drv.caps[src], destination=drv.destination_caps(dst),
            nova=drv.nova, link_mbps=drv.link_mbps())

    def plan_for(self, spec: sc.PlanSpec, facts: base.Facts,
                 ) -> tuple[Optional[base.Policy], base.Plan]:
        if spec.fixed:
            return None, spec.plan
        policy = self.driver.policy(spec.policy)
        conf = self.driver.conf
        for name, value in spec.overrides:
            conf.set_override(name, value, group='qat_migration')
        try:
            return policy, policy.plan(facts)
        finally:
            for name, _value in spec.overrides:
                conf.clear_override(name, group='qat_migration')

    # -- the migration -----------------------------------------------------
    def migrate(self, spec: sc.PlanSpec, timeout_s: float = DEFAULT_TIMEOUT_S,
                repeat: int = 0,
                adjust_facts: Optional[Callable[[base.Facts], base.Facts]]
                = None) -> RunResult:
        """Migrate the guest to the other host with ``spec``'s plan.

        :param adjust_facts: changes the measured facts before planning
            (e.g. to exercise a backend this host would not pick itself).
        """
        import libvirt
        drv = self.driver
        lab = drv.lab
        src, dst = self.where, 1 - self.where
        src_host, dst_host = lab.hosts[src], lab.hosts[dst]
        result = RunResult(scenario=self.scenario.name, plan=spec.name,
                           repeat=repeat, source=src_host.name,
                           dest=dst_host.name, link_mbit=lab.link_mbit,
                           started_at=time.time())
        facts = self.gather_facts()
        if adjust_facts is not None:
            facts = adjust_facts(facts)
        result.facts = {
            'dirty_rate_mbps': facts.instance.dirty_rate_mbps,
            'cpu_idle_pct': facts.host.cpu_idle_pct,
            'mem_free_mb': facts.host.mem_free_mb,
            'link_mbps': round(facts.link_mbps, 1),
            'memory_mb': facts.instance.memory_mb,
            'cpus': facts.host.cpus,
            'zero_fraction': facts.instance.zero_fraction,
            'compress_ratio': facts.instance.compress_ratio,
            'xbzrle_friendly': facts.instance.xbzrle_friendly,
            'source_multifd_methods': sorted(facts.hypervisor.multifd_methods),
            'destination_methods': sorted(facts.destination.methods),
        }
        policy, plan = self.plan_for(spec, facts)
        call = translate.to_libvirt(plan, facts)
        eff = call.plan
        result.requested_plan = plan.to_dict()
        result.effective_plan = eff.describe()
        result.prediction = predictive.predict_dict(drv.conf, facts, eff)
        result.reasons = list(plan.reasons)
        result.degradations = list(call.degradations)
        result.flags = call.flag_names()
        result.backend = call.backend
        params = translate.merge_params(translate.nova_params(drv.nova), call)
        if eff.nova_baseline:
            params = dict(call.params)
        result.params = dict(params)
        xml = self.dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE)
        dest_xml = guest_mod.with_serial_log(xml, self.log_path(dst))
        params[libvirt.VIR_MIGRATE_PARAM_DEST_XML] = dest_xml
        if call.backend == translate.BACKEND_PASSTHROUGH:
            # As the driver does: the method on the source QEMU, -global in
            # the live destination XML only, a persistent XML without it.
            passthrough.apply_source(self.dom, call.passthrough)
            params = passthrough.rewrite_params(params, call.passthrough)

        qemu_pids = src_host.qemu_pids()
        qemu_pid = qemu_pids[0] if qemu_pids else None
        cpu0 = _proc_cpu_s(qemu_pid) if qemu_pid else None
        cpu_last = cpu0
        tx0, _ = src_host.veth_bytes()
        LOG.info('%s/%s: %s flags=%s params=%s', self.scenario.name,
                 spec.name, eff.describe(), '|'.join(result.flags),
                 {k: v for k, v in params.items()
                  if k != libvirt.VIR_MIGRATE_PARAM_DEST_XML})

        outcome: dict = {}

        def run() -> None:
            try:
                self.dom.migrateToURI3(dst_host.tcp_uri, params, call.flags)
                outcome['ok'] = True
            except libvirt.libvirtError as exc:
                outcome['error'] = exc
            except Exception as exc:  # noqa: BLE001 - report, not hide
                outcome['error'] = exc

        tracker = monitor.ProgressTracker()
        steps = list(nova_downtime_steps(
            drv.nova, max(NOVA_MIN_DATA_GB,
                          self.scenario.memory_mb / 1024.0)))
        thread = threading.Thread(target=run, daemon=True)
        started = time.monotonic()
        thread.start()
        aborted = False
        post_copy_at = None
        next_sample = started
        last_stats: dict = {}
        while thread.is_alive():
            thread.join(timeout=0.1)
            now = time.monotonic()
            if qemu_pid:
                value = _proc_cpu_s(qemu_pid)
                if value is not None:
                    cpu_last = value
            if now < next_sample or not thread.is_alive():
                continue
            next_sample = now + SAMPLE_INTERVAL_S
            elapsed = now - started
            try:
                stats = self.dom.jobStats()
            except libvirt.libvirtError:
                continue
            if not stats or stats.get('type') != JOB_UNBOUNDED:
                continue
            last_stats = stats
            progress = tracker.update(stats, now_s=now)
            result.samples.append({
                't': round(elapsed, 2),
                'remaining_mb': round(progress.remaining_mb, 1),
                'iteration': progress.iteration,
                'dirty_mbps': round(progress.dirty_rate_mbps, 1),
                'bw_mbps': round(progress.bandwidth_mbps, 1),
                'throttle': progress.throttle_pct,
                'downtime_ms': tracker.downtime_ms,
                'xbzrle_miss': round(progress.xbzrle_cache_miss_rate, 3),
            })
            actions = self._nova_steps(steps, elapsed, eff, tracker)
            if not eff.nova_baseline:
                source = policy.on_progress if policy else None
                actions += list(source(eff, progress) if source else
                                monitor.escalate(eff, progress))
            for action in actions:
                if self._apply(action, tracker, result, elapsed):
                    if action.kind == monitor.ACTION_POST_COPY:
                        post_copy_at = elapsed
                    if action.kind == monitor.ACTION_ABORT:
                        aborted = True
            limit = timeout_s
            if tracker.post_copy_active:
                # Aborting in post-copy would lose the guest: let it end.
                limit = max(timeout_s, (post_copy_at or 0) + POSTCOPY_GRACE_S)
            if elapsed > limit and not aborted:
                LOG.info('%s/%s: not converged after %.0f s: abort',
                         self.scenario.name, spec.name, elapsed)
                try:
                    self.dom.abortJob()
                except libvirt.libvirtError as exc:
                    LOG.warning('abortJob failed: %s', exc)
                aborted = True
                result.actions.append({'t': round(elapsed, 2),
                                       'kind': 'abort',
                                       'reason': 'completion timeout'})
        thread.join(timeout=60)
        wall = time.monotonic() - started
        if thread.is_alive():
            raise hosts_mod.LabError('migrateToURI3 did not return')
        tx1, _ = src_host.veth_bytes()
        result.wire_bytes = tx1 - tx0
        if cpu0 is not None and cpu_last is not None:
            result.src_cpu_s = round(cpu_last - cpu0, 2)
        result.tracker = tracker.summary()
        result.iterations = result.tracker.get('iterations')

        if outcome.get('ok'):
            result.outcome = OUTCOME_COMPLETED
            result.converged = True
            result.total_s = round(wall, 2)
            self.where = dst
            self.console.close()
            self.dom = drv.conns[dst].lookupByName(self.name)
            self.console = guest_mod.Console(self.dom, self.log_path(dst))
            self._completed_stats(result, last_stats)
        else:
            exc = outcome.get('error')
            result.error = str(exc)
            if call.backend == translate.BACKEND_PASSTHROUGH:
                # The next attempt must start from the source's defaults.
                passthrough.restore_source(self.dom, call.passthrough)
            if aborted:
                result.outcome = (OUTCOME_TIMEOUT if not any(
                    a['kind'] == 'abort' and a.get('reason') !=
                    'completion timeout' for a in result.actions)
                    else OUTCOME_ABORTED)
            elif not result.samples:
                result.outcome = OUTCOME_REJECTED
            else:
                result.outcome = OUTCOME_ERROR
            if not self._alive(src):
                # A failed post-copy can leave the guest on neither host.
                result.integrity = 'lost'
                return result
        result.guest_rate = self.console.rate()
        ok, verdict = self.verify()
        result.integrity = 'ok' if ok else 'FAIL'
        result.verdict = verdict
        result.verified_on = lab.hosts[self.where].name
        return result

    def _alive(self, index: int) -> bool:
        try:
            dom = self.driver.conns[index].lookupByName(self.name)
            return bool(dom.isActive())
        except Exception:  # noqa: BLE001
            return False

    def _completed_stats(self, result: RunResult, last: dict) -> None:
        """Downtime and totals from the destination's completed job."""
        import libvirt
        stats: dict = {}
        try:
            stats = self.dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
        except libvirt.libvirtError as exc:
            LOG.debug('no completed job stats: %s', exc)
        merged = dict(last)
        merged.update(stats or {})
        if 'downtime' in merged:
            result.downtime_ms = int(merged['downtime'])
        if 'memory_total' in merged:
            result.memory_total_bytes = int(merged['memory_total'])
        if 'data_processed' in merged:
            result.data_processed_bytes = int(merged['data_processed'])
        if 'memory_iteration' in merged:
            result.iterations = int(merged['memory_iteration'])

    @staticmethod
    def _nova_steps(steps: list, elapsed: float, plan: base.Plan,
                    tracker: monitor.ProgressTracker) -> list:
        """Nova's monitor: the downtime step due now, scaled to the plan's
        maximum for planned migrations (what the driver's domain wrapper
        does with Nova's ``migrateSetMaxDowntime`` calls).
        """
        due = [ms for at, ms in steps if elapsed >= at]
        if not due:
            return []
        value = due[-1]
        if not plan.nova_baseline:
            nova_max = max(1, steps[-1][1])
            value = max(1, int(round(value * plan.max_downtime_ms /
                                     nova_max)))
        if value <= tracker.downtime_ms:
            return []
        return [base.Action(monitor.ACTION_DOWNTIME, value,
                            reason='Nova downtime step')]

    def _apply(self, action: base.Action, tracker: monitor.ProgressTracker,
               result: RunResult, elapsed: float) -> bool:
        import libvirt
        try:
            if action.kind == monitor.ACTION_DOWNTIME:
                self.dom.migrateSetMaxDowntime(int(action.value), 0)
            elif action.kind == monitor.ACTION_XBZRLE_CACHE:
                self.dom.migrateSetCompressionCache(
                    int(action.value) * base.MIB, 0)
            elif action.kind == monitor.ACTION_POST_COPY:
                self.dom.migrateStartPostCopy(0)
            elif action.kind == monitor.ACTION_ABORT:
                self.dom.abortJob()
            else:
                return False
        except libvirt.libvirtError as exc:
            LOG.warning('escalation %s failed: %s', action.kind, exc)
            result.actions.append({'t': round(elapsed, 2),
                                   'kind': action.kind,
                                   'value': action.value,
                                   'failed': str(exc)})
            return False
        tracker.applied(action)
        result.actions.append({'t': round(elapsed, 2), 'kind': action.kind,
                               'value': action.value,
                               'reason': action.reason})
        return True
