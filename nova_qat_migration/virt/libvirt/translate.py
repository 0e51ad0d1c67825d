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
"""Plan -> libvirt call: a pure function that knows libvirt's rules.

:func:`to_libvirt` takes a :class:`~nova_qat_migration.datamodel.Plan`
and the facts it was made from and returns the flags and ``migrateToURI3``
params to use. A plan the pair of hosts cannot run is degraded, step by
step, to the best one they can, and every step is recorded; the result
never contains a combination libvirt or QEMU would refuse:

* ``zlib``/``zstd`` only with ``VIR_MIGRATE_PARALLEL`` (and libvirt >= 9.4);
* ``xbzrle`` and ``mt`` never with ``VIR_MIGRATE_PARALLEL``;
* ``mt`` only on QEMU < 9.1 (removed there);
* a tuning parameter only with its method or flag (libvirt: "Turn ... on
  to tune it");
* post-copy together with multifd only on QEMU >= 10.1 (both ends);
* multifd never with a tunnelled migration;
* methods libvirt does not know (``qatzip``) only through the
  ``qemu-passthrough`` backend, when the operator allowed it;
* nothing the destination cannot decode.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from nova_qat_migration import datamodel
from nova_qat_migration.virt.libvirt import constants as c

BACKEND_LIBVIRT = 'libvirt'
BACKEND_PASSTHROUGH = 'qemu-passthrough'


@dataclasses.dataclass(frozen=True)
class MigrationCall:
    """What to hand to libvirt for one migration.

    :param flags: the complete ``migrateToURI3`` flag set.
    :param params: params to add to (or replace in) the ones Nova builds
        (``bandwidth``, ``parallel.connections``, ``compression`` ...).
        Keys Nova sets that are absent here and conflict with ``flags``
        (``parallel.connections`` without PARALLEL) must be dropped by the
        caller; :func:`merge_params` does that.
    :param passthrough: arguments for QEMU's ``migrate-set-parameters``
        (backend ``qemu-passthrough`` only).
    :param plan: the plan actually executed, after degradation.
    :param degradations: why the executed plan differs from the asked one.
    """

    flags: int
    params: dict
    plan: datamodel.Plan
    backend: str = BACKEND_LIBVIRT
    passthrough: dict = dataclasses.field(default_factory=dict)
    degradations: tuple[str, ...] = ()

    def flag_names(self) -> list:
        return c.flag_names(self.flags)

    @property
    def reasons(self) -> tuple[str, ...]:
        return self.plan.reasons + self.degradations

    def to_dict(self) -> dict:
        return {
            'plan': self.plan.to_dict(),
            'flags': self.flags,
            'flag_names': self.flag_names(),
            'params': dict(self.params),
            'backend': self.backend,
            'passthrough': dict(self.passthrough),
            'degradations': list(self.degradations),
        }


def nova_flags(nova: datamodel.NovaSettings, block_migration: bool = False,
               ) -> int:
    """The flags Nova 34's ``_parse_migration_flags`` computes.

    Kept in step with ``LibvirtDriver._prepare_migration_flags`` and the
    ``_handle_*`` helpers (tunnelled, native TLS, post-copy, auto-converge
    only without post-copy, PARALLEL above one connection); the unit tests
    compare it with Nova's own code.
    """
    flags = (c.VIR_MIGRATE_LIVE | c.VIR_MIGRATE_PEER2PEER |
             c.VIR_MIGRATE_UNDEFINE_SOURCE | c.VIR_MIGRATE_PERSIST_DEST)
    if block_migration:
        flags |= c.VIR_MIGRATE_NON_SHARED_INC
    if nova.tunnelled:
        flags |= c.VIR_MIGRATE_TUNNELLED
    if nova.native_tls:
        flags |= c.VIR_MIGRATE_TLS
    if nova.permit_post_copy:
        flags |= c.VIR_MIGRATE_POSTCOPY
    elif nova.permit_auto_converge:
        flags |= c.VIR_MIGRATE_AUTO_CONVERGE
    if nova.parallel_connections > 1:
        flags |= c.VIR_MIGRATE_PARALLEL
    return flags


def nova_params(nova: datamodel.NovaSettings) -> dict:
    """The tuning params Nova's ``Guest.migrate`` passes."""
    params: dict = {c.PARAM_BANDWIDTH: nova.bandwidth_mbps}
    if nova.parallel_connections > 1:
        params[c.PARAM_PARALLEL_CONNECTIONS] = nova.parallel_connections
    return params


def merge_params(nova_built: dict, call: MigrationCall) -> dict:
    """Nova's params with the planned ones applied, conflicts removed."""
    params = dict(nova_built)
    if not call.flags & c.VIR_MIGRATE_PARALLEL:
        params.pop(c.PARAM_PARALLEL_CONNECTIONS, None)
    params.update(call.params)
    return params


