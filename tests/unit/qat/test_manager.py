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
"""QATManager: the façade the driver and policies use."""

from unittest import mock

import fixtures

from nova_qat_migration import datamodel
from nova_qat_migration.qat import manager
from nova_qat_migration.qat import qatzip
from tests.unit.qat import base
from tests.unit.qat import test_qatzip


class TestManager(base.QATTestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(test_qatzip.QuietStderrFD())
        self.mgr = manager.QATManager(self.conf)

    def test_state_software_only_qatzip_is_not_usable(self):
        # A QAT device in sysfs, but QATzip's round trip ran in its
        # software fallback (no QAT hardware here): nothing for a plan.
        self.tree.add_pf('0000:6b:00.0', '4xxx', numvfs=16)
        self.flags(qat_endpoints_for_migration=2)
        logger = self.useFixture(fixtures.FakeLogger())
        state = self.mgr.state()
        self.assertEqual('software', self.mgr.selftest().engine)
        self.assertEqual((0, 0, False, 0.0),
                         (state.endpoints, state.free_leases, state.hardware,
                          state.throughput_mbps))
        self.assertFalse(state.available)
        self.assertEqual(manager.QATManager.SOFTWARE_ONLY, state.unusable)
        self.assertIn('QAT device present but QATzip ran in software: not '
                      'used', logger.output)
        self.assertIn('QZ_NO_HW', logger.output)
        # Said once per self-test, not at every plan.
        self.mgr.state()
        self.assertEqual(1, logger.output.count('ran in software'))

    def test_state_with_qat(self):
        # The operator counts the software path (a test bed).
        self.tree.add_pf('0000:6b:00.0', '4xxx', numvfs=16)
        self.flags(qat_endpoints_for_migration=2,
                   qatzip_software_allowed=True)
        state = self.mgr.state()
        self.assertIsInstance(state, datamodel.QATState)
        self.assertEqual(16, state.endpoints)
        self.assertEqual(2, state.free_leases)
        self.assertFalse(state.hardware)       # software fallback here
        self.assertEqual('', state.unusable)
        self.assertGreater(state.throughput_mbps, 0)
        self.assertTrue(0 < state.ratio < 1)
        self.assertTrue(state.available)
        self.assertIn('used all the same', self.log.output)
        with self.mgr.lease('i1') as l1, self.mgr.lease('i2') as l2:
            self.assertIsNotNone(l1)
            self.assertIsNotNone(l2)
            with self.mgr.lease('i3') as l3:
                self.assertIsNone(l3)
            state = self.mgr.state()
            self.assertEqual(0, state.free_leases)
            self.assertFalse(state.available)
        self.assertEqual(2, self.mgr.state().free_leases)

    def test_state_hardware_selftest_is_usable(self):
        # What a QAT host's self-test reports (see test_qatzip.FakeLib):
        # the endpoints count without any option.
        self.tree.add_pf('0000:6b:00.0', '4xxx', numvfs=4)
        self.mgr._selftest = qatzip.SelfTestResult(
            status=qatzip.STATUS_OK, engine='hardware', compress_mbps=2000.0,
            ratio=0.35, qat_hw_count=1, instance_attached=True)
        state = self.mgr.state()
        self.assertEqual((4, 1, True, 2000.0, ''),
                         (state.endpoints, state.free_leases, state.hardware,
                          state.throughput_mbps, state.unusable))
        self.assertTrue(state.available)

    def test_state_without_qat_runs_no_selftest(self):
        with mock.patch.object(self.mgr, 'selftest') as st:
            state = self.mgr.state()
        st.assert_not_called()
        self.assertEqual(datamodel.QATState(), state)
        self.assertFalse(state.available)

    def test_state_library_missing(self):
        self.tree.add_pf('0000:6b:00.0', '4xxx', numvfs=4)
        self.flags(qatzip_library=test_qatzip.MISSING)
        logger = self.useFixture(fixtures.FakeLogger())
        state = self.mgr.state()
        # Devices without a working QATzip carry no migration.
        self.assertEqual(0, state.endpoints)
        self.assertEqual(0, state.free_leases)
        self.assertFalse(state.available)
        self.assertIn('QATzip is unusable', logger.output)
        self.assertEqual((False, 0.0, 0.0),
                         (state.hardware, state.throughput_mbps,
                          state.ratio))
        self.assertEqual('QATzip not installed',
                         self.mgr.selftest().status)

    def test_selftest_cached(self):
        first = self.mgr.selftest(size=64 * 1024)
        self.assertIs(first, self.mgr.selftest())
        self.assertIsNot(first, self.mgr.selftest(size=64 * 1024,
                                                  refresh=True))

    def test_lease_before_any_scan_sizes_pool(self):
        self.tree.add_pf('0000:6b:00.0', '4xxx', numvfs=4)
        with self.mgr.lease('i1') as lease:
            self.assertEqual('0000:6b:00.0', lease.pf_address)

    def test_pool_follows_health(self):
        self.tree.add_pf('0000:6b:00.0', '4xxx', numvfs=4)
        self.flags(qat_endpoints_for_migration=3)
        self.mgr.scan()
        self.assertEqual(3, self.mgr.pool.capacity)
        self.tree.set_heartbeat('0000:6b:00.0', -1)
        self.mgr.scan()
        self.assertEqual(0, self.mgr.pool.capacity)

    def test_options_read_at_each_scan(self):
        self.tree.add_pf('0000:6b:00.0', '4xxx', numvfs=4)
        self.assertEqual(1, len(self.mgr.scan()))
        self.flags(sysfs_root='/nonexistent')
        self.assertEqual([], self.mgr.scan())

    def test_scan_never_raises(self):
        self.tree.add_pf('0000:6b:00.0', '4xxx', numvfs=4)
        with mock.patch('nova_qat_migration.qat.health.HealthReader.'
                        'read_all', side_effect=RuntimeError('boom')):
            self.assertEqual([], self.mgr.scan())
        self.assertIn('QAT scan failed', self.log.output)
