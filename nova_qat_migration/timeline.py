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
"""What one migration did over time: the data behind
``nova-qat-migration timeline``.

The report says how a migration ended; when it was slow, an operator
wants to see *why*: whether the data left to send fell pass after pass
as the model predicted, or the guest dirtied memory faster than the link
carried it, the XBZRLE cache missed, a throttle rose without effect. So
the driver keeps, per migration:

* a :class:`Series` of libvirt's job stats as the monitor saw them (Nova
  polls every 0.5 s; every poll is kept while at most
  :data:`MAX_SAMPLES` are, then every other one, and so on, so a long
  migration stays evenly sampled in bounded memory);
* the actions taken, with their time: Nova's downtime steps as scaled for
  QEMU, the escalation's downtime steps, XBZRLE cache growth, post-copy
  and abort, and QEMU's own auto-converge throttle changes;
* the model's predicted remaining data for the plan that ran.

:func:`build` turns them, with the migration's report, into one compact
strict-JSON dict that the migration history keeps with the instance's
entry (:mod:`nova_qat_migration.history`); :func:`clean` checks such a
dict read back from the file. Pure data: no libvirt, no I/O, no drawing.
"""

from __future__ import annotations

import bisect
import json
import math
import time
from typing import Any, Iterable, Mapping, Optional, Sequence

from nova_qat_migration import datamodel

#: Layout of a stored timeline; another value is not read.
TIMELINE_VERSION = 1
#: Samples kept per migration (about 1 KiB of JSON per 20 samples).
MAX_SAMPLES = 600
#: Nova's monitor polls every 0.5 s: samples closer than this are not kept.
SAMPLE_INTERVAL_S = 0.5
#: Actions kept per migration; a post-copy switch or an abort is always
#: kept.
MAX_EVENTS = 100
#: Corners of the predicted line kept (the model stops at 200 passes:
#: two corners each).
MAX_PREDICTED = 512
#: Characters kept of a reason or any other text.
MAX_TEXT = 200
#: A stored timeline's largest JSON size, bounds included (the history
#: reads no file larger than its entries and timelines can make it).
MAX_BYTES = 128 * 1024

#: One sample's values, in this order.
FIELDS = ('t', 'remaining_mb', 'processed_mb', 'dirty_mbps', 'iteration',
          'throttle_pct', 'xbzrle_hit', 'predicted_mb')
#: QEMU raised or lowered its auto-converge throttle (not an action of
#: the driver's, but one the timeline marks).
EVENT_THROTTLE = 'throttle'
#: Events that happen once per migration (a second report of one, e.g.
#: Nova's switch and the escalation's reason for it, is merged).
_ONCE = frozenset({datamodel.ACTION_POST_COPY, datamodel.ACTION_ABORT})
#: Digits kept of each field (None: an integer).
_DIGITS = (1, 1, 1, 1, None, None, 3, 1)
#: No stored number is larger than this (an exbibyte in MiB).
_MAX_NUMBER = 1e12
#: Text fields of a stored timeline.
_TEXTS = ('instance', 'name', 'display_name', 'host', 'outcome', 'policy',
          'plan', 'requested', 'method', 'prediction')
#: Numeric fields of a stored timeline, with their digits (None: an
#: integer).
_NUMBERS = {'started_at': 3, 'total_s': 3, 'job_s': 3, 'downtime_ms': 1,
            'memory_mb': 1, 'link_mbps': 1, 'interval_s': 3,
            'samples_seen': None, 'events_dropped': None,
            'predicted_total_s': 3, 'predicted_downtime_ms': 1,
            'predicted_rounds': None}
#: Every key of a stored timeline.
_KEYS = frozenset(_TEXTS) | frozenset(_NUMBERS) | {
    'version', 'fields', 'samples', 'events', 'predicted'}


