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
"""A plan's options end with its migration, also for the next process.

``ServiceCloud.overrides`` rewrites the computes' nova.conf for one
migration and saves the cloud's state (``cloud.json``), which the next
benchmark, test or demo reads when it attaches. Found in the scale-model
benchmark: the state saved during a link calibration's last (static
zstd-1 x4) run still held that plan's ``allowed_methods = none,zstd``, and
the next benchmark's adaptive runs planned without XBZRLE.
"""

import fixtures
import testtools

from nova_qat_migration_lab import services

STATIC = {'allowed_methods': ['none', 'zstd'], 'zstd_level': 1,
          'policy': 'static', 'qat_migration_static.method': 'zstd'}


class TestOverridesLeaveNoTrace(testtools.TestCase):

    def setUp(self):
        super().setUp()
        root = self.useFixture(fixtures.TempDir()).path
        self.useFixture(fixtures.MonkeyPatch(
            'nova_qat_migration_lab.services.STATE_ROOT', root))
        self.cloud = services.ServiceCloud(
            qat_options={'policy': 'adaptive', 'link_gbps': 0.25},
            libvirt_options={'live_migration_completion_timeout': 800})
        # What apply() keeps of the cloud (restarting computes is not what
        # this test is about): the state the next process attaches to.
        self.cloud.apply = lambda restart=(): self.cloud._save() or []
        self.cloud._save()

    def test_attach_during_and_after(self):
        with self.cloud.overrides(STATIC, completion_timeout=1600):
            during = services.ServiceCloud.attach()
            self.assertEqual(['none', 'zstd'],
                             during.qat_options['allowed_methods'])
            self.assertEqual('zstd', during.compute_extra['nqc-a'][
                'qat_migration_static']['method'])
        after = services.ServiceCloud.attach()
        self.assertEqual({'policy': 'adaptive', 'link_gbps': 0.25},
                         after.qat_options)
        self.assertEqual({'live_migration_completion_timeout': 800},
                         after.libvirt_options)
        self.assertEqual({}, after.compute_extra)

    def test_restored_when_the_migration_raises(self):
        with testtools.ExpectedException(RuntimeError):
            with self.cloud.overrides(STATIC):
                raise RuntimeError('migration failed')
        self.assertNotIn('allowed_methods',
                         services.ServiceCloud.attach().qat_options)
