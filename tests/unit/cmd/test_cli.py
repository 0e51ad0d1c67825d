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
"""``nova-qat-migration plan``: output, and exit code 2 on bad input."""

import argparse
import io
import json
import os
import subprocess
import sys

import fixtures

from nova_qat_migration.cmd import cli
from nova_qat_migration.virt.libvirt import constants as c
from tests.unit import base

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

FACTS = {
    'instance': {'memory_mb': 8192, 'vcpus': 4, 'dirty_rate_mbps': 20.0},
    'host': {'cpus': 8, 'cpu_idle_pct': 90.0, 'mem_free_mb': 4096},
    'hypervisor': {'libvirt_version': '9.0.0', 'qemu_version': '8.2.0',
                   'multifd_methods': ['none', 'zlib', 'zstd']},
    'destination': {'known': True, 'methods': ['zlib', 'zstd'],
                    'multifd': True},
    'link_mbps': 119.0,
}


class CLITestCase(base.TestCase):

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path

    def run_cli(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', out))
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', err))
        code = cli.main(list(argv))
        return code, out.getvalue(), err.getvalue()

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, 'w') as f:
            f.write(text)
        return path

    def assertUsageError(self, result, *fragments):
        code, out, err = result
        self.assertEqual(2, code, (out, err))
        self.assertNotIn('Traceback', err)
        self.assertIn('nova-qat-migration: ', err)
        for fragment in fragments:
            self.assertIn(fragment, err)


class TestPlan(CLITestCase):

    def test_text_output(self):
        code, out, err = self.run_cli(
            'plan', '--policy', 'adaptive', '--ram', '4096',
            '--cpus', '8', '--cpu-idle', '90', '--link-gbps', '1',
            '--dest-methods', 'zstd,zlib', '--hint', 'method=zstd',
            '--hint', 'level=5')
        self.assertEqual(0, code, err)
        lines = out.splitlines()
        self.assertTrue(lines[0].startswith('plan:   adaptive[zstd-5 x'))
        self.assertTrue(lines[1].startswith('flags:  '))
        self.assertIn('PARALLEL', lines[1])
        params = json.loads(lines[2][len('params: '):])
        self.assertEqual('zstd', params[c.PARAM_COMPRESSION])
        self.assertEqual(5, params[c.PARAM_COMPRESSION_ZSTD_LEVEL])
        self.assertEqual('reasons:', lines[3])
        self.assertIn('method zstd forced by qat_migration:method', out)

    def test_flags_value_matches_names(self):
        code, out, _ = self.run_cli('plan', '--policy', 'nova_default')
        self.assertEqual(0, code)
        flags_line = out.splitlines()[1]
        names, value = flags_line[len('flags:  '):].rsplit(' ', 1)
        total = sum(getattr(c, 'VIR_MIGRATE_' + name)
                    for name in names.split('|'))
        self.assertEqual('(%d)' % total, value)

    def test_json_output(self):
        code, out, err = self.run_cli(
            'plan', '--json', '--policy', 'static', '--hint',
            'method=xbzrle', '--mem-free', '16384')
        self.assertEqual(0, code, err)
        data = json.loads(out)
        self.assertEqual({'plan', 'flags', 'flag_names', 'params', 'backend',
                          'passthrough', 'degradations'}, set(data))
        self.assertEqual('static', data['plan']['policy'])
        self.assertEqual('xbzrle', data['plan']['method'])
        self.assertEqual('xbzrle', data['params'][c.PARAM_COMPRESSION])
        self.assertEqual(c.flag_names(data['flags']), data['flag_names'])
        self.assertIsInstance(data['plan']['reasons'], list)

    def test_facts_file(self):
        path = self.write('facts.json', json.dumps(FACTS))
        code, out, err = self.run_cli('plan', '--json', '--facts', path,
                                      '--hint', 'method=zstd')
        self.assertEqual(0, code, err)
        data = json.loads(out)
        # libvirt 9.0 cannot send zstd: the file's versions were used.
        self.assertEqual('none', data['plan']['method'])
        self.assertTrue(any('libvirt 9.0.0' in d
                            for d in data['degradations']),
                        data['degradations'])

    def test_command_line_overrides_facts_file(self):
        path = self.write('facts.json', json.dumps(FACTS))
        code, out, err = self.run_cli(
            'plan', '--json', '--facts', path, '--hint', 'method=xbzrle',
            '--ram', '2048', '--mem-free', '65536')
        self.assertEqual(0, code, err)
        data = json.loads(out)
        # Cache = half of the 2048 MiB given on the command line.
        self.assertEqual(1024, data['plan']['xbzrle_cache_mb'])

    def test_hints_in_facts_file(self):
        facts = dict(FACTS, instance=dict(FACTS['instance'],
                                          hints={'method': 'xbzrle'}))
        path = self.write('facts.json', json.dumps(facts))
        code, out, err = self.run_cli('plan', '--json', '--facts', path)
        self.assertEqual(0, code, err)
        self.assertEqual('xbzrle', json.loads(out)['plan']['method'])

    def test_config_file(self):
        path = self.write('nova.conf', '[qat_migration]\npolicy = static\n'
                          'static_method = xbzrle\n'
                          'static_xbzrle_cache_mb = 128\n')
        code, out, err = self.run_cli('--config-file', path, 'plan',
                                      '--json')
        self.assertEqual(0, code, err)
        data = json.loads(out)
        self.assertEqual('static', data['plan']['policy'])
        self.assertEqual(128 * 1024 * 1024,
                         data['params'][c.PARAM_COMPRESSION_XBZRLE_CACHE])