def baseline_flags(facts: datamodel.Facts) -> int:
    """The flags of Nova's own call for this migration.

    What :func:`to_libvirt` gives Nova's plan, without translating it: the
    session asks for them on every migration, Nova's plan is translated
    only when a migration falls back to it.
    """
    flags = nova_flags(facts.nova, facts.block_migration)
    if facts.instance.paused:
        # Nova drops post-copy for paused guests in
        # _live_migration_operation; do the same so the call is identical.
        flags &= ~c.VIR_MIGRATE_POSTCOPY
    return flags


def _baseline(plan: datamodel.Plan, facts: datamodel.Facts) -> MigrationCall:
    flags = baseline_flags(facts)
    notes: tuple[str, ...] = ()
    if flags != nova_flags(facts.nova, facts.block_migration):
        notes = ('post-copy unset: the instance is paused (as Nova does)',)
    return MigrationCall(flags=flags, params=nova_params(facts.nova),
                         plan=plan, degradations=notes)


def _method_refusal(method: str, plan: datamodel.Plan, facts: datamodel.Facts,
                    tunnelled: bool) -> Optional[str]:
    """Why ``method`` cannot run on this pair of hosts, or None if it can."""
    hv = facts.hypervisor
    dest = facts.destination
    if method == 'none':
        return None
    if method == 'mt':
        if not hv.has_mt:
            return ('mt: QEMU %s removed compression threads (9.1)'
                    % datamodel.version_str(hv.qemu_version))
        if not dest.accepts('mt'):
            return 'mt: the destination does not advertise mt'
        if plan.qat_lease and not facts.qat.available:
            return 'mt on QAT: no free QAT lease on the source'
        return None
    if method == 'xbzrle':
        return None
    # multifd methods
    if tunnelled:
        return '%s: multifd cannot run over a tunnelled migration' % method
    if not hv.accepts(method):
        return ('%s: the source QEMU %s was not built with it'
                % (method, datamodel.version_str(hv.qemu_version)))
    if method not in hv.libvirt_methods and not facts.passthrough_allowed:
        return ('%s: not supported by the source libvirt %s and '
                '[qat_migration] qemu_monitor_passthrough is off'
                % (method, datamodel.version_str(hv.libvirt_version)))
    if not dest.accepts(method):
        if not dest.known:
            return ('%s: destination capabilities unknown; only methods '
                    'that need nothing from it are used' % method)
        return '%s: the destination does not advertise it' % method
    if method == 'qatzip' and plan.qat_lease and not facts.qat.available:
        return 'qatzip: no free QAT lease on the source'
    return None


def _choices(plan: datamodel.Plan) -> list:
    """``(method, level)`` in order of preference, ending with ``none``.

    A fallback is a method name or a ``(method, level)`` pair.
    """
    out = [(plan.method, plan.level)]
    for entry in plan.fallbacks:
        if isinstance(entry, str):
            out.append((entry, None))
        else:
            out.append((entry[0], entry[1]))
    out.append(('none', None))
    return out


def _level(method: str, level: Optional[int], notes: list) -> Optional[int]:
    if level is None or method not in datamodel.LEVEL_RANGES:
        return None
    lo, hi = datamodel.LEVEL_RANGES[method]
    if not lo <= level <= hi:
        clamped = min(max(level, lo), hi)
        notes.append('%s level %d outside %d..%d, using %d'
                     % (method, level, lo, hi, clamped))
        return clamped
    return level


