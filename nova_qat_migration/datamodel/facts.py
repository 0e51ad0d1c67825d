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
"""What a policy may base a plan on: :class:`Facts` and its parts.

The driver gathers them once per migration (source host, hypervisor,
destination, QAT, Nova's settings, the instance, its history and what
the other migrations in flight hold), so a policy is a pure function of
them; frozen, they can be printed, logged, compared, and replayed by
``nova-qat-migration plan --from-report``, which rebuilds them from
their fields' type hints (so every part of :class:`Facts` is defined in
this module).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence


def version_str(version: Sequence[int]) -> str:
    """A version tuple as logs and messages show it (``10.0.2``)."""
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
