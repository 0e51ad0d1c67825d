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
"""The lab's pieces that need no hypervisor: the guest's page patterns,
the benchmark summary and ratios, the scenario and plan tables.
"""

import os
import shutil
import subprocess
import tempfile
import zlib

import testtools

from nova_qat_migration import datamodel
from nova_qat_migration.virt.libvirt import translate
from nova_qat_migration_lab.bench import report
from nova_qat_migration_lab.bench import stats
from nova_qat_migration_lab import guest
from nova_qat_migration_lab import measure
from nova_qat_migration_lab import runner
from nova_qat_migration_lab import scenarios as sc


def _run(scenario, plan, converged, total=None, integrity='ok',
         outcome=None, repeat=0):
    res = measure.RunResult(scenario=scenario, plan=plan, repeat=repeat)
    res.converged = converged
    res.total_s = total
    res.outcome = outcome or ('completed' if converged else 'timeout')
    res.integrity = integrity
    res.downtime_ms = 100 if converged else None
    res.wire_bytes = 10 ** 9
    res.src_cpu_s = 5.0
    res.effective_plan = plan
    return res.to_dict()


class TestDirtierPatterns(testtools.TestCase):
    """The guest program's patterns have the properties the scenarios
    rely on: text compresses about 2x, random and small do not, zero is
    nearly nothing.
    """

    def setUp(self):
        super().setUp()
        if shutil.which('gcc') is None:
            self.skipTest('gcc not installed')
        self.tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def _dump(self, pattern, pages=1024):
        binary = os.path.join(self.tmp, 'dirtier')
        if not os.path.exists(binary):
            subprocess.run(['gcc', '-O2', '-o', binary,
                            guest.dirtier_source()], check=True, timeout=120)
        out = subprocess.run([binary, '--dump', pattern, str(pages)],
                             check=True, capture_output=True, timeout=60)
        self.assertEqual(pages * 4096, len(out.stdout))
        return out.stdout

    def test_ratios(self):
        ratio = {p: len(d) / len(zlib.compress(d, 1)) for p, d in (
            (p, self._dump(p)) for p in ('zero', 'small', 'text', 'random'))}
        self.assertGreater(ratio['zero'], 50)
        self.assertGreater(ratio['text'], 1.8)
        self.assertLess(ratio['text'], 4.0)
        self.assertLess(ratio['random'], 1.01)
        self.assertLess(ratio['small'], 1.01)


