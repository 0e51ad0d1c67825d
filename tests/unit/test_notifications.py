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

import json
import os
from unittest import mock

import fixtures
import testtools

from nova_qat_migration import datamodel
from nova_qat_migration import notifications
from nova_qat_migration import outcomes
from nova_qat_migration.virt.libvirt import report
from nova_qat_migration.virt.libvirt import tracker

UUID = '3e5d2c1a-8b7f-4f6e-9a0b-1c2d3e4f5a6b'


def _record(**kw):
    plan = datamodel.Plan(policy='adaptive', method='zstd', level=1,
                          parallel_connections=4, reasons=('idle CPU',))
    args = dict(
        instance_uuid=UUID, instance_name='vm', requested=plan,
        outcome=outcomes.OUTCOME_COMPLETED, total_s=12.3456,
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
        self.assertEqual(
            notifications.RECORD_KEYS | notifications.LOG_ONLY_KEYS,
            set(_record()))
        self.assertFalse(notifications.RECORD_KEYS &
                         notifications.LOG_ONLY_KEYS)

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
        self.assertEqual('1.1', primitive['nova_object.version'])
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
        note = notifications.build(_record(outcome=outcomes.OUTCOME_FAILED),
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
        self.assertIn(outcomes.PREFIX, logs.output)


# -- the committed sample ----------------------------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
#: One committed sample per event (its payload version inside), shown in
#: doc/source/admin/notifications.rst.
SAMPLE = os.path.join(ROOT, 'doc', 'notification_samples',
                      'qat_migration-live_migration-end.json')


def sample_record():
    """A realistic record: zstd on four channels, one downtime step."""
    plan = datamodel.Plan(
        policy='adaptive', method='zstd', level=1, parallel_connections=4,
        max_downtime_ms=500, reasons=(
            'predicted 9.1 s / 180 ms with zstd-1 x4 vs 31.0 s / 420 ms '
            'plain (12 candidates)',))
    summary = dict(tracker.ProgressTracker().summary(), samples=18,
                   iterations=3, max_dirty_rate_mbps=210.5,
                   lowest_remaining_mb=12.0, downtime_ms=250,
                   compression_bytes=180000000)
    facts = datamodel.Facts(
        instance=datamodel.InstanceFacts(
            uuid=UUID, memory_mb=4096, vcpus=2, dirty_rate_mbps=210.5,
            zero_fraction=0.42, compress_ratio=0.31, xbzrle_friendly=0.2,
            measurement='measured', measured_at=1764590400.0,
            hints=datamodel.Hints(max_downtime_ms=500)),
        host=datamodel.HostLoad(cpus=32, cpu_idle_pct=85.0,
                                mem_free_mb=98304),
        hypervisor=datamodel.HypervisorCaps(
            multifd_methods=frozenset({'none', 'zlib', 'zstd'})),
        destination=datamodel.DestinationCaps(
            known=True, methods=frozenset({'xbzrle', 'zlib', 'zstd'}),
            multifd=True),
        link_mbps=1192.1)
    return report.build(
        instance_uuid=UUID, instance_name='vm-1', requested=plan,
        outcome=outcomes.OUTCOME_COMPLETED, total_s=9.3,
        last_stats={'memory_total': 4 * 1024 * datamodel.MIB,
                    'memory_processed': 412000000, 'time_elapsed': 8100,
                    'memory_iteration': 3, 'compression_bytes': 180000000},
        completed_stats={'downtime': 180, 'time_elapsed': 8100},
        summary=summary,
        sent_params={'compression': 'zstd', 'compression.zstd.level': 1,
                     'parallel.connections': 4, 'bandwidth': 0},
        sent_flags=['LIVE', 'PEER2PEER', 'PERSIST_DEST',
                    'UNDEFINE_SOURCE', 'PARALLEL'],
        actions=[datamodel.Action(kind='downtime', value=250,
                                  reason='1 stalled iteration(s)')],
        facts=facts, host='cmp1',
        prediction={'total_s': 9.1, 'downtime_ms': 180.0,
                    'converges': True},
        destination='cmp2',
        migration_uuid='a4b3c2d1-0e9f-4a8b-9c7d-6e5f4a3b2c1d',
        request_id='req-6b3e1f0a-2c4d-4e5f-8a9b-0c1d2e3f4a5b')


def message(note):
    """``note`` as the bus carries it (as Nova's ``emit`` sends it: the
    payload's changed-field lists dropped).
    """
    note.payload.obj_reset_changes(recursive=True)
    return {'event_type': note.event_type.to_notification_event_type_field(),
            'payload': note.payload.obj_to_primitive(),
            'priority': note.priority.upper(),
            'publisher_id': '%s:%s' % (note.publisher.source,
                                       note.publisher.host)}


def load_sample():
    with open(SAMPLE) as f:
        return json.load(f)


#: Payload fields that are dicts of strings whose keys are data (the
#: report's summaries and libvirt's params), not the payload's schema:
#: their content is only checked to be strings.
FREE_FORM = ('facts', 'prediction', 'requested_plan', 'params')


def shape_differences(sample, actual, where='notification'):
    """Where ``actual`` differs from ``sample`` in keys or JSON types (a
    null matches any type: every payload field but the UUID is
    nullable), as Nova's notification sample tests compare them.
    """
    out = []
    if where.rsplit('.', 1)[-1] in FREE_FORM and isinstance(actual, dict):
        return ['%s.%s: %s, not a string'
                % (where, key, type(value).__name__)
                for key, value in sorted(actual.items())
                if value is not None and not isinstance(value, str)]
    if isinstance(sample, dict) and isinstance(actual, dict):
        for key in sorted(set(sample) | set(actual)):
            if key not in actual:
                out.append('%s.%s: in the sample, not sent' % (where, key))
            elif key not in sample:
                out.append('%s.%s: sent, not in the sample' % (where, key))
            else:
                out += shape_differences(sample[key], actual[key],
                                         '%s.%s' % (where, key))
        return out
    if sample is None or actual is None:
        return out
    if isinstance(sample, list) and isinstance(actual, list):
        for s, a in zip(sample[:1], actual[:1]):
            out += shape_differences(s, a, where + '[0]')
        return out
    number = (int, float)
    if not (type(sample) is type(actual) or (
            isinstance(sample, number) and isinstance(actual, number) and
            not isinstance(sample, bool) and not isinstance(actual, bool))):
        out.append('%s: %s in the sample, %s sent'
                   % (where, type(sample).__name__, type(actual).__name__))
    return out


class SampleTest(testtools.TestCase):

    def test_sample_is_what_is_sent(self):
        sample = load_sample()
        sent = message(notifications.build(sample_record(), host='cmp1'))
        self.assertEqual([], shape_differences(sample, sent))
        # The envelope and the versions exactly.
        for key in ('event_type', 'priority', 'publisher_id'):
            self.assertEqual(sample[key], sent[key])
        self.assertEqual('nova-qat-migration:cmp1', sent['publisher_id'])
        for key in ('nova_object.name', 'nova_object.namespace',
                    'nova_object.version'):
            self.assertEqual(sample['payload'][key], sent['payload'][key])
        self.assertEqual(notifications.QATMigrationPayload.VERSION,
                         sample['payload']['nova_object.version'])

    def test_sample_regenerates_identically(self):
        # The committed sample is this module's record, as sent: a change
        # of the payload must re-record it (python -m
        # tests.unit.test_notifications) and bump the version.
        sent = message(notifications.build(sample_record(), host='cmp1'))
        self.assertEqual(load_sample(), json.loads(json.dumps(sent)))

    def test_shape_check_catches_a_new_field(self):
        sample = load_sample()
        sent = message(notifications.build(sample_record(), host='cmp1'))
        sent['payload']['nova_object.data']['new_field'] = 1
        sent['payload']['nova_object.data']['total_s'] = 'nine'
        self.assertEqual(
            ['notification.payload.nova_object.data.new_field: sent, not '
             'in the sample',
             'notification.payload.nova_object.data.total_s: float in the '
             'sample, str sent'], shape_differences(sample, sent))

    def test_destination_migration_and_request_carried(self):
        data = message(notifications.build(sample_record(), host='cmp1'))[
            'payload']['nova_object.data']
        self.assertEqual(('cmp1', 'cmp2'), (data['host'],
                                            data['destination_host']))
        self.assertEqual('a4b3c2d1-0e9f-4a8b-9c7d-6e5f4a3b2c1d',
                         data['migration_uuid'])
        self.assertTrue(data['request_id'].startswith('req-'))


def write_sample():
    """Re-record the committed sample (run by hand after a payload
    change, with the version bumped).
    """
    sent = message(notifications.build(sample_record(), host='cmp1'))
    with open(SAMPLE, 'w') as f:
        f.write(json.dumps(sent, indent=4, sort_keys=True) + '\n')


if __name__ == '__main__':
    write_sample()
