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
"""The per-host migration history and the per-migration report."""

import json
import os
import threading
from unittest import mock

import fixtures
import testtools

from nova_qat_migration import datamodel
from nova_qat_migration import history
from nova_qat_migration import outcomes
from nova_qat_migration.virt.libvirt import report


class HistoryStoreTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.path = self.useFixture(fixtures.TempDir()).path

    def test_unknown_instance_is_empty_history(self):
        store = history.HistoryStore(self.path)
        self.assertEqual(datamodel.History(), store.get('nope'))

    def test_record_persists_and_counts(self):
        store = history.HistoryStore(self.path)
        store.record('a', {'dirty_rate_mbps': 80.0, 'method': 'zstd',
                           'converged': True})
        store.record('a', {'dirty_rate_mbps': None, 'total_s': 4.5})
        again = history.HistoryStore(self.path).get('a')
        self.assertEqual(2, again.migrations)
        # None keeps the last measurement.
        self.assertEqual(80.0, again.dirty_rate_mbps)
        self.assertEqual('zstd', again.method)
        self.assertEqual(4.5, again.total_s)
        self.assertEqual(sorted([history.FILENAME, history.LOCKNAME]),
                         sorted(os.listdir(self.path)))

    def test_bounded_oldest_out(self):
        store = history.HistoryStore(self.path, max_entries=3)
        for name in 'abcd':
            store.record(name, {'method': 'none'})
        store.record('b', {'method': 'xbzrle'})    # b is now newest
        store.record('e', {'method': 'none'})
        self.assertEqual(3, len(store))
        reloaded = history.HistoryStore(self.path, max_entries=3)
        self.assertEqual(0, reloaded.get('a').migrations)
        self.assertEqual(0, reloaded.get('c').migrations)
        self.assertEqual('xbzrle', reloaded.get('b').method)
        self.assertEqual(1, reloaded.get('e').migrations)

    def test_corrupt_file_starts_empty(self):
        with open(os.path.join(self.path, history.FILENAME), 'w') as f:
            f.write('{"instances": [{"uuid": "a", "migr')
        logger = self.useFixture(fixtures.FakeLogger())
        store = history.HistoryStore(self.path)
        self.assertEqual(0, len(store))
        self.assertIn('Ignoring unreadable migration history',
                      logger.output)
        store.record('a', {'method': 'none'})
        with open(os.path.join(self.path, history.FILENAME)) as f:
            self.assertEqual('a', json.load(f)['instances'][0]['uuid'])

    def test_wrong_shape_starts_empty(self):
        with open(os.path.join(self.path, history.FILENAME), 'w') as f:
            json.dump({'instances': {'a': 1}}, f)
        self.useFixture(fixtures.FakeLogger())
        self.assertEqual(0, len(history.HistoryStore(self.path)))

    def test_unwritable_path_keeps_memory(self):
        target = os.path.join(self.path, 'file')
        open(target, 'w').close()
        logger = self.useFixture(fixtures.FakeLogger())
        store = history.HistoryStore(os.path.join(target, 'sub'))
        store.record('a', {'method': 'none'})
        self.assertEqual(1, store.get('a').migrations)
        self.assertIn('kept in memory', logger.output)

    def test_concurrent_records(self):
        store = history.HistoryStore(self.path, max_entries=1000)

        def work(prefix):
            for i in range(25):
                store.record('%s-%d' % (prefix, i), {'method': 'none'})

        threads = [threading.Thread(target=work, args=(p,))
                   for p in 'abcd']
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(100, len(history.HistoryStore(self.path)))
        leftovers = [n for n in os.listdir(self.path)
                     if n not in (history.FILENAME, history.LOCKNAME)]
        self.assertEqual([], leftovers)


