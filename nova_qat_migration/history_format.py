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
"""The migration history file's format: what its bytes may hold.

:mod:`nova_qat_migration.history` keeps one small JSON file per host,
``{"version": 1, "instances": [entry, ...]}``; ``nova-qat-migration
timeline`` reads the same file without the store. Both read it through
this module, which does no I/O and takes no lock: it turns bytes into
checked entries and entries into text.

Reading is forgiving, because the file outlives the process that wrote it
and anything may have happened to it: binary garbage, a JSON list, NaN,
numbers beyond any range or with thousands of digits, nesting deep enough
to exhaust the parser's recursion. Whatever it holds is read as far as it
is valid: each entry is checked field by field against the range a real
migration can produce, and a bad field is dropped (a bad entry entirely)
and named, so the caller can warn and the next write heals the file.
Bytes that are not a history at all raise ``ValueError`` (or
``RecursionError``), for the caller to decide what to do with the file.
"""

from __future__ import annotations

import collections
import json
import math
from typing import Any, Mapping, Optional

from oslo_log import log as logging

from nova_qat_migration import datamodel
from nova_qat_migration import jsontext
from nova_qat_migration import timeline as timeline_mod


LOG = logging.getLogger(__name__)

#: No valid number in the history has more digits than this; a longer one
#: is read as invalid (Python refuses ints of more than 4300 digits, which
#: would cost the whole file).
_MAX_DIGITS = 64
#: Valid entries nest three deep (file, instances, entry); anything nested
#: deeper than this is read as null when the file is too deep to parse.
_MAX_DEPTH = 8
_FORMAT_VERSION = 1
#: A history file larger than this is not read (a bounded store of small
#: entries never grows to it: about 2 KiB per entry at most).
_BYTES_PER_ENTRY = 2048
_MIN_READ_BYTES = 1024 * 1024
#: Entries that keep their last migration's timeline (what
#: ``nova-qat-migration timeline`` draws, up to
#: :data:`~nova_qat_migration.timeline.MAX_BYTES` each): the most recently
#: migrated instances'. An older entry keeps its numbers without it, so
#: the file stays small whatever ``history_max_entries`` is.
TIMELINES_KEPT = 20
#: The entry field holding the timeline.
TIMELINE = 'timeline'

#: Numeric fields of :class:`~nova_qat_migration.datamodel.History` and
#: the range a real migration can produce. Anything outside (NaN,
#: infinity, a negative rate, 1e300) is a corrupt value, not a measurement.
_NUMBERS = {
    'dirty_rate_mbps': (0.0, 1e7),     # MiB/s: 10 TiB/s is no guest
    'wire_mbps': (0.0, 1e7),
    'compression_ratio': (0.0, 1e3),   # wire bytes / RAM bytes
    'xbzrle_hit_ratio': (0.0, 1.0),
    'total_s': (0.0, 1e7),
}
#: Fields kept per instance (``migrations`` is a counter the store
#: maintains itself).
HISTORY_FIELDS = tuple(_NUMBERS) + ('method', 'converged')
#: The guest measurement taken before the last migration (see
#: :class:`~nova_qat_migration.history.Measurement`), kept so the next
#: plan may reuse it; a measurement is replaced whole, never merged with
#: an older one.
MEASURED_FIELDS = {
    'measured_at': (0.0, 1e11),        # seconds since the epoch
    'measured_memory_mb': (1.0, 1e9),
    'measured_dirty_rate_mbps': (0.0, 1e7),
    'measured_zero_fraction': (0.0, 1.0),
    'measured_compress_ratio': (0.0, 1.0),
    'measured_xbzrle_friendly': (0.0, 1.0),
}
#: Every field an entry keeps.
_STORED = HISTORY_FIELDS + tuple(MEASURED_FIELDS)
#: Where an entry's ``migrations`` counter stops.
MAX_MIGRATIONS = 10 ** 9
_MAX_UUID = 255


def _clean_field(name: str, value: Any) -> Any:
    """``value`` if valid for the History field ``name``, else None."""
    if name in _NUMBERS or name in MEASURED_FIELDS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        low, high = _NUMBERS.get(name) or MEASURED_FIELDS[name]
        try:
            number = float(value)
        except OverflowError:   # an int beyond float
            return None
        if not (math.isfinite(number) and low <= number <= high):
            return None
        return number
    if name == 'method':
        known = isinstance(value, str) and value in datamodel.METHODS
        return value if known else None
    if name == 'converged':
        return value if isinstance(value, bool) else None
    return None


