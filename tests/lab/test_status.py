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
"""``nova-qat-migration status`` against a real libvirt 11 / QEMU 10 host.

One lab host's libvirt daemon (no guest); the command runs as a separate
process, exactly as an operator runs it, with a nova.conf naming the
driver. Placement is not part of the lab: ``--no-placement``.
"""

import json
import os
import subprocess
import sys
import tempfile

import testtools

from nova_qat_migration_lab import hosts

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
PREFIX = 'nqmst'


class TestStatusOnLabHost(testtools.TestCase):

    def setUp(self):
        super().setUp()
        why = hosts.missing_prerequisites()
        if why:
            self.skipTest('lab needs root, QEMU and libvirt: %s'
                          % '; '.join(why))
        self.lab = hosts.Lab(PREFIX)
        self.addCleanup(self.lab.down)
        self.lab.up()
        self.tmp = tempfile.mkdtemp(prefix='nqmst-')
        self.addCleanup(subprocess.run, ['rm', '-rf', self.tmp])

    def _status(self, *options, netns=None):
        conf = os.path.join(self.tmp, 'nova.conf')
        with open(conf, 'w') as f:
            f.write('[DEFAULT]\ncompute_driver = qat_migration.'
                    'QATLibvirtDriver\n[qat_migration]\nstate_path = %s\n'
                    'sysfs_root = %s\n%s'
                    % (self.tmp, self.tmp, ''.join(o + '\n'
                                                    for o in options)))
        prefix = ['ip', 'netns', 'exec', netns] if netns else []
        proc = subprocess.run(
            prefix + [sys.executable, '-m', 'nova_qat_migration.cmd.cli',
             '--config-file', conf, 'status', '--json', '--no-placement',
             '--connection-uri', self.lab.source.local_uri],
            cwd=REPO, capture_output=True, text=True, timeout=120)
        data = json.loads(proc.stdout)
        return proc.returncode, {c['check']: (c['result'], c['details'])
                                 for c in data['checks']}

    def test_ready_host(self):
        code, results = self._status()
        result, details = results['libvirt and QEMU versions']
        self.assertEqual(0, result, details)
        self.assertIn('libvirt 11.', details)
        self.assertIn('QEMU 10.', details)
        result, details = results['QEMU multifd compression methods']
        self.assertEqual(0, result, details)
        self.assertIn('zlib', details)
        self.assertIn('zstd', details)
        self.assertEqual(0, results['Compute driver'][0])
        self.assertEqual(0, results['State path'][0])
        # Placement not asked on request: a success, so that a scripted
        # gate on a ready host gets exit 0.
        result, details = results['Placement traits']
        self.assertEqual(0, result, details)
        self.assertIn('--no-placement', details)
        worst = max(r for r, _ in results.values())
        self.assertEqual(worst, code, results)

    def test_passthrough_warns(self):
        code, results = self._status('qemu_monitor_passthrough = true')
        result, details = results['QEMU monitor passthrough']
        self.assertEqual(1, result)
        self.assertIn('tainted', details)

    def test_lab_host_caps_socket_queues(self):
        # The lab's hosts carry the tuning the installation guide asks
        # for; the check reads the kernel of the namespace QEMU runs in.
        code, results = self._status(
            'link_gbps = 0.25', 'max_parallel_connections = 4',
            netns=self.lab.source.name)
        result, details = results['Migration socket queues']
        self.assertEqual(0, result, details)
        self.assertIn('at most 128 KiB unsent', details)
