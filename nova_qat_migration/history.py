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
last time (dirty rate, compressibility, whether it converged); an
operator looking at a slow migration wants its timeline
(``nova-qat-migration timeline``). The store is one small JSON file under
``[qat_migration] state_path`` (its format and checks:
:mod:`nova_qat_migration.history_format`):

* bounded: at most ``history_max_entries`` instances, least recently
  migrated dropped first; only the
  :data:`~nova_qat_migration.history_format.TIMELINES_KEPT` most recently
  migrated keep their last migration's timeline (a bounded series,
  :mod:`nova_qat_migration.timeline`);
* shared: threads record through one lock, and processes sharing the
  state path through an external ``oslo.concurrency`` lock (a file beside
  the history) with the file re-read before every write, so neither loses
  the other's updates;
* crash-safe: written to a temporary file, fsynced, renamed over the old
  one, and the directory fsynced so the rename survives a power cut;
* forgiving: whatever the file holds is read as far as it is valid, a
  warning is logged, and the next write heals the file. A file that is not
  a history at all is moved aside (``history.json.corrupt``) before the
  next write replaces it, so an operator can still look at it. When the
  lock or the directory cannot be used, the history is kept in memory
  with a warning. Nothing in it can fail a migration or make ``record()``
  raise.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import tempfile
import threading
import time
from typing import Any, Mapping, Optional

from oslo_concurrency import lockutils
from oslo_config import cfg
from oslo_log import log as logging

from nova_qat_migration import datamodel
from nova_qat_migration import history_format


LOG = logging.getLogger(__name__)

FILENAME = 'history.json'
#: The external lock's file, beside the history.
LOCKNAME = 'history.json.lock'
#: Where a file that is not a history is moved before it is replaced
#: (one copy: the latest).
CORRUPT_SUFFIX = '.corrupt'


@dataclasses.dataclass(frozen=True)
class Measurement:
    """The guest measurement taken before an instance's last migration.

    :param measured_at: when it was taken (seconds since the epoch).
    :param memory_mb: the guest's memory then (a resize makes it stale).
    """

    measured_at: float
    memory_mb: Optional[int]
    dirty_rate_mbps: float
    zero_fraction: Optional[float] = None
    compress_ratio: Optional[float] = None
    xbzrle_friendly: Optional[float] = None

    def age_s(self, now: Optional[float] = None) -> float:
        return (time.time() if now is None else now) - self.measured_at

    def fields(self) -> dict:
        """The ``InstanceFacts`` fields it gives a plan."""
        return {'dirty_rate_mbps': self.dirty_rate_mbps,
                'zero_fraction': self.zero_fraction,
                'compress_ratio': self.compress_ratio,
                'xbzrle_friendly': self.xbzrle_friendly,
                'measurement': 'reused',
                'measured_at': self.measured_at}