class TestSummary(testtools.TestCase):

    def _results(self):
        out = []
        for rep in range(3):
            out.append(_run('s1', 'nova_default', False, repeat=rep))
            out.append(_run('s1', 'adaptive', True, 10.0 + rep, repeat=rep))
            out.append(_run('s1', 'xbzrle512', True, 9.0 + rep, repeat=rep))
            out.append(_run('s1', 'zstd1x4', rep != 1, 5.0, repeat=rep))
            out.append(_run('s2', 'nova_default', True, 40.0, repeat=rep))
            out.append(_run('s2', 'adaptive', True, 8.0, repeat=rep))
            out.append(_run('s2', 'plain', True, 30.0, repeat=rep))
        return out

    def test_aggregate(self):
        table = stats.aggregate(self._results())
        cell = table['s1']['adaptive']
        self.assertEqual((3, 3, 11.0, 10.0, 12.0),
                         (cell['n'], cell['converged'], cell['median_s'],
                          cell['min_s'], cell['max_s']))
        self.assertIsNone(table['s1']['nova_default']['median_s'])
        self.assertEqual(2, table['s1']['zstd1x4']['converged'])

    def test_best_fixed_must_always_converge(self):
        # zstd1x4 is faster but failed once: the best fixed plan is the
        # fastest among those that always converged.
        rat = stats.ratios(stats.aggregate(self._results()))
        self.assertEqual('xbzrle512', rat['s1']['best_fixed'])
        self.assertAlmostEqual(11.0 / 10.0, rat['s1']['adaptive_vs_best'])
        self.assertNotIn('adaptive_vs_nova', rat['s1'])
        self.assertAlmostEqual(0.2, rat['s2']['adaptive_vs_nova'])

    def test_markdown_names_failures(self):
        results = self._results()
        results.append(_run('s2', 'plain', True, 30.0, integrity='FAIL'))
        results.append(_run('s2', 'zlib1x4', False, outcome='rejected'))
        text = report.summary_markdown(results)
        self.assertIn('**1 FAILED**', text)
        self.assertIn('Integrity failures: 1. Plans rejected by libvirt: 1.',
                      text)
        self.assertIn('Geometric mean of adaptive/nova_default over the 1',
                      text)
        self.assertEqual(2, len(report.failures(results)))

    def _done(self, results, scope, number):
        return [c for c in stats.done_checks(results)
                if c['scope'] == scope and c['check'] == number][0]

    def test_done_checks(self):
        results = self._results()
        # s1: adaptive 11 s vs xbzrle512 (always converged) 10 s: 1.1x.
        self.assertTrue(self._done(results, 's1', 1)['passed'])
        self.assertTrue(self._done(results, 's1', 2)['passed'])
        # s2: nova_default 40 s / adaptive 8 s = 5x, the only scenario
        # where both converge.
        check = self._done(results, 'overall', 3)
        self.assertTrue(check['passed'])
        self.assertIn('geomean 5.00x over 1 scenario(s)', check['detail'])
        self.assertTrue(self._done(results, 'overall', 4)['passed'])
        self.assertTrue(self._done(results, 'overall', 5)['passed'])
        text = report.summary_markdown(results)
        self.assertIn('## Done checks', text)
        self.assertNotIn('**FAIL**', text.split('## Done checks')[1])

    def test_done_checks_fail(self):
        results = self._results()
        for r in results:
            if r['scenario'] == 's1' and r['plan'] == 'adaptive':
                if r['repeat'] == 0:
                    r['converged'], r['total_s'] = False, None
                    r['outcome'] = 'timeout'
                r['effective_plan'] = 'adaptive[none] downtime<=300ms'
                r['report'] = {'effective_plan': {'max_downtime_ms': 300}}
                r['downtime_ms'] = 350 if r['repeat'] == 2 else 100
            if r['scenario'] == 's2' and r['plan'] == 'adaptive':
                r['total_s'] = 25.0
                r['tracker'] = {'max_throttle_pct': 40, 'post_copy': False}
        # 1: xbzrle512 always converged, adaptive did not.
        self.assertFalse(self._done(results, 's1', 1)['passed'])
        self.assertFalse(self._done(results, 'overall', 1)['passed'])
        # 2: adaptive 25 s vs plain 30 s passes in s2; s1 median 11.5 s
        # vs 10 s fails.
        self.assertTrue(self._done(results, 's2', 2)['passed'])
        self.assertFalse(self._done(results, 's1', 2)['passed'])
        # 3: 40/25 = 1.6x < 3x.
        self.assertFalse(self._done(results, 'overall', 3)['passed'])
        # 4: 350 ms over the plan's 300 ms.
        check = self._done(results, 's1', 4)
        self.assertFalse(check['passed'])
        self.assertIn('350 ms > 300 ms', check['detail'])
        # 5: adaptive throttled; plain (30 s <= 1.2 x 25 s) and
        # nova_default (40 s) did not: plain is gentle and close.
        check = self._done(results, 's2', 5)
        self.assertFalse(check['passed'])
        self.assertIn('plain', check['detail'])
        self.assertNotIn('nova_default', check['detail'])
        self.assertIn('| overall | 5.', report.summary_markdown(results))

    def test_guest_impact_columns(self):
        results = self._results()
        for r in results:
            r['guest'] = {'vs_before': 0.5, 'vs_nominal': 0.4,
                          'lost_s': 3.0, 'worst_rate': 100.0,
                          'max_throttle_pct': 0, 'post_copy': False}
            if r['plan'] == 'xbzrle512':
                r['guest'].update(post_copy=True, postcopy_s=2.5,
                                  max_throttle_pct=30)
        table = stats.aggregate(results)
        cell = table['s1']['xbzrle512']
        self.assertEqual((0.5, 3.0, 30, 3, 2.5),
                         (cell['guest_vs_before'], cell['guest_lost_s'],
                          cell['max_throttle_pct'], cell['post_copy'],
                          cell['postcopy_s']))
        text = report.summary_markdown(results)
        self.assertIn('| xbzrle512 | 50% | 40% | 3.0 | 100 | 30% | '
                      '3/3 (2.5 s) |', text)

    def test_guest_impact(self):
        # 1000 pages/s before the migration (t=90..100), 250 pages/s while
        # it runs (100..110), and a post-copy phase from 106 on whose
        # reports were read on the destination after the end (112).
        samples = [(t, t - 50.0, 1000 * t, 1000.0)
                   for t in range(90, 101)]
        samples += [(100 + k, 50.0 + k, 100000 + 250 * k, 250.0)
                    for k in range(1, 7)]
        samples.append((112.0, 62.0, 101500 + 500, 83.0))
        out = measure.guest_impact(
            samples, start=100.2, end=110.0, nominal=2000, stat_s=1,
            postcopy_at=106.5,
            report={'monitor': {'max_throttle_pct': 0, 'post_copy': True}})
        self.assertAlmostEqual(1000.0, out['before_rate'])
        # Last sample before the end is 106 (3.8 s before it): the window
        # runs from the start's sample (100) to the first one after (112).
        self.assertEqual((-0.2, 11.8), (out['window_from_s'],
                                        out['window_to_s']))
        self.assertAlmostEqual(2000 / 12.0, out['during_rate'])
        self.assertAlmostEqual(2000 / 12.0 / 1000.0, out['vs_before'])
        self.assertAlmostEqual(2000 / 12.0 / 2000, out['vs_nominal'])
        self.assertEqual(10.0, out['lost_s'])
        self.assertEqual(83.0, out['worst_rate'])
        self.assertTrue(out['post_copy'])
        self.assertEqual(3.5, out['postcopy_s'])
        self.assertAlmostEqual(500 / 6.0, out['postcopy_rate'])

    def test_guest_impact_catch_up_is_not_the_pace(self):
        # 1200 pages/s before (catching up), nominal 1000, 800 during.
        samples = [(t, t, 1200 * t, 1200.0) for t in range(7, 11)]
        samples += [(10 + k, 10.0 + k, 12000 + 800 * k, 800.0)
                    for k in range(1, 6)]
        out = measure.guest_impact(samples, start=10.1, end=15.0,
                                  nominal=1000)
        self.assertAlmostEqual(1200.0, out['before_rate'])
        self.assertEqual(1000.0, out['reference_rate'])
        self.assertAlmostEqual(0.8, out['vs_before'])
        self.assertEqual(1.0, out['lost_s'])

    def test_guest_impact_without_samples(self):
        out = measure.guest_impact([], 10.0, 20.0, nominal=5)
        self.assertIsNone(out['during_rate'])
        self.assertIsNone(out['before_rate'])

    def test_console_stat_lines(self):
        console = guest.Console(dom=None)
        console._take_stats(b'READY pages=3\r\nSTAT t=1.0 written=5 ra',
                            10.0)
        console._take_stats(b'te=5\r\nSTAT t=2.0 written=9 rate=4\r\n',
                            11.0)
        self.assertEqual([(11.0, 1.0, 5, 5.0), (11.0, 2.0, 9, 4.0)],
                         console.stats())

    def test_chart(self):
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            self.skipTest('matplotlib not installed (lab/requirements.txt)')
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp, True)
        path = report.chart(self._results(), os.path.join(tmp, 'c.png'), 60)
        with open(path, 'rb') as f:
            self.assertEqual(b'\x89PNG', f.read(4))


