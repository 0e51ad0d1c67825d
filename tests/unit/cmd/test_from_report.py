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
"""``nova-qat-migration plan --from-report`` on the committed records.

Every record of the committed benchmark (``benchmarks/results.jsonl``, the
run the documentation reports) is replayed through the command, with the
``nova.conf`` its compute ran with (the lab's options, and a fixed row's
``[qat_migration_static]`` options), and must give the plan it recorded.

The other committed runs are kept for comparison and were made by earlier
planners or with other option sets; :data:`FROZEN` says why each cannot be
reproduced, and the test lists the records that are not (a run that is
not explained there fails the test).
"""

import glob
import io
import json
import os

import fixtures

from nova_qat_migration.cmd import cli
from nova_qat_migration.conf import CONF
from nova_qat_migration_lab import runner
from nova_qat_migration_lab import scenarios
from tests.unit import base

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))))
CURRENT = 'benchmarks/results.jsonl'
#: Committed runs not expected to reproduce today, and why.
FROZEN = {
    'benchmarks/nova-path-2026-11-30a/results.jsonl':
        'the first run through the Nova path, on the planner before the '
        'performance work (benchmarks/README.md)',
    'benchmarks/runner-2026-11-26/results.jsonl':
        "made through the lab's former copy of the driver; its plan "
        "specs (adaptive-rules, plain, ...) are no longer policies",
    'benchmarks/run1/results.jsonl':
        'the first benchmark run, with the former plan specs and planner',
    'benchmarks/qatzip/results.jsonl':
        'made by benchmarks/qatzip/run.py with its own option sets, not '
        'the lab scenarios',
    'benchmarks/soak/results.jsonl':
        "the soak's guests are planned by their flavors' extra specs and "
        "the soak's own options (nova_qat_migration_lab/soak.py), which "
        'its rows do not carry',
    'benchmarks/soak-nova-baseline/results.jsonl':
        "the soak on Nova's own libvirt driver (soak --driver "
        "libvirt.LibvirtDriver), the baseline of nova-compute's memory: "
        'nothing planned, no report',
    'benchmarks/faults/results.jsonl':
        "the fault matrix's rows use the option sets of "
        'nova_qat_migration_lab/faults.py, and its nova_default rows carry '
        'no report',
}


def conf_text(row):
    """nova.conf of the compute that made ``row``."""
    groups = {'qat_migration': dict(
        runner.LAB_QAT_OPTIONS, model_calibration=os.path.join(
            ROOT, 'benchmarks', 'calibration.json'))}
    spec = scenarios.PLANS.get(row.get('plan'))
    for key, value in (spec.options if spec else ()):
        group, name = scenarios.option_group(key)
        groups.setdefault(group, {})[name] = value
    lines = []
    for group, values in groups.items():
        lines.append('[%s]' % group)
        for name, value in sorted(values.items()):
            if isinstance(value, (list, tuple)):
                value = ','.join(str(v) for v in value)
            lines.append('%s = %s' % (name, str(value).lower()
                                      if isinstance(value, bool)
                                      else value))
    return '\n'.join(lines) + '\n'


def records(rel):
    with open(os.path.join(ROOT, rel)) as f:
        return [(n, line) for n, line in enumerate(f)]


