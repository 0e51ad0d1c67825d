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
"""The lab finds repository files from its package or ``--repo-root``,
never from the current directory (no hypervisor needed).
"""

import os
import pathlib
import tempfile

import fixtures
import testtools

from nova_qat_migration_lab import cli
from nova_qat_migration_lab import guest
from nova_qat_migration_lab import repo

CHECKOUT = pathlib.Path(__file__).resolve().parents[2]


class TestRepoRoot(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.addCleanup(repo.set_root, None)
        elsewhere = self.useFixture(fixtures.TempDir()).path
        cwd = os.getcwd()
        os.chdir(elsewhere)
        self.addCleanup(os.chdir, cwd)

    def test_default_is_the_checkout_not_the_current_directory(self):
        self.assertEqual(CHECKOUT, repo.root())
        self.assertEqual(str(CHECKOUT / 'benchmarks' / 'calibration.json'),
                         repo.path('benchmarks', 'calibration.json'))
        self.assertEqual(str(CHECKOUT / 'lab' / 'nova_qat_migration_lab' /
                             'data' / 'dirtier.c'),
                         guest.dirtier_source())
        self.assertTrue(hasattr(repo.load_fixture('qat_sysfs'), 'QATSysfs'))

    def test_explicit_root(self):
        with tempfile.TemporaryDirectory() as tmp:
            open(os.path.join(tmp, 'setup.cfg'), 'w').close()
            os.mkdir(os.path.join(tmp, 'benchmarks'))
            repo.set_root(tmp)
            self.assertEqual(os.path.join(os.path.realpath(tmp),
                                          'benchmarks', 'faults'),
                             repo.path('benchmarks', 'faults'))

    def test_not_a_checkout_is_refused(self):
        repo.set_root(os.getcwd())   # an empty directory
        self.assertRaises(repo.NoRepository, repo.path, 'benchmarks')
        # The guest program is the package's own data, not the checkout's.
        self.assertTrue(os.path.isfile(guest.dirtier_source()))
        # The command says so (exit 2), no traceback. It parses the
        # options' defaults first, as the lab's commands do: undone after.
        from nova_qat_migration.conf import CONF
        self.addCleanup(CONF.clear)
        self.assertEqual(2, cli.main(['--repo-root', os.getcwd(), 'model',
                                      'accuracy']))
