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
"""``nova-qat-migration drain HOST``: empty a compute host for maintenance.

Everything goes through Nova's API with openstacksdk (credentials from the
``OS_*`` environment or ``clouds.yaml``, as ``openstack.connect()`` reads
them); nothing touches a database or libvirt. Each migration is a normal
Nova live migration, planned on the source by the configured policy.

The order (:func:`schedule`) follows what the flavors and, when the
source's ``[qat_migration] state_path/history.json`` is readable here, the
instances' last migrations say:

1. **quiet** guests (dirtying less than a tenth of the link, or never seen
   busy), smallest first, in groups of up to ``--concurrency`` -- as long as
   the model predicts every member converges with its share of the link;
2. **busy** guests, shortest predicted first;
3. **hard** guests last: those whose last migration did not converge or
   that the model predicts will need throttling or post-copy.

The migrations roll, in that order: a server starts as soon as it fits
-- within ``--concurrency``, and with the model predicting that every
migration then running converges with an equal share of the link (a
guest that needs the link to itself therefore runs alone, and nothing
starts beside it) -- instead of each group waiting for the previous one
to leave the host. The first failed migration stops new ones from
starting; migrations in flight are never
aborted (Nova finishes or rolls them back, the guest runs on either way).
Servers Nova refuses to move (API 400/403/409, or the conductor/scheduler
refusing, e.g. no valid host) are listed with Nova's reason. Running the
command again picks up what is left, waiting first for migrations a
previous run started.
"""

from __future__ import annotations

import argparse
from typing import Any, Optional, TextIO

from nova_qat_migration.cmd import drain_order
from nova_qat_migration.cmd import drainer
from nova_qat_migration.cmd import errors
from nova_qat_migration.conf import CONF
from nova_qat_migration import exception

UsageError = exception.UsageError

#: The order and the drainer, importable from here.
QUIET, BUSY, HARD = drain_order.QUIET, drain_order.BUSY, drain_order.HARD
Guest = drain_order.Guest
Group = drain_order.Group
classify = drain_order.classify
schedule = drain_order.schedule
MOVED, REFUSED, FAILED = drainer.MOVED, drainer.REFUSED, drainer.FAILED
Drainer = drainer.Drainer
default_concurrency = drainer.default_concurrency
concurrency = drainer.concurrency


#: Defined in :mod:`nova_qat_migration.exception`; importable from here.
CloudConfigError = exception.CloudConfigError


def connect() -> Any:
    """An openstacksdk connection from ``OS_*`` / ``clouds.yaml``.

    :raises CloudConfigError: for anything the SDK cannot make a
        connection of: it reads a malformed ``clouds.yaml`` (``clouds:
        5``, bad YAML) with whatever exception its parser hits first.
    """
    import openstack
    try:
        return openstack.connect()
    except Exception as exc:
        # NOTE(qat-migration): not a silent handler: any error becomes a
        # CloudConfigError with its message. openstack.connect() parses
        # clouds.yaml with whatever that hits first (a YAMLError,
        # TypeError or AttributeError for ``clouds: 5``), besides its own
        # exceptions.
        raise CloudConfigError(_describe(exc)) from exc


def _describe(exc: Exception) -> str:
    return '%s: %s' % (type(exc).__name__, exc)


def run(conn: Any, args: argparse.Namespace, conf: Any = CONF,
        out: Optional[TextIO] = None, history: bool = True) -> int:
    """Drain ``args.host`` through ``conn``: print the order and, unless
    ``args.dry_run``, migrate. Shared by ``nova-qat-migration drain`` and
    ``openstack qat-migration drain``.

    :param history: order by this host's local migration history too (on
        a compute node); without it the flavors alone order the servers.
    :raises UsageError: for what the operator can fix (no such service).
    """
    count, why = concurrency(args.concurrency, conf)
    drainer = Drainer(conn, args.host, concurrency=count,
                      target=args.target, conf=conf, out=out)
    drainer.use_history = history
    guests = drainer.guests()
    groups, resume, stuck = drainer.plan(guests)
    drainer.print_plan(groups, resume, stuck)
    drainer.say('concurrency: %s' % why)
    if args.dry_run:
        return 0
    if args.disable_reason:
        try:
            drainer.disable(args.disable_reason)
        except LookupError as exc:
            raise UsageError(str(exc))
    try:
        return drainer.run(groups, resume, stuck)
    except KeyboardInterrupt:
        drainer.say('interrupted: migrations already started continue in '
                    'Nova; run the command again to finish')
        return 130


def cmd_drain(args: argparse.Namespace) -> int:
    try:
        conn = connect()
        return run(conn, args)
    except CloudConfigError as exc:
        raise UsageError('cannot connect to Nova\'s API with the '
                         'OS_* environment or clouds.yaml: %s' % exc)
    except errors.cloud_errors() as exc:
        # A message, not a traceback.
        raise UsageError('cannot list the servers of %s through '
                         'Nova\'s API: %s' % (args.host, exc))


def count(text: str) -> int:
    """``--concurrency``: 1 .. 1000 (0 no longer means no limit)."""
    value = int(text)
    if value < 1 or value > 1000:
        raise argparse.ArgumentTypeError(
            '%s is not between 1 and 1000 (Nova advises against unbounded '
            'concurrent live migrations)' % text)
    return value


def add_drain_arguments(p: argparse.ArgumentParser) -> None:
    """The options of both drain commands."""
    p.add_argument('host', metavar='HOST', help='compute host to empty')
    p.add_argument('--disable-reason', metavar='TEXT',
                   help='disable the host\'s nova-compute service with this '
                        'reason first (so nothing new lands on it)')
    p.add_argument('--target', metavar='HOST',
                   help='destination host (default: the scheduler picks)')
    p.add_argument('--concurrency', type=count, metavar='N',
                   help='migrations at once, at most [DEFAULT] '
                        'max_concurrent_live_migrations of nova.conf (Nova '
                        'queues the others; 1 when nova.conf is not read); '
                        'default: that value')
    p.add_argument('--dry-run', action='store_true',
                   help='print the order, the groups and the predicted '
                        'times; migrate nothing')


def _plain(text: str) -> str:
    """reST inline markup of a docstring, for a terminal: ``x`` -> x.

    (``OS_*`` reads as the variables it means: a bare ``*`` or a trailing
    underscore would be reST markup again where the help is rendered.)
    """
    return text.replace('``OS_*``', 'OS_CLOUD, OS_AUTH_URL, ...').replace(
        '``', '')


def add_parsers(subparsers: Any) -> None:
    """Register ``drain`` on the main CLI."""
    p = subparsers.add_parser(
        'drain', help='live-migrate every server off a compute host, in '
        'the order that empties it fastest',
        description=_plain(__doc__.split('\n\n', 1)[1].split('\n\n')[0]))
    add_drain_arguments(p)
    p.set_defaults(func=cmd_drain)
