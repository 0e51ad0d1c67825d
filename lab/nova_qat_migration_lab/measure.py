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
"""What the lab records about one migration, measured from the outside.

:class:`RunResult` is one run (one JSON line) and how it ended; around
the migration the lab reads the source QEMU's CPU seconds
(:func:`proc_cpu_s`), what both QEMUs wrote to their domain logs
(:func:`log_written`), when the source paused (:class:`SourceWatch`) and
what the guest lost meanwhile (:func:`guest_impact`).
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from typing import Optional

from nova_qat_migration import outcomes


#: The guest's rate "before" the migration is measured over this many
#: seconds before the request: the migration waits until the guest has
#: written that long since the last thing that stopped it (the previous
#: run's memory check, which blocks the dirtier).
BEFORE_WINDOW_S = 3.0
#: libvirt's domain states and paused reasons (libvirt-domain.h), read
#: on the source while the migration runs.
VIR_DOMAIN_PAUSED = 3
VIR_DOMAIN_SHUTOFF = 5
VIR_DOMAIN_PAUSED_MIGRATION = 2
VIR_DOMAIN_PAUSED_POSTCOPY = 12

#: How a lab run ended: the report's own outcomes where the driver's
#: report says it, and the lab's (timeout, rejected, error) where it does
#: not.
OUTCOME_COMPLETED = outcomes.OUTCOME_COMPLETED
OUTCOME_TIMEOUT = 'timeout'       # Nova's completion timeout aborted it
OUTCOME_ABORTED = outcomes.OUTCOME_ABORTED   # the progress timeout
OUTCOME_REJECTED = 'rejected'     # refused before it started
OUTCOME_ERROR = 'error'


#: What QATzip (its ``[Error]``/``[Warning]`` lines name ``qatzip.c``)
#: and qatlib (``Cannot open /dev/vfio``) print to QEMU's stderr each time
#: QATzip looks for a QAT device and falls back to software: two or three
#: lines per multifd packet, on both ends (see ``doc/source/admin/qat.rst``).
QATZIP_FALLBACK_LINE = re.compile(
    r'\(qatzip\.c:\d+\)|Cannot open /dev/vfio')


@dataclasses.dataclass
class RunResult:
    """Everything recorded about one migration (one JSON line)."""

    scenario: str
    plan: str
    repeat: int = 0
    source: str = ''
    dest: str = ''
    link_mbit: int = 0
    outcome: str = OUTCOME_ERROR
    converged: bool = False
    error: str = ''
    #: the driver's own time, from planning to the end of Nova's monitor
    total_s: Optional[float] = None
    #: request to terminal migration record, as the client sees it
    api_s: Optional[float] = None
    #: libvirt's duration of the migration job itself
    job_s: Optional[float] = None
    downtime_ms: Optional[int] = None
    wire_bytes: Optional[int] = None
    memory_total_bytes: Optional[int] = None
    data_processed_bytes: Optional[int] = None
    src_cpu_s: Optional[float] = None
    #: the source domain's ``<emulator>`` (the lab's QEMU)
    emulator: str = ''
    #: what each QEMU wrote to its domain log during the migration:
    #: ``{'source'|'dest': {'lines', 'bytes', 'qatzip_fallback_lines'}}``
    qemu_log: dict = dataclasses.field(default_factory=dict)
    iterations: Optional[int] = None
    integrity: str = 'unknown'
    verdict: str = ''
    verified_on: str = ''
    #: the dirtier's last report on the source's console (pages/s)
    guest_rate: Optional[float] = None
    #: what the guest lost during the migration (see :func:`guest_impact`)
    guest: dict = dataclasses.field(default_factory=dict)
    migration_status: str = ''
    facts: dict = dataclasses.field(default_factory=dict)
    #: the convergence model's prediction for the plan that ran
    prediction: dict = dataclasses.field(default_factory=dict)
    requested_plan: dict = dataclasses.field(default_factory=dict)
    effective_plan: str = ''
    reasons: list = dataclasses.field(default_factory=list)
    notes: list = dataclasses.field(default_factory=list)
    flags: list = dataclasses.field(default_factory=list)
    params: dict = dataclasses.field(default_factory=dict)
    backend: str = ''
    actions: list = dataclasses.field(default_factory=list)
    tracker: dict = dataclasses.field(default_factory=dict)
    compression: dict = dataclasses.field(default_factory=dict)
    commands: list = dataclasses.field(default_factory=list)
    report: dict = dataclasses.field(default_factory=dict)
    started_at: float = 0.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def proc_cpu_s(pid: Optional[int]) -> Optional[float]:
    if not pid:
        return None
    try:
        with open('/proc/%d/stat' % pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf(
            'SC_CLK_TCK')
    except (OSError, IndexError, ValueError):
        return None


def log_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def log_written(path: str, offset: int) -> dict:
    """What was written to the log ``path`` after ``offset`` bytes:
    lines, bytes and QATzip's software-fallback lines. A file shorter than
    ``offset`` was started afresh: counted from its start.
    """
    try:
        with open(path, 'rb') as f:
            f.seek(0, os.SEEK_END)
            if f.tell() < offset:
                offset = 0
            f.seek(offset)
            data = f.read()
    except OSError:
        data = b''
    text = data.decode(errors='replace')
    return {'lines': text.count('\n'), 'bytes': len(data),
            'qatzip_fallback_lines': sum(
                1 for line in text.splitlines()
                if QATZIP_FALLBACK_LINE.search(line))}


def _rate(a, b) -> Optional[float]:
    """Pages/s between two STAT samples, by the host's clock."""
    if a is None or b is None or b[0] - a[0] < 0.5:
        return None
    return (b[2] - a[2]) / (b[0] - a[0])


