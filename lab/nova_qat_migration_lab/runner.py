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
4. records what the guest lost meanwhile (:func:`guest_impact`): its
   dirtier's achieved write rate during the migration against its rate
   just before, from the ``STAT`` lines it prints on the serial console
   of whichever host runs it, and when the source paused for post-copy.

Planning, escalation, downtime steps and the outcome are the driver's and
Nova's: nothing here re-implements them.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from typing import Any, Callable, Optional

from oslo_log import log as logging

from nova_qat_migration import datamodel
from nova_qat_migration import outcomes
from nova_qat_migration_lab import guest as guest_mod
from nova_qat_migration_lab import hosts as hosts_mod
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
#: The guest's rate "before" the migration is measured over this many
#: seconds before the request: the migration waits until the guest has
#: written that long since the last thing that stopped it (the previous
#: run's memory check, which blocks the dirtier).
BEFORE_WINDOW_S = 3.0
#: libvirt's domain states and paused reasons (libvirt-domain.h), read
#: on the source while the migration runs.
VIR_DOMAIN_PAUSED = 3
VIR_DOMAIN_SHUTOFF = 5
VIR_DOMAIN_PAUSED_MIGRATION = 2
VIR_DOMAIN_PAUSED_POSTCOPY = 12

#: How a lab run ended: the report's own outcomes where the driver's
#: report says it, and the lab's (timeout, rejected, error) where it does
#: not.
OUTCOME_COMPLETED = outcomes.OUTCOME_COMPLETED
OUTCOME_TIMEOUT = 'timeout'       # Nova's completion timeout aborted it
OUTCOME_ABORTED = outcomes.OUTCOME_ABORTED   # the progress timeout
OUTCOME_REJECTED = 'rejected'     # refused before it started
OUTCOME_ERROR = 'error'

#: ``[qat_migration]`` options of the lab's hosts besides the product's
#: defaults. Throttling and four multifd channels are set explicitly: the
#: options follow Nova's ``[libvirt]`` switches while unset (no
#: auto-converge, one connection), and the benchmark measures the planner
#: with these levers. No CPU gate since the compressors' share of busy
#: cores is predicted (``max_guest_cpu_impact_pct``): the runs up to
#: 2026-11-30 set the deprecated ``cpu_idle_threshold = 25`` here.
LAB_QAT_OPTIONS = {'permit_auto_converge': True,
                   'max_parallel_connections': 4}

