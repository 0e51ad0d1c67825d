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
"""``nova-qat-migration-lab cloud up|status|down`` as an operator runs it.

Runs after the lab suite has stopped its cloud (the test command's order):
nothing of the cloud may be left; a second ``up`` (databases in place)
brings every service back; ``down`` again leaves no process or namespace.
"""

import os
import subprocess
import sys
import time

import testtools

from nova_qat_migration_lab import services
from tests.lab import test_migration

CLI = os.path.join(os.path.dirname(sys.executable), 'nova-qat-migration-lab')
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _cli(*args, timeout=900):
    return subprocess.run([CLI, '--repo-root', ROOT, 'cloud'] + list(args),
                          capture_output=True, text=True, timeout=timeout)


def _left():
    """What of the cloud still runs: processes (ps) and namespaces."""
    # A zombie (already exited, not yet reaped by its parent) is not
    # running: ``stat`` Z.
    ps = [line for line in subprocess.run(
        ['ps', '-eo', 'pid=,stat=,args='], capture_output=True,
        text=True).stdout.splitlines()
        if not line.split()[1].startswith('Z')]
    names = ('nova-compute', 'nova-conductor', 'nova-scheduler',
             'gunicorn', 'privsep-helper', 'mariadbd', 'beam.smp',
             'memcached', 'epmd', services.STATE_ROOT,
             '/run/nqm-lab/%s' % services.PREFIX)
    left = [line.strip() for line in ps
            if any(n in line for n in names) and 'ps -eo' not in line]
    netns = subprocess.run(['ip', 'netns', 'list'], capture_output=True,
                           text=True).stdout.split()
    left += ['netns %s' % n for n in netns
             if n.startswith(services.PREFIX + '-')]
    return left


class TestCloudLifecycle(testtools.TestCase):

    def setUp(self):
        super().setUp()
        why = test_migration._skip_reason()
        if why:
            self.skipTest(why)
        if not os.path.exists(os.path.join(services.STATE_ROOT,
                                           'databases.stamp')):
            self.skipTest('no cloud was set up on this machine')

    def test_down_leaves_nothing_and_up_again(self):
        res = _cli('down')
        self.assertEqual(0, res.returncode, res.stdout + res.stderr)
        self.assertEqual([], _left())
        started = time.monotonic()
        res = _cli('up')
        took = time.monotonic() - started
        self.addDetail('up', testtools.content.text_content(
            res.stdout + res.stderr))
        try:
            self.assertEqual(0, res.returncode, res.stderr[-3000:])
            status = _cli('status')
            self.assertEqual(0, status.returncode, status.stdout)
            for line in status.stdout.splitlines():
                self.assertTrue(line.rstrip().endswith(' up'), line)
            self.assertIn('compute %s-a' % services.PREFIX, status.stdout)
            self.assertIn('compute %s-b' % services.PREFIX, status.stdout)
            self.addDetail('warm up seconds', testtools.content.text_content(
                '%.1f' % took))
        finally:
            res = _cli('down')
        self.assertEqual(0, res.returncode, res.stdout + res.stderr)
        self.assertEqual([], _left())
        self.assertFalse(services.ServiceCloud.running())
