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
"""The default escalation of a running migration: progress in, actions out.

:func:`escalate` is :meth:`Policy.on_progress
<nova_qat_migration.policy.base.Policy.on_progress>` unless a policy
overrides it. It is free of libvirt and I/O so that it can be tested with
recorded progress sequences, and idempotent: for the same progress it
returns the same actions, and an action is only returned while the
progress still shows the state it would change (the driver reports
applied actions back to the tracker,
:class:`~nova_qat_migration.virt.libvirt.tracker.ProgressTracker`). The
driver polls every 0.5 s, so this is what keeps one stalled iteration from
climbing all downtime steps at once.
"""

from __future__ import annotations

import math

from nova_qat_migration import datamodel

#: Downtime climbs from ``max/STEPS`` to ``max`` in this many stalled
#: iterations (Nova's own steps keep running alongside; the higher wins).
DOWNTIME_STEPS = 5
#: XBZRLE cache miss rate (misses / pages looked up) above which the cache
#: is doubled.
XBZRLE_MISS_RATE_HIGH = 0.3
#: Safety margin on the downtime needed to send what remains.
DOWNTIME_MARGIN = 1.2
#: A job that has sent nothing for this long (seconds) runs over a dead
#: link (or to a hung peer): it is never switched to post-copy.
DEAD_LINK_S = 5.0


def downtime_target(plan: datamodel.Plan, progress: datamodel.Progress) -> int:
    """The downtime (ms) the migration should have now.

    Rises by ``max/DOWNTIME_STEPS`` per stalled iteration, and jumps
    straight to the downtime needed to send what remains at the current
    bandwidth when that fits under the plan's limit for QEMU
    (:attr:`~nova_qat_migration.datamodel.Plan.downtime_limit_ms`; the
    switch-over then happens at once instead of after more futile
    iterations).
    """
    if progress.stalled_iterations <= 0:
        return 0
    # QEMU's own estimate leaves out part of the pause: keep the headroom.
    ceiling = plan.downtime_limit_ms
    step = max(1, ceiling // DOWNTIME_STEPS)
    target = min(ceiling, step * progress.stalled_iterations)
    if progress.bandwidth_mbps > 0:
        needed = math.ceil(progress.remaining_mb / progress.bandwidth_mbps *
                           1000.0 * DOWNTIME_MARGIN)
        if needed <= ceiling:
            target = max(target, needed)
    return target


def _watched(progress: datamodel.Progress) -> bool:
    """Whether the progress timeout can judge this migration yet.

    Once the memory migration has reached a first low, or while a block
    migration's disks are copied: a disk copy that does not move from the
    start of the job times out like a memory migration that stalls.
    """
    return (progress.lowest_remaining_mb != float('inf') or
            progress.disk_copying)


def _stalled_for(progress: datamodel.Progress) -> str:
    """What the progress timeout saw, for the action's reason."""
    idle = progress.elapsed_s - progress.lowest_at_s
    if progress.disk_copying:
        return ('disk copy stalled (%.0f of %.0f MiB left) for %.0f s'
                % (progress.disk_remaining_mb, progress.disk_total_mb, idle))
    return ('no new low of remaining data (%.0f MiB) for %.0f s'
            % (progress.lowest_remaining_mb, idle))


def escalate(plan: datamodel.Plan, progress: datamodel.Progress) -> list:
    """The default escalation of a running migration.

    Order matters: once in post-copy nothing may be done (aborting now
    would lose the guest, whose memory is split between the hosts); a
    progress timeout ends the migration (by post-copy when the plan permits
    it, else by abort, as KubeVirt does); otherwise downtime, XBZRLE cache
    and the stalled-iteration post-copy switch are considered.

    Progress is what the tracker says it is: a new low of the data left
    (memory and a block migration's disk) or, while a block migration's
    disks are copied, disk data moving. Post-copy is never asked for while
    the disks are copied. Before QEMU's memory migration starts, QEMU
    refuses the switch ("Postcopy must be started after migration has been
    started"), or, when an earlier migration of the same QEMU failed,
    takes it and forgets it when the memory migration starts, while Nova
    marks the migration as running in post-copy and stops its completion
    timeout; afterwards, mirrors that owe more than the in-sync slack would
    lengthen the switch-over pause. A stalled disk copy is aborted instead.
    """
    if progress.post_copy_active:
        return []

    if (plan.progress_timeout_s > 0 and _watched(progress) and
            progress.elapsed_s - progress.lowest_at_s
            > plan.progress_timeout_s):
        reason = '%s (progress timeout %d s)' % (_stalled_for(progress),
                                                 plan.progress_timeout_s)
        if plan.post_copy and not progress.disk_copying:
            return [datamodel.Action(datamodel.ACTION_POST_COPY,
                                     reason=reason)]
        if plan.post_copy:
            reason += '; no post-copy while the disks are copied'
        return [datamodel.Action(datamodel.ACTION_ABORT, reason=reason)]

    if (plan.post_copy and plan.post_copy_after_stalled and
            not progress.disk_copying and
            progress.stalled_iterations >= plan.post_copy_after_stalled):
        return [datamodel.Action(
            datamodel.ACTION_POST_COPY,
            reason='%d iterations without a new low of remaining data'
                   % progress.stalled_iterations)]

    actions = []
    target = downtime_target(plan, progress)
    if target > progress.downtime_ms:
        actions.append(datamodel.Action(
            datamodel.ACTION_DOWNTIME, value=target,
            reason='%d stalled iteration(s), %.0f MiB remaining at %.0f '
                   'MiB/s' % (progress.stalled_iterations,
                              progress.remaining_mb,
                              progress.bandwidth_mbps)))

    # NOTE(qat-migration): the cache is cold until the first XBZRLE pass
    # has filled it (QEMU starts XBZRLE after the first pass, so every
    # lookup of iteration 2 misses): its misses say nothing about its size
    # before iteration 3 (datamodel.XBZRLE_WARM_ITERATION; the tracker
    # also waits a pass after a resize, which empties the cache).
    if (plan.method == 'xbzrle' and plan.xbzrle_cache_max_mb and
            progress.iteration >= datamodel.XBZRLE_WARM_ITERATION and
            progress.xbzrle_cache_mb > 0 and
            progress.xbzrle_cache_miss_rate > XBZRLE_MISS_RATE_HIGH):
        grown = int(progress.xbzrle_cache_mb * 2)
        if grown <= plan.xbzrle_cache_max_mb:
            actions.append(datamodel.Action(
                datamodel.ACTION_XBZRLE_CACHE, value=grown,
                reason='XBZRLE cache miss rate %.0f%%'
                       % (progress.xbzrle_cache_miss_rate * 100)))
    return actions


def guard_dead_link(action: datamodel.Action,
                    idle_s: float) -> datamodel.Action:
    """``action``, or an abort where post-copy would strand the guest.

    Applied to every policy's actions (its own :meth:`on_progress
    <nova_qat_migration.policy.base.Policy.on_progress>` included) by the
    driver, which knows how long the job has sent nothing (``idle_s``).

    NOTE(qat-migration): when nothing reaches the destination for
    :data:`DEAD_LINK_S` (link cut, peer hung), post-copy would stop the
    guest here and start it there without its memory: frozen until the
    link returns, lost if it does not. Aborting keeps it running here with
    all of its memory.
    """
    if action.kind != datamodel.ACTION_POST_COPY or idle_s < DEAD_LINK_S:
        return action
    return datamodel.Action(
        datamodel.ACTION_ABORT,
        reason='%s; nothing sent for %.0f s: abort instead of post-copy'
               % (action.reason, idle_s))
