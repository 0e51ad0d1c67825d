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
"""The data every layer shares: facts, plans, progress and the methods.

A policy sees :class:`Facts` and returns a :class:`Plan`; while the
migration runs it sees :class:`Progress` and returns :class:`Action`
values. Everything is a frozen dataclass so that facts gathered once per
migration and the plan computed from them can be printed, logged,
compared and replayed. This module imports nothing from the package: it
sits below every other module, and the method vocabulary (which methods
exist, which run on multifd, their level ranges) is defined here once.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

MIB = 1024 * 1024

# -- the method vocabulary ---------------------------------------------------

#: Every page-compression method a plan can name, in the order operators
#: read them (``[qat_migration] allowed_methods`` and the hints check
#: against this).
METHODS = ('none', 'xbzrle', 'mt', 'zlib', 'zstd', 'qatzip')
#: Methods that run on the multifd (``VIR_MIGRATE_PARALLEL``) path.
MULTIFD_METHODS = frozenset({'zlib', 'zstd', 'qatzip'})
#: Methods that only run on a single migration stream.
SINGLE_STREAM_METHODS = frozenset({'xbzrle', 'mt'})
#: Every value QEMU's ``multifd-compression`` enum has had: ``none``,
#: ``zlib``, ``zstd`` (5.0), ``qpl``, ``uadk`` (9.1), ``qatzip`` (9.2). A
#: binary has only those it was built with (its ``query-qmp-schema``).
QEMU_MULTIFD_COMPRESSION = ('none', 'zlib', 'zstd', 'qpl', 'uadk', 'qatzip')
#: Valid compression levels per method (QEMU's ranges).
LEVEL_RANGES = {
    'mt': (0, 9),
    'zlib': (0, 9),
    'zstd': (0, 20),
    'qatzip': (1, 9),
}

#: Share of a planned migration's downtime target not handed to QEMU
#: (:attr:`Plan.downtime_limit_ms`): single-stream plans.
DOWNTIME_HEADROOM = 0.25
#: The same for multifd plans (parallel channels, compressed or not).
#: Their switch-over also flushes and syncs every channel and, with
#: compression, waits for the last packets to be compressed on the source
#: and decompressed on the destination, none of which QEMU's estimate
#: (what remains over the wire rate) counts: a static zstd-1 x4 plan given
#: 375 ms paused the guest 604 ms (61% over). 40% keeps that within the
#: target (300 ms given for 500 ms: 604 * 300 / 375 = 483 ms paused).
MULTIFD_DOWNTIME_HEADROOM = 0.4

#: The first pass (libvirt's ``memory_iteration``) whose XBZRLE cache
#: misses say anything about the cache's size. QEMU starts XBZRLE once
#: the first pass (iteration 1) has sent every page whole; the first
#: XBZRLE pass (iteration 2) finds the cache empty and misses on every
#: page it looks up, filling the cache as it goes. A resized cache starts
#: empty again (QEMU allocates a new one), so its misses count from the
#: second pass after the resize.
XBZRLE_WARM_ITERATION = 3

# -- what an escalation can do (:class:`Action` kinds) ---------------------

ACTION_DOWNTIME = 'downtime'
ACTION_XBZRLE_CACHE = 'xbzrle_cache'
ACTION_POST_COPY = 'post_copy'
ACTION_ABORT = 'abort'


def level_option(method: str) -> str:
    """The ``[qat_migration]`` option holding ``method``'s level."""
    return '%s_level' % method


def pow2_floor(mib: int) -> int:
    """The largest power of two not above ``mib`` (at least 1).

    QEMU wants an XBZRLE cache that is a power of two.
    """
    out = 1
    while out * 2 <= mib:
        out *= 2
    return out


def version_str(version: Sequence[int]) -> str:
    return '.'.join(str(v) for v in version)