class TestBadInput(CLITestCase):

    def test_malformed_facts_json(self):
        path = self.write('facts.json', '{"instance": {"memory_mb": 4096,')
        self.assertUsageError(self.run_cli('plan', '--facts', path),
                              'facts are not valid JSON')

    def test_facts_not_an_object(self):
        path = self.write('facts.json', '[1, 2, 3]')
        self.assertUsageError(self.run_cli('plan', '--facts', path),
                              'facts must be an object')

    def test_facts_section_not_an_object(self):
        path = self.write('facts.json', '{"host": 4}')
        self.assertUsageError(self.run_cli('plan', '--facts', path),
                              'host must be an object')

    def test_facts_unknown_field(self):
        path = self.write('facts.json', '{"host": {"cores": 4}}')
        self.assertUsageError(self.run_cli('plan', '--facts', path),
                              'unknown field host.cores', 'cpus')

    def test_facts_bad_version(self):
        path = self.write('facts.json',
                          '{"hypervisor": {"qemu_version": "ten"}}')
        self.assertUsageError(self.run_cli('plan', '--facts', path),
                              "bad version 'ten'")

    def test_facts_bad_hint(self):
        path = self.write('facts.json',
                          '{"instance": {"hints": {"level": "x"}}}')
        self.assertUsageError(self.run_cli('plan', '--facts', path),
                              'qat_migration:level')

    def test_facts_wrong_types(self):
        cases = [
            ('{"link_mbps": "fast"}', 'facts.link_mbps must be a number'),
            ('{"host": {"cpus": null}}', 'host.cpus must be an integer'),
            ('{"host": {"cpus": 2.5}}', 'host.cpus must be an integer'),
            ('{"qat": {"endpoints": "2"}}',
             'qat.endpoints must be an integer'),
            ('{"instance": {"paused": 1}}',
             'instance.paused must be true or false'),
            ('{"instance": {"dirty_rate_mbps": "5"}}',
             'instance.dirty_rate_mbps must be a number'),
            ('{"instance": {"hints": "x"}}',
             'instance.hints must be an object'),
            ('{"hypervisor": {"qemu_version": 10}}',
             'hypervisor.qemu_version must be a version'),
            ('{"hypervisor": {"qemu_version": [10, "x"]}}',
             'hypervisor.qemu_version must be a version'),
            ('{"destination": {"methods": 5}}',
             'destination.methods must be a list of strings'),
            ('{"history": {"method": 3}}',
             'history.method must be a string'),
        ]
        for text, fragment in cases:
            path = self.write('facts.json', text)
            self.assertUsageError(self.run_cli('plan', '--facts', path),
                                  fragment)

    def test_facts_loose_but_valid_types(self):
        path = self.write('facts.json', json.dumps({
            'instance': {'memory_mb': 4096.0, 'dirty_rate_mbps': None},
            'host': {'cpu_idle_pct': 90},
            'hypervisor': {'qemu_version': [9, 0],
                           'libvirt_version': '9.3'},
            'destination': {'known': True, 'methods': ['zstd']},
        }))
        code, out, err = self.run_cli('plan', '--json', '--facts', path,
                                      '--hint', 'method=zstd')
        self.assertEqual(0, code, err)
        self.assertIn('zstd: not supported by the source libvirt 9.3.0',
                      json.loads(out)['degradations'][0])

    def test_facts_file_missing(self):
        self.assertUsageError(
            self.run_cli('plan', '--facts', os.path.join(self.tmp, 'no')),
            'cannot read')

    def test_unknown_policy(self):
        self.assertUsageError(self.run_cli('plan', '--policy', 'fastest'),
                              "'fastest'", 'adaptive', 'nova_default',
                              'static')

    def test_unknown_policy_from_config(self):
        path = self.write('nova.conf', '[qat_migration]\npolicy = turbo\n')
        self.assertUsageError(self.run_cli('--config-file', path, 'plan'),
                              "'turbo'", 'adaptive, nova_default, static')

    def test_bad_hint(self):
        self.assertUsageError(self.run_cli('plan', '--hint', 'level=99'),
                              'qat_migration:level', 'above the maximum')

    def test_unknown_hint(self):
        self.assertUsageError(self.run_cli('plan', '--hint', 'speed=9'),
                              'qat_migration:speed')

    def test_hint_without_value(self):
        self.assertUsageError(self.run_cli('plan', '--hint', 'level'),
                              'KEY=VALUE')

    def test_out_of_range_option_in_config(self):
        path = self.write('nova.conf',
                          '[qat_migration]\nmax_parallel_connections = 99\n')
        code, out, err = self.run_cli('--config-file', path, 'plan',
                                      '--dirty-rate', '10')
        self.assertEqual(2, code, (out, err))
        self.assertNotIn('Traceback', err)
        self.assertIn('configuration error', err)
        self.assertIn('max_parallel_connections', err)

    def test_bad_argument(self):
        self.assertUsageError(self.run_cli('plan', '--ram', 'lots'),
                              "invalid int value: 'lots'")

    def test_unknown_command(self):
        self.assertUsageError(self.run_cli('frobnicate'))

    def test_no_command(self):
        code, out, err = self.run_cli()
        self.assertEqual(2, code)
        self.assertIn('plan', out)


