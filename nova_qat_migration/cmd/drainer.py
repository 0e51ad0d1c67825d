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
"""What ``drain`` does through Nova's API: list the host's servers with
their flavors and history, start their live migrations in the order of
:mod:`.drain_order`, and follow them until the host is empty (see
:mod:`.drain`).
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Optional, TextIO

from oslo_config import cfg
from oslo_log import log as logging

from nova_qat_migration.cmd import drain_order
from nova_qat_migration.cmd import errors
from nova_qat_migration.conf import CONF
from nova_qat_migration import datamodel
from nova_qat_migration.policy import hints as hints_mod

LOG = logging.getLogger(__name__)

#: States Nova live-migrates from.
MIGRATABLE = ('ACTIVE', 'PAUSED')
#: Conductor events: a failure there happened before the guest was touched
#: (scheduling, pre-checks) -- Nova refused to move the server.
REFUSING_EVENTS = ('conductor_live_migrate_instance',
                   'conductor_migrate_server')
MOVED, REFUSED, FAILED = 'moved', 'refused', 'failed'
QUIET, BUSY, HARD = drain_order.QUIET, drain_order.BUSY, drain_order.HARD
Guest = drain_order.Guest
Group = drain_order.Group


# -- Nova's view -----------------------------------------------------------

def _get(obj: Any, name: str, default: Any = None) -> Any:
    """An attribute of an SDK resource, or a key of a plain dict."""
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _flavor(conn: Any, server: Any) -> tuple[int, int, dict]:
    """(RAM MiB, vCPUs, extra specs) of ``server``'s flavor."""
    flavor = _get(server, 'flavor') or {}
    ram = _get(flavor, 'ram')
    if ram is None and _get(flavor, 'id'):
        # Before microversion 2.47 the server names its flavor only.
        flavor = conn.compute.get_flavor(_get(flavor, 'id'))
        ram = _get(flavor, 'ram')
    return (int(ram or 0), int(_get(flavor, 'vcpus') or 1),
            dict(_get(flavor, 'extra_specs') or {}))


def _history_store(conf: Any) -> Any:
    """This host's migration history, when it can be read here."""
    from nova_qat_migration import history
    try:
        return history.HistoryStore.from_conf(conf)
    except (cfg.Error, ValueError) as exc:
        # Not a compute host (no nova.conf read): no history.
        LOG.debug('No local migration history: %s', exc)
        return None


def _hints(extra_specs: dict) -> datamodel.Hints:
    """The flavor's hints; a bad key is ignored (the source does too)."""
    return hints_mod.from_instance(extra_specs=extra_specs, ignored=[])


def _reason(exc: Exception) -> str:
    """Nova's message in an openstacksdk HTTP exception."""
    details = getattr(exc, 'details', None)
    code = getattr(exc, 'status_code', None)
    text = str(details or exc).strip()
    return '%s (HTTP %s)' % (text, code) if code else text


def default_concurrency(conf: Any = CONF) -> int:
    """``[DEFAULT] max_concurrent_live_migrations`` if readable, else 1
    (Nova's default); 0 for Nova's deprecated 0 (no bound of Nova's).
    """
    try:
        import nova.conf  # noqa: F401 - registers Nova's options
        value = int(conf.max_concurrent_live_migrations)
    except (ImportError, cfg.Error, TypeError, ValueError) as exc:
        LOG.debug('[DEFAULT] max_concurrent_live_migrations unreadable '
                  '(%s): 1', exc)
        return 1
    return value if value > 0 else 0


def concurrency(requested: Optional[int], conf: Any = CONF) -> tuple:
    """``(migrations at once, why)`` for a drain.

    Nova runs at most ``[DEFAULT] max_concurrent_live_migrations`` live
    migrations from a host at once (default 1) and queues the others, and
    advises against raising it: the drain never starts more than that
    (its predictions would be wrong for queued ones), unless the operator
    asks for less. Where nova.conf is not readable (a workstation), Nova's
    default bounds it.
    """
    nova_max = default_concurrency(conf)
    bound = ('[DEFAULT] max_concurrent_live_migrations = %d' % nova_max
             if nova_max else 'Nova\'s deprecated unbounded 0')
    if requested is None:
        return (nova_max or 1), 'from %s' % bound
    if nova_max and requested > nova_max:
        return nova_max, ('%d asked, bounded by %s (Nova would queue the '
                          'others)' % (requested, bound))
    return requested, 'as asked'