class HistoryStore:
    """Bounded, thread- and process-safe, file-backed migration history.

    :param path: directory of the history file; ``None`` keeps the history
        in memory only (tests, or a state path that cannot be created).
    :param max_entries: instances remembered.
    """

    def __init__(self, path: Optional[str], max_entries: int = 1000) -> None:
        self.max_entries = max(1, int(max_entries))
        self.path = path
        self.filename = os.path.join(path, FILENAME) if path else None
        self._lock = threading.Lock()
        #: (inode, size, mtime_ns) of the file last read.
        self._seen: Optional[tuple] = None
        #: Why the file is not used now (lock or directory unusable), or
        #: None; warned about once per spell.
        self._degraded: Optional[str] = None
        loaded = self._read()
        self._entries: collections.OrderedDict = (
            loaded if loaded is not None else collections.OrderedDict())

    @staticmethod
    def path_from_conf(conf: Any) -> Optional[str]:
        """The history's directory nova-compute uses with ``conf``."""
        path = conf.qat_migration.state_path
        if not path:
            try:
                base_path = conf.state_path     # Nova's [DEFAULT] option
            except (cfg.NoSuchOptError, AttributeError) as exc:
                # Nova's options are not registered (a command-line tool).
                LOG.debug('No [DEFAULT] state_path: %s', exc)
                base_path = None
            path = (os.path.join(base_path, 'qat_migration')
                    if base_path else None)
        return path

    @classmethod
    def from_conf(cls, conf: Any) -> 'HistoryStore':
        return cls(cls.path_from_conf(conf),
                   conf.qat_migration.history_max_entries)

    # -- reading -----------------------------------------------------------

    def _stat(self) -> Optional[tuple]:
        try:
            st = os.stat(self.filename)
        except (OSError, TypeError):
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _read(self, move_aside: bool = False,
              ) -> Optional[collections.OrderedDict]:
        """The entries in the file; None when there is no usable file.

        :param move_aside: move a file that is not a history out of the
            way (only with the external lock held: another process may be
            replacing it).

        Never raises: see the module docstring.
        """
        if not self.filename:
            return None
        self._seen = self._stat()
        if self._seen is None:
            return None
        limit = history_format.read_limit(self.max_entries)
        try:
            with open(self.filename, 'rb') as f:
                raw = f.read(limit + 1)
            if len(raw) > limit:
                raise ValueError('larger than %d bytes' % limit)
            items = history_format.parse(raw)
        except (OSError, ValueError, RecursionError, MemoryError) as exc:
            # NOTE(qat-migration): the history is an optimisation; losing it
            # costs one less informed plan, refusing to start would cost
            # the host. (JSONDecodeError is a ValueError; nesting too deep
            # even once pruned is a RecursionError.)
            aside = self._move_aside() if move_aside else None
            LOG.warning('Ignoring unreadable migration history %s (%s); '
                        'starting with an empty history%s.',
                        self.filename, str(exc)[:200],
                        ' (the file is kept as %s)' % aside if aside else '')
            return None
        entries: collections.OrderedDict = collections.OrderedDict()
        bad_entries = 0
        dropped_fields = set()
        for item in items:
            entry, dropped = history_format.clean_entry(item)
            if entry is None:
                bad_entries += 1
                continue
            dropped_fields.update(dropped)
            entries.pop(entry['uuid'], None)
            entries[entry['uuid']] = entry
        if bad_entries or dropped_fields:
            LOG.warning('Migration history %(file)s: %(entries)d unusable '
                        'entries skipped, invalid fields dropped: '
                        '%(fields)s.',
                        {'file': self.filename, 'entries': bad_entries,
                         'fields': ', '.join(sorted(dropped_fields)) or
                         'none'})
        while len(entries) > self.max_entries:
            entries.popitem(last=False)
        history_format.drop_old_timelines(entries)
        return entries

    def _move_aside(self) -> Optional[str]:
        """Rename the file to :data:`CORRUPT_SUFFIX`; its new name."""
        target = self.filename + CORRUPT_SUFFIX
        try:
            os.replace(self.filename, target)
        except OSError as exc:
            LOG.warning('Could not move %s aside: %s', self.filename, exc)
            return None
        self._seen = None
        return target

    def _refresh(self) -> None:
        """Re-read the file if another process replaced it (lock held)."""
        if self.filename and self._stat() != self._seen:
            loaded = self._read()
            if loaded is not None:
                self._entries = loaded

    def get(self, instance_uuid: str) -> datamodel.History:
        """The history of one instance (empty ``History`` when unknown)."""
        with self._lock:
            self._refresh()
            entry = self._entries.get(instance_uuid)
            if not entry:
                return datamodel.History()
            entry = dict(entry)
        kwargs = {k: entry.get(k) for k in history_format.HISTORY_FIELDS}
        try:
            return datamodel.History(
                migrations=int(entry.get('migrations', 0)), **kwargs)
        except (TypeError, ValueError):
            return datamodel.History()

    def measurement(self, instance_uuid: str) -> Optional[Measurement]:
        """The measurement kept for ``instance_uuid``, None without one."""
        with self._lock:
            self._refresh()
            entry = dict(self._entries.get(instance_uuid) or {})
        if (entry.get('measured_at') is None or
                entry.get('measured_dirty_rate_mbps') is None):
            return None
        memory = entry.get('measured_memory_mb')
        return Measurement(
            measured_at=entry['measured_at'],
            memory_mb=int(memory) if memory is not None else None,
            dirty_rate_mbps=entry['measured_dirty_rate_mbps'],
            zero_fraction=entry.get('measured_zero_fraction'),
            compress_ratio=entry.get('measured_compress_ratio'),
            xbzrle_friendly=entry.get('measured_xbzrle_friendly'))

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    # -- writing -----------------------------------------------------------

    def record(self, instance_uuid: str, values: Mapping[str, Any]) -> None:
        """Remember the outcome of one migration of ``instance_uuid``.

        ``values`` may carry any of the ``History`` fields; ``None`` (and
        invalid) values keep what was known before (a migration that
        measured no dirty rate does not erase the last measurement). A new
        guest measurement (``measured_at`` and the ``measured_*`` fields)
        replaces the old one whole. ``timeline``
        (:func:`~nova_qat_migration.timeline.build`) replaces the last
        migration's, or removes it when this migration has none.
        """
        clean = history_format.clean_values(values)
        with self._lock, contextlib.ExitStack() as stack:
            shared = self._take_file_lock(stack)
            if shared:
                # Reload before writing: another process sharing the state
                # path may have recorded since we last read.
                loaded = self._read(move_aside=True)
                if loaded is not None:
                    self._entries = loaded
            entry = dict(self._entries.pop(instance_uuid, {}))
            entry['uuid'] = instance_uuid
            entry['migrations'] = min(history_format.MAX_MIGRATIONS,
                                      int(entry.get('migrations', 0)) + 1)
            entry['updated_at'] = time.time()
            if 'measured_at' in clean:
                for name in history_format.MEASURED_FIELDS:
                    entry.pop(name, None)
            # The timeline is the last migration's, or none.
            entry.pop(history_format.TIMELINE, None)
            entry.update(clean)
            self._entries[instance_uuid] = entry
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
            history_format.drop_old_timelines(self._entries)
            if shared:
                self._write(list(self._entries.values()))

    def _take_file_lock(self, stack: contextlib.ExitStack) -> bool:
        """Hold the external lock of the history file until ``stack``
        closes; False (in memory only) without a file or when the lock
        or the directory cannot be used.
        """
        if not self.filename:
            return False
        try:
            os.makedirs(self.path, exist_ok=True)
            stack.enter_context(lockutils.lock(
                LOCKNAME, external=True, lock_path=self.path,
                do_log=False))
        except Exception as exc:  # never fail a migration
            why = str(exc)[:200]
            if self._degraded is None:
                LOG.warning('Migration history %(file)s cannot be shared '
                            '(%(why)s): kept in memory until the lock can '
                            'be taken.', {'file': self.filename,
                                          'why': why})
            self._degraded = why
            return False
        if self._degraded is not None:
            LOG.info('Migration history %s is written again.',
                     self.filename)
            self._degraded = None
        return True

    def _write(self, entries: list) -> None:
        if not self.filename:
            return
        try:
            text = history_format.dumps(entries)
        except ValueError as exc:   # a NaN despite the checks: a bug
            LOG.error('Migration history not written: %s', exc)
            return
        try:
            os.makedirs(self.path, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path, prefix='.history.',
                                       suffix='.tmp')
            try:
                with os.fdopen(fd, 'w', encoding='utf-8') as f:
                    f.write(text)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.filename)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
            self._fsync_dir()
            self._seen = self._stat()
        except OSError as exc:
            LOG.warning('Could not write migration history %s: %s',
                        self.filename, exc)

    def _fsync_dir(self) -> None:
        """Make the rename durable: fsync the directory holding it."""
        dfd = os.open(self.path, os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0))
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
