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

import dataclasses
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


# -- page sampling -------------------------------------------------------

PAGE = 4096
_MEMORY_PHYSICAL = 2     # VIR_MEMORY_PHYSICAL
#: Guest-physical RAM below the PCI hole is contiguous from 0 on x86.
_LOW_RAM_LIMIT = 3 * 1024 * base.MIB


@dataclasses.dataclass(frozen=True)
class PageSample:
    """What a sample of guest pages says about the coming migration.

    :param zero_fraction: share of sampled pages that are all zero (QEMU
        sends those as a flag).
    :param compress_ratio: deflate-1 size / size of the non-zero pages
        (multifd zlib/zstd land near it; zstd slightly better).
    :param changed_fraction: share of pages that changed between the two
        reads (``interval`` apart).
    :param xbzrle_friendly: share of changed pages whose change XBZRLE
        encodes in well under a page (small in-page writes).
    """

    pages: int
    zero_fraction: float
    compress_ratio: float
    changed_fraction: float
    xbzrle_friendly: Optional[float]


def _xbzrle_small(old: bytes, new: bytes) -> bool:
    """Whether XBZRLE would send ``new`` as a delta of ``old``.

    XBZRLE encodes runs of equal and different bytes; a page whose
    changed bytes are under a quarter of it encodes comfortably below the
    page size (overflowing pages are sent whole).
    """
    diff = sum(1 for a, b in zip(old, new) if a != b)
    return diff < PAGE // 4


def page_sample(dom: Any, memory_mb: int, pages: int = 128,
                interval: float = 0.5, seed: int = 0,
                ) -> Optional[PageSample]:
    """Read ``pages`` random guest pages twice through libvirt.

    ``virDomainMemoryPeek`` on guest-physical addresses reads the pages
    without stopping the guest. Returns None when libvirt cannot peek
    (other hypervisors, permissions); the policy then uses history.
    """
    import random
    import zlib

    limit = min(memory_mb * base.MIB, _LOW_RAM_LIMIT) // PAGE
    if limit <= 1 or pages <= 0:
        return None
    rng = random.Random(seed or memory_mb)
    addrs = sorted(rng.sample(range(1, int(limit)), min(pages,
                                                        int(limit) - 1)))
    try:
        first = [dom.memoryPeek(a * PAGE, PAGE, _MEMORY_PHYSICAL)
                 for a in addrs]
        time.sleep(interval)
        second = [dom.memoryPeek(a * PAGE, PAGE, _MEMORY_PHYSICAL)
                  for a in addrs]
    except Exception as exc:  # noqa: any libvirt error means "unknown"
        LOG.info('Guest pages not sampled: %s', exc)
        return None
    zero_page = bytes(PAGE)
    nonzero = [p for p in first if p != zero_page]
    ratio = 1.0
    if nonzero:
        blob = b''.join(nonzero)
        ratio = len(zlib.compress(blob, 1)) / len(blob)
    changed = [(a, b) for a, b in zip(first, second) if a != b]
    friendly = None
    if changed:
        friendly = sum(1 for a, b in changed if _xbzrle_small(a, b)) / len(
            changed)
    return PageSample(pages=len(addrs),
                      zero_fraction=(len(first) - len(nonzero)) / len(first),
                      compress_ratio=round(min(1.0, ratio), 3),
                      changed_fraction=len(changed) / len(first),
                      xbzrle_friendly=friendly)


def instance_fields(dom: Any, memory_mb: int, dirty_seconds: int = 1,
                    sample_pages: int = 128) -> dict:
    """``InstanceFacts`` fields measured on a running domain.

    The dirty rate from libvirt's calculation, and the page sample's
    zero share, compressibility and XBZRLE-friendliness; each None when
    it could not be measured.
    """
    fields: dict = {'dirty_rate_mbps': dirty_rate_mbps(dom, dirty_seconds)}
    sample = page_sample(dom, memory_mb, pages=sample_pages) \
        if sample_pages else None
    if sample is not None:
        fields.update(zero_fraction=sample.zero_fraction,
                      compress_ratio=sample.compress_ratio,
                      xbzrle_friendly=sample.xbzrle_friendly)
    return fields