@dataclasses.dataclass(frozen=True)
class HypervisorCaps:
    """What the source host's libvirt and QEMU can do (probed at start-up).

    :param multifd_methods: values of QEMU's ``multifd-compression`` enum the
        binary accepts (from ``query-qmp-schema``), e.g. none/zlib/zstd.
        Empty when unknown: then libvirt-version rules alone decide.
    :param methods_source: where ``multifd_methods`` came from: the
        ``SOURCE_*`` names of :mod:`.virt.libvirt.capabilities` (the
        operator's option, a running QEMU asked through libvirt, the local
        binary, or unknown); empty when not probed (set by a caller).
    """

    libvirt_version: tuple[int, int, int] = (11, 3, 0)
    qemu_version: tuple[int, int, int] = (10, 0, 0)
    multifd_methods: frozenset[str] = frozenset({'none', 'zlib', 'zstd'})
    postcopy: bool = True
    methods_source: str = ''

    @property
    def libvirt_methods(self) -> frozenset[str]:
        """Compression methods libvirt's migration API accepts."""
        methods = {'xbzrle', 'mt'}
        if self.libvirt_version >= (9, 4, 0):
            methods |= {'zlib', 'zstd'}
        return frozenset(methods)

    @property
    def has_mt(self) -> bool:
        """QEMU removed the legacy compression threads in 9.1."""
        return self.qemu_version < (9, 1, 0)

    @property
    def postcopy_with_multifd(self) -> bool:
        return self.qemu_version >= (10, 1, 0)

    def accepts(self, method: str) -> bool:
        """Whether this source's QEMU can send ``method``.

        Whether libvirt can ask for it is :attr:`libvirt_methods`; a
        method QEMU has and libvirt does not know can still run through
        the ``qemu-passthrough`` backend (see :meth:`Facts.can_send`).
        """
        if method == 'none' or method == 'xbzrle':
            return True
        if method == 'mt':
            return self.has_mt
        if self.multifd_methods:
            return method in self.multifd_methods
        # No schema: zlib/zstd exist in every multifd QEMU (5.0+);
        # qatzip & co. only when the QMP schema lists them.
        return method in ('zlib', 'zstd') and self.qemu_version >= (5, 0, 0)


@dataclasses.dataclass(frozen=True)
class DestinationCaps:
    """What the destination can receive, as published in its traits.

    ``known`` is False when the destination's traits could not be read:
    then only plans that need nothing from the destination are allowed.
    """

    known: bool = False
    methods: frozenset[str] = frozenset()
    multifd: bool = False
    postcopy_with_multifd: bool = False
    qat: bool = False

    def accepts(self, method: str) -> bool:
        if method in ('none', 'xbzrle'):
            # Every QEMU Nova supports decodes XBZRLE and plain pre-copy.
            return True
        return self.known and method in self.methods


@dataclasses.dataclass(frozen=True)
class HostLoad:
    """Source host resources when the migration starts."""

    cpus: int = 2
    cpu_idle_pct: float = 100.0
    mem_free_mb: int = 0


@dataclasses.dataclass(frozen=True)
class QATState:
    """The source's QAT capacity for this migration."""

    endpoints: int = 0          # healthy, compression-capable endpoints
    free_leases: int = 0        # leases a migration could take now
    hardware: bool = False      # QATzip self-test ran on hardware
    throughput_mbps: float = 0.0  # measured MiB/s of one endpoint / self-test
    ratio: float = 0.0          # compressed/original on the self-test sample
    #: Why QAT devices this host has are not offered to migrations
    #: (e.g. QATzip ran in software), '' when they are or there are none.
    unusable: str = ''

    @property
    def available(self) -> bool:
        return self.endpoints > 0 and self.free_leases > 0


@dataclasses.dataclass(frozen=True)
class History:
    """What the last migration of this instance showed."""

    migrations: int = 0
    dirty_rate_mbps: Optional[float] = None
    wire_mbps: Optional[float] = None
    compression_ratio: Optional[float] = None   # wire bytes / RAM bytes
    xbzrle_hit_ratio: Optional[float] = None
    method: Optional[str] = None
    converged: Optional[bool] = None
    total_s: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class Hints:
    """Per-instance overrides from ``qat_migration:*`` extra specs/props.

    Validated by :mod:`nova_qat_migration.policy.hints`; ``None`` = no hint.
    """

    policy: Optional[str] = None
    method: Optional[str] = None
    level: Optional[int] = None
    parallel_connections: Optional[int] = None
    max_downtime_ms: Optional[int] = None
    allow_post_copy: Optional[bool] = None
    allow_throttle: Optional[bool] = None
    working_set_mb: Optional[int] = None
    #: The same hints without the image's values (the operator's alone,
    #: from the flavor), or None when the image added nothing. An image
    #: may only choose among what these allow, and the operator's plan
    #: wins when the image's would not converge
    #: (:mod:`nova_qat_migration.policy.tenant`).
    operator: Optional['Hints'] = None


