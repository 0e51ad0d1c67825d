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
"""``devices`` and ``selftest`` subcommands."""

import argparse
import io
import json
from unittest import mock

from nova_qat_migration.cmd import qat as qat_cmd
from tests.unit.qat import base
from tests.unit.qat import test_qatzip


class TestCommands(base.QATTestCase):

    def run_cmd(self, *argv):
        parser = argparse.ArgumentParser()
        qat_cmd.add_parsers(parser.add_subparsers())
        args = parser.parse_args(argv)
        out, err = io.StringIO(), io.StringIO()
        with mock.patch('sys.stdout', out), mock.patch('sys.stderr', err):
            rc = args.func(args)
        return rc, out.getvalue(), err.getvalue()

    def test_devices_text(self):
        self.tree.add_pf('0000:6b:00.0', '4xxx', numvfs=16)
        self.tree.add_pf('0000:70:00.0', '4xxx', numvfs=2, heartbeat=-1)
        rc, out, err = self.run_cmd(
            'devices', '--sysfs-root', self.tree.sysfs, '--debugfs-root',
            self.tree.debugfs, '--nodename', 'cmp1', '-v')
        self.assertEqual((0, ''), (rc, err))
        self.assertIn('PF 0000:6b:00.0  4xxx (gen 4, 0x4940)  driver 4xxx',
                      out)
        self.assertIn('heartbeat unresponsive', out)
        self.assertIn('NOT USABLE', out)
        self.assertIn('VF 0000:6b:00.1  driver 4xxxvf', out)
        self.assertIn('cmp1_qat_0000:6b:00.0  CUSTOM_QAT_DC total 16 '
                      'reserved 1', out)
        self.assertIn('compute node traits: CUSTOM_QAT_MIGRATION', out)

    def test_devices_json(self):
        self.tree.add_pf('0000:6b:00.0', '4xxx', numvfs=2,
                         services='sym;asym')
        rc, out, _err = self.run_cmd('devices', '--json', '--nodename', 'n')
        self.assertEqual(0, rc)
        data = json.loads(out)
        self.assertEqual(['sym', 'asym'], data['devices'][0]['services'])
        self.assertEqual(2, len(data['devices'][0]['vfs']))
        child = data['placement']['children'][0]
        self.assertEqual('n_qat_0000:6b:00.0', child['name'])
        self.assertEqual({}, child['inventory'])
        self.assertEqual([], data['placement']['compute_node_traits'])

    def test_devices_bad_root(self):
        rc, out, err = self.run_cmd('devices', '--sysfs-root', '/nonexist')
        self.assertEqual(2, rc)
        self.assertIn('sysfs root /nonexist is not a directory', err)
        self.assertNotIn('Traceback', err)

    def test_devices_none(self):
        rc, out, _err = self.run_cmd('devices')
        self.assertEqual(0, rc)
        self.assertIn('No QAT devices', out)

    def test_selftest(self):
        self.useFixture(test_qatzip.QuietStderrFD())
        rc, out, err = self.run_cmd('selftest', '--size', '1')
        self.assertEqual((0, ''), (rc, err))
        self.assertIn('engine:      software', out)
        self.assertIn('byte-for-byte identical', out)
        rc, out, err = self.run_cmd('selftest', '--size', '1', '--json')
        data = json.loads(out)
        self.assertEqual(('ok', False, True),
                         (data['status'], data['hardware'],
                          data['roundtrip_ok']))

    def test_selftest_missing_library(self):
        rc, out, err = self.run_cmd('selftest', '--library',
                                    test_qatzip.MISSING)
        self.assertEqual(2, rc)
        self.assertIn('QATzip not installed', err)

    def test_selftest_bad_size(self):
        rc, _out, err = self.run_cmd('selftest', '--size', '0')
        self.assertEqual(2, rc)
        self.assertIn('--size must be 1..1024', err)
