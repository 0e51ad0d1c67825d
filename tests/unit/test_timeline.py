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
"""A migration's timeline: the bounded series the monitor feeds, the
actions with their times, the model's predicted line, and what the
history keeps of it.
"""

import json
import os

import fixtures
import testtools

from nova_qat_migration import datamodel
from nova_qat_migration import history
from nova_qat_migration import history_format
from nova_qat_migration.policy import model
from nova_qat_migration import timeline
from nova_qat_migration.virt.libvirt import tracker as tracker_mod
from tests.unit import timeline_data

MIB = datamodel.MIB


def stats(t, remaining_mb=100.0, **extra):
    sample = {'type': 2, 'time_elapsed': int(t * 1000),
              'memory_total': 1024 * MIB,
              'memory_remaining': int(remaining_mb * MIB),
              'memory_processed': int((1024 - remaining_mb) * MIB),
              'memory_iteration': 1, 'memory_dirty_rate': 2560,
              'memory_page_size': 4096}
    sample.update(extra)
    return sample


def feed(tracker, times, **extra):
    for t in times:
        tracker.update(stats(t, **extra))


class SeriesTest(testtools.TestCase):

    def test_every_poll_kept_while_there_is_room(self):
        tracker = tracker_mod.ProgressTracker()
        feed(tracker, [0.5 * i for i in range(1, 11)])
        rows = tracker.series.rows
        self.assertEqual([0.5 * i for i in range(1, 11)],
                         [r[0] for r in rows])
        # remaining, processed (MiB), dirty rate (2560 pages of 4 KiB/s)
        self.assertEqual([100.0, 924.0, 10.0, 1, 0],
                         [round(v, 1) for v in rows[0][1:6]])

    def test_polls_closer_than_the_interval_are_skipped_but_the_last(self):
        tracker = tracker_mod.ProgressTracker()
        feed(tracker, [0.1 * i for i in range(1, 13)])
        self.assertEqual([0.1, 0.6, 1.1],
                         [round(r[0], 1) for r in tracker.series.rows])
        tracker.series.finish()
        self.assertEqual(1.2, round(tracker.series.rows[-1][0], 1))
        self.assertEqual(12, tracker.series.seen)

    def test_long_migration_bounded_and_evenly_downsampled(self):
        tracker = tracker_mod.ProgressTracker()
        times = [0.5 * i for i in range(1, 5001)]     # 41 minutes
        feed(tracker, times)
        rows = tracker.series.rows
        self.assertLessEqual(len(rows), timeline.MAX_SAMPLES)
        self.assertGreater(len(rows), timeline.MAX_SAMPLES // 2)
        gaps = {round(b[0] - a[0], 3) for a, b in zip(rows, rows[1:])}
        self.assertEqual({tracker.series.interval_s}, gaps)
        self.assertEqual(0.5, rows[0][0])
        self.assertGreaterEqual(rows[-1][0],
                                times[-1] - tracker.series.interval_s)
        tracker.series.finish()
        self.assertEqual(times[-1], tracker.series.rows[-1][0])
        self.assertLessEqual(len(tracker.series.rows),
                             timeline.MAX_SAMPLES)

    def test_actions_recorded_at_the_time_they_were_applied(self):
        tracker = tracker_mod.ProgressTracker()
        feed(tracker, [0.5, 1.0])
        tracker.applied(datamodel.Action(datamodel.ACTION_DOWNTIME, 75,
                                         "Nova's downtime step 100 ms"))
        feed(tracker, [1.5, 2.0])
        tracker.applied(datamodel.Action(datamodel.ACTION_XBZRLE_CACHE, 1024,
                                         'misses 40%'))
        tracker.applied(datamodel.Action(datamodel.ACTION_ABORT,
                                         reason='no progress for 60 s'))
        self.assertEqual(
            [[1.0, 'downtime', 75, "Nova's downtime step 100 ms"],
             [2.0, 'xbzrle_cache', 1024, 'misses 40%'],
             [2.0, 'abort', None, 'no progress for 60 s']],
            tracker.series.events)

    def test_throttle_changes_are_events(self):
        tracker = tracker_mod.ProgressTracker()
        feed(tracker, [0.5, 1.0])
        feed(tracker, [1.5, 2.0], auto_converge_throttle=40)
        feed(tracker, [2.5], auto_converge_throttle=60)
        self.assertEqual([(1.5, 'throttle', 40), (2.5, 'throttle', 60)],
                         [tuple(e[:3]) for e in tracker.series.events])

    def test_post_copy_once_with_the_escalation_reason(self):
        series = timeline.Series()
        # Nova's switch (the proxy), then the escalation that asked.
        series.event(datamodel.ACTION_POST_COPY, t=3.0)
        series.event(datamodel.ACTION_POST_COPY, reason='2 stalled passes',
                     t=3.0)
        self.assertEqual([[3.0, 'post_copy', None, '2 stalled passes']],
                         series.events)

    def test_events_bounded_but_an_abort_is_kept(self):
        series = timeline.Series()
        for i in range(timeline.MAX_EVENTS + 30):
            series.event(datamodel.ACTION_DOWNTIME, i, t=float(i))
        series.event(datamodel.ACTION_ABORT, reason='timeout', t=500.0)
        self.assertEqual(timeline.MAX_EVENTS + 1, len(series.events))
        self.assertEqual(30, series.events_dropped)
        self.assertEqual('abort', series.events[-1][1])

    def test_xbzrle_hit_rate_per_interval(self):
        tracker = tracker_mod.ProgressTracker()
        feed(tracker, [0.5])        # no XBZRLE counters: no hit rate
        tracker.update(stats(1.0, compression_pages=0,
                             compression_cache_misses=0))
        tracker.update(stats(1.5, compression_pages=100,
                             compression_cache_misses=900))
        tracker.update(stats(2.0, compression_pages=1000,
                             compression_cache_misses=1000))
        tracker.update(stats(2.5, compression_pages=1000,
                             compression_cache_misses=1000))
        hits = [r[6] for r in tracker.series.rows]
        # cold cache (10%), warm (90%), nothing looked up (unknown)
        self.assertEqual([None, None, 0.1, 0.9, None], hits)


def predict(plan, load):
    """The model's prediction at 1 Gbit/s, with its trace."""
    trace = []
    return model.predict(plan, load, 119.0, trace=trace), trace


class PredictedTest(testtools.TestCase):

    def test_model_trace_follows_the_passes(self):
        plan = datamodel.Plan(policy='t', max_downtime_ms=500)
        load = model.Workload(ram_mb=1024, dirty_mbps=50.0,
                              working_set_mb=256)
        pred, trace = predict(plan, load)
        self.assertTrue(pred.converges)
        cal = datamodel.Calibration()
        self.assertEqual((cal.setup_s, 1024), trace[0])
        self.assertAlmostEqual(pred.total_s, trace[-1][0])
        self.assertEqual(0.0, trace[-1][1])
        times = [p[0] for p in trace]
        self.assertEqual(sorted(times), times)
        # Each pass after the first starts where the one before fell to
        # nothing, with less to send as the migration converges (the
        # last is sent while the guest is paused).
        starts = [trace[i][1] for i in range(2, len(trace) - 1, 2)]
        self.assertEqual(pred.rounds, len(starts))
        self.assertEqual([0.0] * pred.rounds,
                         [trace[i][1] for i in range(1, len(trace) - 1, 2)])
        self.assertEqual(sorted(starts, reverse=True), starts)
        # The same prediction with or without a trace.
        self.assertEqual(pred, model.predict(plan, load, 119.0))

    def test_model_trace_of_a_block_migration_and_post_copy(self):
        plan = datamodel.Plan(policy='t', post_copy=True,
                              post_copy_after_stalled=2)
        load = model.Workload(ram_mb=1024, dirty_mbps=500.0,
                              disk_mb=2048)
        pred, trace = predict(plan, load)
        self.assertTrue(pred.post_copy)
        cal = datamodel.Calibration()
        self.assertEqual([(cal.setup_s, 2048),
                          (cal.setup_s + pred.disk_s, 0.0),
                          (cal.setup_s + pred.disk_s, 1024)], trace[:3])
        self.assertAlmostEqual(pred.total_s, trace[-1][0])

    def test_predicted_at(self):
        points = [[1.0, 100.0], [3.0, 0.0], [3.0, 40.0], [5.0, 0.0]]
        self.assertEqual(100.0, timeline.predicted_at(points, 0.2))
        self.assertEqual(50.0, timeline.predicted_at(points, 2.0))
        self.assertEqual(40.0, timeline.predicted_at(points, 3.0))
        self.assertEqual(20.0, timeline.predicted_at(points, 4.0))
        self.assertEqual(0.0, timeline.predicted_at(points, 9.0))
        # A model that gave up predicts nothing past its last pass.
        self.assertIsNone(timeline.predicted_at(points[:3], 9.0))
        self.assertIsNone(timeline.predicted_at([], 1.0))


class BuildTest(testtools.TestCase):

    def test_busy_run(self):
        data = timeline_data.busy_timeline()
        self.assertEqual(list(timeline.FIELDS), data['fields'])
        self.assertEqual('instance-0000002a', data['name'])
        self.assertEqual('busy-web-1', data['display_name'])
        self.assertEqual('completed', data['outcome'])
        self.assertEqual(timeline_data.LINK_MBPS, data['link_mbps'])
        self.assertEqual(1024.0, data['memory_mb'])
        self.assertIn('throttled to', data['prediction'])
        kinds = [e['kind'] for e in data['events']]
        self.assertEqual(['downtime', 'downtime', 'throttle',
                          'xbzrle_cache'], sorted(kinds))
        samples = data['samples']
        self.assertEqual(len(timeline_data.job_stats()[0]), len(samples))
        # Every sample has the model's value for its moment.
        _, trace = timeline_data.predicted()
        for sample in samples:
            self.assertAlmostEqual(timeline.predicted_at(trace, sample[0]),
                                   sample[7], delta=0.051)
        self.assertEqual(4, max(s[4] for s in samples))

    def test_strict_json_whatever_the_stats(self):
        tracker = tracker_mod.ProgressTracker()
        tracker.update(stats(0.5, memory_dirty_rate=float('nan'),
                             compression_pages=float('inf')))
        tracker.update(stats(1.0, memory_remaining=float('nan')))
        tracker.applied(datamodel.Action(datamodel.ACTION_DOWNTIME, 50))
        record = {'instance': 'u', 'outcome': 'failed',
                  'total_s': float('nan'), 'downtime_ms': float('inf'),
                  'prediction': {'total_s': float('nan')},
                  'facts': {'link_mbps': float('-inf')}}
        data = timeline.build(tracker.series, record,
                              [(0.5, float('nan')), (1.0, 3.0)])
        text = json.dumps(data, allow_nan=False)
        self.assertEqual(data, json.loads(text))
        self.assertNotIn('downtime_ms', data)
        self.assertNotIn('link_mbps', data)
        self.assertEqual([[1.0, 3.0]], data['predicted'])
        self.assertEqual(2, len(data['samples']))

    def test_clean_refuses_what_is_no_timeline(self):
        good = timeline_data.busy_timeline()
        self.assertEqual(good, timeline.clean(good))
        for bad in (None, [], 'x', {}, dict(good, version=2),
                    dict(good, fields=['t']), dict(good, samples={})):
            self.assertIsNone(timeline.clean(bad))

    def test_checked_keeps_a_good_one_and_cleans_the_rest(self):
        good = timeline_data.busy_timeline()
        self.assertIs(good, timeline.checked(good))
        nan = dict(good, total_s=float('nan'))
        self.assertEqual(timeline.clean(nan), timeline.checked(nan))
        self.assertNotIn('total_s', timeline.checked(nan))
        for bad in (dict(good, unknown=1), dict(good, plan='x' * 10 ** 6),
                    dict(good, samples=good['samples'] * 100)):
            self.assertEqual(timeline.clean(bad), timeline.checked(bad))
            self.assertIsNot(bad, timeline.checked(bad))
        self.assertIsNone(timeline.checked(dict(good, version=0)))

    def test_clean_bounds_a_hostile_timeline(self):
        data = timeline_data.busy_timeline()
        row = [1e12] * len(timeline.FIELDS)
        hostile = dict(
            data, plan='\u2603' * 5000, samples=[row] * 5000 +
            [['x'] * 8, [1.0], 'row', [None] * 8],
            events=[{'t': 1e12, 'kind': 'k' * 100,
                     'reason': '\u2603' * 5000}] * 500 + ['e'],
            predicted=[[1e12, 1e12]] * 5000 + [[1, 'x']],
            extra='dropped')
        clean = timeline.clean(hostile)
        self.assertLessEqual(len(json.dumps(clean)), timeline.MAX_BYTES)
        self.assertNotIn('extra', clean)
        self.assertEqual(timeline.MAX_TEXT, len(clean['plan']))
        self.assertLessEqual(len(clean['samples']), timeline.MAX_SAMPLES)
        self.assertEqual(32, len(clean['events'][0]['kind']))
        self.assertEqual(timeline.MAX_PREDICTED, len(clean['predicted']))
        self.assertEqual(clean, timeline.clean(clean))


class HistoryTimelineTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.path = self.useFixture(fixtures.TempDir()).path
        self.data = timeline_data.busy_timeline()

    def read_file(self):
        with open(os.path.join(self.path, history.FILENAME)) as f:
            # Strict JSON: no NaN or Infinity anywhere.
            return json.load(f, parse_constant=self.fail)

    def test_kept_with_the_entry(self):
        store = history.HistoryStore(self.path)
        store.record('u1', {'method': 'xbzrle', 'converged': True,
                            'timeline': self.data})
        entry = self.read_file()['instances'][0]
        self.assertEqual(self.data, entry['timeline'])
        self.assertTrue(entry['converged'])
        # Reading it back keeps it, and the planner's view is unchanged.
        again = history.HistoryStore(self.path)
        self.assertEqual('xbzrle', again.get('u1').method)
        again.record('u2', {'method': 'none'})
        self.assertEqual(self.data, self.read_file()['instances'][0][
            'timeline'])

    def test_only_the_newest_entries_keep_one(self):
        store = history.HistoryStore(self.path)
        count = history_format.TIMELINES_KEPT + 5
        for i in range(count):
            store.record('u%d' % i, {'method': 'none',
                                     'timeline': self.data})
        entries = self.read_file()['instances']
        self.assertEqual(count, len(entries))
        kept = [e['uuid'] for e in entries if 'timeline' in e]
        self.assertEqual(['u%d' % i for i in range(5, count)], kept)
        # Migrated again: it gets one back, the oldest one left loses it.
        store.record('u0', {'method': 'none', 'timeline': self.data})
        kept = [e['uuid'] for e in self.read_file()['instances']
                if 'timeline' in e]
        self.assertEqual(history_format.TIMELINES_KEPT, len(kept))
        self.assertEqual('u0', kept[-1])
        self.assertNotIn('u5', kept)
        self.assertLess(os.path.getsize(os.path.join(
            self.path, history.FILENAME)),
            history_format.read_limit(store.max_entries))

    def test_a_migration_without_one_drops_the_old_one(self):
        store = history.HistoryStore(self.path)
        store.record('u1', {'method': 'none', 'timeline': self.data})
        store.record('u1', {'method': 'none'})
        self.assertNotIn('timeline', self.read_file()['instances'][0])

    def test_a_bad_timeline_costs_itself_not_the_entry(self):
        bad = dict(self.data, version=99)
        with open(os.path.join(self.path, history.FILENAME), 'w') as f:
            json.dump({'version': 1, 'instances': [
                {'uuid': 'u1', 'migrations': 3, 'method': 'zstd',
                 'timeline': bad},
                {'uuid': 'u2', 'migrations': 1,
                 'timeline': dict(self.data, samples=[
                     [float('nan')] * 8, [1.0] + [float('inf')] * 7])}]},
                f)
        store = history.HistoryStore(self.path)
        self.assertEqual(3, store.get('u1').migrations)
        self.assertEqual('zstd', store.get('u1').method)
        store.record('u3', {'method': 'none'})
        entries = {e['uuid']: e for e in self.read_file()['instances']}
        self.assertNotIn('timeline', entries['u1'])
        self.assertEqual([[1.0] + [None] * 7],
                         entries['u2']['timeline']['samples'])

    def test_invalid_timeline_not_recorded(self):
        store = history.HistoryStore(self.path)
        store.record('u1', {'method': 'none', 'timeline': {'nope': 1}})
        entry = self.read_file()['instances'][0]
        self.assertEqual('none', entry['method'])
        self.assertNotIn('timeline', entry)