@dataclasses.dataclass(frozen=True)
class InstanceFacts:
    uuid: str = ''
    name: str = ''
    memory_mb: int = 1024
    vcpus: int = 1
    paused: bool = False
    hints: Hints = Hints()
    #: Measured dirty rate (MiB/s) from libvirt's dirty-rate calculation.
    dirty_rate_mbps: Optional[float] = None
    #: From a sample of guest pages (``measure.page_sample``), if taken:
    #: share of zero pages, deflate ratio of the others, and the share of
    #: re-sent bytes XBZRLE saves on the pages that change.
    zero_fraction: Optional[float] = None
    compress_ratio: Optional[float] = None
    xbzrle_friendly: Optional[float] = None
    #: Where the measured fields above come from: ``measured`` (before
    #: this migration), ``quiet`` (measured, ended after a first window
    #: read a quiet guest) or ``reused`` (from the history, taken at
    #: ``measured_at``); None when nothing was measured.
    measurement: Optional[str] = None
    #: When the measured fields were taken (seconds since the epoch).
    measured_at: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class NovaSettings:
    """The ``[libvirt]`` options Nova's own plan is made of."""

    tunnelled: bool = False
    native_tls: bool = False
    permit_post_copy: bool = False
    permit_auto_converge: bool = False
    parallel_connections: int = 1
    bandwidth_mbps: int = 0
    downtime_ms: int = 500
    downtime_steps: int = 10
    downtime_delay_s: int = 75
    completion_timeout_s_per_gib: int = 800

    def completion_timeout_s(self, memory_mb: int) -> float:
        """Nova's completion timeout for a guest of ``memory_mb``.

        Nova counts at least 2 GiB of data.
        """
        data_gb = max(2.0, memory_mb / 1024.0)
        return self.completion_timeout_s_per_gib * data_gb

    @classmethod
    def from_conf(cls, conf: Any) -> 'NovaSettings':
        lv = conf.libvirt
        return cls(
            tunnelled=lv.live_migration_tunnelled,
            native_tls=lv.live_migration_with_native_tls,
            permit_post_copy=lv.live_migration_permit_post_copy,
            permit_auto_converge=lv.live_migration_permit_auto_converge,
            parallel_connections=lv.live_migration_parallel_connections,
            bandwidth_mbps=lv.live_migration_bandwidth,
            downtime_ms=lv.live_migration_downtime,
            downtime_steps=lv.live_migration_downtime_steps,
            downtime_delay_s=lv.live_migration_downtime_delay,
            completion_timeout_s_per_gib=(
                lv.live_migration_completion_timeout))


@dataclasses.dataclass(frozen=True)
class InFlight:
    """What the source's other migrations in flight hold.

    Concurrent migrations share the source's link, cores, memory and QAT;
    the driver's :class:`~nova_qat_migration.budget.HostBudget`
    fills this in when a plan is made. The defaults are a migration alone.

    :param migrations: other migrations running from this host.
    :param link_share: the share of the link this migration can count on
        (TCP shares a link between migrations about equally).
    :param cores_held: idle cores their compressors were planned on.
    :param xbzrle_mb_held: MiB their XBZRLE caches may grow to.
    :param qat_leases_held: QAT leases they hold.
    """

    migrations: int = 0
    link_share: float = 1.0
    cores_held: float = 0.0
    xbzrle_mb_held: int = 0
    qat_leases_held: int = 0