def _finite(value: Any) -> Optional[float]:
    """``value`` as a float within the stored range, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    if not math.isfinite(number) or abs(number) > _MAX_NUMBER:
        return None
    return number


def _round(value: Any, digits: Optional[int]) -> Any:
    number = _finite(value)
    if number is None:
        return None
    return int(round(number)) if digits is None else round(number, digits)


def _text(value: Any) -> Optional[str]:
    return value[:MAX_TEXT] if isinstance(value, str) else None


def _stat(stats: Mapping[str, Any], key: str) -> float:
    return _finite(stats.get(key)) or 0.0


class Series:
    """The samples and actions of one running migration.

    Fed from the monitor loop (by the progress tracker) and cheap there:
    one list append per kept sample, a halving of the list when it is
    full. Not thread-safe, like the tracker that owns it.
    """

    def __init__(self, max_samples: int = MAX_SAMPLES,
                 interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self.max_samples = max(2, int(max_samples))
        #: samples closer than this are not kept (doubles when full)
        self.interval_s = interval_s
        #: ``[t, remaining, processed, dirty, iteration, throttle, hit]``
        self.rows: list = []
        #: ``[t, kind, value, reason]``
        self.events: list = []
        self.events_dropped = 0
        #: job stats seen (kept or not)
        self.seen = 0
        #: when the last sample was taken (job seconds): events' time
        self.last_t = 0.0
        self._last_row: Optional[list] = None
        self._throttle = 0
        #: XBZRLE (pages, misses) counters at the last kept sample
        self._xbzrle: Optional[tuple] = None

    def add(self, progress: datamodel.Progress,
            stats: Mapping[str, Any]) -> None:
        """One job-stats sample (``progress`` as the tracker made it)."""
        self.seen += 1
        t = progress.elapsed_s
        self.last_t = t
        if progress.throttle_pct != self._throttle:
            self._throttle = progress.throttle_pct
            self.event(EVENT_THROTTLE, progress.throttle_pct,
                       "QEMU's auto-converge")
        row = [t, progress.remaining_mb + progress.disk_remaining_mb,
               (_stat(stats, 'memory_processed') +
                _stat(stats, 'disk_processed')) / datamodel.MIB,
               progress.dirty_rate_mbps, progress.iteration,
               progress.throttle_pct, stats]
        if self.rows and t < self.rows[-1][0] + self.interval_s:
            # Not kept, unless it turns out to be the last one.
            self._last_row = row
            return
        self._keep(row)

    def _keep(self, row: list) -> None:
        stats = row.pop()
        row.append(self._hit_rate(stats))
        self._last_row = None
        self.rows.append(row)
        if len(self.rows) > self.max_samples:
            # Every other sample: still even, half as dense.
            self.rows = self.rows[::2]
            self.interval_s *= 2

    def _hit_rate(self, stats: Mapping[str, Any]) -> Optional[float]:
        """XBZRLE cache hits since the last kept sample, of the pages
        looked up (None without XBZRLE or without a lookup).
        """
        if 'compression_pages' not in stats:
            return None
        counters = (_stat(stats, 'compression_pages'),
                    _stat(stats, 'compression_cache_misses'))
        base, self._xbzrle = self._xbzrle, counters
        if base is None:
            return None
        hits = counters[0] - base[0]
        looked_up = hits + counters[1] - base[1]
        if looked_up <= 0 or hits < 0:
            return None
        return hits / looked_up

    def event(self, kind: str, value: Any = None, reason: str = '',
              t: Optional[float] = None) -> None:
        """An action taken at ``t`` (default: the last sample's time)."""
        t = self.last_t if t is None else t
        if kind in _ONCE:
            for event in self.events:
                if event[1] == kind:
                    # Nova's switch and the escalation that asked for it.
                    event[3] = event[3] or reason
                    return
        elif len(self.events) >= MAX_EVENTS:
            self.events_dropped += 1
            return
        self.events.append([t, kind, value, reason])

    def finish(self) -> None:
        """Keep the last sample seen (the end of the migration)."""
        if self._last_row is not None:
            self._keep(self._last_row)


def predicted_at(points: Sequence[Sequence[float]],
                 t: float) -> Optional[float]:
    """The predicted remaining MiB at ``t`` from the model's corners.

    Before the first corner, the first value; between corners, on the
    line joining them (at a jump, the value after it); after the last,
    its value if the prediction ended with nothing left (it converged),
    else None (the model gave up: nothing predicted).
    """
    if not points:
        return None
    times = [p[0] for p in points]
    i = bisect.bisect_right(times, t)
    if i == 0:
        return points[0][1]
    if i == len(points):
        last = points[-1][1]
        return last if last == 0 else None
    (t0, v0), (t1, v1) = points[i - 1], points[i]
    if t1 <= t0:
        return v1
    return v0 + (v1 - v0) * (t - t0) / (t1 - t0)


def build(series: Series, record: Mapping[str, Any],
          predicted: Iterable[Sequence[float]] = (),
          display_name: str = '') -> dict:
    """The stored timeline of one finished migration.

    :param record: the migration's report (:func:`~nova_qat_migration.
        report.build`): outcome, plan, downtime, prediction.
    :param predicted: the model's ``(seconds, MiB)`` corners for the plan
        that ran (:func:`~nova_qat_migration.policy.model.predict`).
    """
    series.finish()
    points = [[p[0], p[1]] for p in predicted][:MAX_PREDICTED]
    prediction = record.get('prediction') or {}
    facts = record.get('facts') or {}
    total = _finite(record.get('memory_total_bytes'))
    rows = [row + [predicted_at(points, row[0])] for row in series.rows]
    total_s = _finite(record.get('total_s')) or 0.0
    data = {
        'version': TIMELINE_VERSION,
        'instance': record.get('instance'),
        'name': record.get('name'),
        'display_name': display_name,
        'host': record.get('host'),
        'outcome': record.get('outcome'),
        'policy': record.get('policy'),
        'plan': record.get('plan'),
        'requested': record.get('requested'),
        'method': record.get('method'),
        'started_at': time.time() - total_s,
        'total_s': total_s,
        'job_s': record.get('job_s'),
        'downtime_ms': record.get('downtime_ms'),
        'memory_mb': (total / datamodel.MIB if total else
                      facts.get('memory_mb')),
        'link_mbps': facts.get('link_mbps'),
        'prediction': prediction.get('summary'),
        'predicted_total_s': prediction.get('total_s'),
        'predicted_downtime_ms': prediction.get('downtime_ms'),
        'predicted_rounds': prediction.get('rounds'),
        'interval_s': series.interval_s,
        'samples_seen': series.seen,
        'events_dropped': series.events_dropped,
        'fields': list(FIELDS),
        'samples': rows,
        'events': [{'t': t, 'kind': kind, 'value': value,
                    'reason': reason}
                   for t, kind, value, reason in series.events],
        'predicted': points,
    }
    return clean(data) or {}


def checked(data: Any) -> Optional[dict]:
    """``data`` as it is when it can be stored as it is, else
    :func:`clean` of it.

    The cheap check the history makes of every timeline it reads (a few
    dozen of them at every read of the file): the layout, strict JSON and
    the size. What reads a timeline's values (the command) cleans it.
    """
    if (isinstance(data, dict) and data.get('version') == TIMELINE_VERSION
            and data.get('fields') == list(FIELDS) and
            set(data) <= _KEYS and
            isinstance(data.get('samples'), list) and
            len(data['samples']) <= MAX_SAMPLES):
        try:
            if len(json.dumps(data, allow_nan=False)) <= MAX_BYTES:
                return data
        except (TypeError, ValueError, RecursionError):
            pass
    return clean(data)


def clean(data: Any) -> Optional[dict]:
    """``data`` as a valid stored timeline, or None if it is none.

    Whatever a history file holds: numbers are finite, rounded and within
    range (a bad one is None), texts and lists bounded, unknown keys
    dropped. So a timeline read back can be written again as strict JSON
    and never grows past :data:`MAX_BYTES`.
    """
    if not isinstance(data, dict) or data.get('version') != \
            TIMELINE_VERSION or data.get('fields') != list(FIELDS):
        return None
    samples = data.get('samples')
    if not isinstance(samples, list):
        return None
    out: dict = {'version': TIMELINE_VERSION, 'fields': list(FIELDS)}
    for name in _TEXTS:
        value = _text(data.get(name))
        if value is not None:
            out[name] = value
    for name, digits in _NUMBERS.items():
        value = _round(data.get(name), digits)
        if value is not None:
            out[name] = value
    rows = []
    for row in samples[-MAX_SAMPLES:]:
        if not isinstance(row, list) or len(row) != len(FIELDS):
            continue
        row = [_round(v, d) for v, d in zip(row, _DIGITS)]
        if row[0] is not None:
            rows.append(row)
    out['samples'] = rows
    events = []
    for event in (data.get('events') or [])[:MAX_EVENTS + len(_ONCE)]:
        if not isinstance(event, dict):
            continue
        t, kind = _round(event.get('t'), 1), _text(event.get('kind'))
        if t is None or not kind:
            continue
        events.append({'t': t, 'kind': kind[:32],
                       'value': _round(event.get('value'), 1),
                       'reason': _text(event.get('reason')) or ''})
    out['events'] = events
    points = []
    predicted = data.get('predicted')
    for point in (predicted if isinstance(predicted, list)
                  else [])[:MAX_PREDICTED]:
        if isinstance(point, list) and len(point) == 2:
            t, mb = _round(point[0], 2), _round(point[1], 1)
            if t is not None and mb is not None:
                points.append([t, mb])
    out['predicted'] = points
    # Only numbers near the range's end or texts of escaped characters
    # come near the bound: halve those until they fit.
    while len(json.dumps(out)) > MAX_BYTES:
        if len(out['samples']) < 2 and not out['events']:
            return None
        out['samples'] = out['samples'][::2]
        out['events'] = out['events'][:len(out['events']) // 2]
    return out
