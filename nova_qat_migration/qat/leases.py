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
"""Leases on the QAT endpoints kept for live migrations.

``[qat_migration] qat_endpoints_for_migration`` endpoints are reported to
Placement as ``reserved``, so instances cannot claim them; this pool makes
sure concurrent migrations do not oversubscribe them either. A migration
that finds no free lease is planned without QAT (the plan says why).

Nova 34 runs nova-compute with native threads, and migrations run in their
own threads: the pool is guarded by a lock, and ``lease()`` is a context
manager so the lease returns on every exit path, exceptions included.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from typing import Iterator, Optional, Sequence


@dataclasses.dataclass(frozen=True)
class Lease:
    """One migration's right to use a QAT endpoint.

    :param slot: index of the slot taken, unique among held leases.
    :param pf_address: the PF whose reserved endpoint the slot stands for
        (None when the pool was sized by a bare count).
    """

    instance_uuid: str
    slot: int
    pf_address: Optional[str]
    acquired_at: float


class LeasePool:
    """A fixed set of slots, resized when the reserved endpoints change.

    Shrinking never revokes a held lease: the pool is over-committed until
    enough leases are returned, and hands out none meanwhile.
    """

    def __init__(self, slots: Sequence[Optional[str]] | int = 0) -> None:
        self._lock = threading.Lock()
        self._slots: list[Optional[str]] = []
        self._held: dict[int, Lease] = {}
        self.resize(slots)

    def resize(self, slots: Sequence[Optional[str]] | int) -> None:
        """Set the slots: a count, or one PF address per reserved endpoint.

        Held leases whose slot index no longer exists stay held; their
        slots are simply not handed out again once returned.
        """
        if isinstance(slots, int):
            new: list[Optional[str]] = [None] * max(slots, 0)
        else:
            new = list(slots)
        with self._lock:
            self._slots = new

    @property
    def capacity(self) -> int:
        with self._lock:
            return len(self._slots)

    @property
    def in_use(self) -> int:
        with self._lock:
            return len(self._held)

    @property
    def free(self) -> int:
        with self._lock:
            return self._free_locked()

    def _free_locked(self) -> int:
        # Leases held on slots removed by a shrink still count.
        return max(len(self._slots) - len(self._held), 0)

    def held(self) -> list[Lease]:
        with self._lock:
            return sorted(self._held.values(), key=lambda x: x.slot)

    def acquire(self, instance_uuid: str) -> Optional[Lease]:
        """Take a free slot, or None. Prefer :meth:`lease`."""
        with self._lock:
            if self._free_locked() <= 0:
                return None
            for i, pf in enumerate(self._slots):
                if i not in self._held:
                    lease = Lease(instance_uuid, i, pf, time.monotonic())
                    self._held[i] = lease
                    return lease
            return None

    def release(self, lease: Optional[Lease]) -> None:
        """Return a lease; returning None or a stale lease is harmless."""
        if lease is None:
            return
        with self._lock:
            if self._held.get(lease.slot) is lease:
                del self._held[lease.slot]

    @contextlib.contextmanager
    def lease(self, instance_uuid: str) -> Iterator[Optional[Lease]]:
        """``with pool.lease(uuid) as lease:`` -- None when none is free.

        The lease is returned however the block exits.
        """
        lease = self.acquire(instance_uuid)
        try:
            yield lease
        finally:
            self.release(lease)
