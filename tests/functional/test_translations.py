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
"""One translation per plan, through Nova's API.

``translate.to_libvirt`` is counted while one migration runs: the plan
that runs is translated once, and a plan that replaces it (a lease
re-plan, a fall-back) once more; Nova's plan and the plan without the
monitor passthrough only when a fall-back runs them.
"""

import json
import threading

import fixtures

from nova_qat_migration.virt.libvirt import translate
from tests.functional import base
from tests.functional import test_qat_passthrough


class _Counted(fixtures.Fixture):
    """Counts ``translate.to_libvirt`` calls (the real one runs)."""

    def _setUp(self):
        self.plans = []
        self._lock = threading.Lock()
        real = translate.to_libvirt

        def to_libvirt(plan, facts):
            with self._lock:
                self.plans.append(plan)
            return real(plan, facts)
        self.useFixture(fixtures.MonkeyPatch(
            'nova_qat_migration.virt.libvirt.translate.to_libvirt',
            to_libvirt))


class _CountMixin:

    def migrate_counted(self, server, host):
        counted = self.useFixture(_Counted())
        server = self.migrate(server, host)
        self.wait_for_driver_cleanup('src')
        self.assertEqual(host, server['OS-EXT-SRV-ATTR:host'])
        return [plan.method for plan in counted.plans]


class TranslationsPerMigrationTest(_CountMixin, base.QATMigrationTestBase):

    def test_adaptive_plan_translated_once(self):
        self.start_qat_compute('src')
        self.start_qat_compute('dest')
        methods = self.migrate_counted(self.server_on('src'), 'dest')
        self.assertEqual(['zstd'], methods)

    def test_nova_default_translated_once(self):
        self.flags(policy='nova_default', group='qat_migration')
        self.start_qat_compute('src')
        self.start_qat_compute('dest')
        methods = self.migrate_counted(self.server_on('src'), 'dest')
        self.assertEqual(1, len(methods), methods)


class PassthroughTranslationsTest(_CountMixin,
                                  test_qat_passthrough.QATPassthroughBase):

    def test_passthrough_plan_translated_once(self):
        self.start_qat_compute('src', caps=test_qat_passthrough.QATZIP)
        self.start_qat_compute('dest', caps=test_qat_passthrough.QATZIP)
        methods = self.migrate_counted(self.server_on('src'), 'dest')
        self.assertEqual(['qatzip'], methods)
        self.assertEqual(1, len(self.commands))

    def test_refused_passthrough_translates_the_software_plan(self):
        self.reply = json.dumps({'error': {'class': 'GenericError',
                                           'desc': 'qatzip not built in'}})
        self.start_qat_compute('src', caps=test_qat_passthrough.QATZIP)
        self.start_qat_compute('dest', caps=test_qat_passthrough.QATZIP)
        methods = self.migrate_counted(self.server_on('src'), 'dest')
        # The plan, then the same plan without the passthrough.
        self.assertEqual(['qatzip', 'qatzip'], methods)

    def test_lease_re_plan_translates_once_more(self):
        self.start_qat_compute('src', caps=test_qat_passthrough.QATZIP)
        self.start_qat_compute('dest', caps=test_qat_passthrough.QATZIP)

        def no_lease(uuid):
            raise RuntimeError('no lease here')
        self.useFixture(fixtures.MockPatchObject(
            self.driver_of('src')._qat_manager, 'lease', no_lease))
        methods = self.migrate_counted(self.server_on('src'), 'dest')
        # The plan, then the plan re-made without a QAT lease.
        self.assertEqual(['qatzip', 'qatzip'], methods)
        self.assertEqual([], self.commands)
