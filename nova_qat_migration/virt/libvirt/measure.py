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
"""Measurements a plan is based on: host load and the guest's dirty rate.

Measured, not assumed: the adaptive policy's choices are only as good as
these numbers. Every function degrades to "unknown" rather than raising.
"""

from __future__ import annotations

import os
import time
from typing import Any, Optional

from oslo_log import log as logging

from nova_qat_migration.policy import base

LOG = logging.getLogger(__name__)

# libvirt's stable values (see virDomainDirtyRateStatus / stats groups).
_STATS_DIRTYRATE = 1 << 9
_DIRTYRATE_MEASURED = 2


def _cpu_times(proc_stat: str) -> tuple[int, int]:
    """(idle, total) jiffies from the ``cpu`` line of /proc/stat."""
    with open(proc_stat) as f:
        fields = f.readline().split()[1:]
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle+iowait
    return idle, sum(values[:8])


def _mem_available_mb(meminfo: str) -> int:
    with open(meminfo) as f:
        for line in f:
            if line.startswith('MemAvailable:'):
                return int(line.split()[1]) // 1024
    return 0


def host_load(interval: float = 0.2, proc: str = '/proc') -> base.HostLoad:
    """CPU idle (percent, over ``interval`` seconds) and available memory."""
    stat = os.path.join(proc, 'stat')
    try:
        idle0, total0 = _cpu_times(stat)
        time.sleep(interval)
        idle1, total1 = _cpu_times(stat)
        span = total1 - total0
        idle_pct = 100.0 * (idle1 - idle0) / span if span > 0 else 100.0
        mem = _mem_available_mb(os.path.join(proc, 'meminfo'))
    except (OSError, ValueError, IndexError) as exc:
        LOG.warning('Could not read host load: %s', exc)
        return base.HostLoad(cpus=os.cpu_count() or 1, cpu_idle_pct=0.0,
                             mem_free_mb=0)
    return base.HostLoad(cpus=os.cpu_count() or 1,
                         cpu_idle_pct=round(max(0.0, min(100.0, idle_pct)),
                                            1),
                         mem_free_mb=mem)


def dirty_rate_mbps(dom: Any, seconds: int = 1,
                    timeout: Optional[float] = None) -> Optional[float]:
    """The guest's dirty rate (MiB/s) from libvirt's dirty-rate calculation.

    Uses ``virDomainStartDirtyRateCalc`` (page sampling, works under TCG
    and KVM) and polls the ``dirtyrate`` stats group until measured.
    Returns None when libvirt or QEMU cannot measure it.
    """
    if seconds <= 0:
        return None
    try:
        dom.startDirtyRateCalc(seconds, 0)
        conn = dom.connect()
        deadline = time.monotonic() + (timeout or seconds + 5.0)
        time.sleep(seconds)
        while time.monotonic() < deadline:
            stats = conn.domainListGetStats([dom], _STATS_DIRTYRATE)
            record = stats[0][1] if stats else {}
            if record.get('dirtyrate.calc_status') == _DIRTYRATE_MEASURED:
                return float(record.get('dirtyrate.megabytes_per_second', 0))
            time.sleep(0.2)
    except Exception as exc:  # noqa: any libvirt error means "unknown"
        LOG.info('Dirty rate not measured: %s', exc)
    return None
