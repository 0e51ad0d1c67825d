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
"""The report record as a versioned notification payload."""

from unittest import mock

import fixtures
import testtools

from nova_qat_migration import datamodel
from nova_qat_migration import notifications
from nova_qat_migration import report
from nova_qat_migration.virt.libvirt import tracker

UUID = '3e5d2c1a-8b7f-4f6e-9a0b-1c2d3e4f5a6b'


def _record(**kw):
    plan = datamodel.Plan(policy='adaptive', method='zstd', level=1,
                          parallel_connections=4, reasons=('idle CPU',))
    args = dict(
        instance_uuid=UUID, instance_name='vm', requested=plan,
        outcome=report.OUTCOME_COMPLETED, total_s=12.3456,
        last_stats={'memory_total': 1024 * datamodel.MIB,
                    'memory_processed': 512 * datamodel.MIB,
                    'time_elapsed': 4000,
                    'compression_bytes': 1000},
        completed_stats={'downtime': 42},
        summary=tracker.ProgressTracker().summary(),
        sent_params={'compression': 'zstd', 'destination_xml': '<x/>',
                     'parallel.connections': 4},
        sent_flags=['LIVE', 'PARALLEL'],
        actions=[datamodel.Action(kind='downtime', value=100,
                                  reason='stalled')],
        facts=datamodel.Facts())
    args.update(kw)
    return report.build(**args)


class PayloadTest(testtools.TestCase):

    def test_every_record_key_is_carried(self):
        # A key added to report.build() must be added to the payload (and
        # its VERSION bumped) -- this fails until it is.
        self.assertEqual(notifications.RECORD_KEYS, set(_record()))

    def test_every_monitor_key_is_carried(self):
        summary = tracker.ProgressTracker().summary()
        self.assertEqual(set(summary),
                         set(notifications.QATMigrationMonitorPayload.fields))

    def test_payload_from_record(self):
        note = notifications.build(_record(), host='cmp1')
        self.assertEqual('qat_migration.live_migration.end',
                         note.event_type.to_notification_event_type_field())
        self.assertEqual('info', note.priority)
        primitive = note.payload.obj_to_primitive()
        self.assertEqual('QATMigrationPayload',
                         primitive['nova_object.name'])
        self.assertEqual('1.0', primitive['nova_object.version'])
        data = primitive['nova_object.data']
        self.assertEqual(UUID, data['instance_uuid'])
        self.assertEqual('cmp1', data['host'])
        self.assertEqual({'compression': 'zstd',
                          'parallel.connections': '4'}, data['params'])
        self.assertEqual([{'kind': 'downtime', 'value': '100',
                           'reason': 'stalled'}], data['actions'])
        self.assertEqual(512 * datamodel.MIB, data['bytes_transferred'])
        self.assertEqual(42.0, data['downtime_ms'])
        self.assertEqual(1000, data['compression']['nova_object.data'][
            'bytes'])

    def test_failed_migration_is_a_warning(self):
        note = notifications.build(_record(outcome=report.OUTCOME_FAILED),
                                   host='cmp1')
        self.assertEqual('warn', note.priority)
        self.assertEqual('failed', note.payload.outcome)

    def test_not_sent_without_nova_rpc(self):
        # The CLI and the lab never initialise Nova's notifier.
        with mock.patch('nova.rpc.NOTIFIER', None):
            self.assertFalse(notifications.emit_report(_record()))

    def test_emit_survives_a_broken_notifier(self):
        logs = self.useFixture(fixtures.FakeLogger())
        with mock.patch.object(notifications, 'emit_report',
                               side_effect=RuntimeError('bus down')):
            report.emit(_record())   # logs, does not raise
        self.assertIn('Could not send the qat_migration.live_migration.end',
                      logs.output)
        self.assertIn(report.PREFIX, logs.output)
