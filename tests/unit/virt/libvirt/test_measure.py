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
"""Host load from /proc and the guest dirty rate from libvirt."""

import os
from unittest import mock

import fixtures

from nova_qat_migration.virt.libvirt import measure
from tests.unit import base

MEMINFO = """MemTotal:       24576000 kB
MemFree:         1000000 kB
MemAvailable:   12582912 kB
Buffers:           10000 kB
"""


def _stat(user, nice, system, idle, iowait):
    return ('cpu  %d %d %d %d %d 0 0 0 0 0\ncpu0 1 1 1 1 1 0 0 0 0 0\n'
            % (user, nice, system, idle, iowait))


class TestHostLoad(base.TestCase):

    def setUp(self):
        super().setUp()
        self.proc = self.useFixture(fixtures.TempDir()).path
        self.write('meminfo', MEMINFO)

    def write(self, name, text):
        with open(os.path.join(self.proc, name), 'w') as f:
            f.write(text)

    def test_idle_and_memory(self):
        self.write('stat', _stat(100, 0, 100, 800, 0))

        def tick(seconds):
            # 1000 jiffies later: 250 busy, 700 idle, 50 iowait.
            self.write('stat', _stat(300, 0, 150, 1500, 50))

        # Patch the module's view of time only: the process-wide time
        # functions also serve eventlet's hub once Nova is imported.
        with mock.patch.object(measure, 'time') as fake_time:
            fake_time.sleep.side_effect = tick
            load = measure.host_load(interval=0.1, proc=self.proc)
        self.assertEqual(75.0, load.cpu_idle_pct)
        self.assertEqual(12288, load.mem_free_mb)
        self.assertEqual(os.cpu_count(), load.cpus)

    def test_no_time_passed_counts_as_idle(self):
        self.write('stat', _stat(100, 0, 100, 800, 0))
        with mock.patch.object(measure, 'time'):
            load = measure.host_load(proc=self.proc)
        self.assertEqual(100.0, load.cpu_idle_pct)

    def test_unreadable_means_busy_and_no_memory(self):
        load = measure.host_load(proc=os.path.join(self.proc, 'missing'))
        self.assertEqual(0.0, load.cpu_idle_pct)
        self.assertEqual(0, load.mem_free_mb)

    def test_real_proc(self):
        if not os.path.exists('/proc/stat'):
            self.skipTest('no /proc')
        load = measure.host_load(interval=0.05)
        self.assertTrue(0.0 <= load.cpu_idle_pct <= 100.0)
        self.assertGreater(load.mem_free_mb, 0)


class _FakeClockTest(base.TestCase):
    """A fake clock that sleeping advances."""

    def setUp(self):
        super().setUp()
        self.clock = [0.0]
        self.fake_time = self.useFixture(fixtures.MockPatchObject(
            measure, 'time')).mock
        self.fake_time.monotonic.side_effect = lambda: self.clock[0]

        def sleep(seconds):
            self.clock[0] += seconds

        self.fake_time.sleep.side_effect = sleep

    def _dom(self, records):
        dom = mock.Mock()
        dom.connect.return_value.domainListGetStats.side_effect = [
            [(dom, record)] for record in records]
        return dom


class TestDirtyRate(_FakeClockTest):

    def test_measured(self):
        dom = self._dom([
            {'dirtyrate.calc_status': 1},
            {'dirtyrate.calc_status': 2,
             'dirtyrate.megabytes_per_second': 123},
        ])
        self.assertEqual(123.0, measure.dirty_rate_mbps(dom, seconds=2))
        dom.startDirtyRateCalc.assert_called_once_with(2, 0)

    def test_page_sample_taken_while_qemu_measures(self):
        # The sample runs after the calculation started and before its
        # result is read; the 2 s window is not waited for again.
        dom = self._dom([{'dirtyrate.calc_status': 2,
                          'dirtyrate.megabytes_per_second': 50}])
        seen = []

        def during():
            seen.append((dom.startDirtyRateCalc.called,
                         dom.connect.return_value.domainListGetStats.called,
                         self.clock[0]))
            self.clock[0] += 1.5         # the sample takes 1.5 s

        self.assertEqual(50.0, measure.dirty_rate_mbps(dom, seconds=2,
                                                       during=during))
        self.assertEqual([(True, False, 0.0)], seen)
        self.assertEqual(2.0, self.clock[0])

    def test_during_runs_when_the_rate_cannot_be_measured(self):
        dom = mock.Mock()
        dom.startDirtyRateCalc.side_effect = RuntimeError('not supported')
        seen = []
        self.assertIsNone(measure.dirty_rate_mbps(
            dom, seconds=1, during=lambda: seen.append(1)))
        self.assertIsNone(measure.dirty_rate_mbps(
            dom, seconds=0, during=lambda: seen.append(2)))
        self.assertEqual([1, 2], seen)

    def test_disabled(self):
        dom = mock.Mock()
        self.assertIsNone(measure.dirty_rate_mbps(dom, seconds=0))
        dom.startDirtyRateCalc.assert_not_called()

    def test_libvirt_error_means_unknown(self):
        dom = mock.Mock()
        dom.startDirtyRateCalc.side_effect = RuntimeError('not supported')
        self.assertIsNone(measure.dirty_rate_mbps(dom, seconds=1))

    def test_never_measured_times_out(self):
        dom = mock.Mock()
        dom.connect.return_value.domainListGetStats.return_value = [
            (dom, {'dirtyrate.calc_status': 1})]
        self.assertIsNone(measure.dirty_rate_mbps(dom, seconds=1,
                                                  timeout=5))
        # Polled every POLL_S (0.05 s) until the 5 s deadline, then gave
        # up.
        calls = dom.connect.return_value.domainListGetStats.call_count
        self.assertTrue(70 <= calls <= 90, calls)

    def test_result_read_soon_after_the_window(self):
        # QEMU has the result a moment after the window: it is read within
        # one POLL_S of it, not a 0.2 s poll later.
        dom = self._dom([{'dirtyrate.calc_status': 1},
                         {'dirtyrate.calc_status': 2,
                          'dirtyrate.megabytes_per_second': 7}])
        self.assertEqual(7.0, measure.dirty_rate_mbps(dom, seconds=1))
        self.assertAlmostEqual(1.0 + measure.POLL_S, self.clock[0])