#: What QATzip (its ``[Error]``/``[Warning]`` lines name ``qatzip.c``)
#: and qatlib (``Cannot open /dev/vfio``) print to QEMU's stderr each time
#: QATzip looks for a QAT device and falls back to software: two or three
#: lines per multifd packet, on both ends (see ``doc/source/admin/qat.rst``).
QATZIP_FALLBACK_LINE = re.compile(
    r'\(qatzip\.c:\d+\)|Cannot open /dev/vfio')


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
    #: the driver's own time, from planning to the end of Nova's monitor
    total_s: Optional[float] = None
    #: request to terminal migration record, as the client sees it
    api_s: Optional[float] = None
    #: libvirt's duration of the migration job itself
    job_s: Optional[float] = None
    downtime_ms: Optional[int] = None
    wire_bytes: Optional[int] = None
    memory_total_bytes: Optional[int] = None
    data_processed_bytes: Optional[int] = None
    src_cpu_s: Optional[float] = None
    #: the source domain's ``<emulator>`` (the lab's QEMU)
    emulator: str = ''
    #: what each QEMU wrote to its domain log during the migration:
    #: ``{'source'|'dest': {'lines', 'bytes', 'qatzip_fallback_lines'}}``
    qemu_log: dict = dataclasses.field(default_factory=dict)
    iterations: Optional[int] = None
    integrity: str = 'unknown'
    verdict: str = ''
    verified_on: str = ''
    #: the dirtier's last report on the source's console (pages/s)
    guest_rate: Optional[float] = None
    #: what the guest lost during the migration (see :func:`guest_impact`)
    guest: dict = dataclasses.field(default_factory=dict)
    migration_status: str = ''
    facts: dict = dataclasses.field(default_factory=dict)
    #: the convergence model's prediction for the plan that ran
    prediction: dict = dataclasses.field(default_factory=dict)
    requested_plan: dict = dataclasses.field(default_factory=dict)
    effective_plan: str = ''
    reasons: list = dataclasses.field(default_factory=list)
    notes: list = dataclasses.field(default_factory=list)
    flags: list = dataclasses.field(default_factory=list)
    params: dict = dataclasses.field(default_factory=dict)
    backend: str = ''
    actions: list = dataclasses.field(default_factory=list)
    tracker: dict = dataclasses.field(default_factory=dict)
    compression: dict = dataclasses.field(default_factory=dict)
    commands: list = dataclasses.field(default_factory=list)
    report: dict = dataclasses.field(default_factory=dict)
    started_at: float = 0.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _proc_cpu_s(pid: Optional[int]) -> Optional[float]:
    if not pid:
        return None
    try:
        with open('/proc/%d/stat' % pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf(
            'SC_CLK_TCK')
    except (OSError, IndexError, ValueError):
        return None


def _log_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def log_written(path: str, offset: int) -> dict:
    """What was written to the log ``path`` after ``offset`` bytes:
    lines, bytes and QATzip's software-fallback lines. A file shorter than
    ``offset`` was started afresh: counted from its start.
    """
    try:
        with open(path, 'rb') as f:
            f.seek(0, os.SEEK_END)
            if f.tell() < offset:
                offset = 0
            f.seek(offset)
            data = f.read()
    except OSError:
        data = b''
    text = data.decode(errors='replace')
    return {'lines': text.count('\n'), 'bytes': len(data),
            'qatzip_fallback_lines': sum(
                1 for line in text.splitlines()
                if QATZIP_FALLBACK_LINE.search(line))}


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


def _rate(a, b) -> Optional[float]:
    """Pages/s between two STAT samples, by the host's clock."""
    if a is None or b is None or b[0] - a[0] < 0.5:
        return None
    return (b[2] - a[2]) / (b[0] - a[0])


def guest_impact(samples: list, start: float, end: float,
                 nominal: Optional[float] = None, stat_s: float = 1.0,
                 postcopy_at: Optional[float] = None,
                 paused_at: Optional[float] = None,
                 report: Optional[dict] = None,
                 before_from: Optional[float] = None) -> dict:
    """What the guest lost while it migrated.

    :param samples: the dirtier's ``STAT`` lines as
        ``(host_s, guest_t, written, rate)`` (:class:`guest.StatSample`),
        from every console that was read (the source's, the
        destination's): ``written`` is cumulative and moves with the
        guest's memory, ``host_s`` is when the lab read the line
        (``time.monotonic()``).
    :param start: when the migration was requested (monotonic).
    :param end: when it ended for the guest: the switch-over (the source
        seen paused for it), in post-copy the source gone, else Nova's
        record terminal.
    :param nominal: the scenario's asked rate (pages/s).
    :param stat_s: the dirtier's report interval.
    :param postcopy_at: when the source was first seen paused for
        post-copy (libvirt's ``VIR_DOMAIN_PAUSED_POSTCOPY``).
    :param paused_at: when the source was first seen paused for the
        switch-over (``VIR_DOMAIN_PAUSED_MIGRATION``).
    :param report: the driver's report (``monitor.max_throttle_pct``,
        ``monitor.post_copy``).
    :param before_from: the "before" rate counts samples from this time
        on only (when the guest runs freely again), and at most
        :data:`BEFORE_WINDOW_S` before ``start``.

    The rate during the migration is written pages between the last
    sample read before ``start`` and the last one read before ``end``,
    over the host seconds between them; when no sample came in the last
    ``2 * stat_s + 0.5`` s before ``end`` (the guest stalled, or ran where
    no console was read, e.g. on the destination during post-copy), up
    to the first one read after ``end`` instead. The window is therefore
    the migration's within about one report interval at each end
    (``window_s``, ``window_from_s``/``window_to_s`` relative to
    ``start``). ``vs_before`` and ``lost_s`` (the work the guest did not
    do, in seconds of its pace) compare with ``reference_rate``: the rate
    before, capped at the nominal rate (above it, the dirtier is catching
    up after the previous memory check blocked it).

    Limits: the dirtier is rate-limited, so a throttle (auto-converge)
    shows here only when it leaves the vCPU too little time for the asked
    rate; ``max_throttle_pct`` says how hard it was throttled.
    """
    report = report or {}
    monitor = report.get('monitor') or {}
    out: dict = {
        'nominal_rate': nominal,
        'stat_s': stat_s,
        'samples': len(samples),
        'max_throttle_pct': monitor.get('max_throttle_pct'),
        'post_copy': bool(monitor.get('post_copy')) or postcopy_at
        is not None,
        'postcopy_from_s': (None if postcopy_at is None
                            else round(postcopy_at - start, 2)),
        'postcopy_s': (None if postcopy_at is None
                       else round(max(0.0, end - postcopy_at), 2)),
        'paused_from_s': (None if paused_at is None
                          else round(paused_at - start, 2)),
    }
    samples = sorted(samples, key=lambda x: (x[0], x[2]))
    since = start - BEFORE_WINDOW_S
    if before_from is not None:
        since = max(since, before_from)
    before = [x for x in samples if since <= x[0] <= start]
    at_start = before[-1] if before else None
    if at_start is None:
        earlier = [x for x in samples if x[0] <= start]
        at_start = earlier[-1] if earlier else None
    out['before_rate'] = (_rate(before[0], before[-1]) if len(before) > 1
                          else (before[-1][3] if before else None))
    inside = [x for x in samples if x[0] <= end]
    at_end = inside[-1] if inside else None
    if at_end is None or end - at_end[0] > 2 * stat_s + 0.5:
        after = [x for x in samples if x[0] > end]
        at_end = after[0] if after else at_end
    if at_start is None or at_end is None or at_end[0] <= at_start[0]:
        out['during_rate'] = None
        return out
    window = at_end[0] - at_start[0]
    during = _rate(at_start, at_end)
    out.update({
        'during_rate': during,
        'window_s': round(window, 2),
        'window_from_s': round(at_start[0] - start, 2),
        'window_to_s': round(at_end[0] - start, 2),
        'written': at_end[2] - at_start[2],
        'worst_rate': min((x[3] for x in samples
                           if at_start[0] < x[0] <= at_end[0]),
                          default=None),
    })
    # A rate-limited dirtier catches up on what a memory check blocked (up
    # to a second's worth per tick): "before" above the nominal rate is
    # that catch-up, not the guest's pace.
    ref = out['before_rate']
    if ref and nominal and ref > nominal:
        ref = float(nominal)
    out['reference_rate'] = ref
    if during is not None and ref:
        out['vs_before'] = during / ref
        lost = max(0.0, ref * window - out['written'])
        out['lost_pages'] = int(lost)
        out['lost_s'] = round(lost / ref, 2)
    if during is not None and nominal:
        out['vs_nominal'] = during / nominal
    if postcopy_at is not None:
        pre = [x for x in samples if x[0] <= postcopy_at]
        if pre and at_end[0] > pre[-1][0]:
            out['postcopy_rate'] = _rate(pre[-1], at_end)
    return out


class _SourceWatch:
    """The source domain's state while it migrates: when it paused for the
    switch-over, for post-copy, and when it was gone.
    """

    def __init__(self, dom) -> None:
        self.dom = dom
        self.paused_at: Optional[float] = None
        self.postcopy_at: Optional[float] = None
        self.gone_at: Optional[float] = None

    def poll(self) -> bool:
        """Look once; True the first time post-copy is seen."""
        if self.gone_at is not None:
            return False
        now = time.monotonic()
        try:
            state, reason = self.dom.state()[:2]
        except Exception:  # noqa: BLE001 - libvirtError: the domain left
            self.gone_at = now
            return False
        if state == VIR_DOMAIN_SHUTOFF:
            self.gone_at = now
        elif state == VIR_DOMAIN_PAUSED:
            if reason == VIR_DOMAIN_PAUSED_POSTCOPY:
                if self.postcopy_at is None:
                    self.postcopy_at = now
                    return True
            elif (reason == VIR_DOMAIN_PAUSED_MIGRATION and
                  self.paused_at is None):
                self.paused_at = now
        return False


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
        except Exception:  # noqa: BLE001 - only a measurement
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
                ) -> RunResult:
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
            free_from + BEFORE_WINDOW_S,
            BEFORE_WINDOW_S + 2 * self.scenario.stat_s + 3)
        cloud = self.cloud
        lab = self.nlab.lab
        src = lab.host(self.host)
        dest = self.other_host() if target == '' else target
        result = RunResult(scenario=self.scenario.name, plan=spec.name,
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
        cpu = {'first': _proc_cpu_s(qemu_pid), 'last': None}
        logs = {'source': src.qemu_log(dom_name),
                'dest': lab.host(dest or self.other_host()).qemu_log(
                    dom_name)}
        log_offsets = {end: _log_size(path) for end, path in logs.items()}
        watch = _SourceWatch(dom)
        consoles = {'source': self.console}

        def sample() -> None:
            # The source QEMU exits when the migration completes: keep its
            # last reading.
            value = _proc_cpu_s(qemu_pid)
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
                result.outcome = OUTCOME_REJECTED
                migration = None
        ended = time.monotonic()
        result.api_s = round(ended - started, 2)
        sample()
        tx1, _ = src.veth_bytes()
        result.wire_bytes = tx1 - tx0
        if cpu['first'] is not None and cpu['last'] is not None:
            result.src_cpu_s = round(cpu['last'] - cpu['first'], 2)
        result.qemu_log = {end: log_written(path, log_offsets[end])
                           for end, path in logs.items()}
        result.commands = cloud.cli_log[n_cli:]
        record = (cloud.reports.wait_for(self.server_id, n_reports, 30)
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
        except Exception as exc:  # noqa: BLE001 - no domain anywhere
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
            result.guest = guest_impact(
                samples, started, end, nominal=self.scenario.rate,
                stat_s=self.scenario.stat_s, postcopy_at=watch.postcopy_at,
                paused_at=watch.paused_at, report=result.report,
                before_from=free_from)
        except Exception as exc:  # noqa: BLE001 - a measurement, not the run
            LOG.exception('guest impact of %s', spec.name)
            result.guest = {'error': repr(exc)}
        ok, verdict = self.verify()
        result.integrity = 'ok' if ok else 'FAIL'
        result.verdict = verdict
        result.verified_on = self.host
        return result

    @staticmethod
    def _fill(result: RunResult, record: Optional[dict],
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
            result.outcome = OUTCOME_COMPLETED
            result.converged = True
        elif migration is None:
            result.outcome = OUTCOME_REJECTED
        else:
            outcome = (record or {}).get('outcome')
            result.outcome = {outcomes.OUTCOME_CANCELLED: OUTCOME_TIMEOUT,
                              outcomes.OUTCOME_ABORTED: OUTCOME_ABORTED}.get(
                                  outcome, OUTCOME_ERROR)
            result.error = result.error or 'migration %s (%s)' % (
                status, outcome)
