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
"""Pieces the built-in policies share: limits from options and hints."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from nova_qat_migration.policy import base


@dataclasses.dataclass(frozen=True)
class Limits:
    """What the operator and the instance permit for one migration."""

    methods: tuple
    max_downtime_ms: int
    post_copy: bool
    throttle: bool
    max_channels: int
    forced_method: Optional[str] = None
    forced_level: Optional[int] = None
    forced_channels: Optional[int] = None


def limits(conf: Any, facts: base.Facts) -> Limits:
    group = conf.qat_migration
    hints = facts.instance.hints
    methods = tuple(m for m in group.allowed_methods if m != 'none')
    forced = hints.method
    return Limits(
        methods=methods + ('none',),
        max_downtime_ms=hints.max_downtime_ms or group.downtime_ms,
        post_copy=bool(group.permit_post_copy and
                       hints.allow_post_copy is not False),
        throttle=bool(group.permit_auto_converge and
                      hints.allow_throttle is not False),
        # A qat_migration:parallel_connections hint fixes the channel
        # count of multifd plans (within the host's bound).
        max_channels=min(group.max_parallel_connections,
                         hints.parallel_connections or
                         group.max_parallel_connections),
        forced_method=forced,
        forced_level=hints.level,
        forced_channels=hints.parallel_connections)


def default_level(conf: Any, method: str) -> Optional[int]:
    return getattr(conf.qat_migration, '%s_level' % method, None)


def xbzrle_cache_mb(conf: Any, facts: base.Facts) -> Optional[int]:
    """XBZRLE cache sized from the working set and spare memory.

    None when the host cannot spare the minimum useful cache.
    """
    group = conf.qat_migration
    spare = facts.host.mem_free_mb - group.memory_headroom_mb
    working_set = (facts.instance.hints.working_set_mb or
                   facts.instance.memory_mb)
    want = int(working_set * group.xbzrle_cache_ratio)
    size = min(max(want, group.xbzrle_cache_min_mb),
               group.xbzrle_cache_max_mb, facts.instance.memory_mb, spare)
    if size < group.xbzrle_cache_min_mb:
        return None
    return base.pow2_floor(size)


def xbzrle_cache_max_mb(conf: Any, facts: base.Facts) -> int:
    group = conf.qat_migration
    spare = facts.host.mem_free_mb - group.memory_headroom_mb
    return base.pow2_floor(max(1, min(group.xbzrle_cache_max_mb,
                                 facts.instance.memory_mb, spare)))
