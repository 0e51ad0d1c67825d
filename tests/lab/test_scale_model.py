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
"""The scale model's benchmark definitions and summaries (no hypervisor).

Scenario validation, the physical floor, the oracle summary (median,
min-max, the two best fixed plans, adaptive against the best), the link
calibration's knee and the drain's speed-up, on synthetic records.
"""

import dataclasses

import testtools

from nova_qat_migration_lab.bench import report
from nova_qat_migration_lab.bench import scale
from nova_qat_migration_lab import drain_bench
from nova_qat_migration_lab import scenarios as sc


def _run(scenario, plan, total_s, repeat=0, converged=True, ratio=None,
         wire_bytes=None, job_s=None):
    return {'scenario': scenario, 'plan': plan, 'repeat': repeat,
            'converged': converged,
            'outcome': 'completed' if converged else 'timeout',
            'total_s': total_s if converged else None, 'job_s': job_s,
            'downtime_ms': 100, 'wire_bytes': wire_bytes,
            'src_cpu_s': 1.0, 'integrity': 'ok',
            'facts': {'compress_ratio': ratio} if ratio else {},
            'effective_plan': '%s[none] downtime<=500ms' % plan}


class ScaleScenariosTest(testtools.TestCase):

    def test_four_scenarios_at_the_scale_model_link(self):
        names = sc.SCENARIO_SETS['scale-model']
        self.assertEqual(4, len(names))
        patterns = {sc.SCENARIOS[n].pattern for n in names}
        self.assertEqual({'text', 'small', 'random'}, patterns)
        zero = sc.SCENARIOS['scale-zero']
        self.assertLess(zero.touch_mb * 4, zero.memory_mb)
        for name in names:
            scenario = sc.SCENARIOS[name]
            self.assertEqual(sc.SCALE_MODEL_LINK_MBIT, scenario.link_mbit)
            self.assertEqual([], sc.check_scale_scenario(scenario))

    def test_link_is_a_parameter(self):
        for mbit in (200, 400):
            for scenario in sc.scale_model(mbit):
                self.assertEqual(mbit, scenario.link_mbit)
                self.assertEqual([], sc.check_scale_scenario(scenario))

    def test_validation_names_what_is_wrong(self):
        text = sc.SCENARIOS['scale-text']
        fast = dataclasses.replace(text, rate=text.rate * 2)
        self.assertIn('not within 0.5-0.9',
                      sc.check_scale_scenario(fast)[0])
        slow = dataclasses.replace(text, rate=text.rate // 4)
        self.assertTrue(sc.check_scale_scenario(slow))
        cut = dataclasses.replace(text, timeout_s_per_gib=None)
        self.assertIn("not Nova's 800", sc.check_scale_scenario(cut)[0])
        self.assertTrue(sc.check_scale_scenario(
            dataclasses.replace(text, hot_mb=text.touch_mb + 1)))
        # The 1 Gbit/s matrix is no scale model.
        self.assertTrue(sc.check_scale_scenario(sc.SCENARIOS['text-rewrite']))

    def test_completion_timeout_is_novas_per_gib(self):
        scenario = sc.SCENARIOS['scale-text']
        self.assertEqual(800 * 2.0, scenario.completion_timeout_s(60.0))
        zero = sc.SCENARIOS['scale-zero']
        self.assertEqual(800 * 2.0, zero.completion_timeout_s(60.0))
        self.assertEqual(60.0, sc.SCENARIOS['text-rewrite']
                         .completion_timeout_s(60.0))

    def test_default_set_is_the_cpu_bound_matrix(self):
        default = sc.SCENARIO_SETS['default']
        self.assertIn('text-rewrite', default)
        self.assertFalse(set(default) & set(sc.SCENARIO_SETS['scale-model']))
        self.assertEqual(len(sc.LINK_CALIBRATION_MBIT),
                         len(sc.SCENARIO_SETS['link-calibration']))


class FloorTest(testtools.TestCase):

    def test_floor_by_hand(self):
        # (1280 + 384) MiB at 0.3 over 250 Mbit/s (29.8 MiB/s).
        scenario = sc.SCENARIOS['scale-text']
        expected = (1280 + 384) * 0.3 / (250e6 / 8 / 2 ** 20)
        self.assertAlmostEqual(expected,
                               scale.physical_floor_s(scenario, 0.3))
        self.assertAlmostEqual(16.75, expected, places=1)

    def test_best_ratio_is_the_smallest_measured(self):
        runs = [_run('scale-text', 'adaptive', 30, ratio=0.45),
                _run('scale-text', 'plain', 90, ratio=0.31),
                _run('scale-random', 'plain', 90, ratio=0.97)]
        self.assertEqual(0.31, scale.best_ratio(runs, 'scale-text'))
        self.assertEqual(0.97, scale.best_ratio(runs, 'scale-random'))
        self.assertEqual(1.0, scale.best_ratio(runs, 'scale-zero'))


class OracleTest(testtools.TestCase):

    def runs(self):
        out = []
        times = {'adaptive': (31.0, 30.0, 33.0),
                 'nova_default': (95.0, 96.0, 95.5),
                 'zstd1x4': (30.4, 29.0, 35.0),
                 'xbzrle512': (60.0, 58.0, 61.0),
                 'plain': (90.0, 91.0, 92.0)}
        for repeat in range(3):
            for plan, values in times.items():
                out.append(_run('scale-text', plan, values[repeat], repeat,
                                ratio=0.3))
            # A fixed plan that timed out once is no oracle.
            out.append(_run('scale-text', 'postcopy2', 20.0, repeat,
                            converged=repeat != 1, ratio=0.3))
        return out

    def test_median_min_max_and_the_two_best_fixed(self):
        entry = scale.oracle(self.runs())['scale-text']
        rows = {r['plan']: r for r in entry['rows']}
        self.assertEqual(['adaptive', 'nova_default', 'zstd1x4',
                          'xbzrle512'], [r['plan'] for r in entry['rows']])
        self.assertEqual((31.0, 30.0, 33.0),
                         (rows['adaptive']['median_s'],
                          rows['adaptive']['min_s'],
                          rows['adaptive']['max_s']))
        self.assertEqual('zstd1x4', entry['best_fixed'])
        self.assertAlmostEqual(31.0 / 30.4, entry['adaptive_vs_oracle'])
        self.assertEqual(3, entry['repeats'])
        floor = scale.physical_floor_s(sc.SCENARIOS['scale-text'], 0.3)
        self.assertAlmostEqual(31.0 / floor, rows['adaptive']['vs_floor'])

    def test_markdown_shows_the_noise_and_too_few_repeats(self):
        text = '\n'.join(scale.oracle_markdown(self.runs()))
        self.assertIn('| adaptive | 31.0 | 30.0-33.0 | 3/3 |', text)
        self.assertIn('adaptive / oracle (zstd1x4): 1.02', text)
        self.assertNotIn('only', text)
        one = [r for r in self.runs() if r['repeat'] == 0]
        self.assertIn('only 1 repeat(s)',
                      '\n'.join(scale.oracle_markdown(one)))

    def test_in_the_summary(self):
        self.assertIn('## Oracle and physical floor',
                      report.summary_markdown(self.runs()))


class LinkCalibrationTest(testtools.TestCase):

    def runs(self, zstd_share):
        out = []
        for mbit, share in zip(sc.LINK_CALIBRATION_MBIT, zstd_share):
            job_s = 10.0
            for plan, got in (('plain', 0.95), ('zstd1x4', share)):
                wire = got * mbit * 1e6 / 8 * job_s
                out.append(_run('link-%d' % mbit, plan, job_s + 2,
                                wire_bytes=wire, job_s=job_s))
        return out

    def test_wire_rate_against_link(self):
        rows = scale.link_calibration(self.runs((0.95, 0.93, 0.6, 0.3)))
        zstd = [r for r in rows if r['plan'] == 'zstd1x4']
        self.assertEqual([100, 250, 500, 1000],
                         [r['link_mbit'] for r in zstd])
        self.assertAlmostEqual(0.93, zstd[1]['share'])
        self.assertAlmostEqual(232.5, zstd[1]['wire_mbit'])

    def test_knee(self):
        rows = scale.link_calibration(self.runs((0.95, 0.93, 0.6, 0.3)))
        self.assertEqual(250, scale.cores_not_bottleneck_below(rows))
        rows = scale.link_calibration(self.runs((0.5, 0.93, 0.9, 0.9)))
        self.assertIsNone(scale.cores_not_bottleneck_below(rows))
        self.assertIn('up to: 250 Mbit/s', scale.link_calibration_markdown(
            self.runs((0.95, 0.93, 0.6, 0.3))))


class DrainScaleModelTest(testtools.TestCase):

    def test_guests_share_the_scale_model_link(self):
        args = drain_bench.argparse.Namespace(scale_model=True,
                                              link_mbit=None)
        guests, link, out = drain_bench.guests_and_link(args)
        self.assertEqual(sc.SCALE_MODEL_LINK_MBIT, link)
        self.assertEqual(('benchmarks', 'drain-scale-model'), out)
        self.assertEqual(4, len(guests))
        total = sum(s.dirty_mbps for _n, s in guests)
        link_mbps = sc.SCALE_MODEL_LINK_MBIT * 1e6 / 8 / 2 ** 20
        self.assertLess(total, 0.9 * link_mbps)
        self.assertTrue(all(s.pattern == 'text' for _n, s in guests))
        args = drain_bench.argparse.Namespace(scale_model=False,
                                              link_mbit=None)
        self.assertEqual(1000, drain_bench.guests_and_link(args)[1])

    def test_speedup_against_the_better_nova_way(self):
        def run(policy, seconds, check='ok', code=0):
            return {'policy': policy, 'time_to_empty_s': seconds,
                    'exit_code': code,
                    'guests': [{'memory_check': check}]}
        runs = [run('nova_default', 200.0), run('nova_default', 150.0),
                run('adaptive', 60.0)]
        self.assertAlmostEqual(2.5, drain_bench.speedup(runs))
        self.assertIn('2.50x faster', drain_bench.summary(
            [dict(r, run=r['policy'], guests=[]) for r in runs]))
        runs[2] = run('adaptive', 60.0, check='FAIL: lost')
        self.assertIsNone(drain_bench.speedup(runs))
