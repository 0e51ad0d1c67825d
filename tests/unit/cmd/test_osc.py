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
"""``openstack qat-migration drain``: the ``openstack`` client plugin."""

import configparser
import importlib
import io
import os
import types

from cliff import command as cliff_command

from nova_qat_migration.cmd import osc
from tests.unit.cmd import test_drain

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))))


def _entry_points():
    parser = configparser.ConfigParser()
    parser.read(os.path.join(ROOT, 'setup.cfg'))
    out = {}
    for group in ('openstack.cli.extension', 'openstack.qat_migration.v1'):
        for line in parser['entry_points'][group].strip().splitlines():
            name, _, target = line.partition('=')
            out[(group, name.strip())] = target.strip()
    return out


class EntryPointTest(test_drain.DrainTestBase):

    def test_plugin_and_command_registered(self):
        points = _entry_points()
        module = importlib.import_module(
            points[('openstack.cli.extension', 'qat_migration')])
        self.assertIs(osc, module)
        # What OSC reads from every plugin module.
        self.assertEqual('qat_migration', osc.API_NAME)
        self.assertIn(osc.DEFAULT_API_VERSION, osc.API_VERSIONS)
        self.assertEqual('os_qat_migration_api_version',
                         osc.API_VERSION_OPTION)
        # OSC turns the underscore into a space: "qat-migration drain".
        target = points[('openstack.qat_migration.v1',
                         'qat-migration_drain')]
        mod, _, cls = target.partition(':')
        found = getattr(importlib.import_module(mod), cls)
        self.assertIs(osc.DrainHost, found)
        self.assertTrue(issubclass(found, cliff_command.Command))


class DrainHostTest(test_drain.DrainTestBase):

    def _command(self, compute):
        conn = types.SimpleNamespace(compute=compute)
        self.stdout = io.StringIO()
        app = types.SimpleNamespace(
            stdout=self.stdout,
            client_manager=types.SimpleNamespace(qat_migration=conn))
        return osc.DrainHost(app, None)

    def test_dry_run_needs_no_nova_conf_and_no_history(self):
        compute = test_drain.FakeCompute([self.quiet('q1', 512),
                                          self.busy('b1', 2048)])
        cmd = self._command(compute)
        args = cmd.get_parser('openstack qat-migration drain').parse_args(
            [test_drain.HOST, '--dry-run', '--concurrency', '4'])
        self.assertEqual(0, cmd.take_action(args))
        text = self.stdout.getvalue()
        self.assertEqual([], compute.started)
        # Nova's default bounds it; no local history is read.
        self.assertIn('concurrency 1', text)
        self.assertIn('4 asked, bounded by [DEFAULT] '
                      'max_concurrent_live_migrations = 1', text)
        self.assertIn('quiet: no history', text)

    def test_nova_config_bounds_and_orders(self):
        # On a compute node: its nova.conf raises Nova's bound and its
        # history orders the servers.
        from nova_qat_migration.conf import CONF
        self.addCleanup(CONF.reset)
        conf = os.path.join(self.useFixture(
            test_drain.fixtures.TempDir()).path, 'nova.conf')
        with open(conf, 'w') as f:
            f.write('[DEFAULT]\nmax_concurrent_live_migrations = 3\n')
        compute = test_drain.FakeCompute([self.quiet('q1', 512),
                                          self.quiet('q2', 512)])
        cmd = self._command(compute)
        args = cmd.get_parser('x').parse_args(
            [test_drain.HOST, '--dry-run', '--nova-config', conf])
        self.assertEqual(0, cmd.take_action(args))
        text = self.stdout.getvalue()
        self.assertIn('concurrency: from [DEFAULT] '
                      'max_concurrent_live_migrations = 3', text)
        self.assertIn('quiet: dirtied 2 MiB/s last time', text)
