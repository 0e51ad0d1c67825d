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
"""Image properties are the tenant's: on Nova's stack they never block a
live migration and never widen what the operator set.

Servers boot from images whose ``qat_migration:*`` properties Nova copies
into the instance's system metadata (``image_qat_migration:*``), exactly
as in production; the migration is requested through the REST API and the
assertions are on what libvirt received and on the migration report.
"""

import json

from nova_qat_migration import outcomes
from tests.functional import base


class UntrustedImageHintsTest(base.QATMigrationTestBase):

    POLICY = 'adaptive'

    def setUp(self):
        super().setUp()
        self.flags(downtime_ms=500, group='qat_migration')
        self.start_qat_compute('src')
        self.start_qat_compute('dest')

    def _server_from_image(self, properties, flavor_id=None):
        image = self._create_image(properties)
        return self._create_server(image_uuid=image['id'], host='src',
                                   flavor_id=flavor_id, networks='none')

    def _report(self, server):
        self.wait_for_driver_cleanup('src')
        for line in self.stdlog.logger.output.splitlines():
            if outcomes.PREFIX in line and server['id'] in line:
                return json.loads(line.split(outcomes.PREFIX, 1)[1])
        self.fail('no migration report for %s' % server['id'])

    def test_bad_image_properties_do_not_block_the_migration(self):
        server = self._server_from_image({
            'qat_migration:method': 'bogus',
            'qat_migration:level': 'high',
            'qat_migration:parallel_connections': '1e400',
            'qat_migration:nonsense': 'x',
        })
        server = self.migrate(server, 'dest')
        self.assertEqual('dest', server['OS-EXT-SRV-ATTR:host'])
        # The operator's policy planned as if the image said nothing.
        self.assertEqual('zstd', self.last_call(server)['params']
                         ['compression'])
        output = self.stdlog.logger.output
        for key in ('method', 'level', 'parallel_connections', 'nonsense'):
            self.assertIn('image property qat_migration:%s' % key, output)

    def test_image_cannot_raise_the_downtime_or_change_the_policy(self):
        server = self._server_from_image({
            'qat_migration:max_downtime_ms': '60000',
            'qat_migration:policy': 'nova_default',
        })
        server = self.migrate(server, 'dest')
        self.assertEqual('dest', server['OS-EXT-SRV-ATTR:host'])
        params = self.last_call(server)['params']
        # Still the operator's adaptive plan, not nova_default's.
        self.assertEqual('zstd', params['compression'])
        record = self._report(server)
        self.assertIn('downtime<=500ms', record['plan'])
        output = self.stdlog.logger.output
        self.assertIn('qat_migration:max_downtime_ms=60000 lowered to the '
                      "operator's 500", output)
        self.assertIn('qat_migration:policy=nova_default ignored', output)

    def test_image_may_lower_the_downtime(self):
        server = self.migrate(self._server_from_image(
            {'qat_migration:max_downtime_ms': '200'}), 'dest')
        self.assertIn('downtime<=200ms', self._report(server)['plan'])

    def test_operator_may_let_images_choose_nova_default(self):
        self.flags(image_policies=['nova_default'], group='qat_migration')
        # The computes read the option per migration.
        server = self.migrate(self._server_from_image(
            {'qat_migration:policy': 'nova_default'}), 'dest')
        self.assertEqual('dest', server['OS-EXT-SRV-ATTR:host'])
        self.assertNotIn('compression', self.last_call(server)['params'])

    def test_flavor_may_widen_the_downtime(self):
        flavor = self.flavor(**{'qat_migration:max_downtime_ms': '2000'})
        server = self.migrate(self._server_from_image(
            {'qat_migration:max_downtime_ms': '60000'}, flavor), 'dest')
        self.assertIn('downtime<=2000ms', self._report(server)['plan'])
