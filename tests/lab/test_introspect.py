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
"""The lab reads the driver through its introspection API only, and reads
the report's structured fields, not its prose (no hypervisor needed).
"""

import types

import testtools

from nova_qat_migration import datamodel
from nova_qat_migration_lab.bench import stats
from nova_qat_migration_lab.faults import checks
from nova_qat_migration_lab import introspect


class _Driver:
    """The driver's documented surface the lab uses, nothing more."""

    def __init__(self, caps):
        self._caps = caps
        self.manager = object()

    def qat_introspect(self):
        return {'capabilities': self._caps, 'sessions': {}, 'budget': None,
                'history': None, 'manager': self.manager}

    def qat_set_test_capabilities(self, caps):
        self._caps = caps


class TestIntrospect(testtools.TestCase):

    def test_pretend_and_give_back(self):
        caps = datamodel.HypervisorCaps()
        one, unprobed = _Driver(caps), _Driver(None)
        computes = {'a': types.SimpleNamespace(driver=one),
                    'b': types.SimpleNamespace(driver=unprobed)}
        with introspect.pretend(
                computes, libvirt_version=(9, 3, 0),
                multifd_methods=lambda m: m | {'qatzip'}) as saved:
            self.assertEqual({'a': caps}, saved)
            now = introspect.capabilities(one)
            self.assertEqual((9, 3, 0), now.libvirt_version)
            self.assertIn('qatzip', now.multifd_methods)
            self.assertIsNone(introspect.capabilities(unprobed))
            # A re-probe meanwhile is kept; only the changed fields go back.
            one.qat_set_test_capabilities(
                now.__class__(**dict(now.__dict__, postcopy=False)))
        back = introspect.capabilities(one)
        self.assertEqual(caps.libvirt_version, back.libvirt_version)
        self.assertEqual(caps.multifd_methods, back.multifd_methods)
        self.assertFalse(back.postcopy)
        self.assertIs(one.manager, introspect.manager(one))

    def test_another_driver_has_no_view(self):
        self.assertEqual({}, introspect.view(object()))
        self.assertIsNone(introspect.capabilities(object()))


class TestStructuredReport(testtools.TestCase):

    def test_expected_globals_from_the_passthrough_field(self):
        before = {'migration.multifd-compression': 'zstd'}
        record = {'passthrough': {'globals': {
            'migration.multifd-compression': 'qatzip'}},
            'notes': ["passthrough {'not': 'read'}"]}
        self.assertEqual(before, checks.expected_globals(before, record,
                                                         False))
        self.assertEqual({'migration.multifd-compression': 'qatzip'},
                         checks.expected_globals(before, record, True))
        self.assertEqual({}, checks.expected_globals(
            before, {'passthrough': {}}, True))
        self.assertEqual({}, checks.expected_globals(before, None, True))

    def test_downtime_limit_from_the_plan_fields(self):
        self.assertEqual(300, stats.downtime_limit_ms({'report': {
            'effective_plan': {'max_downtime_ms': 300},
            'requested_plan': {'max_downtime_ms': 500},
            'plan': 'x downtime<=900ms'}}))
        self.assertEqual(500, stats.downtime_limit_ms({'report': {
            'requested_plan': {'max_downtime_ms': 500}}}))
        self.assertEqual(stats.DEFAULT_DOWNTIME_MS, stats.downtime_limit_ms(
            {'effective_plan': 'x downtime<=900ms'}))