class TestTables(testtools.TestCase):

    def test_issue_matrix_present(self):
        self.assertGreaterEqual(len(sc.SCENARIOS), 5)
        for name in ('nova_default', 'adaptive', 'plain', 'parallel4',
                     'zstd1x4', 'zlib1x4', 'xbzrle128', 'xbzrle512',
                     'autoconv20+10', 'postcopy2'):
            self.assertIn(name, sc.PLANS)
        self.assertEqual(10000, sc.SCENARIOS['idle-10g'].link_mbit)

    def test_fixed_plans_are_static_policy_options(self):
        # Every fixed row is the static policy configured as an operator
        # would: the options produce exactly the plan the row stands for.
        from oslo_config import fixture as config_fixture

        from nova_qat_migration.conf import CONF
        from nova_qat_migration.policy import static
        facts = datamodel.Facts(destination=capabilities_dest(),
                                host=datamodel.HostLoad(
                                    cpus=8, cpu_idle_pct=90.0,
                                    mem_free_mb=16384))
        for spec in sc.PLANS.values():
            if not spec.fixed:
                continue
            conf = config_fixture.Config(CONF)
            conf.setUp()
            try:
                # What the lab's computes run besides the row's options.
                conf.config(group='qat_migration',
                            **runner.LAB_QAT_OPTIONS)
                for name, value in spec.options:
                    group, option = sc.option_group(name)
                    conf.config(group=group, **{option: value})
                plan = static.StaticPolicy(CONF).plan(facts)
            finally:
                conf.cleanUp()
            for field in ('method', 'parallel_connections',
                          'xbzrle_cache_mb', 'throttle_initial',
                          'throttle_increment', 'post_copy'):
                self.assertEqual(getattr(spec.plan, field),
                                 getattr(plan, field),
                                 '%s: %s' % (spec.name, field))
            if spec.plan.level is not None:
                self.assertEqual(spec.plan.level, plan.level, spec.name)
            if spec.plan.post_copy:
                self.assertEqual(spec.plan.post_copy_after_stalled,
                                 plan.post_copy_after_stalled, spec.name)

    def test_fixed_plans_translate_without_degradation(self):
        # On the lab's software (libvirt 11.3, QEMU 10.0, zlib/zstd) every
        # fixed plan must run as asked: the benchmark measures what it says.
        facts = datamodel.Facts(destination=capabilities_dest())
        for spec in sc.PLANS.values():
            if spec.fixed:
                call = translate.to_libvirt(spec.plan, facts)
                self.assertEqual((), call.degradations, spec.name)


def capabilities_dest():
    from nova_qat_migration.virt.libvirt import migration_traits
    return migration_traits.destination_from_traits(
        migration_traits.traits_for(datamodel.HypervisorCaps()))