class TestProcess(base.TestCase):
    """As a real process: the exit code and stderr a shell sees."""

    def test_malformed_facts_in_a_process(self):
        tmp = self.useFixture(fixtures.TempDir()).path
        path = os.path.join(tmp, 'facts.json')
        with open(path, 'w') as f:
            f.write('{not json')
        result = subprocess.run(
            [sys.executable, '-m', 'nova_qat_migration.cmd.cli', 'plan',
             '--facts', path],
            cwd=REPO, capture_output=True, text=True, timeout=120)
        self.assertEqual(2, result.returncode, result.stderr)
        self.assertIn('facts are not valid JSON', result.stderr)
        self.assertNotIn('Traceback', result.stderr)
        self.assertEqual('', result.stdout)

    def test_subcommand_usage_error_as_main_module(self):
        # A subcommand module raises the UsageError it imports; with cli run
        # as __main__ that must still be the class main() catches.
        tmp = self.useFixture(fixtures.TempDir()).path
        conf = os.path.join(tmp, 'nova.conf')
        with open(conf, 'w') as f:
            f.write('[qat_migration]\nstate_path = %s\n' % tmp)
        result = subprocess.run(
            [sys.executable, '-m', 'nova_qat_migration.cmd.cli',
             '--config-file', conf, 'timeline', 'no-such-server'],
            cwd=REPO, capture_output=True, text=True, timeout=120)
        self.assertEqual(2, result.returncode, result.stderr)
        self.assertNotIn('Traceback', result.stderr)
        self.assertEqual(1, len(result.stderr.strip().splitlines()),
                         result.stderr)


class TestOperatorHabits(CLITestCase):
    """``--version``, help for every option, the documented facts file."""

    def test_version(self):
        out = io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', out))
        exc = self.assertRaises(SystemExit, cli.main, ['--version'])
        self.assertEqual(0, exc.code)
        self.assertEqual('nova-qat-migration %s\n' % cli.package_version(),
                         out.getvalue())

    def test_every_option_of_every_subcommand_has_help(self):
        parser = cli.build_parser()
        missing = []

        def walk(p, name):
            for action in p._actions:
                if isinstance(action, argparse._SubParsersAction):
                    for sub, subparser in action.choices.items():
                        walk(subparser, '%s %s' % (name, sub))
                elif not action.help:
                    missing.append('%s %s' % (name, action.dest))
        walk(parser, 'nova-qat-migration')
        self.assertEqual([], missing)

    def test_help_prints_no_rest_markup(self):
        for command in ('drain', 'plan', 'status', 'devices'):
            out = io.StringIO()
            self.useFixture(fixtures.MonkeyPatch('sys.stdout', out))
            self.assertRaises(SystemExit, cli.main, [command, '--help'])
            self.assertNotIn('``', out.getvalue(), command)
            self.assertNotIn(':class:', out.getvalue(), command)

    def test_documented_facts_example_plans(self):
        example = os.path.join(os.path.dirname(os.path.dirname(
            os.path.dirname(os.path.dirname(os.path.abspath(__file__))))),
            'etc', 'nova-qat-migration', 'facts.example.json')
        with open(example) as f:
            data = json.load(f)
        facts = cli.facts_from_json(json.dumps(data))
        # Every section of the documented format is in the example.
        self.assertEqual(set(cli._NESTED), set(data) & set(cli._NESTED))
        self.assertEqual(300, facts.instance.hints.max_downtime_ms)
        code, out, err = self.run_cli('plan', '--facts', example)
        self.assertEqual(0, code, err)
        self.assertIn('plan:   adaptive[', out)

    def test_devices_without_qat_reads_naturally(self):
        code, out, err = self.run_cli('devices', '--sysfs-root', self.tmp)
        self.assertEqual(0, code, err)
        self.assertIn('No QAT devices under %s: this host plans without '
                      'QAT' % self.tmp, out)
        self.assertNotIn('endpoints kept', out)
