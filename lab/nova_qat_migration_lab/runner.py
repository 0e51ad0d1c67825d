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
"""Real migrations through Nova, measured from the outside.

:class:`NovaLab` is the lab's two libvirt hosts with a real Nova over them
(:mod:`~nova_qat_migration_lab.cloud`). :class:`GuestSession` boots the
self-checking guest as a Nova server and migrates it with
``openstack server migrate --live-migration``; for each migration it

1. sets the plan spec's ``[qat_migration]`` options (the policy, or the
   ``static`` options of a fixed plan) and the completion timeout as
   ``[libvirt] live_migration_completion_timeout``, as an operator would;
2. asks Nova for the migration through the real client and waits for the
   migration record to end;
3. around it, and only around it: counts the bytes on the source's veth,
   the source QEMU's CPU seconds and the lines both QEMUs wrote to their
   domain logs, reads the driver's ``qat_migration report:`` record, and
   asks the guest, on whichever host Nova says runs it, to verify its
   memory;
4. records what the guest lost meanwhile
   (:func:`~nova_qat_migration_lab.measure.guest_impact`): its
   dirtier's achieved write rate during the migration against its rate
   just before, from the ``STAT`` lines it prints on the serial console
   of whichever host runs it, and when the source paused for post-copy.

Planning, escalation, downtime steps and the outcome are the driver's and
Nova's: nothing here re-implements them.
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable, Optional

from oslo_log import log as logging

from nova_qat_migration import datamodel
from nova_qat_migration import outcomes
from nova_qat_migration_lab import guest as guest_mod
from nova_qat_migration_lab import hosts as hosts_mod
from nova_qat_migration_lab import measure
from nova_qat_migration_lab import scenarios as sc
from nova_qat_migration_lab.services import CloudError

LOG = logging.getLogger(__name__)


DRIVER = 'qat_migration.QATLibvirtDriver'

DEFAULT_TIMEOUT_S = 60.0
BOOT_TIMEOUT_S = 180.0
READY_TIMEOUT_S = 180.0
VERIFY_TIMEOUT_S = 120.0
#: Nova counts at least 2 GiB when it scales the completion timeout.
NOVA_MIN_DATA_GB = 2.0


#: ``[qat_migration]`` options of the lab's hosts besides the product's
#: defaults. Throttling and four multifd channels are set explicitly: the
#: options follow Nova's ``[libvirt]`` switches while unset (no
#: auto-converge, one connection), and the benchmark measures the planner
#: with these levers. No CPU gate since the compressors' share of busy
#: cores is predicted (``max_guest_cpu_impact_pct``): the runs up to
#: 2026-11-30 set the deprecated ``cpu_idle_threshold = 25`` here.
LAB_QAT_OPTIONS = {'permit_auto_converge': True,
                   'max_parallel_connections': 4}


def nova_timeout_s(per_gib: float, memory_mb: int,
                   copied_disks: int = 0) -> float:
    """Seconds after which Nova aborts a migration, for
    ``[libvirt] live_migration_completion_timeout = per_gib``.

    The memory's share is the product's own rule
    (:meth:`~nova_qat_migration.datamodel.NovaSettings.completion_timeout_s`);
    a block migration adds each copied disk, at least 2 GiB each.
    """
    settings = datamodel.NovaSettings(completion_timeout_s_per_gib=per_gib)
    return (settings.completion_timeout_s(memory_mb) +
            per_gib * NOVA_MIN_DATA_GB * copied_disks)


def completion_timeout_per_gib(timeout_s: float, memory_mb: int,
                               copied_disks: int = 0) -> int:
    """``[libvirt] live_migration_completion_timeout`` for ``timeout_s``
    (the inverse of :func:`nova_timeout_s`).
    """
    return max(1, int(round(
        timeout_s / nova_timeout_s(1, memory_mb, copied_disks))))


#: The lab never waits less than this for a migration (the clouds'
#: former default).
MIGRATION_WAIT_MIN_S = 600.0
#: Seconds the lab waits for Nova's monitor beyond Nova's completion
#: timeout before it gives up on a migration itself.
NOVA_TIMEOUT_SLACK_S = 120.0


class NovaLab:
    """The lab's two hosts and a Nova over them, as one context manager.

    With ``cloud='services'`` (the demo's and the benchmark's) that Nova is
    the operator's cloud of :mod:`.services`, every service its own
    process: a cloud already up (``nova-qat-migration-lab cloud up``) is
    used as it is and left running, else one is started and stopped on
    exit. ``cloud='inprocess'`` is :mod:`.cloud`'s harness, for what needs
    the driver's internals.

    :param qat_options: ``[qat_migration]`` options of both computes
        (besides :data:`LAB_QAT_OPTIONS`).
    :param log_path: Nova's and the driver's log (default: in the lab's
        run directory, which tear-down removes).
    :param qemu: the QEMU both hosts run: ``distro`` (Debian's) or
        ``qatzip`` (built by ``tools/build-qemu-qatzip.sh``; without it
        this raises :class:`~nova_qat_migration_lab.qemu_build.NotBuilt`
        naming the script). ``None``: ``hosts.default_qemu``.
    :param daemon_env: more environment for the libvirt daemons.
    """

    def __init__(self, prefix: Optional[str] = None, link_mbit: int = 1000,
                 qat_options: Optional[dict] = None,
                 log_path: Optional[str] = None,
                 driver: str = DRIVER,
                 qemu: Optional[str] = None,
                 daemon_env: Optional[dict] = None,
                 cloud: str = 'inprocess') -> None:
        self.kind = cloud
        self.started_cloud = False
        if cloud == 'services':
            from nova_qat_migration_lab import services
            self.services = services
            self.lab = None
        else:
            self.lab = hosts_mod.Lab(prefix, link_mbit=link_mbit, qemu=qemu,
                                     daemon_env=daemon_env)
        self.qemu = qemu
        self.link_mbit = link_mbit
        options = dict(LAB_QAT_OPTIONS)
        options['link_gbps'] = link_mbit / 1000.0
        options.update(qat_options or {})
        self.qat_options = options
        self.log_path = log_path
        self.driver = driver
        self.cloud: Any = None
        self.images: dict = {}

    def __enter__(self) -> 'NovaLab':
        if self.kind == 'services':
            return self._enter_services()
        self.lab.__enter__()
        try:
            # Nova's functional-test base: imported only for this harness.
            from nova_qat_migration_lab import cloud as cloud_mod
            self.cloud = cloud_mod.LabCloud(
                self.lab, log_path=self.log_path,
                qat_options=self.qat_options, driver=self.driver).up()
        except BaseException:
            self.__exit__()
            raise
        return self._guest_images()

    def _guest_images(self) -> 'NovaLab':
        """The lab guest built and in the cloud's Glance."""
        try:
            self.images = guest_mod.build()
            self.cloud.upload_guest_images(self.images)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _enter_services(self) -> 'NovaLab':
        services = self.services
        if services.ServiceCloud.running():
            self.cloud = services.ServiceCloud.attach()
            self.cloud.qat_options.update(self.qat_options)
        else:
            self.cloud = services.ServiceCloud(
                link_mbit=self.link_mbit, qemu=self.qemu,
                qat_options=self.qat_options)
            self.started_cloud = True
            self.cloud.up()
        self.lab = self.cloud.lab
        try:
            if self.lab.link_mbit != self.link_mbit:
                self.cloud.set_link(self.link_mbit)
        except BaseException:
            self.__exit__()
            raise
        return self._guest_images()

    def __exit__(self, *exc: Any) -> None:
        if self.kind == 'services':
            if self.started_cloud and self.cloud is not None:
                self.cloud.down()
            self.cloud = None
            return
        if self.cloud is not None:
            self.cloud.down()
            self.cloud = None
        self.lab.__exit__()

    def set_link(self, mbit: int) -> None:
        """Shape the link and tell the planners its rate."""
        self.qat_options['link_gbps'] = mbit / 1000.0
        self.cloud.set_link(mbit)


class GuestSession:
    """One lab guest, booted by Nova, and the migrations it goes through.

    :param properties: image properties (e.g. ``qat_migration:*`` hints).
    :param extra_specs: flavor extra specs.
    """

    #: How long to wait for the driver's report after Nova's record ends
    #: (0: a run on Nova's own driver, which writes none).
    report_wait_s: float = 30

    def __init__(self, nlab: NovaLab, scenario: sc.Scenario,
                 name: str = 'lab-guest', seed: int = 1,
                 extra_specs: Optional[dict] = None,
                 properties: Optional[dict] = None) -> None:
        self.nlab = nlab
        self.cloud = nlab.cloud
        self.scenario = scenario
        self.name = name
        self.seed = seed
        self.extra_specs = dict(extra_specs or {})
        self.properties = dict(properties or {})
        self.server_id: Optional[str] = None
        self.console: Optional[guest_mod.Console] = None

    # -- life cycle --------------------------------------------------------
    def boot(self) -> float:
        """Boot the guest on the first host through Nova; wait for READY."""
        if self.nlab.lab.link_mbit != self.scenario.link_mbit:
            self.nlab.set_link(self.scenario.link_mbit)
        cloud = self.cloud
        image = cloud.guest_image('lab-%s' % self.scenario.name,
                                  self.scenario.cmdline(self.seed),
                                  self.properties)
        flavor = cloud.lab_flavor('lab-%dm' % self.scenario.memory_mb,
                                  self.scenario.memory_mb, self.extra_specs)
        started = time.monotonic()
        server = cloud.boot(self.name, image, flavor,
                            host=self.nlab.lab.hosts[0].name,
                            timeout=BOOT_TIMEOUT_S)
        self.server_id = server['id']
        self.console = guest_mod.Console(cloud.domain(self.server_id))
        # READY comes once; STAT every few seconds after it.
        self.console.wait_for(r'READY pages=\d+|STAT t=', READY_TIMEOUT_S)
        return time.monotonic() - started

    def destroy(self) -> None:
        if self.console is not None:
            self.console.close()
            self.console = None
        if self.server_id is not None:
            self.cloud.delete(self.server_id)
            self.server_id = None

    def __enter__(self) -> 'GuestSession':
        self.boot()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.destroy()

    @property
    def host(self) -> str:
        """The host Nova says runs the guest."""
        return self.cloud.host_of(self.server_id)

    def other_host(self) -> str:
        here = self.host
        return next(h.name for h in self.nlab.lab.hosts if h.name != here)

    def verify(self) -> tuple[bool, str]:
        return self.console.verify(VERIFY_TIMEOUT_S)

    def _dest_console(self, dest: Optional[str]
                      ) -> Optional[guest_mod.Console]:
        """The guest's console on ``dest`` while it migrates (None if the
        destination domain cannot be read).
        """
        try:
            host = self.nlab.lab.host(dest or self.other_host())
            console = guest_mod.Console(
                self.cloud.connection(host).lookupByUUIDString(
                    self.server_id))
            console.open()
            return console
        except Exception:  # only a measurement
            LOG.exception('destination console of %s', self.server_id)
            return None

    def reattach(self) -> None:
        """Follow the guest to the host that runs it now."""
        if self.console is not None:
            self.console.close()
        self.console = guest_mod.Console(self.cloud.domain(self.server_id))

    # -- the migration -----------------------------------------------------
    def migrate(self, spec: sc.PlanSpec, timeout_s: float = DEFAULT_TIMEOUT_S,
                repeat: int = 0, target: Optional[str] = '',
                during: Optional[Callable[[float], None]] = None,
                ) -> measure.RunResult:
        """Live-migrate the guest through Nova with ``spec``'s options.

        :param target: ``--host``; ``''`` the other lab host, ``None`` the
            scheduler's choice.
        :param during: called with the seconds since the request on every
            poll while the migration runs (and once after it ended), e.g.
            to inject a fault (:mod:`~nova_qat_migration_lab.faults`).
        """
        # The guest's pace before the migration: let it write freely for
        # BEFORE_WINDOW_S (the previous run's memory check blocked it).
        free_from = time.monotonic()
        self.console.wait_for_stat(
            free_from + measure.BEFORE_WINDOW_S,
            measure.BEFORE_WINDOW_S + 2 * self.scenario.stat_s + 3)
        cloud = self.cloud
        lab = self.nlab.lab
        src = lab.host(self.host)
        dest = self.other_host() if target == '' else target
        result = measure.RunResult(scenario=self.scenario.name, plan=spec.name,
                           repeat=repeat, source=src.name, dest=dest or '',
                           link_mbit=lab.link_mbit, started_at=time.time())
        options = spec.conf_options()
        # The lab's servers have one small root disk: on local storage
        # every live migration copies it.
        disks = 1 if getattr(lab, 'storage', 'shared') == 'local' else 0
        # A scenario with Nova's own per-GiB timeout (the scale model)
        # keeps it; the others' timeout_s is the whole migration's.
        timeout = (self.scenario.timeout_s_per_gib or
                   completion_timeout_per_gib(
                       timeout_s, self.scenario.memory_mb,
                       copied_disks=disks))
        wait_s = (nova_timeout_s(timeout, self.scenario.memory_mb, disks) +
                  NOVA_TIMEOUT_SLACK_S)
        dom = cloud.domain(self.server_id)
        dom_name = dom.name()
        found = re.search(r'<emulator>([^<]+)</emulator>', dom.XMLDesc(0))
        result.emulator = found.group(1).strip() if found else ''
        qemu_pid = src.qemu_pid(dom_name)
        cpu = {'first': measure.proc_cpu_s(qemu_pid), 'last': None}
        logs = {'source': src.qemu_log(dom_name),
                'dest': lab.host(dest or self.other_host()).qemu_log(
                    dom_name)}
        log_offsets = {end: measure.log_size(path)
                       for end, path in logs.items()}
        watch = measure.SourceWatch(dom)
        consoles = {'source': self.console}

        def sample() -> None:
            # The source QEMU exits when the migration completes: keep its
            # last reading.
            value = measure.proc_cpu_s(qemu_pid)
            if value is not None:
                cpu['last'] = value
            if watch.poll():
                # Post-copy: the guest runs on the destination now; read
                # its reports there.
                consoles['postcopy'] = self._dest_console(dest)
            if during is not None:
                during(time.monotonic() - started)
        tx0, _ = src.veth_bytes()
        n_reports = cloud.reports.mark()
        n_cli = len(cloud.cli_log)
        started = time.monotonic()
        with cloud.overrides(options, timeout):
            try:
                migration = cloud.live_migrate(
                    self.server_id, host=dest, poll=sample,
                    timeout=max(wait_s, MIGRATION_WAIT_MIN_S))
            except CloudError as exc:
                result.error = str(exc)
                result.outcome = measure.OUTCOME_REJECTED
                migration = None
        ended = time.monotonic()
        result.api_s = round(ended - started, 2)
        sample()
        tx1, _ = src.veth_bytes()
        result.wire_bytes = tx1 - tx0
        if cpu['first'] is not None and cpu['last'] is not None:
            result.src_cpu_s = round(cpu['last'] - cpu['first'], 2)
        result.qemu_log = {end: measure.log_written(path, log_offsets[end])
                           for end, path in logs.items()}
        result.commands = cloud.cli_log[n_cli:]
        record = (cloud.reports.wait_for(self.server_id, n_reports,
                                         self.report_wait_s)
                  if migration is not None else None)
        if migration is not None:
            result.migration_status = migration['status']
            result.dest = migration.get('dest_compute') or result.dest
        self._fill(result, record, migration)
        server = cloud.get_server(self.server_id)
        if server['status'] == 'ERROR':
            # What an operator does when the guest still runs: reset the
            # state (recorded; the run counts as failed).
            result.notes.append('Nova left the server in ERROR: '
                                'reset-state --active')
            cloud.reset_active(self.server_id)
        # The guest's last report from the source's console.
        result.guest_rate = self.console.rate()
        samples = self.console.stats()
        postcopy_console = consoles.get('postcopy')
        if postcopy_console is not None:
            samples += postcopy_console.stats()
            postcopy_console.close()
        try:
            self.reattach()
        except Exception as exc:  # no domain anywhere
            result.integrity = 'lost'
            result.error = result.error or 'guest not found: %s' % exc
            return result
        # The migration's end for the guest: the switch-over (the source
        # paused, the guest resumes on the destination a downtime later);
        # in post-copy, when the source is gone (all pages moved); else
        # when Nova's record ended.
        if watch.postcopy_at is not None and watch.gone_at is not None:
            end = watch.gone_at
        elif watch.paused_at is not None and result.converged:
            end = watch.paused_at
        else:
            end = ended
        try:
            self.console.wait_for_stat(end, 2 * self.scenario.stat_s + 2)
            samples += self.console.stats()
            result.guest = measure.guest_impact(
                samples, started, end, nominal=self.scenario.rate,
                stat_s=self.scenario.stat_s, postcopy_at=watch.postcopy_at,
                paused_at=watch.paused_at, report=result.report,
                before_from=free_from)
        except Exception as exc:  # a measurement, not the run
            LOG.exception('guest impact of %s', spec.name)
            result.guest = {'error': repr(exc)}
        ok, verdict = self.verify()
        result.integrity = 'ok' if ok else 'FAIL'
        result.verdict = verdict
        result.verified_on = self.host
        return result

    @staticmethod
    def _fill(result: measure.RunResult, record: Optional[dict],
              migration: Optional[dict]) -> None:
        """The result from the driver's report and Nova's record."""
        status = migration['status'] if migration else ''
        if record is not None:
            result.report = record
            result.total_s = record.get('total_s')
            result.job_s = record.get('job_s')
            downtime = record.get('downtime_ms')
            result.downtime_ms = int(downtime) if downtime is not None \
                else None
            for name, key in (('memory_total_bytes', 'memory_total_bytes'),
                              ('data_processed_bytes', 'bytes'),
                              ('iterations', 'iterations')):
                value = record.get(key)
                setattr(result, name, int(value) if value is not None
                        else None)
            result.facts = dict(record.get('facts') or {})
            result.prediction = dict(record.get('prediction') or {})
            result.requested_plan = dict(record.get('requested_plan') or {})
            result.effective_plan = record.get('plan') or ''
            result.reasons = list(record.get('reasons') or ())
            result.notes = list(record.get('notes') or ())
            result.flags = list(record.get('flags') or ())
            result.params = dict(record.get('params') or {})
            result.backend = record.get('backend') or ''
            result.actions = list(record.get('actions') or ())
            result.tracker = dict(record.get('monitor') or {})
            result.compression = dict(record.get('compression') or {})
        if status == 'completed':
            result.outcome = measure.OUTCOME_COMPLETED
            result.converged = True
        elif migration is None:
            result.outcome = measure.OUTCOME_REJECTED
        else:
            outcome = (record or {}).get('outcome')
            result.outcome = {
                outcomes.OUTCOME_CANCELLED: measure.OUTCOME_TIMEOUT,
                outcomes.OUTCOME_ABORTED: measure.OUTCOME_ABORTED,
            }.get(outcome, measure.OUTCOME_ERROR)
            result.error = result.error or 'migration %s (%s)' % (
                status, outcome)