@dataclasses.dataclass(frozen=True)
class Facts:
    """Everything a policy may base a plan on, gathered per migration."""

    instance: InstanceFacts = InstanceFacts()
    host: HostLoad = HostLoad()
    qat: QATState = QATState()
    hypervisor: HypervisorCaps = HypervisorCaps()
    destination: DestinationCaps = DestinationCaps()
    nova: NovaSettings = NovaSettings()
    history: History = History()
    link_mbps: float = 1192.0     # MiB/s of the migration network
    #: Nova copies the instance's local disks (``migrate_data.
    #: block_migration``: libvirt's ``VIR_MIGRATE_NON_SHARED_INC``, an NBD
    #: drive-mirror that copies the disks before the memory).
    block_migration: bool = False
    #: Bytes a block migration copies: the allocated data of the local
    #: disks Nova names in ``migrate_disks``; None when not a block
    #: migration or unknown (then no disk time is predicted).
    disk_bytes: Optional[int] = None
    #: Each copied disk's size as Nova's monitor counts it in the data it
    #: scales its completion timeout by (``os.stat().st_size``, bytes).
    disk_sizes: tuple[int, ...] = ()
    #: Where the disk figures come from: ``disks`` (the guest's disk
    #: files) or ``flavor`` (root, ephemeral and swap sizes: a bound).
    disk_source: Optional[str] = None
    #: The operator allows QEMU monitor passthrough for methods libvirt does
    #: not know (``[qat_migration] qemu_monitor_passthrough``).
    passthrough_allowed: bool = False
    #: What the source's other migrations in flight hold.
    in_flight: InFlight = InFlight()

    def nova_data_gb(self) -> float:
        """The GiB Nova's monitor scales its timeouts by.

        Nova's ``_live_migration_data_gb``: the guest's RAM, at least
        2 GiB, plus for a block migration each copied disk's size, at least
        2 GiB each.
        """
        data_gb = max(2.0, self.instance.memory_mb / 1024.0)
        if self.block_migration:
            data_gb += sum(max(2.0, size / float(1024 ** 3))
                           for size in self.disk_sizes)
        return data_gb

    def completion_timeout_s(self) -> float:
        """Nova's completion timeout for this migration (disks included).

        NOTE(qat-migration): Nova's monitor, which the driver runs
        unchanged with its disk paths, aborts (or forces) the migration
        after ``[libvirt] live_migration_completion_timeout`` seconds per
        GiB of :meth:`nova_data_gb`.
        """
        return self.nova.completion_timeout_s_per_gib * self.nova_data_gb()

    def can_send(self, method: str) -> bool:
        """Whether the source can send ``method`` by some backend."""
        hv = self.hypervisor
        if not hv.accepts(method):
            return False
        return (method == 'none' or method in hv.libvirt_methods or
                self.passthrough_allowed)