def to_libvirt(plan: datamodel.Plan, facts: datamodel.Facts) -> MigrationCall:
    """Translate ``plan`` into the libvirt call for these hosts.

    :returns: a :class:`MigrationCall` whose ``plan`` is the plan that will
        really run; ``degradations`` says what changed and why.
    """
    if plan.nova_baseline:
        return _baseline(plan, facts)

    hv = facts.hypervisor
    dest = facts.destination
    notes: list = []
    base_flags = (nova_flags(facts.nova, facts.block_migration) &
                  ~c.PLANNED_FLAGS)
    tunnelled = bool(base_flags & c.VIR_MIGRATE_TUNNELLED)

    # 1. The first method of [method] + fallbacks + [none] that can run.
    method, level = 'none', None
    for candidate, cand_level in _choices(plan):
        refusal = _method_refusal(candidate, plan, facts, tunnelled)
        if refusal is None:
            method, level = candidate, cand_level
            break
        notes.append('%s -> next choice' % refusal)

    # 2. Channels: multifd methods need PARALLEL, single-stream ones forbid it.
    channels = max(1, plan.parallel_connections)
    if method in datamodel.SINGLE_STREAM_METHODS and channels > 1:
        notes.append('%s runs on one stream: %d parallel connections '
                     'dropped' % (method, channels))
        channels = 1
    elif method in datamodel.MULTIFD_METHODS and channels < 2:
        notes.append('%s needs multifd: using 2 parallel connections'
                     % method)
        channels = 2
    if channels > 1 and tunnelled:
        notes.append('parallel connections dropped: tunnelled migration')
        channels = 1

    # 3. Post-copy.
    post_copy = plan.post_copy
    if post_copy and not hv.postcopy:
        notes.append('post-copy unsupported by the source: not permitted')
        post_copy = False
    if post_copy and facts.instance.paused:
        notes.append('post-copy unset: the instance is paused')
        post_copy = False
    if post_copy and channels > 1 and not (
            hv.postcopy_with_multifd and dest.postcopy_with_multifd):
        notes.append('post-copy with multifd needs QEMU >= 10.1 on both '
                     'ends (source %s): post-copy not permitted'
                     % datamodel.version_str(hv.qemu_version))
        post_copy = False

    # 4. Flags and params.
    flags = base_flags
    params: dict[str, Any] = {c.PARAM_BANDWIDTH: plan.bandwidth_mbps}
    passthrough: dict[str, Any] = {}
    backend = BACKEND_LIBVIRT
    if channels > 1:
        flags |= c.VIR_MIGRATE_PARALLEL
        params[c.PARAM_PARALLEL_CONNECTIONS] = channels
    if post_copy:
        flags |= c.VIR_MIGRATE_POSTCOPY
    throttle_initial = plan.throttle_initial
    throttle_increment = plan.throttle_increment
    if throttle_initial is not None:
        flags |= c.VIR_MIGRATE_AUTO_CONVERGE
        params[c.PARAM_AUTO_CONVERGE_INITIAL] = min(max(throttle_initial,
                                                        1), 100)
        if throttle_increment is not None:
            params[c.PARAM_AUTO_CONVERGE_INCREMENT] = min(
                max(throttle_increment, 1), 100)
    elif throttle_increment is not None:
        notes.append('throttle increment ignored: auto-converge is off')
        throttle_increment = None

    level = _level(method, level, notes)
    xbzrle_cache = None
    mt_threads = mt_dthreads = None
    if method == 'xbzrle':
        params[c.PARAM_COMPRESSION] = 'xbzrle'
        if plan.xbzrle_cache_mb:
            xbzrle_cache = datamodel.pow2_floor(max(1, plan.xbzrle_cache_mb))
            if xbzrle_cache != plan.xbzrle_cache_mb:
                notes.append('XBZRLE cache rounded down to %d MiB (a power '
                             'of two)' % xbzrle_cache)
            params[c.PARAM_COMPRESSION_XBZRLE_CACHE] = (
                xbzrle_cache * datamodel.MIB)
    elif method == 'mt':
        params[c.PARAM_COMPRESSION] = 'mt'
        if level is not None:
            params[c.PARAM_COMPRESSION_MT_LEVEL] = level
        if plan.mt_threads:
            mt_threads = plan.mt_threads
            params[c.PARAM_COMPRESSION_MT_THREADS] = mt_threads
        if plan.mt_dthreads:
            mt_dthreads = plan.mt_dthreads
            params[c.PARAM_COMPRESSION_MT_DTHREADS] = mt_dthreads
    elif method in ('zlib', 'zstd') and method in hv.libvirt_methods:
        params[c.PARAM_COMPRESSION] = method
        if level is not None:
            params[c.LEVEL_PARAMS[method]] = level
    elif method != 'none':
        # A multifd method libvirt does not know: set it on QEMU directly.
        backend = BACKEND_PASSTHROUGH
        passthrough['multifd-compression'] = method
        if level is not None:
            passthrough['multifd-%s-level' % method] = level

    effective = dataclasses.replace(
        plan, method=method, level=level, parallel_connections=channels,
        xbzrle_cache_mb=xbzrle_cache,
        xbzrle_cache_max_mb=(plan.xbzrle_cache_max_mb
                             if method == 'xbzrle' else None),
        mt_threads=mt_threads, mt_dthreads=mt_dthreads,
        throttle_initial=throttle_initial,
        throttle_increment=throttle_increment, post_copy=post_copy,
        post_copy_after_stalled=(plan.post_copy_after_stalled
                                 if post_copy else None),
        qat_lease=plan.qat_lease and method in ('qatzip', 'mt'))
    return MigrationCall(flags=flags, params=params, plan=effective,
                         backend=backend, passthrough=passthrough,
                         degradations=tuple(notes))