# -- the drain -------------------------------------------------------------

class Drainer:
    """Empty ``host`` through ``conn`` (an ``openstack.connection``)."""

    def __init__(self, conn: Any, host: str, concurrency: int = 1,
                 target: Optional[str] = None, conf: Any = CONF,
                 out: Optional[TextIO] = None, poll_s: float = 2.0,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.conn = conn
        self.host = host
        self.concurrency = concurrency
        self.target = target
        self.conf = conf
        self.out = out or sys.stdout
        self.poll_s = poll_s
        self.sleep = sleep
        self.clock = clock
        self.link_mbps = conf.qat_migration.link_gbps * 1e9 / 8 / datamodel.MIB
        #: server id -> (name, Nova's reason) of servers it cannot move
        self.refused: dict = {}
        self.failed: dict = {}
        self.moved: list = []

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    # -- reading ---------------------------------------------------------

    #: Read this host's local migration history (a compute node's).
    use_history = True

    def guests(self) -> list:
        """The servers on the host, with their flavor and history."""
        store = _history_store(self.conf) if self.use_history else None
        found = []
        for server in self.conn.compute.servers(
                details=True, all_projects=True, compute_host=self.host):
            if _get(server, 'compute_host') not in (None, self.host):
                continue
            ram, vcpus, specs = _flavor(self.conn, server)
            history = datamodel.History()
            if store is not None:
                # Never raises (an unreadable file is an empty history).
                history = store.get(server.id)
            found.append(Guest(
                id=server.id, name=_get(server, 'name') or server.id,
                memory_mb=ram, vcpus=vcpus,
                status=_get(server, 'status') or '',
                task_state=_get(server, 'task_state'),
                history=history, hints=_hints(specs)))
        return found

    # -- the plan --------------------------------------------------------

    def plan(self, guests: list) -> tuple[list, list, list]:
        """(groups, servers already migrating, servers it cannot move)."""
        resume = [g for g in guests if g.task_state == 'migrating']
        stuck = [g for g in guests if g.task_state not in (None,
                                                           'migrating')
                 or (g.task_state is None and g.status not in MIGRATABLE)]
        for g in stuck:
            g.why = ('status %s, task %s: Nova live-migrates ACTIVE or '
                     'PAUSED servers with no task' % (g.status, g.task_state))
        movable = [g for g in guests if g not in resume and g not in stuck]
        concurrency = self.concurrency or max(1, len(movable))
        return (drain_order.schedule(movable, concurrency, self.link_mbps,
                                     self.conf), resume, stuck)

    def print_plan(self, groups: list, resume: list, stuck: list) -> None:
        total = 0.0
        unknown = False
        self.say('drain %s: %d server(s), concurrency %s, destination %s, '
                 'link %.0f MiB/s'
                 % (self.host, sum(len(g.members) for g in groups) +
                    len(resume) + len(stuck), self.concurrency or 'unlimited',
                    self.target or 'chosen by the scheduler', self.link_mbps))
        if resume:
            self.say('already migrating (waited for first): %s'
                     % ', '.join(g.name for g in resume))
        for i, group in enumerate(groups, 1):
            if group.predicted_s is None:
                unknown = True
                when = 'time unknown'
            else:
                total += group.predicted_s
                when = 'about %.0f s' % group.predicted_s
            self.say('group %d (%s, %s):' % (i, group.members[0].kind, when))
            for g in group.members:
                self.say('  %s %s  %d MiB, %d vCPU  %s'
                         % (g.name, g.id, g.memory_mb, g.vcpus, g.why))
        for g in stuck:
            self.say('cannot move %s %s: %s' % (g.name, g.id, g.why))
        self.say('predicted time to empty: %s%.0f s (plain pre-copy model; '
                 'the source\'s policy plans each migration)'
                 % ('more than ' if unknown else '', total))

    # -- running ---------------------------------------------------------

    def disable(self, reason: str) -> None:
        services = [s for s in self.conn.compute.services(
            binary='nova-compute', host=self.host)
            if _get(s, 'host') in (None, self.host)]
        if not services:
            raise LookupError('no nova-compute service on host %s'
                              % self.host)
        for service in services:
            self.conn.compute.disable_service(
                service, host=self.host, binary='nova-compute',
                disabled_reason=reason)
        self.say('disabled nova-compute on %s: %s' % (self.host, reason))

    def start(self, guest: Guest) -> bool:
        """Ask Nova to live-migrate ``guest``; False if Nova refuses."""
        from openstack import exceptions as sdk_exc
        try:
            self.conn.compute.live_migrate_server(
                guest.id, host=self.target, block_migration='auto')
        except sdk_exc.HttpException as exc:
            self.refused[guest.id] = (guest.name, _reason(exc))
            self.say('  %s: Nova refused: %s' % (guest.name, _reason(exc)))
            return False
        self.say('  %s: started' % guest.name)
        return True

    def _why_not_moved(self, guest: Guest) -> tuple[str, str]:
        """(REFUSED or FAILED, Nova's reason) for a server left here."""
        try:
            actions = [a for a in self.conn.compute.server_actions(guest.id)
                       if _get(a, 'action') == 'live-migration']
            if actions:
                latest = max(actions,
                             key=lambda a: _get(a, 'start_time') or '')
                action = self.conn.compute.get_server_action(
                    _get(latest, 'request_id'), guest.id)
                for event in _get(action, 'events') or []:
                    if _get(event, 'result') != 'Error':
                        continue
                    text = (_get(event, 'details') or
                            (_get(event, 'traceback') or '').strip()
                            .splitlines()[-1:] or ['error'])
                    text = text if isinstance(text, str) else text[0]
                    kind = (REFUSED if _get(event, 'event') in
                            REFUSING_EVENTS else FAILED)
                    return kind, '%s: %s' % (_get(event, 'event'), text)
        except errors.cloud_errors() as exc:
            # The reason is a bonus: the migration failed either way.
            LOG.debug('No instance action events for %s: %s', guest.id, exc)
            return FAILED, 'migration did not complete (%s)' % exc
        return FAILED, 'migration did not complete'

    def _state(self, guest: Guest) -> Optional[str]:
        """None while migrating, else MOVED, REFUSED or FAILED."""
        try:
            server = self.conn.compute.get_server(guest.id)
        except errors.cloud_errors() as exc:
            # The API hiccuped: ask again on the next poll.
            self.say('  %s: state unknown (%s); asking again'
                     % (guest.name, exc))
            return None
        task = _get(server, 'task_state')
        status = _get(server, 'status')
        if task == 'migrating' or status == 'MIGRATING':
            self._progress(guest)
            return None
        if _get(server, 'compute_host') != self.host and \
                status in MIGRATABLE:
            return MOVED
        if task is not None:
            return None     # e.g. rolled back, still settling
        kind, why = self._why_not_moved(guest)
        if status == 'ERROR':
            kind = FAILED
            why += ' (server in ERROR: %s)' % (
                _get(_get(server, 'fault') or {}, 'message') or '-')
        (self.refused if kind == REFUSED else self.failed)[guest.id] = (
            guest.name, why)
        return kind

    def _progress(self, guest: Guest) -> None:
        try:
            migrations = [m for m in self.conn.compute.server_migrations(
                guest.id) if _get(m, 'memory_total_bytes')]
        except errors.cloud_errors() as exc:
            # Progress is informational.
            LOG.debug('No migration progress for %s: %s', guest.id, exc)
            return
        for m in migrations:
            total = _get(m, 'memory_total_bytes') or 0
            left = _get(m, 'memory_remaining_bytes') or 0
            pct = 100.0 * (1.0 - left / total) if total else 0.0
            self.say('  %s: %s, %.0f%% of memory sent, %.0f MiB left'
                     % (guest.name, _get(m, 'status'), pct,
                        left / datamodel.MIB))

    def _poll(self, pending: list, started: float, total: int) -> bool:
        """One look at the migrations in ``pending``.

        Those that ended leave ``pending`` (and are said); False if one of
        them failed.
        """
        ok = True
        for guest in list(pending):
            state = self._state(guest)
            if state is None:
                continue
            pending.remove(guest)
            if state == MOVED:
                self.moved.append(guest)
                self.say('  %s: moved' % guest.name)
            elif state == REFUSED:
                self.say('  %s: Nova refused: %s'
                         % (guest.name, self.refused[guest.id][1]))
            else:
                ok = False
                self.say('  %s: FAILED: %s'
                         % (guest.name, self.failed[guest.id][1]))
            self.say('%s: %d/%d moved, %d running, %.0f s'
                     % (self.host, len(self.moved), total,
                        len(pending), self.clock() - started))
        return ok

    def wait(self, running: list, started: float, total: int) -> bool:
        """Until ``running`` have all ended; False if one failed."""
        ok = True
        pending = list(running)
        while pending:
            self.sleep(self.poll_s)
            ok = self._poll(pending, started, total) and ok
        return ok

    def fits(self, running: list, guest: Guest) -> bool:
        """Whether ``guest`` may start beside ``running`` now.

        Within the concurrency, and every one of them (``guest``
        included) predicted to converge with an equal share of the link;
        nothing running always fits.
        """
        if not running:
            return True
        if self.concurrency and len(running) >= self.concurrency:
            return False
        share = 1.0 / (len(running) + 1)
        return all(drain_order.predict(g, self.link_mbps, share,
                                       self.conf).converges
                   for g in running + [guest])

    def roll(self, order: list, started: float, total: int) -> bool:
        """Migrate ``order``, starting each as soon as it :meth:`fits`.

        :returns: False when a migration failed (then nothing more was
            started; those in flight were waited for).
        """
        queue = list(order)
        running: list = []
        ok = True
        while running or (ok and queue):
            while ok and queue and self.fits(running, queue[0]):
                guest = queue.pop(0)
                if self.start(guest):
                    running.append(guest)
            if not running:
                continue
            self.sleep(self.poll_s)
            ok = self._poll(running, started, total) and ok
        return ok

    def _by_group(self, groups: list, started: float, total: int) -> bool:
        """Each group at once, when the previous one has left the host."""
        for i, group in enumerate(groups, 1):
            self.say('group %d/%d (%s): %s'
                     % (i, len(groups), group.members[0].kind,
                        ', '.join(g.name for g in group.members)))
            running = [g for g in group.members if self.start(g)]
            if not self.wait(running, started, total):
                return False
        return True

    def run(self, groups: list, resume: list, stuck: list,
            rolling: bool = True) -> int:
        """Migrate ``groups`` in order; 0 when the host is empty.

        :param rolling: start each server as soon as it fits (see
            :meth:`roll`); False: a group starts when the previous one has
            left the host, all its members at once.
        """
        started = self.clock()
        total = sum(len(g.members) for g in groups) + len(resume)
        for g in stuck:
            self.refused[g.id] = (g.name, g.why)
        ok = True
        if resume:
            self.say('waiting for %d migration(s) already running'
                     % len(resume))
            ok = self.wait(resume, started, total)
        if ok and rolling:
            ok = self.roll([g for group in groups for g in group.members],
                           started, total)
        elif ok:
            ok = self._by_group(groups, started, total)
        left = total - len(self.moved)
        self.say('%s: %d moved, %d left, %.0f s'
                 % (self.host, len(self.moved), left,
                    self.clock() - started))
        if not ok:
            self.say('stopped after the first failure: no new migration '
                     'was started; run the command again to finish')
        for name, why in self.failed.values():
            self.say('failed %s: %s' % (name, why))
        for name, why in self.refused.values():
            self.say('cannot move %s: %s' % (name, why))
        return 0 if ok and not self.refused and not self.failed else 1
