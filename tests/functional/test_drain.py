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
"""``nova-qat-migration drain`` through openstacksdk against Nova's API.

The drain's calls (list a host's servers, disable its service, live
migrate, poll the server, its migrations and actions) go to Nova's real
API on the in-process stack (fake libvirt); the computes run
``QATLibvirtDriver``.
"""

import io

from keystoneauth1 import noauth
from keystoneauth1 import session as ks_session
import openstack

from nova_qat_migration.cmd import drain
from tests.functional import base


class DrainTest(base.QATMigrationTestBase):

    def setUp(self):
        super().setUp()
        self.start_qat_compute('src')
        self.start_qat_compute('dst')
        api = self.api_fixture.admin_api
        sess = ks_session.Session(
            auth=noauth.NoAuth(endpoint=self.api_fixture.base_url),
            additional_headers={
                'X-Auth-User': 'admin', 'X-User-Id': 'admin',
                'X-Auth-Project-Id': api.project_id,
                'X-Roles': 'reader,member,admin'})
        self.conn = openstack.connection.Connection(
            session=sess, compute_api_version='2',
            compute_endpoint_override=self.api_fixture.base_url)

    def _drainer(self, **kw):
        self.out = io.StringIO()
        return drain.Drainer(self.conn, 'src', out=self.out, poll_s=0.2,
                             **kw)

    def test_drain_empties_the_host(self):
        flavor = self.flavor()
        servers = [self.server_on('src', flavor) for _ in range(3)]
        d = self._drainer(concurrency=2)
        guests = d.guests()
        self.assertEqual(sorted(s['id'] for s in servers),
                         sorted(g.id for g in guests))
        self.assertEqual({1024}, {g.memory_mb for g in guests})
        groups, resume, stuck = d.plan(guests)
        self.assertEqual([2, 1], [len(g.members) for g in groups])
        d.disable('maintenance 42')
        code = d.run(groups, resume, stuck)
        self.assertEqual(0, code, self.out.getvalue())
        for server in servers:
            self.assertEqual(
                'dst', self.admin_api.get_server(server['id'])
                ['OS-EXT-SRV-ATTR:host'])
        service = self.admin_api.get_services(binary='nova-compute',
                                              host='src')[0]
        self.assertEqual('disabled', service['status'])
        self.assertEqual('maintenance 42', service['disabled_reason'])
        self.assertEqual([], d.guests())
        self.assertIn('src: 3 moved, 0 left', self.out.getvalue())
        for server in servers:
            self._wait_for_migration_status(server, ['completed'])
        self.wait_for_driver_cleanup('src')

    def test_refused_by_the_api_listed_with_novas_reason(self):
        flavor = self.flavor()
        server = self.server_on('src', flavor)
        d = self._drainer(concurrency=1, target='src')
        code = d.run(*d.plan(d.guests()))
        self.assertEqual(1, code)
        self.assertIn(server['id'], d.refused)
        self.assertIn('cannot move', self.out.getvalue())
        self.assertIn('HTTP 400', self.out.getvalue())

    def test_bad_flavor_key_from_the_sdk_does_not_stop_the_drain(self):
        # openstacksdk's Flavor negotiates at most microversion 2.61, where
        # Nova validates no extra spec: ``openstack flavor set --property
        # qat_migration:method=bogus`` stores it. The drain still empties
        # the host; the key is ignored with a warning naming it.
        flavor = self.flavor()
        self.conn.compute.create_flavor_extra_specs(
            flavor, {'qat_migration:method': 'bogus'})
        self.assertEqual('bogus', self.admin_api.get_extra_specs(flavor)
                         ['qat_migration:method'])
        servers = [self.server_on('src', flavor) for _ in range(2)]
        d = self._drainer(concurrency=1)
        code = d.run(*d.plan(d.guests()))
        self.assertEqual(0, code, self.out.getvalue())
        for server in servers:
            self.assertEqual(
                'dst', self.admin_api.get_server(server['id'])
                ['OS-EXT-SRV-ATTR:host'])
            self._wait_for_migration_status(server, ['completed'])
        self.assertIn("flavor extra spec qat_migration:method: 'bogus' is "
                      "not one of", self.stdlog.logger.output)
        self.wait_for_driver_cleanup('src')

    def test_openstack_client_command(self):
        # ``openstack qat-migration drain``: the plugin's command on the
        # client's own SDK connection, no nova.conf, no local history.
        import types

        from nova_qat_migration.cmd import osc
        flavor = self.flavor()
        servers = [self.server_on('src', flavor) for _ in range(2)]
        out = io.StringIO()
        app = types.SimpleNamespace(
            stdout=out,
            client_manager=types.SimpleNamespace(qat_migration=self.conn))
        cmd = osc.DrainHost(app, None)
        args = cmd.get_parser('openstack qat-migration drain').parse_args(
            ['src', '--dry-run'])
        self.assertEqual(0, cmd.take_action(args))
        text = out.getvalue()
        self.assertIn('drain src: 2 server(s), concurrency 1', text)
        for server in servers:
            self.assertIn(server['id'], text)
            self.assertEqual('src', self.admin_api.get_server(
                server['id'])['OS-EXT-SRV-ATTR:host'])
        args = cmd.get_parser('x').parse_args(['src', '--target', 'dst'])
        self.assertEqual(0, cmd.take_action(args), out.getvalue())
        for server in servers:
            self._wait_for_migration_status(server, ['completed'])
        self.wait_for_driver_cleanup('src')

    def test_status_lists_flavors_with_invalid_keys(self):
        # ``status`` asks Nova's API (here through the same SDK
        # connection) for every flavor, private ones too.
        from unittest import mock

        from nova_qat_migration.cmd import status
        good = self.flavor(**{'qat_migration:method': 'zstd'})
        bad = self._create_flavor(memory_mb=512, vcpu=1, disk=1,
                                  ephemeral=0, is_public=False)
        self.conn.compute.create_flavor_extra_specs(
            bad, {'qat_migration:downtime_msec': '300'})
        with mock.patch('nova_qat_migration.cmd.drain.connect',
                        return_value=self.conn):
            result = status.Checks()._check_flavors()
        self.assertEqual(status.Code.WARNING, result.code, result.details)
        name = self.admin_api.api_get('/flavors/%s' % bad).body[
            'flavor']['name']
        self.assertIn('flavor %s: flavor extra spec qat_migration:'
                      'downtime_msec is not a known key' % name,
                      result.details)
        good_name = self.admin_api.api_get('/flavors/%s' % good).body[
            'flavor']['name']
        self.assertNotIn('flavor %s:' % good_name, result.details)