@dataclasses.dataclass(frozen=True)
class Plan:
    """How to migrate one instance.

    The plan is what a policy wants; :func:`translate.to_libvirt` turns it
    into what libvirt accepts and may degrade it (recording why).

    :param method: ``none``, ``xbzrle``, ``mt``, ``zlib``, ``zstd`` or
        ``qatzip``.
    :param parallel_connections: multifd channels; 1 means single stream.
    :param throttle_initial: auto-converge start (percent); ``None`` = no
        auto-converge.
    :param max_downtime_ms: the downtime Nova's downtime steps climb to.
    :param post_copy: whether a switch to post-copy is permitted.
    :param post_copy_after_stalled: stalled iterations before switching.
    :param fallbacks: methods (names, or ``(name, level)`` pairs) to try, in
        order, when ``method`` cannot run on this pair of hosts (``none`` is
        always the last resort).
    :param nova_baseline: the plan is Nova's own; translation must produce
        exactly Nova's flags and parameters.
    """

    policy: str
    method: str = 'none'
    level: Optional[int] = None
    parallel_connections: int = 1
    xbzrle_cache_mb: Optional[int] = None
    xbzrle_cache_max_mb: Optional[int] = None
    mt_threads: Optional[int] = None
    mt_dthreads: Optional[int] = None
    throttle_initial: Optional[int] = None
    throttle_increment: Optional[int] = None
    max_downtime_ms: int = 500
    post_copy: bool = False
    post_copy_after_stalled: Optional[int] = None
    progress_timeout_s: int = 0
    bandwidth_mbps: int = 0
    qat_lease: bool = False
    fallbacks: tuple = ()
    nova_baseline: bool = False
    reasons: tuple[str, ...] = ()

    @property
    def auto_converge(self) -> bool:
        return self.throttle_initial is not None

    @property
    def multifd(self) -> bool:
        return self.parallel_connections > 1 or self.method in MULTIFD_METHODS

    @property
    def downtime_limit_ms(self) -> int:
        """The downtime limit QEMU is given for ``max_downtime_ms``.

        QEMU switches over when what remains fits its limit at the
        bandwidth it measured, and the pause it then causes also holds the
        device state and the last dirty-bitmap sync, which that estimate
        leaves out: the pause overshot the limit by up to 34% in the lab
        benchmark, and a multifd plan's by up to 61%. A planned migration
        therefore keeps :data:`DOWNTIME_HEADROOM` of the operator's target
        in reserve, a multifd plan :data:`MULTIFD_DOWNTIME_HEADROOM`,
        whichever policy made it (the ``static`` policy's fixed plans
        too). Nova's own plan keeps Nova's value.
        """
        if self.nova_baseline:
            return self.max_downtime_ms
        headroom = (MULTIFD_DOWNTIME_HEADROOM if self.multifd
                    else DOWNTIME_HEADROOM)
        return max(1, int(self.max_downtime_ms * (1.0 - headroom)))

    def because(self, *reasons: str, **changes: Any) -> 'Plan':
        """A copy with ``changes`` applied and ``reasons`` appended."""
        return dataclasses.replace(
            self, reasons=self.reasons + tuple(reasons), **changes)

    def describe(self) -> str:
        """One line a human can read in a log."""
        parts = [self.method]
        if self.level is not None:
            parts.append('-%d' % self.level)
        text = ''.join(parts)
        if self.parallel_connections > 1:
            text += ' x%d' % self.parallel_connections
        if self.xbzrle_cache_mb:
            text += ' cache=%dMiB' % self.xbzrle_cache_mb
        if self.auto_converge:
            text += ' throttle=%d+%d' % (self.throttle_initial,
                                         self.throttle_increment or 0)
        if self.post_copy:
            text += ' post-copy'
        return '%s[%s] downtime<=%dms' % (self.policy, text,
                                          self.max_downtime_ms)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data['reasons'] = list(self.reasons)
        return data


