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
from typing import Any, Callable, Optional

from oslo_log import log as logging

from nova_qat_migration import datamodel


LOG = logging.getLogger(__name__)

# libvirt's stable values (see virDomainDirtyRateStatus / stats groups).
_STATS_DIRTYRATE = 1 << 9
_DIRTYRATE_MEASURED = 2
#: How often the result of a dirty-rate calculation is looked for once its
#: window has passed: QEMU has it a few ms after the window, and every
#: poll interval waited on top of that delays the migration.
POLL_S = 0.05

#: The first window (seconds) of a longer dirty-rate measurement, and the
#: rate (MiB/s) at or below which it shows a quiet guest: the rest of the
#: window is then skipped (:func:`dirty_rate_quiet_first`). libvirt's
#: calculation takes whole seconds and reports whole MiB/s.
QUIET_WINDOW_S = 1
QUIET_MBPS = 1.0


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


def host_load(interval: float = 0.2,
              proc: str = '/proc') -> datamodel.HostLoad:
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
        return datamodel.HostLoad(cpus=os.cpu_count() or 1, cpu_idle_pct=0.0,
                                  mem_free_mb=0)
    idle_pct = round(max(0.0, min(100.0, idle_pct)), 1)
    return datamodel.HostLoad(cpus=os.cpu_count() or 1,
                              cpu_idle_pct=idle_pct,
                              mem_free_mb=mem)


def dirty_rate_mbps(dom: Any, seconds: int = 1,
                    timeout: Optional[float] = None,
                    during: Optional[Callable[[], None]] = None,
                    ) -> Optional[float]:
    """The guest's dirty rate (MiB/s) from libvirt's dirty-rate calculation.

    Uses ``virDomainStartDirtyRateCalc`` (page sampling, works under TCG
    and KVM) and polls the ``dirtyrate`` stats group until measured.
    Returns None when libvirt or QEMU cannot measure it.

    :param during: called once while QEMU measures (e.g. the page sample),
        so that both cost one measuring window instead of two; called
        anyway when the dirty rate cannot be measured.
    """
    pending = [during] if during is not None else []

    def run_during() -> None:
        while pending:
            pending.pop()()

    if seconds <= 0:
        run_during()
        return None
    try:
        dom.startDirtyRateCalc(seconds, 0)
        conn = dom.connect()
        started = time.monotonic()
        run_during()
        now = time.monotonic()
        deadline = max(started + (timeout or seconds + 5.0), now + 1.0)
        time.sleep(max(0.0, seconds - (now - started)))
        while time.monotonic() < deadline:
            stats = conn.domainListGetStats([dom], _STATS_DIRTYRATE)
            record = stats[0][1] if stats else {}
            if record.get('dirtyrate.calc_status') == _DIRTYRATE_MEASURED:
                return float(record.get('dirtyrate.megabytes_per_second', 0))
            time.sleep(POLL_S)
    except Exception as exc:  # noqa: any libvirt error means "unknown"
        LOG.info('Dirty rate not measured: %s', exc)
    run_during()
    return None


def dirty_rate_quiet_first(dom: Any, seconds: int,
                           during: Optional[Callable[[], None]] = None,
                           ) -> tuple[Optional[float], bool]:
    """The dirty rate over ``seconds``, ended early for a quiet guest.

    A window longer than :data:`QUIET_WINDOW_S` is measured as a first
    window of that length, then the rest. A first window reading at most
    :data:`QUIET_MBPS` ends the measurement: a guest that wrote (next to)
    nothing for a second has no dirty rate worth waiting for, however long
    the window asked. Otherwise the two windows' rates are averaged by
    their lengths, so a busy guest costs what it did before.

    :param during: as for :func:`dirty_rate_mbps`, in the first window.
    :returns: ``(MiB/s or None, ended early)``.
    """
    if seconds <= QUIET_WINDOW_S:
        return dirty_rate_mbps(dom, seconds, during=during), False
    first = dirty_rate_mbps(dom, QUIET_WINDOW_S, during=during)
    if first is None:
        # Not measurable: a second window would not be either.
        return None, False
    if first <= QUIET_MBPS:
        return first, True
    rest_s = seconds - QUIET_WINDOW_S
    rest = dirty_rate_mbps(dom, rest_s)
    if rest is None:
        return first, False
    return (first * QUIET_WINDOW_S + rest * rest_s) / seconds, False


# -- page sampling -------------------------------------------------------

PAGE = 4096
_MEMORY_PHYSICAL = 2     # VIR_MEMORY_PHYSICAL
#: Guest-physical RAM below the PCI hole is contiguous from 0 on x86.
_LOW_RAM_LIMIT = 3 * 1024 * datamodel.MIB


@dataclasses.dataclass(frozen=True)
class PageSample:
    """What a sample of guest pages says about the coming migration.

    :param zero_fraction: share of sampled pages that are all zero (QEMU
        sends those as a flag).
    :param compress_ratio: deflate-1 size / size of the non-zero pages
        (multifd zlib/zstd land near it; zstd slightly better).
    :param changed_fraction: share of pages that changed between the two
        reads (``interval`` apart).
    :param xbzrle_friendly: share of the bytes of changed pages that
        XBZRLE saves by sending a delta (1.0: tiny in-page writes, 0.0: the
        whole page rewritten).
    """

    pages: int
    zero_fraction: float
    compress_ratio: float
    changed_fraction: float
    xbzrle_friendly: Optional[float]


def xbzrle_cost(old: bytes, new: bytes) -> float:
    """Wire bytes per page byte XBZRLE needs to send ``new`` after ``old``.

    XBZRLE encodes the XOR of the two pages as alternating runs of
    unchanged and changed bytes: a length for each run (ULEB128) plus the
    changed bytes. A delta that would not fit in a page overflows and the
    page is sent whole (cost 1.0).
    """
    size = 0
    i = 0
    n = min(len(old), len(new))
    while i < n:
        start = i
        while i < n and old[i] == new[i]:
            i += 1
        zrun = i - start
        start = i
        while i < n and old[i] != new[i]:
            i += 1
        nzrun = i - start
        if nzrun == 0:
            break
        size += (1 if zrun < 128 else 2) + (1 if nzrun < 128 else 2) + nzrun
        if size >= n:
            return 1.0
    return size / float(n or 1)


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

    limit = min(memory_mb * datamodel.MIB, _LOW_RAM_LIMIT) // PAGE
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
        # Share of the re-sent bytes XBZRLE saves on pages that changed.
        friendly = 1.0 - sum(xbzrle_cost(a, b) for a, b in changed) / len(
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
    it could not be measured. The page sample is taken while QEMU
    measures the dirty rate: the two cost one window. ``measurement`` is
    ``quiet`` when a quiet guest ended a longer window early
    (:func:`dirty_rate_quiet_first`), ``measured`` otherwise, and
    ``measured_at`` when the measurement started.
    """
    samples: list = []

    def sample() -> None:
        if sample_pages:
            samples.append(page_sample(dom, memory_mb, pages=sample_pages))

    started = time.time()
    rate, quiet = dirty_rate_quiet_first(dom, dirty_seconds, during=sample)
    fields: dict = {'dirty_rate_mbps': rate,
                    'measurement': 'quiet' if quiet else 'measured',
                    'measured_at': started}
    found = samples[0] if samples else None
    if found is not None:
        fields.update(zero_fraction=found.zero_fraction,
                      compress_ratio=found.compress_ratio,
                      xbzrle_friendly=found.xbzrle_friendly)
    return fields
