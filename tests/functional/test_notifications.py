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
"""The migration report as ``qat_migration.live_migration.end``.

A live migration through the REST API on Nova's stack; Nova's fake
versioned notifier (``self.notifier``) receives what an operator's
monitoring would receive from the message bus.
"""

from nova_qat_migration import notifications
from tests.functional import base
from tests.unit import test_notifications


class LiveMigrationNotificationTest(base.QATMigrationTestBase):

    POLICY = 'adaptive'

    def _migrate_and_wait(self):
        # NOTE(qat-migration): the publisher is ``[DEFAULT] host``, as for
        # Nova's nova-compute; in-process computes share one CONF, where the
        # last compute started sets it.
        self.start_qat_compute('dest')
        self.start_qat_compute('src')
        server = self.migrate(self.server_on('src'), 'dest')
        self.assertEqual('dest', server['OS-EXT-SRV-ATTR:host'])
        return server

    def test_completed_migration_notified(self):
        server = self._migrate_and_wait()
        sent = self.notifier.wait_for_versioned_notifications(
            notifications.EVENT_TYPE, n_events=1, timeout=30)
        self.assertEqual(1, len(sent))
        msg = sent[0]
        # The project's own publisher, not Nova's.
        self.assertEqual('nova-qat-migration:src', msg['publisher_id'])
        self.assertEqual('INFO', msg['priority'].upper())
        # What is sent has the committed sample's keys and types.
        self.assertEqual([], test_notifications.shape_differences(
            test_notifications.load_sample(), msg))
        payload = msg['payload']
        self.assertEqual('QATMigrationPayload', payload['nova_object.name'])
        self.assertEqual('1.1', payload['nova_object.version'])
        self.assertEqual('nova', payload['nova_object.namespace'])
        data = payload['nova_object.data']
        self.assertEqual(server['id'], data['instance_uuid'])
        self.assertEqual('src', data['host'])
        self.assertEqual('dest', data['destination_host'])
        # Matches Nova's migration record and the request.
        migrations = [m for m in self.admin_api.api_get(
            '/os-migrations?instance_uuid=%s' % server['id']).body[
            'migrations'] if m['migration_type'] == 'live-migration']
        self.assertEqual([m['uuid'] for m in migrations],
                         [data['migration_uuid']])
        self.assertTrue(data['request_id'].startswith('req-'),
                        data['request_id'])
        self.assertEqual('completed', data['outcome'])
        self.assertEqual('adaptive', data['policy'])
        # The plan the driver really sent to libvirt, as in the log line.
        call = self.last_call(server)
        self.assertEqual('zstd', data['method'])
        self.assertEqual(call['params']['compression'],
                         data['params']['compression'])
        self.assertEqual(str(call['params']['parallel.connections']),
                         data['params']['parallel.connections'])
        self.assertNotIn('destination_xml', data['params'])
        self.assertIn('PARALLEL', data['flags'])
        self.assertTrue(data['reasons'])
        self.assertGreater(data['total_s'], 0)
        monitor = data['monitor']
        self.assertEqual('QATMigrationMonitorPayload',
                         monitor['nova_object.name'])
        self.assertIn('iterations', monitor['nova_object.data'])
        self.assertEqual('QATMigrationCompressionPayload',
                         data['compression']['nova_object.name'])
        # The log record stays.
        self.assertIn('qat_migration report: ', self.stdlog.logger.output)

    def test_unversioned_format_sends_nothing(self):
        self.flags(notification_format='unversioned', group='notifications')
        self._migrate_and_wait()
        self.wait_for_driver_cleanup('src')
        self.assertIn('qat_migration report: ', self.stdlog.logger.output)
        self.assertEqual(
            [], [n for n in self.notifier.versioned_notifications
                 if n['event_type'] == notifications.EVENT_TYPE])
