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
"""The convergence model's machine constants (:class:`Calibration`).

Kept apart from the facts and the plan: they are not measured per
migration but fitted once per kind of machine (the lab's, or the
operator's through ``[qat_migration] model_calibration``), and loaded
from a file whose every value is checked against :meth:`Calibration.ranges`.
"""

from __future__ import annotations

import dataclasses


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
