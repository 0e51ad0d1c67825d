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
"""Options of nova-qat-migration in nova.conf.

``[qat_migration]`` holds the options shared by every policy;
``[qat_migration_static]`` and ``[qat_migration_adaptive]`` hold the
built-in policies' own options, which
:class:`~nova_qat_migration.policy.static.StaticPolicy` and
:class:`~nova_qat_migration.policy.adaptive.AdaptivePolicy` declare as their
``CONFIG_OPTS``. They are defined here, with the other options, so that the
start-up check (:func:`nova_qat_migration.conf.check`) reads them without
importing a policy.
"""

from oslo_config import cfg
from oslo_config import types

from nova_qat_migration.conf import policies
from nova_qat_migration import datamodel

qat_migration_group = cfg.OptGroup(
    'qat_migration',
    title='Per-instance live-migration planning',
    help="""
Options of nova-qat-migration, which plans every libvirt live migration per
instance (compression method, parallel channels, XBZRLE cache, auto-converge,
post-copy, downtime) instead of using Nova's host-wide migration flags.
These options take effect only with
``[DEFAULT] compute_driver = qat_migration.QATLibvirtDriver``.
""")

planning_opts = [
    cfg.BoolOpt('enabled',
        default=True,
        help="""
Plan live migrations per instance.

When False, the driver behaves exactly like Nova's libvirt driver: the flags
and parameters come from the ``[libvirt] live_migration_*`` options only.
"""),
    cfg.StrOpt('policy',
        default='adaptive',
        mutable=True,
        help="""
Name of the migration policy plugin that chooses the plan.

Policies are loaded from the ``nova_qat_migration.policies`` entry-point
namespace. Built in: ``adaptive`` (chooses from host resources and the
instance), ``static`` (the fixed choice made by the options of
``[qat_migration_static]``) and ``nova_default`` (exactly what Nova itself
would do). A policy's own options are in its own group. An unknown name
stops nova-compute at start-up with the list of installed policies. A
flavor extra spec ``qat_migration:policy`` overrides it per instance; an
image property only for the policies listed in ``image_policies``. Mutable:
after editing it, SIGHUP switches the next migrations to the new policy
(a name that is not installed then means Nova's own plan, logged).
"""),
    cfg.ListOpt('image_policies',
        item_type=types.String(regex=r'^[a-z][a-z0-9_]*$'),
        default=[],
        help="""
Policies an image property ``qat_migration:policy`` may choose.

Image properties are set by tenants. By default (empty list) they cannot
change the policy: an image's ``qat_migration:policy`` is ignored with a
warning and the instance gets ``policy`` (or its flavor's
``qat_migration:policy``). List the policies tenants may pick, e.g.
``nova_default`` to let them opt out of planning. Every name must be an
installed policy; nova-compute refuses to start otherwise.
"""),
    cfg.ListOpt('allowed_methods',
        item_type=types.String(choices=datamodel.METHODS),
        default=['none', 'xbzrle', 'zlib', 'zstd', 'qatzip'],
        help="""
Page-compression methods a plan may use.

``none`` is always allowed. ``mt`` (QEMU's legacy compression threads, gone
in QEMU 9.1) is only used when listed here; see ``legacy_mt_uses_qat``.
"""),
    cfg.IntOpt('zlib_level',
        default=1, min=datamodel.LEVEL_RANGES['zlib'][0],
        max=datamodel.LEVEL_RANGES['zlib'][1],
        help='Compression level for multifd zlib (0 fastest .. 9 best).'),
    cfg.IntOpt('zstd_level',
        default=1, min=datamodel.LEVEL_RANGES['zstd'][0],
        max=datamodel.LEVEL_RANGES['zstd'][1],
        help='Compression level for multifd zstd (0 .. 20).'),
    cfg.IntOpt('qatzip_level',
        default=1, min=datamodel.LEVEL_RANGES['qatzip'][0],
        max=datamodel.LEVEL_RANGES['qatzip'][1],
        help='Compression level for multifd qatzip (1 .. 9).'),
    cfg.IntOpt('mt_level',
        default=1, min=datamodel.LEVEL_RANGES['mt'][0],
        max=datamodel.LEVEL_RANGES['mt'][1],
        help='Compression level for the legacy ``mt`` method (0 .. 9).'),
    cfg.IntOpt('max_parallel_connections',
        default=None, min=1, max=32,
        sample_default='<[libvirt] live_migration_parallel_connections>',
        help="""
Upper bound of multifd channels (libvirt ``parallel.connections``) a plan
may use. Software compression uses at most one channel per idle source CPU.

Unset (the default): ``[libvirt] live_migration_parallel_connections``.
Nova's default there, 1, is a single stream, and multifd compression
(``zlib``, ``zstd``, ``qatzip``) is planned on 2 channels or more, so
with both at their defaults plans use no multifd: set this (e.g. ``4``)
or Nova's option to let plans compress. Set: this value wins over
``[libvirt]`` for planned migrations, lower or higher (an explicit
widening: each channel may use a source core). A flavor's
``qat_migration:parallel_connections`` picks a count up to this bound.
"""),
    cfg.IntOpt('cpu_idle_threshold',
        default=None, min=0, max=100,
        deprecated_for_removal=True,
        deprecated_reason="""
A hard gate on the idle CPU measured before a migration flips a decision
on a few points of measuring noise, and closes compression where it would
win: fewer bytes on the wire mean fewer passes even when the compressors
must share busy cores. The ``adaptive`` policy now predicts the time of
each plan with the compressors sharing the cores with the guests, and
``max_guest_cpu_impact_pct`` caps what that sharing may cost the guests.
""",
        help="""
Percentage of source host CPU that must be idle before software compression
(zlib/zstd) is chosen. Unset by default: the ``adaptive`` policy then
predicts the time of compressed plans with the compressors sharing busy
cores, and ``max_guest_cpu_impact_pct`` bounds the cost to the guests. When
set, it is still honoured as a hard gate (below it, only methods that cost
little CPU are used: XBZRLE, plain multifd, or QAT-offloaded compression),
in addition to ``max_guest_cpu_impact_pct``.
"""),
    cfg.IntOpt('max_guest_cpu_impact_pct',
        default=50, min=0, max=100,
        help="""
Largest share (percent) of CPU time the work already running on the source
host -- the guests' vCPUs, the migrating guest's own included -- may lose to
a migration's software compression threads (zlib/zstd).

Compressors first use idle cores; what they need beyond them they share
with the busy work, which then runs that much slower while the migration
lasts. The ``adaptive`` policy predicts this share for every compressed
plan from the measured idle CPU, the link and how well the guest's pages
compress, and does not plan compression that would exceed it. On a host
with idle cores the share is 0; on a 2-core host at 0% idle, zstd filling
a 1 Gbit/s link with pages that compress to 0.45 costs about 40%. 0 allows
compression only on idle cores; 100 lets the predicted migration time
alone decide. QAT offload, XBZRLE and plain multifd are not affected, nor
is a fixed plan of the ``static`` policy (the operator's own choice).
"""),
    cfg.IntOpt('memory_headroom_mb',
        default=2048, min=0,
        help="""
Free memory (MiB) the source host keeps for itself. The XBZRLE cache is only
sized from memory above this headroom.
"""),
    cfg.IntOpt('xbzrle_cache_min_mb',
        default=64, min=1,
        help="""
Smallest XBZRLE cache (MiB) worth using. When less memory is spare, XBZRLE
is not chosen. Must not exceed ``xbzrle_cache_max_mb``.
"""),
    cfg.IntOpt('xbzrle_cache_max_mb',
        default=4096, min=1,
        help="""
Largest XBZRLE cache (MiB) a single migration may take, including growth
while it runs. Caches are rounded down to a power of two.
"""),
    cfg.FloatOpt('xbzrle_cache_ratio',
        default=0.5, min=0.01, max=1.0,
        help="""
XBZRLE cache as a fraction of the instance's writable working set (or of
its RAM when the working set is unknown), before the bounds above apply.
"""),
    cfg.IntOpt('auto_converge_initial',
        default=20, min=1, max=100,
        help='Initial auto-converge CPU throttle (percent).'),
    cfg.IntOpt('auto_converge_increment',
        default=10, min=1, max=100,
        help='Auto-converge throttle increment per stalled iteration.'),
    cfg.ListOpt('throttle_schedule',
        item_type=types.Integer(min=1, max=99),
        default=[20, 40, 60, 80, 99],
        help="""
Stepped auto-converge schedule for instances that will not converge
otherwise: the throttle (percent) the adaptive policy starts from and the
steps it may climb. The start is picked by how far the dirty rate exceeds
the link; the increment is the gap between steps. Values must increase.
"""),
    cfg.BoolOpt('permit_auto_converge',
        default=None,
        sample_default='<[libvirt] live_migration_permit_auto_converge>',
        help="""
Whether plans may throttle guest vCPUs (auto-converge).

Unset (the default): what ``[libvirt] live_migration_permit_auto_converge``
says (Nova's default: false), so a guest Nova would never throttle is
never throttled. ``false`` forbids throttling even where ``[libvirt]``
permits it; ``true`` permits it even where ``[libvirt]`` does not (an
explicit widening, for planned migrations only). A flavor extra spec or
image property ``qat_migration:allow_throttle=false`` forbids it for an
instance.
"""),
    cfg.IntOpt('downtime_ms',
        default=None, min=10, max=60000,
        sample_default='<[libvirt] live_migration_downtime>',
        help="""
Target maximum downtime (milliseconds) of the switch-over. Nova's downtime
steps climb to this value for planned migrations.

Unset (the default): ``[libvirt] live_migration_downtime`` (Nova's
default: 500). Set: this value wins over ``[libvirt]`` for planned
migrations, lower or higher (a higher one is an explicit widening). A
flavor's ``qat_migration:max_downtime_ms`` may raise or lower it for its
instances; an image's may only lower it.
"""),
    cfg.BoolOpt('permit_post_copy',
        default=None,
        sample_default='<[libvirt] live_migration_permit_post_copy>',
        help="""
Whether plans may switch to post-copy. Post-copy always finishes, but if the
source or network fails during it the guest is lost.

Unset (the default): what ``[libvirt] live_migration_permit_post_copy``
says (Nova's default: false). ``false`` forbids post-copy even where
``[libvirt]`` permits it; ``true`` permits it even where ``[libvirt]``
does not (an explicit widening, for planned migrations only). Per
instance, ``qat_migration:allow_post_copy=false`` forbids it.
"""),
    cfg.IntOpt('post_copy_after_stalled',
        default=3, min=1, max=100,
        help="""
Number of stalled iterations (remaining data not reaching a new low) after
which a plan that permits post-copy switches to it.
"""),
    cfg.IntOpt('progress_timeout',
        default=150, min=0,
        help="""
Abort a migration whose remaining data has not reached a new low for this
many seconds (0 disables). Nova's own completion timeout still applies.
"""),
    cfg.FloatOpt('link_gbps',
        default=10.0, min=0.01,
        help="""
Migration network speed (Gbit/s) assumed before throughput of past
migrations has been observed.
"""),
    cfg.IntOpt('dirty_rate_sample_seconds',
        default=1, min=0, max=60,
        help="""
Seconds to sample an instance's dirty rate with libvirt's dirty-rate
calculation before planning (0 disables measuring, and the page sample of
``sample_guest_memory`` with it; the history is used).
A longer window ends after its first second when that second finds the
guest quiet; a measurement of the last ``measurement_reuse_seconds`` is
reused instead of measuring again.
"""),
    cfg.BoolOpt('sample_guest_memory',
        default=True,
        help="""
Read a sample of the guest's memory before planning: 128 random pages
through libvirt's ``virDomainMemoryPeek``, taken during the dirty-rate
window, to judge their zero share, compressibility and XBZRLE
friendliness. The bytes are only counted and compressed in nova-compute's
memory, never logged, stored or sent; the statistics go into the report.

False: no guest memory is read. The dirty rate is still measured (it
counts dirtied pages without reading them; ``dirty_rate_sample_seconds``
turns that off), and plans assume average compressibility and no XBZRLE
gain.
"""),
    cfg.StrOpt('model_calibration',
        default='',
        help="""
JSON file with the convergence model's machine constants (fields of
``nova_qat_migration.datamodel.Calibration``, e.g. ``stream_mbps``,
``compress_mbps``), as fitted by ``nova-qat-migration-lab model calibrate`` on
real migrations. Empty: built-in defaults for server-class hosts. The file
is checked at start-up: a JSON object of known fields with finite, positive
numbers, otherwise nova-compute does not start.
"""),
]