class _Invalid:
    """A value read from the file that no field accepts (a number of
    thousands of digits): dropped by :func:`clean_entry`.
    """

    def __repr__(self) -> str:
        return 'invalid'


_INVALID = _Invalid()


def _parse_int(text: str) -> Any:
    if len(text) > _MAX_DIGITS:
        return _INVALID
    return int(text)


def _loads(text: str) -> Any:
    return json.loads(text, parse_int=_parse_int)


def clean_entry(item: Any) -> tuple[Optional[dict], list]:
    """A valid history entry from ``item``, and the fields dropped.

    :returns: ``(entry, dropped)``; ``entry`` is None when ``item`` is not
        an object with a usable ``uuid``.
    """
    if not isinstance(item, dict):
        return None, ['entry is not an object']
    uuid = item.get('uuid')
    if not isinstance(uuid, str) or not 0 < len(uuid) <= _MAX_UUID:
        return None, ['entry without a valid uuid']
    entry: dict = {'uuid': uuid}
    dropped = []
    migrations = item.get('migrations', 0)
    if (isinstance(migrations, int) and not isinstance(migrations, bool) and
            0 <= migrations <= MAX_MIGRATIONS):
        entry['migrations'] = migrations
    else:
        entry['migrations'] = 0
        dropped.append('migrations')
    updated = item.get('updated_at')
    if updated is not None:
        if (isinstance(updated, (int, float)) and
                not isinstance(updated, bool) and
                0 <= updated < 1e11):     # seconds: until the year 5138
            entry['updated_at'] = float(updated)
        else:
            dropped.append('updated_at')
    for name in _STORED:
        if name not in item or item[name] is None:
            continue
        value = _clean_field(name, item[name])
        if value is None:
            dropped.append(name)
        else:
            entry[name] = value
    if item.get(TIMELINE) is not None:
        series = timeline_mod.checked(item[TIMELINE])
        if series is None:
            dropped.append(TIMELINE)
        else:
            entry[TIMELINE] = series
    unknown = set(item) - set(_STORED) - {'uuid', 'migrations',
                                          'updated_at', TIMELINE}
    dropped.extend(sorted(str(k)[:40] for k in unknown))
    return entry, dropped


def clean_values(values: Mapping[str, Any]) -> dict:
    """The ``History`` fields of one migration's report that are valid."""
    out = {}
    for name in _STORED:
        value = values.get(name)
        if value is None:
            continue
        value = _clean_field(name, value)
        if value is None:
            LOG.warning('Migration history: %(name)s=%(value)r is not a '
                        'valid value, not recorded.',
                        {'name': name, 'value': values.get(name)})
        else:
            out[name] = value
    if values.get(TIMELINE) is not None:
        series = timeline_mod.checked(values[TIMELINE])
        if series is None:
            LOG.warning('Migration history: the timeline is not valid, not '
                        'recorded.')
        else:
            out[TIMELINE] = series
    return out


def read_limit(max_entries: int) -> int:
    """The largest history file read for ``max_entries`` entries."""
    return (max(_MIN_READ_BYTES, max_entries * _BYTES_PER_ENTRY) +
            TIMELINES_KEPT * timeline_mod.MAX_BYTES)


def parse(raw: bytes) -> list:
    """The entries (not yet checked) of a history file's bytes.

    :raises ValueError: the bytes are not a history (not JSON, or not
        ``{"instances": [...]}``).
    :raises RecursionError: nesting too deep even once pruned.
    """
    # A byte that is not UTF-8 costs the string it is in.
    text = raw.decode('utf-8', errors='replace')
    try:
        data = _loads(text)
    except RecursionError:
        data = _loads(jsontext.prune(text, _MAX_DEPTH))
    if not isinstance(data, dict):
        raise ValueError('not a JSON object')
    items = data.get('instances')
    if not isinstance(items, list):
        raise ValueError('instances is not a list')
    return items


def drop_old_timelines(entries: collections.OrderedDict) -> None:
    """Only the :data:`TIMELINES_KEPT` newest entries keep a timeline."""
    kept = 0
    for entry in reversed(entries.values()):
        if TIMELINE in entry:
            kept += 1
            if kept > TIMELINES_KEPT:
                del entry[TIMELINE]


def dumps(entries: list) -> str:
    """The text of a history file holding ``entries``.

    :raises ValueError: for a value JSON cannot hold (NaN, infinity),
        which the checks on the way in keep out: a bug.
    """
    return json.dumps({'version': _FORMAT_VERSION, 'instances': entries},
                      allow_nan=False)