class ReportTest(testtools.TestCase):

    def _record(self, **kw):
        plan = datamodel.Plan(policy='adaptive', method='zstd', level=1,
                              parallel_connections=4, reasons=('idle CPU',))
        args = dict(
            instance_uuid='u1', instance_name='vm', requested=plan,
            outcome=outcomes.OUTCOME_COMPLETED, total_s=12.3456,
            last_stats={'memory_total': 1024 * datamodel.MIB,
                        'memory_processed': 512 * datamodel.MIB,
                        'time_elapsed': 4000, 'downtime': 999},
            completed_stats={'downtime': 42, 'memory_iteration': 3},
            summary={'max_dirty_rate_mbps': 33.0, 'xbzrle_hit_ratio': None},
            sent_params={'compression': 'zstd', 'destination_xml': '<x/>',
                         'parallel.connections': 4},
            sent_flags=['LIVE', 'PARALLEL'])
        args.update(kw)
        return report.build(**args)

    def test_record_fields(self):
        record = self._record()
        self.assertEqual('u1', record['instance'])
        self.assertEqual('adaptive[zstd-1 x4] downtime<=500ms',
                         record['plan'])
        self.assertEqual(['idle CPU'], record['reasons'])
        self.assertEqual(['LIVE', 'PARALLEL'], record['flags'])
        self.assertNotIn('destination_xml', record['params'])
        self.assertEqual(0.5, record['wire_ratio'])
        self.assertEqual(128.0, record['wire_mbps'])
        # The completed job's downtime, not the running job's expectation.
        self.assertEqual(42, record['downtime_ms'])
        self.assertEqual(3, record['iterations'])
        self.assertEqual(12.346, record['total_s'])
        failed = self._record(completed_stats={})
        self.assertIsNone(failed['downtime_ms'])

    def test_history_values(self):
        values = report.history_values(self._record())
        self.assertEqual({'dirty_rate_mbps': 33.0, 'wire_mbps': 128.0,
                          'compression_ratio': 0.5,
                          'xbzrle_hit_ratio': None, 'method': 'zstd',
                          'converged': True, 'total_s': 12.346}, values)

    def test_emit_logs_one_line_and_feeds_history(self):
        logger = self.useFixture(fixtures.FakeLogger())
        store = history.HistoryStore(None)
        report.emit(self._record(), store)
        lines = [line for line in logger.output.splitlines()
                 if line.startswith(outcomes.PREFIX)]
        self.assertEqual(1, len(lines))
        self.assertEqual('u1', json.loads(
            lines[0][len(outcomes.PREFIX):])['instance'])
        self.assertEqual('zstd', store.get('u1').method)

    def test_block_migration_disks_planned_and_copied(self):
        # Issue 21: the planned disk bytes (facts) beside what libvirt's
        # disk_* job stats say was copied (the completed job's).
        gib = 1024 * datamodel.MIB
        facts = datamodel.Facts(block_migration=True, disk_bytes=3 * gib,
                                disk_sizes=(8 * gib,), disk_source='disks',
                                instance=datamodel.InstanceFacts(
                                    memory_mb=4096))
        record = self._record(
            facts=facts,
            completed_stats={'downtime': 42, 'disk_total': 3 * gib,
                             'disk_processed': 3 * gib, 'disk_remaining': 0,
                             'disk_bps': 100 * datamodel.MIB})
        self.assertIn('block migration disks: libvirt copied 3072 of 3072 '
                      'MiB (0 MiB left, 100 MiB/s); 3072 MiB planned from '
                      'the disks', record['notes'])
        self.assertTrue(record['facts']['block_migration'])
        self.assertEqual(3 * gib, record['facts']['disk_bytes'])
        self.assertEqual('disks', record['facts']['disk_source'])
        # Nova's 800 s per GiB of RAM (4) and disk (8).
        self.assertEqual(9600.0,
                         record['facts']['nova_completion_timeout_s'])
        # Planned, but libvirt sent no disk stats (the job failed early).
        record = self._record(facts=facts)
        self.assertIn('block migration disks: no disk_* job stats from '
                      'libvirt; 3072 MiB planned from the disks',
                      record['notes'])
        # No block migration: no note.
        record = self._record(facts=datamodel.Facts())
        self.assertFalse([n for n in record['notes'] if 'disks' in n])

    def test_emit_never_raises(self):
        class Broken:
            def record(self, *a):
                raise OSError('disk full')

        self.useFixture(fixtures.FakeLogger())
        report.emit(self._record(outcome='failed'), Broken())