class TestQuietFirst(_FakeClockTest):
    """A longer window starts with a short one; a quiet guest ends it."""

    def _rates(self, *rates):
        return self._dom([{'dirtyrate.calc_status': 2,
                           'dirtyrate.megabytes_per_second': r}
                          for r in rates])

    def test_quiet_guest_ends_a_long_window_early(self):
        dom = self._rates(0)
        self.assertEqual((0.0, True),
                         measure.dirty_rate_quiet_first(dom, 5))
        dom.startDirtyRateCalc.assert_called_once_with(1, 0)
        self.assertEqual(1.0, self.clock[0])      # not 5 s

    def test_busy_guest_measured_over_the_whole_window(self):
        dom = self._rates(100, 40)
        rate, quiet = measure.dirty_rate_quiet_first(dom, 3)
        self.assertFalse(quiet)
        # Both windows, weighted by their lengths.
        self.assertAlmostEqual((100 * 1 + 40 * 2) / 3.0, rate)
        self.assertEqual([mock.call(1, 0), mock.call(2, 0)],
                         dom.startDirtyRateCalc.call_args_list)
        self.assertEqual(3.0, self.clock[0])      # what it cost before

    def test_threshold(self):
        rate, quiet = measure.dirty_rate_quiet_first(
            self._rates(measure.QUIET_MBPS), 4)
        self.assertTrue(quiet)
        rate, quiet = measure.dirty_rate_quiet_first(self._rates(2, 2), 4)
        self.assertEqual((2.0, False), (rate, quiet))

    def test_one_second_window_is_one_window(self):
        dom = self._rates(0)
        self.assertEqual((0.0, False),
                         measure.dirty_rate_quiet_first(dom, 1))
        dom.startDirtyRateCalc.assert_called_once_with(1, 0)

    def test_unmeasurable_first_window_ends_it(self):
        dom = mock.Mock()
        dom.startDirtyRateCalc.side_effect = RuntimeError('not supported')
        seen = []
        self.assertEqual((None, False), measure.dirty_rate_quiet_first(
            dom, 5, during=lambda: seen.append(1)))
        dom.startDirtyRateCalc.assert_called_once_with(1, 0)
        self.assertEqual([1], seen)

    def test_second_window_failing_keeps_the_first(self):
        dom = self._rates(50)
        dom.startDirtyRateCalc.side_effect = [None, RuntimeError('gone')]
        self.assertEqual((50.0, False),
                         measure.dirty_rate_quiet_first(dom, 3))

    def test_instance_fields_say_how_they_were_measured(self):
        self.fake_time.time.return_value = 1234.5
        fields = measure.instance_fields(self._rates(0), 1024,
                                         dirty_seconds=4, sample_pages=0)
        self.assertEqual({'dirty_rate_mbps': 0.0, 'measurement': 'quiet',
                          'measured_at': 1234.5}, fields)
        dom = self._rates(30, 30)
        fields = measure.instance_fields(dom, 1024,
                                         dirty_seconds=2, sample_pages=0)
        # [qat_migration] sample_guest_memory = false: no page is read.
        dom.memoryPeek.assert_not_called()
        self.assertNotIn('compress_ratio', fields)
        self.assertEqual('measured', fields['measurement'])
        self.assertEqual(30.0, fields['dirty_rate_mbps'])