def guest_impact(samples: list, start: float, end: float,
                 nominal: Optional[float] = None, stat_s: float = 1.0,
                 postcopy_at: Optional[float] = None,
                 paused_at: Optional[float] = None,
                 report: Optional[dict] = None,
                 before_from: Optional[float] = None) -> dict:
    """What the guest lost while it migrated.

    :param samples: the dirtier's ``STAT`` lines as
        ``(host_s, guest_t, written, rate)`` (:class:`guest.StatSample`),
        from every console that was read (the source's, the
        destination's): ``written`` is cumulative and moves with the
        guest's memory, ``host_s`` is when the lab read the line
        (``time.monotonic()``).
    :param start: when the migration was requested (monotonic).
    :param end: when it ended for the guest: the switch-over (the source
        seen paused for it), in post-copy the source gone, else Nova's
        record terminal.
    :param nominal: the scenario's asked rate (pages/s).
    :param stat_s: the dirtier's report interval.
    :param postcopy_at: when the source was first seen paused for
        post-copy (libvirt's ``VIR_DOMAIN_PAUSED_POSTCOPY``).
    :param paused_at: when the source was first seen paused for the
        switch-over (``VIR_DOMAIN_PAUSED_MIGRATION``).
    :param report: the driver's report (``monitor.max_throttle_pct``,
        ``monitor.post_copy``).
    :param before_from: the "before" rate counts samples from this time
        on only (when the guest runs freely again), and at most
        :data:`BEFORE_WINDOW_S` before ``start``.

    The rate during the migration is written pages between the last
    sample read before ``start`` and the last one read before ``end``,
    over the host seconds between them; when no sample came in the last
    ``2 * stat_s + 0.5`` s before ``end`` (the guest stalled, or ran where
    no console was read, e.g. on the destination during post-copy), up
    to the first one read after ``end`` instead. The window is therefore
    the migration's within about one report interval at each end
    (``window_s``, ``window_from_s``/``window_to_s`` relative to
    ``start``). ``vs_before`` and ``lost_s`` (the work the guest did not
    do, in seconds of its pace) compare with ``reference_rate``: the rate
    before, capped at the nominal rate (above it, the dirtier is catching
    up after the previous memory check blocked it).

    Limits: the dirtier is rate-limited, so a throttle (auto-converge)
    shows here only when it leaves the vCPU too little time for the asked
    rate; ``max_throttle_pct`` says how hard it was throttled.
    """
    report = report or {}
    monitor = report.get('monitor') or {}
    out: dict = {
        'nominal_rate': nominal,
        'stat_s': stat_s,
        'samples': len(samples),
        'max_throttle_pct': monitor.get('max_throttle_pct'),
        'post_copy': bool(monitor.get('post_copy')) or postcopy_at
        is not None,
        'postcopy_from_s': (None if postcopy_at is None
                            else round(postcopy_at - start, 2)),
        'postcopy_s': (None if postcopy_at is None
                       else round(max(0.0, end - postcopy_at), 2)),
        'paused_from_s': (None if paused_at is None
                          else round(paused_at - start, 2)),
    }
    samples = sorted(samples, key=lambda x: (x[0], x[2]))
    since = start - BEFORE_WINDOW_S
    if before_from is not None:
        since = max(since, before_from)
    before = [x for x in samples if since <= x[0] <= start]
    at_start = before[-1] if before else None
    if at_start is None:
        earlier = [x for x in samples if x[0] <= start]
        at_start = earlier[-1] if earlier else None
    out['before_rate'] = (_rate(before[0], before[-1]) if len(before) > 1
                          else (before[-1][3] if before else None))
    inside = [x for x in samples if x[0] <= end]
    at_end = inside[-1] if inside else None
    if at_end is None or end - at_end[0] > 2 * stat_s + 0.5:
        after = [x for x in samples if x[0] > end]
        at_end = after[0] if after else at_end
    if at_start is None or at_end is None or at_end[0] <= at_start[0]:
        out['during_rate'] = None
        return out
    window = at_end[0] - at_start[0]
    during = _rate(at_start, at_end)
    out.update({
        'during_rate': during,
        'window_s': round(window, 2),
        'window_from_s': round(at_start[0] - start, 2),
        'window_to_s': round(at_end[0] - start, 2),
        'written': at_end[2] - at_start[2],
        'worst_rate': min((x[3] for x in samples
                           if at_start[0] < x[0] <= at_end[0]),
                          default=None),
    })
    # A rate-limited dirtier catches up on what a memory check blocked (up
    # to a second's worth per tick): "before" above the nominal rate is
    # that catch-up, not the guest's pace.
    ref = out['before_rate']
    if ref and nominal and ref > nominal:
        ref = float(nominal)
    out['reference_rate'] = ref
    if during is not None and ref:
        out['vs_before'] = during / ref
        lost = max(0.0, ref * window - out['written'])
        out['lost_pages'] = int(lost)
        out['lost_s'] = round(lost / ref, 2)
    if during is not None and nominal:
        out['vs_nominal'] = during / nominal
    if postcopy_at is not None:
        pre = [x for x in samples if x[0] <= postcopy_at]
        if pre and at_end[0] > pre[-1][0]:
            out['postcopy_rate'] = _rate(pre[-1], at_end)
    return out


class SourceWatch:
    """The source domain's state while it migrates: when it paused for the
    switch-over, for post-copy, and when it was gone.
    """

    def __init__(self, dom) -> None:
        self.dom = dom
        self.paused_at: Optional[float] = None
        self.postcopy_at: Optional[float] = None
        self.gone_at: Optional[float] = None

    def poll(self) -> bool:
        """Look once; True the first time post-copy is seen."""
        if self.gone_at is not None:
            return False
        now = time.monotonic()
        try:
            state, reason = self.dom.state()[:2]
        except Exception:  # libvirtError: the domain left
            self.gone_at = now
            return False
        if state == VIR_DOMAIN_SHUTOFF:
            self.gone_at = now
        elif state == VIR_DOMAIN_PAUSED:
            if reason == VIR_DOMAIN_PAUSED_POSTCOPY:
                if self.postcopy_at is None:
                    self.postcopy_at = now
                    return True
            elif (reason == VIR_DOMAIN_PAUSED_MIGRATION and
                  self.paused_at is None):
                self.paused_at = now
        return False