@dataclasses.dataclass(frozen=True)
class Calibration:
    """The convergence model's machine constants, in one place.

    The defaults are the model's original constants, at the scale of a
    host with hardware virtualisation (1.4 GiB/s per stream); the lab's
    TCG hosts copy, compress and encode several times slower, and
    ``benchmarks/calibration.json`` holds the values fitted there
    (``nova-qat-migration-lab model calibrate``), which the lab's computes
    load. ``[qat_migration] model_calibration`` names a file of values
    fitted on the operator's machines. ``zlib_mbps``, ``qat_mbps``,
    ``zero_cost``, ``zero_mbps`` and the downtime overshoots are not fitted
    (``nova_qat_migration_lab.accuracy.FITTED``).

    :param stream_mbps: pages one migration stream copies per second when
        the link is not the limit (the migration thread's CPU bound).
    :param compress_mbps: zstd level-1 input MiB/s of one core.
    :param zlib_mbps: zlib level-1 input MiB/s of one core.
    :param qat_mbps: QAT input MiB/s of one endpoint.
    :param xbzrle_mbps: XBZRLE encoder input MiB/s (one thread).
    :param xbzrle_residue: the least wire bytes per re-sent byte XBZRLE
        achieves (encoding overhead and cache misses), however small the
        writes.
    :param zero_cost: wire bytes per zero page byte (flags only).
    :param zero_mbps: zero pages QEMU checks per second (it reads every
        page to find the zero ones; a mostly empty guest's first pass is
        bound by this, not by the link).
    :param setup_s: fixed cost of a migration (connections, device state).
    :param switchover_s: fixed part of the downtime (device state,
        destination start).
    :param downtime_overshoot: share by which the pause may exceed
        QEMU's estimate of the last transfer (device state, the final
        bitmap sync; up to 34% in the lab): a predicted downtime is never
        below the transfer times ``1 + downtime_overshoot``, so it is not
        optimistic. A third matches ``DOWNTIME_HEADROOM``: a plan that
        switches at its ``downtime_limit_ms`` is predicted at the
        operator's target.
    :param multifd_downtime_overshoot: the same for multifd plans (every
        channel flushed and synced, the last compressed packets; 61% in
        the lab); two thirds match ``MULTIFD_DOWNTIME_HEADROOM``.
    """

    stream_mbps: float = 1400.0
    compress_mbps: float = 350.0
    zlib_mbps: float = 150.0
    qat_mbps: float = 1500.0
    xbzrle_mbps: float = 900.0
    xbzrle_residue: float = 0.12
    zero_cost: float = 0.002
    zero_mbps: float = 5000.0
    setup_s: float = 0.5
    switchover_s: float = 0.03
    downtime_overshoot: float = 0.33
    multifd_downtime_overshoot: float = 0.67

    @classmethod
    def ranges(cls) -> dict:
        """``{field: (low, high, low_is_exclusive)}`` a value must be in.

        Rates divide, so they are bounded away from zero: below 1 MiB/s
        no host migrates at all (``stream_mbps: 1e-300`` would predict
        that every guest needs an 80% throttle), above 1 TiB/s no core
        or endpoint copies. Residues and costs are shares of a page;
        the fixed costs are times a real migration has (a set-up of ten
        minutes, a switch-over of a minute are already failures).
        """
        out = {}
        for field in dataclasses.fields(cls):
            if field.name.endswith('_mbps'):
                out[field.name] = (1.0, 1024.0 * 1024.0, False)
            elif field.name in ('xbzrle_residue', 'zero_cost',
                                'downtime_overshoot',
                                'multifd_downtime_overshoot'):
                out[field.name] = (0.0, 1.0, False)
            elif field.name == 'switchover_s':
                out[field.name] = (0.0, 60.0, False)
            else:
                out[field.name] = (0.0, 600.0, False)
        return out


@dataclasses.dataclass(frozen=True)
class Progress:
    """A job-stats sample of a running migration, plus monitor memory.

    ``remaining_mb`` is the guest memory left to send;
    ``lowest_remaining_mb`` the lowest data left (memory and, in a block
    migration, disk) since the memory migration started, and
    ``lowest_at_s`` when the migration last made progress (that low, a
    pass starting with less to re-send, or disk data copied).
    """

    elapsed_s: float
    remaining_mb: float
    total_mb: float = 0.0
    dirty_rate_mbps: float = 0.0      # pages dirtied per second, in MiB/s
    iteration: int = 0
    throttle_pct: int = 0
    xbzrle_cache_mb: float = 0.0
    xbzrle_cache_miss_rate: float = 0.0
    bandwidth_mbps: float = 0.0
    lowest_remaining_mb: float = float('inf')
    lowest_at_s: float = 0.0
    stalled_iterations: int = 0
    downtime_ms: int = 0
    post_copy_active: bool = False
    #: Block migration: libvirt's ``disk_*`` job stats in MiB (MiB/s): the
    #: disks' data to copy, copied and left; 0 when no disk is copied.
    disk_total_mb: float = 0.0
    disk_processed_mb: float = 0.0
    disk_remaining_mb: float = 0.0
    disk_bandwidth_mbps: float = 0.0
    #: The disks are still being copied: the memory migration has not
    #: started (libvirt copies the disks first; post-copy cannot start
    #: then) or the mirrors owe more than the tracker's in-sync slack (a
    #: switch-over would wait for them). The default escalation asks for
    #: no post-copy while this holds.
    disk_copying: bool = False


@dataclasses.dataclass(frozen=True)
class Action:
    """One escalation the driver applies to a running migration.

    ``kind`` is one of ``downtime`` (value ms), ``xbzrle_cache`` (value MiB),
    ``post_copy``, ``abort``.
    """

    kind: str
    value: Optional[int] = None
    reason: str = ''
