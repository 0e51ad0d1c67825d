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
"""Per-host memory of past migrations, one entry per instance.

The adaptive policy plans better when it knows how the instance behaved
last time (dirty rate, compressibility, whether it converged). The store is
one small JSON file under ``[qat_migration] state_path``:

* bounded: at most ``history_max_entries`` instances, least recently
  migrated dropped first;
* thread-safe: concurrent migrations record through one lock;
* crash-safe: written to a temporary file and renamed over the old one;
* forgiving: a missing, unreadable or corrupt file means "no history" (a
  warning is logged), never a failed migration.
"""

from __future__ import annotations

import collections
import json
import os
import tempfile
import threading
import time
from typing import Any, Mapping, Optional

from oslo_log import log as logging

from nova_qat_migration.policy import base

LOG = logging.getLogger(__name__)

FILENAME = 'history.json'
_FORMAT_VERSION = 1

#: Fields of :class:`~nova_qat_migration.policy.base.History` kept per
#: instance (``migrations`` is a counter the store maintains itself).
_FIELDS = ('dirty_rate_mbps', 'wire_mbps', 'compression_ratio',
           'xbzrle_hit_ratio', 'method', 'converged', 'total_s')


class HistoryStore:
    """Bounded, thread-safe, file-backed history of migrations.

    :param path: directory of the history file; ``None`` keeps the history
        in memory only (tests, or a state path that cannot be created).
    :param max_entries: instances remembered.
    """

    def __init__(self, path: Optional[str], max_entries: int = 1000) -> None:
        self.max_entries = max(1, int(max_entries))
        self.path = path
        self.filename = os.path.join(path, FILENAME) if path else None
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict = self._load()

    @classmethod
    def from_conf(cls, conf: Any) -> 'HistoryStore':
        group = conf.qat_migration
        return cls(group.state_path, group.history_max_entries)

    # -- reading -----------------------------------------------------------

    def _load(self) -> collections.OrderedDict:
        entries: collections.OrderedDict = collections.OrderedDict()
        if not self.filename or not os.path.exists(self.filename):
            return entries
        try:
            with open(self.filename, encoding='utf-8') as f:
                data = json.load(f)
            items = data['instances']
            if not isinstance(items, list):
                raise ValueError('instances is not a list')
            for item in items:
                entries[str(item['uuid'])] = dict(item)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # NOTE(qat-migration): the history is an optimisation; losing it
            # costs one less informed plan, refusing to start would cost
            # the host.
            LOG.warning('Ignoring unreadable migration history %s (%s); '
                        'starting with an empty history.',
                        self.filename, exc)
            return collections.OrderedDict()
        while len(entries) > self.max_entries:
            entries.popitem(last=False)
        return entries

    def get(self, instance_uuid: str) -> base.History:
        """The history of one instance (empty ``History`` when unknown)."""
        with self._lock:
            entry = self._entries.get(instance_uuid)
            if not entry:
                return base.History()
            entry = dict(entry)
        kwargs = {k: entry.get(k) for k in _FIELDS}
        try:
            return base.History(migrations=int(entry.get('migrations', 0)),
                                **kwargs)
        except (TypeError, ValueError):
            return base.History()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    # -- writing -----------------------------------------------------------

    def record(self, instance_uuid: str, values: Mapping[str, Any]) -> None:
        """Remember the outcome of one migration of ``instance_uuid``.

        ``values`` may carry any of the ``History`` fields; ``None`` values
        keep what was known before (a migration that measured no dirty
        rate does not erase the last measurement).
        """
        with self._lock:
            entry = dict(self._entries.pop(instance_uuid, {}))
            entry['uuid'] = instance_uuid
            entry['migrations'] = int(entry.get('migrations', 0)) + 1
            entry['updated_at'] = time.time()
            for key in _FIELDS:
                if values.get(key) is not None:
                    entry[key] = values[key]
            self._entries[instance_uuid] = entry
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
            snapshot = list(self._entries.values())
            # NOTE(qat-migration): written under the lock so two migrations
            # finishing together cannot rename an older snapshot over a
            # newer one; the file is small (bounded entries).
            self._write(snapshot)

    def _write(self, entries: list) -> None:
        if not self.filename:
            return
        try:
            os.makedirs(self.path, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path, prefix='.history.',
                                       suffix='.tmp')
            try:
                with os.fdopen(fd, 'w', encoding='utf-8') as f:
                    json.dump({'version': _FORMAT_VERSION,
                               'instances': entries}, f)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.filename)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
        except OSError as exc:
            LOG.warning('Could not write migration history %s: %s',
                        self.filename, exc)
