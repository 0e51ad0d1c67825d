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
"""``openstack qat-migration drain`` from outside the compute hosts.

The ``openstack`` client plugin runs where an operator's workstation
would: in the machine's own namespace (not a lab host's), with nothing but
the admin cloud of the lab's ``clouds.yaml`` -- no nova.conf, no local
migration history. A dry run against the service cloud lists the servers
of a lab host in order and moves nothing.
"""

from tests.lab import test_cloud


class TestOpenStackClientDrain(test_cloud.CloudTestCase):

    def test_dry_run_from_a_workstation(self):
        c = self.cloud
        session = self.boot()
        server = c.openstack_json('server', 'show', session.server_id)
        host = server['OS-EXT-SRV-ATTR:host']
        env = c.cli_env('admin')
        # Only the cloud's credentials: no OS_* besides the cloud, and no
        # nova.conf in reach (the plugin reads none unless given one).
        self.assertEqual({'OS_CLIENT_CONFIG_FILE', 'OS_CLOUD'},
                         {k for k in env if k.startswith('OS_')})
        out = c.openstack('--os-cloud', env['OS_CLOUD'], 'qat-migration',
                          'drain', '--dry-run', '--concurrency', '3', host)
        self.addDetail('drain', test_cloud.testtools.content.text_content(
            out))
        self.assertIn('drain %s: ' % host, out)
        self.assertIn(session.server_id, out)
        # Nova's default max_concurrent_live_migrations bounds it, and no
        # local history is read.
        self.assertIn('concurrency 1', out)
        self.assertIn('3 asked, bounded by [DEFAULT] '
                      'max_concurrent_live_migrations = 1', out)
        self.assertIn('quiet: no history', out)
        self.assertIn('predicted time to empty', out)
        # A dry run moves nothing.
        after = c.openstack_json('server', 'show', session.server_id)
        self.assertEqual(host, after['OS-EXT-SRV-ATTR:host'])
        self.assertIsNone(after.get('OS-EXT-STS:task_state'))