class MeasurementTest(testtools.TestCase):
    """The guest measurement kept for the next plan to reuse."""

    def setUp(self):
        super().setUp()
        self.path = self.useFixture(fixtures.TempDir()).path

    def _facts(self, measurement='measured', at=1000.0, dirty=40.0, **kw):
        inst = datamodel.InstanceFacts(
            uuid='u1', memory_mb=2048, dirty_rate_mbps=dirty,
            zero_fraction=0.3, compress_ratio=0.4, xbzrle_friendly=0.9,
            measurement=measurement, measured_at=at, **kw)
        return datamodel.Facts(instance=inst)

    def _record(self, facts, total_s=0.0):
        plan = datamodel.Plan(policy='adaptive', method='zstd', level=1,
                              parallel_connections=4)
        return report.build(instance_uuid='u1', requested=plan,
                            outcome=outcomes.OUTCOME_COMPLETED, facts=facts,
                            total_s=total_s,
                            sent_params={'compression': 'zstd',
                                         'parallel.connections': 4},
                            sent_flags=['LIVE', 'PARALLEL'])

    def test_fresh_measurement_recorded_and_read_back(self):
        store = history.HistoryStore(self.path)
        report.emit(self._record(self._facts()), store)
        # A new store: the measurement is in the file.
        found = history.HistoryStore(self.path).measurement('u1')
        self.assertEqual(history.Measurement(
            measured_at=1000.0, memory_mb=2048, dirty_rate_mbps=40.0,
            zero_fraction=0.3, compress_ratio=0.4, xbzrle_friendly=0.9),
            found)
        self.assertEqual({'dirty_rate_mbps': 40.0, 'zero_fraction': 0.3,
                          'compress_ratio': 0.4, 'xbzrle_friendly': 0.9,
                          'measurement': 'reused', 'measured_at': 1000.0},
                         found.fields())
        self.assertEqual(500.0, found.age_s(now=1500.0))
        # The History the policies see is unchanged by it.
        self.assertEqual(40.0, store.get('u1').dirty_rate_mbps)

    def test_reused_measurement_keeps_its_age(self):
        # A plan made from a reused measurement must not renew it: the
        # next plan would otherwise reuse it for ever.
        store = history.HistoryStore(self.path)
        report.emit(self._record(self._facts(at=1000.0)), store)
        record = self._record(self._facts(measurement='reused', at=1000.0,
                                          dirty=40.0))
        self.assertNotIn('measured_at', report.history_values(record))
        report.emit(record, store)
        self.assertEqual(1000.0, store.measurement('u1').measured_at)
        self.assertEqual(2, store.get('u1').migrations)

    def test_reused_measurement_is_in_the_report(self):
        record = self._record(self._facts(measurement='reused',
                                          at=1700000000.0))
        self.assertEqual('reused', record['facts']['measurement'])
        self.assertEqual('2023-11-14T22:13:20+00:00',
                         record['facts']['measured_at'])
        notes = [n for n in record['notes'] if 'reused' in n]
        self.assertEqual(1, len(notes), record['notes'])
        self.assertIn('taken 2023-11-14T22:13:20+00:00', notes[0])
        # The age is the one the planner saw: the migration's own time
        # (total_s) does not count.
        with mock.patch.object(report.time, 'time',
                               return_value=1700000000.0 + 130.0):
            record = self._record(self._facts(measurement='reused',
                                              at=1700000000.0), total_s=30.0)
        self.assertIn('100 s before this migration was planned',
                      [n for n in record['notes'] if 'reused' in n][0])
        fresh = self._record(self._facts())
        self.assertFalse([n for n in fresh['notes'] if 'reused' in n])

    def test_new_measurement_replaces_the_old_whole(self):
        store = history.HistoryStore(self.path)
        report.emit(self._record(self._facts(at=1000.0)), store)
        # No page sample this time: the old one must not survive beside
        # the new dirty rate.
        inst = datamodel.InstanceFacts(uuid='u1', memory_mb=2048,
                                       dirty_rate_mbps=90.0,
                                       measurement='quiet',
                                       measured_at=2000.0)
        report.emit(self._record(datamodel.Facts(instance=inst)), store)
        found = store.measurement('u1')
        self.assertEqual((2000.0, 90.0, None, None, None),
                         (found.measured_at, found.dirty_rate_mbps,
                          found.zero_fraction, found.compress_ratio,
                          found.xbzrle_friendly))

    def test_no_dirty_rate_no_measurement(self):
        store = history.HistoryStore(self.path)
        report.emit(self._record(self._facts(dirty=None)), store)
        self.assertIsNone(store.measurement('u1'))
        self.assertIsNone(store.measurement('unknown'))

    def test_bad_measured_values_dropped(self):
        with open(os.path.join(self.path, history.FILENAME), 'w') as f:
            json.dump({'version': 1, 'instances': [
                {'uuid': 'a', 'measured_at': 'yesterday',
                 'measured_dirty_rate_mbps': 5.0},
                {'uuid': 'b', 'measured_at': 10.0,
                 'measured_dirty_rate_mbps': -1.0},
                {'uuid': 'c', 'measured_at': 10.0,
                 'measured_dirty_rate_mbps': 5.0,
                 'measured_compress_ratio': 7.0}]}, f)
        self.useFixture(fixtures.FakeLogger())
        store = history.HistoryStore(self.path)
        self.assertIsNone(store.measurement('a'))
        self.assertIsNone(store.measurement('b'))
        found = store.measurement('c')
        self.assertEqual((5.0, None), (found.dirty_rate_mbps,
                                       found.compress_ratio))
