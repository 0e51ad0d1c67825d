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
"""``openstack qat-migration ...``: the ``openstack`` client plugin.

Registered through the ``openstack.cli.extension`` entry point (this
module: ``API_NAME``, ``make_client``, ``build_option_parser``, as every
OSC plugin) and the ``openstack.qat_migration.v1`` command group. Its
commands need only what ``openstack`` already has -- cloud credentials
(``--os-cloud``, ``OS_*``) -- and no nova.conf: an operator runs them
from a workstation. ``drain`` is ``nova-qat-migration drain``
(:mod:`.drain`) on the client's own Nova connection.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from osc_lib.command import command
from osc_lib import exceptions as osc_exc
from osc_lib import utils

from nova_qat_migration import exception

LOG = logging.getLogger(__name__)

DEFAULT_API_VERSION = '1'
API_VERSION_OPTION = 'os_qat_migration_api_version'
API_NAME = 'qat_migration'
API_VERSIONS = {'1': 'openstack.connection.Connection'}


def make_client(instance: Any) -> Any:
    """The client of this plugin: the OpenStack SDK connection ``openstack``
    made from the cloud credentials (every call goes to Nova's API).
    """
    return instance.sdk_connection


def build_option_parser(parser: argparse.ArgumentParser,
                        ) -> argparse.ArgumentParser:
    """Hook to add global options (OSC calls it for every plugin)."""
    parser.add_argument(
        '--os-qat-migration-api-version',
        metavar='<qat-migration-api-version>',
        default=utils.env('OS_QAT_MIGRATION_API_VERSION',
                          default=DEFAULT_API_VERSION),
        help='nova-qat-migration command version, default=%s '
             '(Env: OS_QAT_MIGRATION_API_VERSION)' % DEFAULT_API_VERSION)
    return parser


class DrainHost(command.Command):
    """Live-migrate every server off a compute host, in the order that
    empties it fastest (quiet guests first, in groups; busy ones next;
    those that need throttling or post-copy last), through Nova's API.
    """

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        from nova_qat_migration.cmd import drain
        parser = super().get_parser(prog_name)
        drain.add_drain_arguments(parser)
        parser.add_argument(
            '--nova-config', metavar='<nova.conf>', action='append',
            default=[],
            help='a nova.conf to read (repeat for more), e.g. on a compute '
                 "node: then [DEFAULT] max_concurrent_live_migrations "
                 'bounds --concurrency, [qat_migration] link_gbps is the '
                 "link, and the host's local migration history orders the "
                 'servers too. Without it: Nova\'s defaults, no history')
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> int:
        from nova_qat_migration.cmd import drain
        from nova_qat_migration.conf import CONF
        if parsed_args.nova_config:
            CONF(args=[], project='nova',
                 default_config_files=parsed_args.nova_config,
                 validate_default_values=True)
        conn = self.app.client_manager.qat_migration
        try:
            return drain.run(conn, parsed_args, conf=CONF,
                             out=self.app.stdout,
                             history=bool(parsed_args.nova_config))
        except exception.UsageError as exc:
            raise osc_exc.CommandError(str(exc))
