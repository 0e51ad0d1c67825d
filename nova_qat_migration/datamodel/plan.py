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
"""What a policy decides: the :class:`Plan` of one migration.

A plan is a wish in the method vocabulary
(:mod:`~nova_qat_migration.datamodel.vocabulary`): what to compress with,
how many channels, the downtime target, throttling and post-copy, and
why. The translation to libvirt may degrade it; the downtime headroom a
plan keeps is defined here because QEMU is handed the plan's limit, not
the operator's target.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from nova_qat_migration.datamodel import vocabulary

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
        return (self.parallel_connections > 1 or
                self.method in vocabulary.MULTIFD_METHODS)

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
