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
"""A running migration: the :class:`Progress` a policy sees, the
:class:`Action` values it returns.

While a migration runs, the driver hands the policy each job-stats
sample and applies the escalations it asks for (downtime steps, XBZRLE
cache growth, post-copy, abort); these are the two sides of that loop.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

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
