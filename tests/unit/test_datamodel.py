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
"""Facts and plan model: capability rules and plan helpers."""

import dataclasses
import json

import ddt

from nova_qat_migration import datamodel
from tests.unit import base


@ddt.ddt
class TestHypervisorCaps(base.TestCase):

    @ddt.data(((9, 3, 0), False), ((9, 4, 0), True), ((11, 3, 0), True))
    @ddt.unpack
    def test_zlib_zstd_need_libvirt_9_4(self, version, accepted):
        hv = datamodel.HypervisorCaps(libvirt_version=version)
        # QEMU has them either way; libvirt can only ask from 9.4 on, and
        # older ones need the passthrough backend.
        self.assertTrue(hv.accepts('zstd'))
        self.assertEqual(accepted, 'zstd' in hv.libvirt_methods)
        self.assertEqual(accepted, 'zlib' in hv.libvirt_methods)
        facts = datamodel.Facts(hypervisor=hv)
        self.assertEqual(accepted, facts.can_send('zstd'))
        self.assertTrue(dataclasses.replace(
            facts, passthrough_allowed=True).can_send('zstd'))

    @ddt.data(((9, 0, 2), True), ((9, 1, 0), False), ((10, 0, 0), False))
    @ddt.unpack
    def test_mt_until_qemu_9_1(self, version, accepted):
        hv = datamodel.HypervisorCaps(qemu_version=version)
        self.assertEqual(accepted, hv.accepts('mt'))
        self.assertEqual(accepted, hv.has_mt)

    def test_schema_decides_multifd_methods(self):
        hv = datamodel.HypervisorCaps(
            multifd_methods=frozenset({'none', 'zlib'}))
        self.assertTrue(hv.accepts('zlib'))
        self.assertFalse(hv.accepts('zstd'))
        self.assertFalse(hv.accepts('qatzip'))

    def test_qatzip_only_from_schema(self):
        self.assertFalse(datamodel.HypervisorCaps(
            multifd_methods=frozenset()).accepts('qatzip'))
        self.assertTrue(datamodel.HypervisorCaps(
            multifd_methods=frozenset({'none', 'qatzip'})).accepts('qatzip'))
        # libvirt itself never lists it: passthrough only.
        self.assertNotIn('qatzip', datamodel.HypervisorCaps(
            libvirt_version=(99, 0, 0)).libvirt_methods)

    def test_unknown_schema_falls_back_to_versions(self):
        hv = datamodel.HypervisorCaps(multifd_methods=frozenset(),
                                      qemu_version=(4, 2, 0))
        self.assertFalse(hv.accepts('zstd'))
        hv = datamodel.HypervisorCaps(multifd_methods=frozenset(),
                                      qemu_version=(5, 0, 0))
        self.assertTrue(hv.accepts('zstd'))

    def test_always_accepted(self):
        hv = datamodel.HypervisorCaps(libvirt_version=(6, 0, 0),
                                      qemu_version=(10, 0, 0),
                                      multifd_methods=frozenset())
        self.assertTrue(hv.accepts('none'))
        self.assertTrue(hv.accepts('xbzrle'))

    @ddt.data(((10, 0, 9), False), ((10, 1, 0), True))
    @ddt.unpack
    def test_postcopy_with_multifd(self, version, expected):
        self.assertEqual(expected, datamodel.HypervisorCaps(
            qemu_version=version).postcopy_with_multifd)


class TestSmallModels(base.TestCase):

    def test_destination_accepts(self):
        unknown = datamodel.DestinationCaps()
        self.assertTrue(unknown.accepts('xbzrle'))
        self.assertFalse(unknown.accepts('mt'))
        known = datamodel.DestinationCaps(
            known=True, methods=frozenset({'zstd'}))
        self.assertTrue(known.accepts('zstd'))
        self.assertFalse(known.accepts('zlib'))

    def test_qat_available(self):
        self.assertFalse(datamodel.QATState().available)
        self.assertFalse(datamodel.QATState(endpoints=2).available)
        self.assertFalse(datamodel.QATState(free_leases=1).available)
        self.assertTrue(datamodel.QATState(endpoints=1,
                                           free_leases=1).available)

    def test_version_str(self):
        self.assertEqual('10.1.0', datamodel.version_str((10, 1, 0)))

    def test_nova_settings_from_conf(self):
        class Group(object):
            live_migration_tunnelled = True
            live_migration_with_native_tls = False
            live_migration_permit_post_copy = True
            live_migration_permit_auto_converge = False
            live_migration_parallel_connections = 4
            live_migration_bandwidth = 100
            live_migration_downtime = 600
            live_migration_downtime_steps = 5
            live_migration_downtime_delay = 30
            live_migration_completion_timeout = 150

        class Conf(object):
            libvirt = Group

        self.assertEqual(datamodel.NovaSettings(
            tunnelled=True, native_tls=False, permit_post_copy=True,
            permit_auto_converge=False, parallel_connections=4,
            bandwidth_mbps=100, downtime_ms=600, downtime_steps=5,
            downtime_delay_s=30, completion_timeout_s_per_gib=150),
            datamodel.NovaSettings.from_conf(Conf))

    def test_completion_timeout_counts_at_least_two_gib(self):
        nova = datamodel.NovaSettings(completion_timeout_s_per_gib=30)
        self.assertEqual(60.0, nova.completion_timeout_s(512))
        self.assertEqual(120.0, nova.completion_timeout_s(4096))

    def test_frozen(self):
        facts = datamodel.Facts()
        self.assertRaises(dataclasses.FrozenInstanceError, setattr, facts,
                          'link_mbps', 1.0)


class TestPlan(base.TestCase):

    def test_multifd(self):
        self.assertFalse(datamodel.Plan(policy='p').multifd)
        self.assertTrue(datamodel.Plan(policy='p',
                                       parallel_connections=2).multifd)
        self.assertTrue(datamodel.Plan(policy='p', method='zstd').multifd)
        self.assertFalse(datamodel.Plan(policy='p',
                                        method='xbzrle').multifd)

    def test_auto_converge(self):
        self.assertFalse(datamodel.Plan(policy='p').auto_converge)
        self.assertTrue(datamodel.Plan(policy='p',
                                       throttle_initial=20).auto_converge)

    def test_because_appends_and_changes(self):
        plan = datamodel.Plan(policy='p', reasons=('first',))
        later = plan.because('second', 'third', method='zlib')
        self.assertEqual(('first', 'second', 'third'), later.reasons)
        self.assertEqual('zlib', later.method)
        self.assertEqual('none', plan.method)

    def test_describe(self):
        plan = datamodel.Plan(
            policy='adaptive', method='zstd', level=3,
            parallel_connections=4, throttle_initial=40,
            throttle_increment=20, post_copy=True, max_downtime_ms=300)
        self.assertEqual('adaptive[zstd-3 x4 throttle=40+20 post-copy] '
                         'downtime<=300ms', plan.describe())
        self.assertEqual('static[xbzrle cache=256MiB] downtime<=500ms',
                         datamodel.Plan(policy='static', method='xbzrle',
                                        xbzrle_cache_mb=256).describe())

    def test_to_dict_is_json(self):
        plan = datamodel.Plan(policy='p', method='qatzip',
                              fallbacks=(('zstd', 1), 'zlib'),
                              reasons=('a', 'b'))
        data = json.loads(json.dumps(plan.to_dict()))
        self.assertEqual('qatzip', data['method'])
        self.assertEqual(['a', 'b'], data['reasons'])
        self.assertEqual([['zstd', 1], 'zlib'], data['fallbacks'])
