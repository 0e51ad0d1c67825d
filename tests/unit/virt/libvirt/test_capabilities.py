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
"""Hypervisor capability probe, QMP schema parsing and the traits."""

import os
import re
from unittest import mock

from nova_qat_migration import datamodel
from nova_qat_migration.qat import placement
from nova_qat_migration.virt.libvirt import capabilities as caps_mod
from tests.unit import base

#: A trimmed ``query-qmp-schema`` reply: QEMU names types by number.
SCHEMA = [
    {'name': 'query-status', 'meta-type': 'command', 'arg-type': '0',
     'ret-type': '7'},
    {'name': 'migrate-set-parameters', 'meta-type': 'command',
     'arg-type': '42', 'ret-type': '0'},
    {'name': '0', 'meta-type': 'object', 'members': []},
    {'name': '42', 'meta-type': 'object', 'members': [
        {'name': 'multifd-channels', 'type': 'int', 'default': None},
        {'name': 'multifd-compression', 'type': '99', 'default': None},
        {'name': 'multifd-zlib-level', 'type': 'int', 'default': None},
    ]},
    {'name': '99', 'meta-type': 'enum',
     'values': ['none', 'zlib', 'zstd', 'qatzip'],
     'members': [{'name': 'none'}, {'name': 'zlib'}, {'name': 'zstd'},
                 {'name': 'qatzip'}]},
    {'name': '7', 'meta-type': 'enum', 'values': ['running', 'paused']},
]

CAPS_XML = """<capabilities>
  <host><cpu><arch>x86_64</arch></cpu></host>
  <guest>
    <os_type>hvm</os_type>
    <arch name='i686'><emulator>/usr/bin/qemu-system-i386</emulator></arch>
  </guest>
  <guest>
    <os_type>hvm</os_type>
    <arch name='x86_64'>
      <emulator> /usr/bin/qemu-system-x86_64 </emulator>
    </arch>
  </guest>
</capabilities>"""

CUSTOM_TRAIT = re.compile(r'^CUSTOM_[A-Z0-9_]+$')


class TestSchema(base.TestCase):

    def test_methods_from_schema(self):
        self.assertEqual(frozenset({'none', 'zlib', 'zstd', 'qatzip'}),
                         caps_mod.multifd_methods_from_schema(SCHEMA))

    def test_old_qemu_without_multifd_compression(self):
        schema = [dict(e) for e in SCHEMA]
        schema[3] = {'name': '42', 'meta-type': 'object', 'members': [
            {'name': 'multifd-channels', 'type': 'int'}]}
        self.assertEqual(frozenset(),
                         caps_mod.multifd_methods_from_schema(schema))

    def test_no_command(self):
        self.assertEqual(frozenset(),
                         caps_mod.multifd_methods_from_schema(SCHEMA[2:]))
        self.assertEqual(frozenset(),
                         caps_mod.multifd_methods_from_schema([]))

    def test_version_tuple(self):
        self.assertEqual((11, 3, 0), caps_mod._version_tuple(11003000))
        self.assertEqual((10, 0, 2), caps_mod._version_tuple(10000002))
        self.assertEqual((9, 10, 11), caps_mod._version_tuple(9010011))