qat_opts = [
    cfg.IntOpt('qat_endpoints_for_migration',
        default=1, min=0,
        help="""
Compression-capable QAT endpoints (VFs, or PFs without SR-IOV) kept for
migrations. They are reported as ``reserved`` in Placement so instances
cannot claim them, and bound how many migrations hold a QAT lease at once.
"""),
    cfg.BoolOpt('qemu_monitor_passthrough',
        default=False,
        help="""
Allow multifd compression methods libvirt does not know (``qatzip``) by
setting them on the source QEMU through libvirt's QEMU monitor passthrough
and on the destination with a ``-global`` argument. libvirt marks such
domains as tainted; enable only if that is acceptable.

It also lets the start-up probe ask a running domain's QEMU, through
libvirt, which multifd compression methods it was built with
(``query-qmp-schema``), which taints that one domain too; see
``hypervisor_multifd_methods``.
"""),
    cfg.ListOpt('hypervisor_multifd_methods',
        item_type=types.String(choices=datamodel.QEMU_MULTIFD_COMPRESSION),
        default=[],
        help="""
Multifd compression methods of the QEMU that libvirt runs on this host, as
its ``query-qmp-schema`` lists them (``none`` is implied). This host plans
with them and advertises them to sources as ``CUSTOM_MIGRATION_COMPRESS_*``
traits.

Set it where nova-compute cannot run libvirt's QEMU binary: QEMU in another
container, as kolla-ansible's ``nova_libvirt`` (nova-compute runs in
``nova_compute``). When set it wins and nothing is probed, so list only
what that QEMU has (e.g. ``zlib,zstd``, plus ``qatzip`` for a QEMU built
with QATzip).

Empty (the default): probed. First a running domain's QEMU, asked through
libvirt (only with ``qemu_monitor_passthrough``: libvirt taints the domain
it asks); then libvirt's emulator binary, if nova-compute's filesystem has
it and it reports libvirt's QEMU version; else unknown (``zlib``/``zstd``
assumed from the versions, ``qatzip`` never used). With
``qemu_monitor_passthrough``, a binary's or unknown answer is re-probed
through libvirt once a domain runs.
"""),
    cfg.BoolOpt('legacy_mt_uses_qat',
        default=False,
        help="""
Declare that this host's QEMU (older than 9.1) accelerates the legacy
``mt`` compression threads with QAT, as some vendor builds do. Nothing can
detect such a build; only set this if yours is one.
"""),
    cfg.StrOpt('sysfs_root',
        default='/sys',
        help='Root of sysfs, where QAT devices are discovered (for tests).'),
    cfg.StrOpt('debugfs_root',
        default='/sys/kernel/debug',
        help='Root of debugfs, where QAT heartbeat and telemetry are read.'),
    cfg.StrOpt('qatzip_library',
        default='libqatzip.so.3',
        help='QATzip shared library name or path used for the self-test.'),
]

