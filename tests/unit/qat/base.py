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
"""Shared set-up: a fixture sysfs tree, ``[qat_migration]`` pointing at it."""

import fixtures
from oslo_config import fixture as config_fixture
import testtools

from nova_qat_migration.conf import CONF
from tests.fixtures import qat_sysfs


class QATTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.tree = self.useFixture(qat_sysfs.QATSysfs())
        self.conf_fixture = self.useFixture(config_fixture.Config(CONF))
        self.conf = CONF
        self.flags(sysfs_root=self.tree.sysfs,
                   debugfs_root=self.tree.debugfs)
        self.log = self.useFixture(fixtures.FakeLogger(
            name='nova_qat_migration', level='DEBUG'))

    def flags(self, **kw):
        self.conf_fixture.config(group='qat_migration', **kw)