class TestProbe(base.TestCase):

    def test_emulator_from_capabilities(self):
        self.assertEqual('/usr/bin/qemu-system-x86_64',
                         caps_mod.emulator_from_capabilities(CAPS_XML))

    def test_emulator_first_when_no_x86_64(self):
        xml = CAPS_XML.replace("name='x86_64'", "name='aarch64'")
        self.assertEqual('/usr/bin/qemu-system-i386',
                         caps_mod.emulator_from_capabilities(xml))

    def test_emulator_bad_xml(self):
        self.assertIsNone(caps_mod.emulator_from_capabilities('<caps'))
        self.assertIsNone(caps_mod.emulator_from_capabilities(
            '<capabilities/>'))

    def _conn(self, caps_xml=CAPS_XML):
        conn = mock.Mock()
        conn.getLibVersion.return_value = 9004000
        conn.getVersion.return_value = 8002001
        conn.getCapabilities.return_value = caps_xml
        return conn

    def test_probe_hypervisor_versions_and_schema(self):
        binary = self.create_tempfiles([('qemu', '')])[0]
        with mock.patch.object(caps_mod, '_qmp_exchange',
                               return_value=[{'return': SCHEMA}]) as qmp:
            got = caps_mod.probe_hypervisor(self._conn(), qemu_binary=binary)
        self.assertEqual((9, 4, 0), got.libvirt_version)
        self.assertEqual((8, 2, 1), got.qemu_version)
        self.assertEqual(frozenset({'none', 'zlib', 'zstd', 'qatzip'}),
                         got.multifd_methods)
        self.assertEqual(binary, qmp.call_args.args[0])
        self.assertEqual([{'execute': 'query-qmp-schema'}],
                         qmp.call_args.args[1])

    def test_probe_uses_emulator_from_capabilities(self):
        xml = CAPS_XML.replace('/usr/bin/qemu-system-x86_64',
                               '/nonexistent/qemu-kvm')
        with mock.patch.object(caps_mod, '_qmp_exchange') as qmp:
            got = caps_mod.probe_hypervisor(self._conn(xml))
        # The binary is not there: no probe, methods unknown.
        qmp.assert_not_called()
        self.assertEqual(frozenset(), got.multifd_methods)

    def test_probe_failure_means_unknown(self):
        binary = self.create_tempfiles([('qemu', '')])[0]
        for exc in (OSError('boom'), TimeoutError('slow'), EOFError('gone'),
                    ValueError('bad json')):
            with mock.patch.object(caps_mod, '_qmp_exchange',
                                   side_effect=exc):
                self.assertEqual(frozenset(),
                                 caps_mod.probe_multifd_methods(binary))

    def test_probe_of_a_non_qemu_binary(self):
        # /bin/true exits at once: EOF before any reply.
        if not os.path.exists('/bin/true'):
            self.skipTest('/bin/true missing')
        self.assertEqual(frozenset(),
                         caps_mod.probe_multifd_methods('/bin/true'))

    def test_probe_of_a_missing_binary(self):
        self.assertEqual(frozenset(),
                         caps_mod.probe_multifd_methods('/nonexistent/qemu'))

    def test_real_qemu(self):
        if not os.path.exists(caps_mod.DEFAULT_QEMU):
            self.skipTest('%s not installed' % caps_mod.DEFAULT_QEMU)
        methods = caps_mod.probe_multifd_methods(caps_mod.DEFAULT_QEMU)
        self.assertIn('none', methods)
        self.assertTrue(methods <= {'none', 'zlib', 'zstd', 'qatzip', 'qpl',
                                    'uadk'}, methods)