state_opts = [
    # NOTE(qat-migration): no '$state_path/...' default: inside this group
    # '$state_path' names this very option, and oslo.config would recurse
    # until RecursionError. HistoryStore.from_conf derives the default.
    cfg.StrOpt('state_path',
        default=None,
        sample_default='<[DEFAULT] state_path>/qat_migration',
        help="""
Directory for the per-host migration history the adaptive policy learns
from (one small JSON file). Unset: ``qat_migration`` under Nova's
``[DEFAULT] state_path``.
"""),
    cfg.IntOpt('history_max_entries',
        default=1000, min=1, max=1000000,
        help='Instances remembered in the migration history (oldest first '
             'out).'),
    cfg.IntOpt('measurement_reuse_seconds',
        default=300, min=0, max=86400,
        help="""
Reuse the guest measurement taken before an instance's last migration from
this host (its dirty rate, zero-page share, compressibility and
XBZRLE-friendliness, kept in the migration history) instead of measuring
the guest again, when that measurement is at most this many seconds old
and the instance's memory size has not changed. Saves the
``dirty_rate_sample_seconds`` window on a retried or repeated migration.
The migration report says when a measurement was reused and when it was
taken; a reused measurement never renews its own age. 0 always measures.
"""),
    cfg.BoolOpt('qatzip_software_allowed',
        default=False,
        help="""
Count QAT devices as usable for ``qatzip`` plans even when the QATzip
self-test ran in QATzip's software fallback instead of on QAT hardware.
Off by default: software ``qatzip`` costs about 2.4 times the CPU of
``zstd`` for a similar ratio, so a host whose QAT devices do not work
plans without QAT. Only for testing the ``qatzip`` path on machines
without working QAT hardware.
"""),
]

#: The options of ``[qat_migration]``.
ALL_OPTS = planning_opts + qat_opts + state_opts


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register ``[qat_migration]`` and the built-in policies' groups
    (``[qat_migration_static]``, ``[qat_migration_adaptive]``).
    """
    conf.register_group(qat_migration_group)
    conf.register_opts(ALL_OPTS, group=qat_migration_group)
    policies.register_static_opts(conf)
    policies.register_adaptive_opts(conf)


#: The built-in policies' groups, in :mod:`.policies`; importable from here.
static_group = policies.static_group
static_opts = policies.static_opts
adaptive_group = policies.adaptive_group
adaptive_opts = policies.adaptive_opts
register_static_opts = policies.register_static_opts
register_adaptive_opts = policies.register_adaptive_opts


def list_opts() -> dict:
    """``[qat_migration]`` only.

    Policies' groups are listed through their entry points
    (:func:`nova_qat_migration.conf.opts.list_opts`).
    """
    return {qat_migration_group: ALL_OPTS}
