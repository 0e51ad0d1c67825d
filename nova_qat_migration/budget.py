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
"""What the migrations in flight from this host hold.

Concurrent live migrations (``[DEFAULT] max_concurrent_live_migrations``)
share the source's link, its idle cores (multifd zlib/zstd compressors),
its spare memory (XBZRLE caches) and its QAT endpoints. The driver owns
one :class:`HostBudget`: each plan is made against its
:meth:`~HostBudget.snapshot` (``Facts.in_flight``), the migration's
:class:`Share` is reserved before the next plan is made, and released when
the migration ends. What a finished migration frees is visible to the next
plan at once, and its XBZRLE memory goes to running migrations whose cache
ceiling it had kept low (:meth:`~HostBudget.xbzrle_ceiling`).
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from nova_qat_migration import datamodel
from nova_qat_migration.policy import common


@dataclasses.dataclass(frozen=True)
class Share:
    """What one migration holds.

    :param link_share: the share of the link it was planned with.
    :param cores: idle cores its compressors were planned on.
    :param xbzrle_mb: MiB its XBZRLE cache may grow to.
    :param xbzrle_want_mb: the ceiling it would have had alone.
    :param qat_leases: QAT leases it holds.
    """

    link_share: float = 1.0
    cores: float = 0.0
    xbzrle_mb: int = 0
    xbzrle_want_mb: int = 0
    qat_leases: int = 0


def share_of(conf: Any, facts: datamodel.Facts, plan: datamodel.Plan) -> Share:
    """The share ``plan`` takes, planned with ``facts``. Pure."""
    cores = 0.0
    if plan.method in ('zlib', 'zstd'):
        # The model runs one compressor per channel on the idle cores.
        cores = min(float(plan.parallel_connections),
                    common.idle_cores(facts))
    elif plan.method == 'mt' and not plan.qat_lease:
        cores = min(float(plan.mt_threads or 1), common.idle_cores(facts))
    xbzrle = want = 0
    if plan.method == 'xbzrle':
        xbzrle = max(plan.xbzrle_cache_max_mb or 0,
                     plan.xbzrle_cache_mb or 0)
        alone = dataclasses.replace(facts, in_flight=datamodel.InFlight())
        want = max(xbzrle, common.xbzrle_cache_max_mb(conf, alone))
    return Share(link_share=facts.in_flight.link_share, cores=cores,
                 xbzrle_mb=xbzrle, xbzrle_want_mb=want,
                 qat_leases=1 if plan.qat_lease else 0)


class HostBudget:
    """The shares of this host's migrations in flight. Thread-safe.

    Keyed by instance UUID: an instance has at most one live migration.
    """

    def __init__(self, conf: Any) -> None:
        self._conf = conf
        self._lock = threading.Lock()
        self._shares: dict[str, Share] = {}

    def snapshot(self) -> datamodel.InFlight:
        """What the migrations in flight hold, for the next plan."""
        with self._lock:
            shares = list(self._shares.values())
        return datamodel.InFlight(
            migrations=len(shares),
            # NOTE(qat-migration): TCP shares a bottleneck about equally
            # between connections' owners; a migration that finishes gives
            # its part back to the others without anyone asking.
            link_share=1.0 / (len(shares) + 1),
            cores_held=sum(s.cores for s in shares),
            xbzrle_mb_held=sum(s.xbzrle_mb for s in shares),
            qat_leases_held=sum(s.qat_leases for s in shares))

    def reserve(self, session: Any) -> Share:
        """Hold the share of ``session``'s plan (``call.plan``)."""
        share = share_of(self._conf, session.facts, session.call.plan)
        with self._lock:
            self._shares[session.instance_uuid] = share
        return share

    def release(self, session: Any) -> None:
        """Free ``session``'s share; running caches may grow into it."""
        with self._lock:
            share = self._shares.pop(session.instance_uuid, None)
            if share is None:
                return
            freed = share.xbzrle_mb
            for uuid, other in list(self._shares.items()):
                if freed <= 0:
                    break
                if other.xbzrle_mb >= other.xbzrle_want_mb:
                    continue
                # QEMU wants a power of two.
                grown = datamodel.pow2_floor(min(other.xbzrle_want_mb,
                                                 other.xbzrle_mb + freed))
                if grown > other.xbzrle_mb:
                    freed -= grown - other.xbzrle_mb
                    self._shares[uuid] = dataclasses.replace(
                        other, xbzrle_mb=grown)

    def xbzrle_ceiling(self, instance_uuid: str) -> int:
        """The MiB the XBZRLE cache of a migration may grow to (0: none)."""
        with self._lock:
            share = self._shares.get(instance_uuid)
            return share.xbzrle_mb if share is not None else 0

    def shares(self) -> dict:
        """A copy of the shares held, by instance UUID."""
        with self._lock:
            return dict(self._shares)