class FromReportTest(base.TestCase):

    def setUp(self):
        super().setUp()
        self.addCleanup(CONF.reset)
        self.tmp = self.useFixture(fixtures.TempDir()).path

    def replay(self, line):
        """(exit code, JSON answer or stderr) of the command on ``line``."""
        row = json.loads(line)
        conf = os.path.join(self.tmp, 'nova.conf')
        with open(conf, 'w') as f:
            f.write(conf_text(row))
        record = os.path.join(self.tmp, 'record.json')
        with open(record, 'w') as f:
            f.write(line)
        out, err = io.StringIO(), io.StringIO()
        with fixtures.MonkeyPatch('sys.stdout', out), \
                fixtures.MonkeyPatch('sys.stderr', err):
            code = cli.main(['--config-file', conf, 'plan', '--from-report',
                             record, '--json'])
        CONF.reset()
        CONF.clear()
        if code == 2:
            return code, err.getvalue()
        return code, json.loads(out.getvalue())

    def test_current_benchmark_reproduced(self):
        # Decisions the planner changed on purpose since the run are
        # listed with the reason by the adaptive replay test (its
        # ``CHANGED``, '<dir>:<line>:<scenario>' -> (plan now, why)): the
        # command must print exactly that difference for them.
        from tests.unit.policy import test_replay
        changed = getattr(test_replay, 'CHANGED', {})
        rows = records(CURRENT)
        self.assertGreaterEqual(len(rows), 50)
        for n, line in rows:
            code, answer = self.replay(line)
            name = 'benchmarks:%d:%s' % (n, json.loads(line).get(
                'scenario'))
            if name in changed:
                self.assertEqual(1, code, name)
                self.assertEqual(changed[name][0], answer['replayed'])
                continue
            self.assertEqual(0, code, '%s:%d: %s' % (CURRENT, n, answer))
            self.assertEqual([], answer['differences'])
            self.assertEqual(answer['recorded'], answer['replayed'])

    def test_every_committed_run_reproduced_or_explained(self):
        found = sorted(os.path.relpath(p, ROOT) for p in glob.glob(
            os.path.join(ROOT, 'benchmarks', '**', 'results.jsonl'),
            recursive=True))
        self.assertIn(CURRENT, found)
        unexplained = []
        listed = []
        for rel in found:
            if rel == CURRENT:
                continue
            for n, line in records(rel):
                code, answer = self.replay(line)
                if code == 0:
                    continue
                what = (answer if code == 2 else
                        '; '.join(answer['differences'][:2]))
                if rel in FROZEN:
                    listed.append('%s:%d: %s' % (rel, n, what))
                else:
                    unexplained.append('%s:%d: %s' % (rel, n, what))
        # The list is the test's detail: what a replay cannot reproduce.
        self.addDetailUniqueName('not reproduced (explained by FROZEN)',
                                 _text('\n'.join(listed)))
        self.assertEqual([], unexplained)

    def test_log_line_and_instance(self):
        _, line = records(CURRENT)[0]
        report = json.loads(line)['report']
        other = dict(report, instance='other')
        log = os.path.join(self.tmp, 'nova-compute.log')
        with open(log, 'w') as f:
            f.write('2026-12-01 INFO nova_qat_migration.report [-] '
                    'qat_migration report: %s\n' % json.dumps(report))
            f.write('2026-12-01 INFO x [-] qat_migration report: %s\n'
                    % json.dumps(other))
        out = io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', out))
        code = cli.main(['plan', '--from-report', log, '--instance',
                         report['instance']])
        self.assertEqual(0, code)
        self.assertIn('instance: %s' % report['instance'], out.getvalue())
        self.assertIn('same plan', out.getvalue())

    def test_difference_printed(self):
        _, line = [(n, line) for n, line in records(CURRENT)
                   if json.loads(line)['report']['requested'].startswith(
                       'static[zstd')][0]
        record = os.path.join(self.tmp, 'r.json')
        with open(record, 'w') as f:
            f.write(line)
        out = io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', out))
        # Without the row's [qat_migration_static] options the static
        # policy plans plain pre-copy: the command says what moved.
        code = cli.main(['plan', '--from-report', record])
        text = out.getvalue()
        self.assertEqual(1, code, text)
        self.assertIn('differences (recorded -> replayed):', text)
        self.assertIn('  - method: zstd -> none', text)

    def test_not_a_report(self):
        path = os.path.join(self.tmp, 'x.log')
        with open(path, 'w') as f:
            f.write('nothing here\n')
        err = io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', err))
        self.assertEqual(2, cli.main(['plan', '--from-report', path]))
        self.assertIn("no 'qat_migration report:' line", err.getvalue())

    def test_facts_options_refused_beside_it(self):
        err = io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', err))
        self.assertEqual(2, cli.main(['plan', '--from-report', '-',
                                      '--ram', '1024']))
        self.assertIn('drop --ram', err.getvalue())


def _text(value):
    from testtools import content
    return content.text_content(value or '(none)')