class TestTraits(base.TestCase):

    def test_traits_of_qemu_10_1_with_qatzip(self):
        hv = datamodel.HypervisorCaps(
            qemu_version=(10, 1, 0),
            multifd_methods=frozenset({'none', 'zlib', 'zstd', 'qatzip'}))
        traits = caps_mod.traits_for(hv)
        self.assertEqual({
            'CUSTOM_MIGRATION_PLANNER', 'CUSTOM_MIGRATION_MULTIFD',
            'CUSTOM_MIGRATION_COMPRESS_XBZRLE',
            'CUSTOM_MIGRATION_COMPRESS_ZLIB',
            'CUSTOM_MIGRATION_COMPRESS_ZSTD',
            'CUSTOM_MIGRATION_COMPRESS_QATZIP',
            'CUSTOM_MIGRATION_POSTCOPY_MULTIFD',
        }, traits)

    def test_traits_of_old_qemu(self):
        hv = datamodel.HypervisorCaps(
            libvirt_version=(9, 0, 0), qemu_version=(8, 2, 0),
            multifd_methods=frozenset({'none', 'zlib'}))
        traits = caps_mod.traits_for(hv)
        self.assertIn('CUSTOM_MIGRATION_COMPRESS_MT', traits)
        # QEMU decodes zlib whatever this libvirt can send.
        self.assertIn('CUSTOM_MIGRATION_COMPRESS_ZLIB', traits)
        self.assertNotIn('CUSTOM_MIGRATION_COMPRESS_ZSTD', traits)
        self.assertNotIn('CUSTOM_MIGRATION_POSTCOPY_MULTIFD', traits)
        self.assertNotIn('CUSTOM_QAT_MIGRATION', traits)

    def test_traits_without_schema(self):
        hv = datamodel.HypervisorCaps(multifd_methods=frozenset())
        traits = caps_mod.traits_for(hv)
        self.assertIn('CUSTOM_MIGRATION_COMPRESS_ZSTD', traits)
        self.assertIn('CUSTOM_MIGRATION_COMPRESS_ZLIB', traits)
        self.assertNotIn('CUSTOM_MIGRATION_COMPRESS_QATZIP', traits)

    def test_no_trait_for_none(self):
        traits = caps_mod.traits_for(datamodel.HypervisorCaps())
        self.assertNotIn('CUSTOM_MIGRATION_COMPRESS_NONE', traits)

    def test_trait_names_valid_for_placement(self):
        hv = datamodel.HypervisorCaps(
            qemu_version=(9, 0, 0),
            multifd_methods=frozenset({'none', 'zlib', 'zstd', 'qatzip',
                                       'qpl', 'uadk'}))
        for trait in caps_mod.traits_for(hv):
            self.assertTrue(CUSTOM_TRAIT.match(trait), trait)
            self.assertLessEqual(len(trait), 255)

    def test_round_trip(self):
        cases = [
            (datamodel.HypervisorCaps(
                qemu_version=(10, 1, 0),
                multifd_methods=frozenset({'none', 'zlib', 'zstd',
                                           'qatzip'})), True),
            (datamodel.HypervisorCaps(), False),
            (datamodel.HypervisorCaps(
                libvirt_version=(9, 0, 0), qemu_version=(8, 2, 0),
                multifd_methods=frozenset({'none', 'zlib'})), False),
        ]
        for hv, qat in cases:
            # The QAT device manager adds its trait beside the driver's.
            qat_trait = {placement.HOST_TRAIT} if qat else set()
            dest = caps_mod.destination_from_traits(
                caps_mod.traits_for(hv) | qat_trait |
                {'HW_CPU_X86_AVX2', 'COMPUTE_STATUS_DISABLED'})
            self.assertTrue(dest.known)
            self.assertTrue(dest.multifd)
            self.assertEqual(hv.postcopy_with_multifd,
                             dest.postcopy_with_multifd)
            self.assertEqual(qat, dest.qat)
            for method in ('zlib', 'zstd', 'qatzip'):
                self.assertEqual(method in hv.multifd_methods,
                                 dest.accepts(method), (hv, method))
            self.assertEqual(hv.has_mt, dest.accepts('mt'))
            self.assertTrue(dest.accepts('xbzrle'))
            self.assertTrue(dest.accepts('none'))

    def test_unknown_destination(self):
        for traits in (None, set(), {'CUSTOM_MIGRATION_COMPRESS_ZSTD',
                                     'CUSTOM_MIGRATION_MULTIFD'}):
            dest = caps_mod.destination_from_traits(traits)
            self.assertFalse(dest.known, traits)
            self.assertFalse(dest.accepts('zstd'))
            self.assertFalse(dest.accepts('qatzip'))
            self.assertTrue(dest.accepts('xbzrle'))
            self.assertTrue(dest.accepts('none'))

    def test_traits_from_a_list(self):
        dest = caps_mod.destination_from_traits(
            ['CUSTOM_MIGRATION_PLANNER', 'CUSTOM_MIGRATION_COMPRESS_ZSTD'])
        self.assertTrue(dest.known)
        self.assertEqual(frozenset({'zstd'}), dest.methods)
        self.assertFalse(dest.multifd)


class TestOneQATTrait(base.TestCase):

    def test_the_driver_never_writes_the_qat_trait(self):
        # The QAT device manager is the one writer of its host trait.
        hv = datamodel.HypervisorCaps(
            multifd_methods=frozenset({'none', 'zstd', 'qatzip'}))
        self.assertNotIn(placement.HOST_TRAIT, caps_mod.traits_for(hv))
