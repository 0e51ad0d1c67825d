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

import dataclasses
import json
import logging
import os
import re
from unittest import mock

import ddt
import fixtures
from nova import exception
from nova.tests import fixtures as nova_fixtures
from nova.tests.fixtures import libvirt as fakelibvirt
from oslo_config import cfg
from oslo_config import fixture as config_fixture

from nova_qat_migration import conf as qat_conf
from nova_qat_migration.conf import qat_migration
from nova_qat_migration import datamodel
from nova_qat_migration.qat import placement
from nova_qat_migration.virt.libvirt import capabilities as caps_mod
from nova_qat_migration.virt.libvirt import migration_traits
from nova_qat_migration.virt.libvirt import qemu_probe
from tests.unit import base
from tests.unit.virt.libvirt import test_driver

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

#: What libvirt names as the emulator in Nova's fake capabilities.
FAKE_EMULATOR = '/usr/bin/qemu-system-x86_64'
ALL_METHODS = frozenset({'none', 'zlib', 'zstd', 'qatzip'})


def version_return(version):
    """A ``query-version`` return for ``version``."""
    major, minor, micro = version
    return {'qemu': {'major': major, 'minor': minor, 'micro': micro},
            'package': ''}


def libvirt_version_of(conn):
    return caps_mod._version_tuple(conn.getVersion())


class FakeMonitor(fixtures.Fixture):
    """libvirt's QEMU monitor passthrough, answered without a QEMU.

    Records ``(domain name, command)`` and answers ``query-version`` with
    ``version`` and ``query-qmp-schema`` with ``schema``, as libvirt hands
    back QEMU's reply (a JSON string). ``replies`` overrides a command's
    reply text; ``error`` is raised instead of answering.
    """

    def __init__(self, version, schema=SCHEMA, replies=None, error=None):
        super().__init__()
        self.version = version
        self.schema = schema
        self.replies = dict(replies or {})
        self.error = error
        self.calls = []

    def _setUp(self):
        self.useFixture(fixtures.MonkeyPatch(
            'nova_qat_migration.virt.libvirt.passthrough._monitor',
            self.command))

    def command(self, domain, text):
        execute = json.loads(text)['execute']
        self.calls.append((domain.name(), execute))
        if self.error is not None:
            raise self.error
        if execute in self.replies:
            return self.replies[execute]
        answers = {'query-version': version_return(self.version),
                   'query-qmp-schema': self.schema}
        return json.dumps({'return': answers[execute], 'id': 'libvirt-9'})


class NoLocalQEMU(fixtures.Fixture):
    """nova-compute's filesystem has no QEMU (it runs in another container):
    libvirt's emulator does not exist, and running any binary fails the
    test.
    """

    def __init__(self, emulator=FAKE_EMULATOR):
        super().__init__()
        self.emulator = emulator

    def _setUp(self):
        real_exists = os.path.exists

        def exists(path):
            return False if path == self.emulator else real_exists(path)

        self.useFixture(fixtures.MockPatch('os.path.exists',
                                           side_effect=exists))
        self.useFixture(fixtures.MockPatchObject(
            qemu_probe, '_qmp_exchange',
            side_effect=AssertionError('a QEMU binary was run')))


def start_domain(conn, name='instance-00000001', uuid=None):
    """A running domain on Nova's fake libvirt connection ``conn``."""
    dom = conn.defineXML(
        '<domain type="kvm"><name>%s</name><uuid>%s</uuid>'
        '<memory>1048576</memory><vcpu>1</vcpu><os><type>hvm</type></os>'
        '<devices/></domain>' % (name, uuid or UUID_1))
    dom.create()
    return dom


UUID_1 = '11111111-2222-3333-4444-555555555501'
UUID_2 = '11111111-2222-3333-4444-555555555502'


class TestSchema(base.TestCase):

    def test_methods_from_schema(self):
        self.assertEqual(frozenset({'none', 'zlib', 'zstd', 'qatzip'}),
                         qemu_probe.multifd_methods_from_schema(SCHEMA))

    def test_old_qemu_without_multifd_compression(self):
        schema = [dict(e) for e in SCHEMA]
        schema[3] = {'name': '42', 'meta-type': 'object', 'members': [
            {'name': 'multifd-channels', 'type': 'int'}]}
        self.assertEqual(frozenset(),
                         qemu_probe.multifd_methods_from_schema(schema))

    def test_no_command(self):
        self.assertEqual(frozenset(),
                         qemu_probe.multifd_methods_from_schema(SCHEMA[2:]))

    def test_not_a_schema(self):
        members_not_a_list = [
            {'name': 'migrate-set-parameters', 'arg-type': '42'},
            {'name': '42', 'members': 'multifd-compression'}]
        for bad in ([], {}, 'schema', None, 42, [1, 2], [{'no-name': 1}],
                    members_not_a_list):
            self.assertRaises(qemu_probe.QMPReplyError,
                              qemu_probe.multifd_methods_from_schema, bad)

    def test_qemu_version_from_reply(self):
        self.assertEqual((10, 0, 2), qemu_probe.qemu_version_from_reply(
            version_return((10, 0, 2))))
        for bad in (None, {}, {'qemu': {'major': 10}}, {'qemu': 'ten'},
                    {'qemu': {'major': 'x', 'minor': 0, 'micro': 0}}):
            self.assertRaises(qemu_probe.QMPReplyError,
                              qemu_probe.qemu_version_from_reply, bad)

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
        replies = [{'return': version_return((8, 2, 1))}, {'return': SCHEMA}]
        with mock.patch.object(qemu_probe, '_qmp_exchange',
                               return_value=replies) as qmp:
            got = caps_mod.probe_hypervisor(self._conn(), qemu_binary=binary)
        self.assertEqual((9, 4, 0), got.libvirt_version)
        self.assertEqual((8, 2, 1), got.qemu_version)
        self.assertEqual(frozenset({'none', 'zlib', 'zstd', 'qatzip'}),
                         got.multifd_methods)
        self.assertEqual(caps_mod.SOURCE_BINARY, got.methods_source)
        self.assertEqual(binary, qmp.call_args.args[0])
        self.assertEqual([{'execute': 'query-version'},
                          {'execute': 'query-qmp-schema'}],
                         qmp.call_args.args[1])

    def test_probe_uses_emulator_from_capabilities(self):
        xml = CAPS_XML.replace('/usr/bin/qemu-system-x86_64',
                               '/nonexistent/qemu-kvm')
        with mock.patch.object(qemu_probe, '_qmp_exchange') as qmp:
            got = caps_mod.probe_hypervisor(self._conn(xml))
        # The binary is not there: no probe, methods unknown.
        qmp.assert_not_called()
        self.assertEqual(frozenset(), got.multifd_methods)
        self.assertEqual(caps_mod.SOURCE_UNKNOWN, got.methods_source)

    def test_local_binary_of_another_version_is_not_libvirts(self):
        # e.g. a nova_compute image with its own, different QEMU package
        binary = self.create_tempfiles([('qemu', '')])[0]
        replies = [{'return': version_return((7, 2, 0))}, {'return': SCHEMA}]
        logs = self.useFixture(fixtures.FakeLogger(level=logging.WARNING))
        with mock.patch.object(qemu_probe, '_qmp_exchange',
                               return_value=replies):
            got = caps_mod.probe_hypervisor(self._conn(), qemu_binary=binary)
        self.assertEqual(frozenset(), got.multifd_methods)
        self.assertEqual(caps_mod.SOURCE_UNKNOWN, got.methods_source)
        self.assertIn('not used', logs.output)

    def test_local_binary_error_reply_means_unknown(self):
        binary = self.create_tempfiles([('qemu', '')])[0]
        replies = [{'return': version_return((8, 2, 1))},
                   {'error': {'class': 'CommandNotFound', 'desc': 'nope'}}]
        with mock.patch.object(qemu_probe, '_qmp_exchange',
                               return_value=replies):
            got = caps_mod.probe_hypervisor(self._conn(), qemu_binary=binary)
        self.assertEqual(caps_mod.SOURCE_UNKNOWN, got.methods_source)

    def test_probe_failure_means_unknown(self):
        binary = self.create_tempfiles([('qemu', '')])[0]
        for exc in (OSError('boom'), TimeoutError('slow'), EOFError('gone'),
                    ValueError('bad json')):
            with mock.patch.object(qemu_probe, '_qmp_exchange',
                                   side_effect=exc):
                self.assertEqual(frozenset(),
                                 qemu_probe.probe_multifd_methods(binary))

    def test_probe_of_a_non_qemu_binary(self):
        # /bin/true exits at once: EOF before any reply.
        if not os.path.exists('/bin/true'):
            self.skipTest('/bin/true missing')
        self.assertEqual(frozenset(),
                         qemu_probe.probe_multifd_methods('/bin/true'))

    def test_probe_of_a_missing_binary(self):
        self.assertEqual(frozenset(),
                         qemu_probe.probe_multifd_methods('/nonexistent/qemu'))

    def test_real_qemu(self):
        if not os.path.exists(qemu_probe.DEFAULT_QEMU):
            self.skipTest('%s not installed' % qemu_probe.DEFAULT_QEMU)
        methods = qemu_probe.probe_multifd_methods(qemu_probe.DEFAULT_QEMU)
        self.assertIn('none', methods)
        self.assertTrue(methods <= set(datamodel.QEMU_MULTIFD_COMPRESSION),
                        methods)

    def test_real_qemu_is_used_when_libvirt_reports_its_version(self):
        # The installed QEMU answers query-version and query-qmp-schema
        # itself; libvirt (here a mock) reports the same version.
        if not os.path.exists(qemu_probe.DEFAULT_QEMU):
            self.skipTest('%s not installed' % qemu_probe.DEFAULT_QEMU)
        (reply,) = qemu_probe._qmp_exchange(qemu_probe.DEFAULT_QEMU,
                                          [{'execute': 'query-version'}])
        version = qemu_probe.qemu_version_from_reply(reply['return'])
        conn = self._conn()
        conn.getVersion.return_value = (version[0] * 1000000 +
                                        version[1] * 1000 + version[2])
        got = caps_mod.probe_hypervisor(conn)
        self.assertEqual(caps_mod.SOURCE_BINARY, got.methods_source)
        self.assertIn('none', got.multifd_methods)


class TestTraits(base.TestCase):

    def test_traits_of_qemu_10_1_with_qatzip(self):
        hv = datamodel.HypervisorCaps(
            qemu_version=(10, 1, 0),
            multifd_methods=frozenset({'none', 'zlib', 'zstd', 'qatzip'}))
        traits = migration_traits.traits_for(hv)
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
        traits = migration_traits.traits_for(hv)
        self.assertIn('CUSTOM_MIGRATION_COMPRESS_MT', traits)
        # QEMU decodes zlib whatever this libvirt can send.
        self.assertIn('CUSTOM_MIGRATION_COMPRESS_ZLIB', traits)
        self.assertNotIn('CUSTOM_MIGRATION_COMPRESS_ZSTD', traits)
        self.assertNotIn('CUSTOM_MIGRATION_POSTCOPY_MULTIFD', traits)
        self.assertNotIn('CUSTOM_QAT_MIGRATION', traits)

    def test_traits_without_schema(self):
        hv = datamodel.HypervisorCaps(multifd_methods=frozenset())
        traits = migration_traits.traits_for(hv)
        self.assertIn('CUSTOM_MIGRATION_COMPRESS_ZSTD', traits)
        self.assertIn('CUSTOM_MIGRATION_COMPRESS_ZLIB', traits)
        self.assertNotIn('CUSTOM_MIGRATION_COMPRESS_QATZIP', traits)

    def test_no_trait_for_none(self):
        traits = migration_traits.traits_for(datamodel.HypervisorCaps())
        self.assertNotIn('CUSTOM_MIGRATION_COMPRESS_NONE', traits)

    def test_trait_names_valid_for_placement(self):
        hv = datamodel.HypervisorCaps(
            qemu_version=(9, 0, 0),
            multifd_methods=frozenset({'none', 'zlib', 'zstd', 'qatzip',
                                       'qpl', 'uadk'}))
        for trait in migration_traits.traits_for(hv):
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
            dest = migration_traits.destination_from_traits(
                migration_traits.traits_for(hv) | qat_trait |
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
            dest = migration_traits.destination_from_traits(traits)
            self.assertFalse(dest.known, traits)
            self.assertFalse(dest.accepts('zstd'))
            self.assertFalse(dest.accepts('qatzip'))
            self.assertTrue(dest.accepts('xbzrle'))
            self.assertTrue(dest.accepts('none'))

    def test_traits_from_a_list(self):
        dest = migration_traits.destination_from_traits(
            ['CUSTOM_MIGRATION_PLANNER', 'CUSTOM_MIGRATION_COMPRESS_ZSTD'])
        self.assertTrue(dest.known)
        self.assertEqual(frozenset({'zstd'}), dest.methods)
        self.assertFalse(dest.multifd)


class TestOneQATTrait(base.TestCase):

    def test_the_driver_never_writes_the_qat_trait(self):
        # The QAT device manager is the one writer of its host trait.
        hv = datamodel.HypervisorCaps(
            multifd_methods=frozenset({'none', 'zstd', 'qatzip'}))
        self.assertNotIn(placement.HOST_TRAIT, migration_traits.traits_for(hv))


class LibvirtProbeBase(base.TestCase):
    """A nova-compute beside, not inside, QEMU's filesystem, against Nova's
    fake libvirt connection.
    """

    def setUp(self):
        super().setUp()
        self.useFixture(nova_fixtures.LibvirtFixture())
        self.conn = fakelibvirt.Connection('qemu:///system',
                                           version=11003000,
                                           hv_version=10000002)
        self.useFixture(NoLocalQEMU())

    def start_domain(self, name='instance-00000001', uuid=UUID_1):
        return start_domain(self.conn, name, uuid)


@ddt.ddt
class TestProbeOrder(LibvirtProbeBase):

    def test_qmp_through_libvirt_without_local_binary(self):
        self.flags(qemu_monitor_passthrough=True)
        self.start_domain()
        monitor = self.useFixture(FakeMonitor((10, 0, 2)))
        got = caps_mod.probe_hypervisor(self.conn)
        self.assertEqual(ALL_METHODS, got.multifd_methods)
        self.assertEqual(caps_mod.SOURCE_QMP, got.methods_source)
        self.assertEqual([('instance-00000001', 'query-version'),
                          ('instance-00000001', 'query-qmp-schema')],
                         monitor.calls)
        traits = migration_traits.traits_for(got)
        for method in ('ZLIB', 'ZSTD', 'QATZIP'):
            self.assertIn('CUSTOM_MIGRATION_COMPRESS_' + method, traits)

    def test_qmp_without_qatzip(self):
        self.flags(qemu_monitor_passthrough=True)
        self.start_domain()
        schema = json.loads(json.dumps(SCHEMA))
        schema[4]['values'] = ['none', 'zlib', 'zstd']
        self.useFixture(FakeMonitor((10, 0, 2), schema=schema))
        got = caps_mod.probe_hypervisor(self.conn)
        self.assertEqual(frozenset({'none', 'zlib', 'zstd'}),
                         got.multifd_methods)
        self.assertNotIn('CUSTOM_MIGRATION_COMPRESS_QATZIP',
                         migration_traits.traits_for(got))

    def test_one_domain_is_asked(self):
        # Each asked domain is tainted: one answer is enough.
        self.flags(qemu_monitor_passthrough=True)
        self.start_domain()
        self.start_domain('instance-00000002', UUID_2)
        monitor = self.useFixture(FakeMonitor((10, 0, 2)))
        caps_mod.probe_hypervisor(self.conn)
        self.assertEqual(1, len({name for name, _cmd in monitor.calls}))

    def test_busy_domain_is_not_asked(self):
        # A domain in a job (a migration) would make libvirt's monitor call
        # wait for the job lock.
        self.flags(qemu_monitor_passthrough=True)
        busy = self.start_domain()
        self.start_domain('instance-00000002', UUID_2)
        monitor = self.useFixture(FakeMonitor((10, 0, 2)))
        # VIR_DOMAIN_JOB_UNBOUNDED: a migration in progress
        with mock.patch.object(busy, 'jobInfo',
                               return_value=[2] + [0] * 11):
            got = caps_mod.probe_hypervisor(self.conn)
        self.assertEqual(caps_mod.SOURCE_QMP, got.methods_source)
        self.assertEqual({'instance-00000002'},
                         {name for name, _cmd in monitor.calls})

    def test_no_qmp_without_passthrough(self):
        # libvirt taints every domain that gets a monitor command.
        self.start_domain()
        monitor = self.useFixture(FakeMonitor((10, 0, 2)))
        logs = self.useFixture(fixtures.FakeLogger(level=logging.INFO))
        got = caps_mod.probe_hypervisor(self.conn)
        self.assertEqual([], monitor.calls)
        self.assertEqual(frozenset(), got.multifd_methods)
        self.assertEqual(caps_mod.SOURCE_UNKNOWN, got.methods_source)
        self.assertIn('qemu_monitor_passthrough is off', logs.output)
        self.assertIn('not in nova-compute\'s filesystem', logs.output)
        self.assertIn(caps_mod.OPTION_NAME, logs.output)

    def test_no_running_domain_means_unknown(self):
        self.flags(qemu_monitor_passthrough=True)
        monitor = self.useFixture(FakeMonitor((10, 0, 2)))
        got = caps_mod.probe_hypervisor(self.conn)
        self.assertEqual([], monitor.calls)
        self.assertEqual(caps_mod.SOURCE_UNKNOWN, got.methods_source)
        self.assertTrue(caps_mod.needs_reprobe(got))

    def test_domain_of_an_older_qemu_is_not_the_hosts(self):
        # Started before a QEMU upgrade: not what an incoming domain gets.
        self.flags(qemu_monitor_passthrough=True)
        self.start_domain()
        self.useFixture(FakeMonitor((9, 2, 0)))
        got = caps_mod.probe_hypervisor(self.conn)
        self.assertEqual(caps_mod.SOURCE_UNKNOWN, got.methods_source)

    @ddt.data(
        {'error': fakelibvirt.libvirtError('Timed out during operation')},
        {'error': ImportError('No module named libvirt_qemu')},
        {'replies': {'query-version': 'not json'}},
        {'replies': {'query-version': '[1, 2]'}},
        {'replies': {'query-version': '{"return": {"qemu": "ten"}}'}},
        {'replies': {'query-qmp-schema':
                     '{"error": {"class": "GenericError", "desc": "no"}}'}},
        {'replies': {'query-qmp-schema': '{"id": "libvirt-3"}'}},
        {'replies': {'query-qmp-schema': '{"return": 5}'}},
        {'replies': {'query-qmp-schema': '{"return": []}'}},
        {'replies': {'query-qmp-schema': '{"return": [{"nom": 1}]}'}},
        {'replies': {'query-qmp-schema': '[' * 100000}},
        {'replies': {'query-qmp-schema': None}},
    )
    def test_bad_qmp_reply_degrades_to_unknown(self, monitor_kwargs):
        self.flags(qemu_monitor_passthrough=True)
        self.start_domain()
        self.useFixture(FakeMonitor((10, 0, 2), **monitor_kwargs))
        logs = self.useFixture(fixtures.FakeLogger(level=logging.WARNING))
        got = caps_mod.probe_hypervisor(self.conn)
        self.assertEqual(frozenset(), got.multifd_methods)
        self.assertEqual(caps_mod.SOURCE_UNKNOWN, got.methods_source)
        self.assertIn('through libvirt\'s QEMU monitor', logs.output)

    def test_listing_domains_fails(self):
        self.flags(qemu_monitor_passthrough=True)
        with mock.patch.object(self.conn, 'listAllDomains',
                               side_effect=fakelibvirt.libvirtError('x')):
            got = caps_mod.probe_hypervisor(self.conn)
        self.assertEqual(caps_mod.SOURCE_UNKNOWN, got.methods_source)

    def test_option_wins_and_nothing_is_probed(self):
        self.flags(hypervisor_multifd_methods=['zstd', 'qatzip'],
                   qemu_monitor_passthrough=True)
        self.start_domain()
        monitor = self.useFixture(FakeMonitor((10, 0, 2)))
        got = caps_mod.probe_hypervisor(self.conn)
        self.assertEqual([], monitor.calls)     # no domain tainted
        self.assertEqual(frozenset({'none', 'zstd', 'qatzip'}),
                         got.multifd_methods)
        self.assertEqual(caps_mod.SOURCE_OPTION, got.methods_source)
        self.assertFalse(caps_mod.needs_reprobe(got))
        # Versions still come from libvirt.
        self.assertEqual((11, 3, 0), got.libvirt_version)
        self.assertEqual((10, 0, 2), got.qemu_version)
        traits = migration_traits.traits_for(got)
        self.assertIn('CUSTOM_MIGRATION_COMPRESS_ZSTD', traits)
        self.assertIn('CUSTOM_MIGRATION_COMPRESS_QATZIP', traits)
        self.assertNotIn('CUSTOM_MIGRATION_COMPRESS_ZLIB', traits)

    def test_option_without_passthrough(self):
        # The kolla answer: no binary, no monitor command.
        self.flags(hypervisor_multifd_methods=['zlib', 'zstd'])
        got = caps_mod.probe_hypervisor(self.conn)
        self.assertEqual(frozenset({'none', 'zlib', 'zstd'}),
                         got.multifd_methods)
        self.assertTrue(got.accepts('zstd'))
        self.assertFalse(got.accepts('qatzip'))


class TestReprobe(LibvirtProbeBase):

    def unknown(self):
        return datamodel.HypervisorCaps(
            libvirt_version=(11, 3, 0), qemu_version=(10, 0, 2),
            multifd_methods=frozenset(),
            methods_source=caps_mod.SOURCE_UNKNOWN)

    def test_needs_reprobe(self):
        self.assertFalse(caps_mod.needs_reprobe(None))
        self.assertFalse(caps_mod.needs_reprobe(self.unknown()))
        self.flags(qemu_monitor_passthrough=True)
        self.assertTrue(caps_mod.needs_reprobe(self.unknown()))
        for source, expected in ((caps_mod.SOURCE_BINARY, True),
                                 (caps_mod.SOURCE_QMP, False),
                                 (caps_mod.SOURCE_OPTION, False),
                                 ('', False)):
            caps = datamodel.HypervisorCaps(methods_source=source)
            self.assertEqual(expected, caps_mod.needs_reprobe(caps), source)

    def test_reprobe_once_a_domain_runs(self):
        self.flags(qemu_monitor_passthrough=True)
        monitor = self.useFixture(FakeMonitor((10, 0, 2)))
        caps = caps_mod.reprobe(self.conn, self.unknown())
        self.assertEqual(caps_mod.SOURCE_UNKNOWN, caps.methods_source)
        self.start_domain()
        caps = caps_mod.reprobe(self.conn, caps)
        self.assertEqual(ALL_METHODS, caps.multifd_methods)
        self.assertEqual(caps_mod.SOURCE_QMP, caps.methods_source)
        self.assertEqual(2, len(monitor.calls))

    def test_reprobe_reads_libvirts_versions_again(self):
        # QEMU upgraded in the libvirt container since start-up.
        self.flags(qemu_monitor_passthrough=True)
        self.conn.fakeVersion = 10001000
        self.start_domain()
        self.useFixture(FakeMonitor((10, 1, 0)))
        caps = caps_mod.reprobe(self.conn, self.unknown())
        self.assertEqual((10, 1, 0), caps.qemu_version)
        self.assertEqual(caps_mod.SOURCE_QMP, caps.methods_source)

    def test_migrating_domain_of_an_older_qemu_answers_for_itself(self):
        self.flags(qemu_monitor_passthrough=True)
        domain = self.start_domain()
        self.useFixture(FakeMonitor((9, 2, 0)))
        caps = caps_mod.reprobe(self.conn, self.unknown(), domain=domain)
        self.assertEqual(ALL_METHODS, caps.multifd_methods)
        self.assertEqual(caps_mod.SOURCE_DOMAIN, caps.methods_source)

    def test_bad_reply_keeps_what_was_known(self):
        self.flags(qemu_monitor_passthrough=True)
        domain = self.start_domain()
        self.useFixture(FakeMonitor(
            (10, 0, 2), error=fakelibvirt.libvirtError('monitor gone')))
        before = dataclasses.replace(self.unknown(),
                                     multifd_methods=frozenset({'none'}))
        caps = caps_mod.reprobe(self.conn, before, domain=domain)
        self.assertEqual(before, caps)


@ddt.ddt
class TestMethodsOption(base.TestCase):

    def _conf(self, text):
        path = self.create_tempfiles([('nova.conf', text)], ext='')[0]
        conf_obj = cfg.ConfigOpts()
        qat_migration.register_opts(conf_obj)
        conf_obj(args=[], default_config_files=[path])
        return conf_obj

    @ddt.data('zstd,lz4', 'xbzrle', 'mt', 'ZSTD', 'zstd qatzip')
    def test_unknown_method_stops_start_naming_the_option(self, value):
        conf_obj = self._conf('[qat_migration]\n'
                              'hypervisor_multifd_methods = %s\n' % value)
        exc = self.assertRaises(qat_conf.ConfigError, qat_conf.check,
                                conf_obj, host_memory_mb=65536)
        self.assertIn(caps_mod.OPTION_NAME, str(exc))

    def test_set_override_refuses_unknown_method(self):
        self.assertRaises(ValueError, self.conf.set_override,
                          'hypervisor_multifd_methods', ['zstd', 'lz4'],
                          group='qat_migration')

    @ddt.data(('', frozenset()),
              ('zstd', frozenset({'none', 'zstd'})),
              ('none,zlib,zstd,qatzip', ALL_METHODS),
              ('qpl,uadk', frozenset({'none', 'qpl', 'uadk'})))
    @ddt.unpack
    def test_values(self, value, expected):
        conf_obj = self._conf('[qat_migration]\n'
                              'hypervisor_multifd_methods = %s\n' % value)
        qat_conf.check(conf_obj, host_memory_mb=65536)
        self.assertEqual(expected, caps_mod.configured_methods(conf_obj))


class TestDriverWithoutLocalQEMU(test_driver.DriverTestBase):
    """The driver on a compute whose QEMU lives in another container."""

    def setUp(self):
        super().setUp()
        # The real probe, against Nova's fake libvirt.
        self.useFixture(fixtures.MonkeyPatch(
            'nova_qat_migration.virt.libvirt.driver.QATMigrationMixin.'
            'qat_probe_hypervisor',
            staticmethod(caps_mod.probe_hypervisor)))
        self.useFixture(NoLocalQEMU())
        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.driver.LibvirtDriver.update_provider_tree',
            lambda self, tree, nodename, allocations=None: None))
        self.now = 1000.0
        self.useFixture(fixtures.MockPatch(
            'nova_qat_migration.virt.libvirt.host.time.monotonic',
            side_effect=lambda: self.now))

    def started(self):
        drvr = self.driver()
        drvr.init_host('host')
        return drvr, drvr._host.get_connection()

    def traits(self, drvr):
        return test_driver.provider_traits(drvr)

    def test_option_gives_methods_and_traits(self):
        self.flags(hypervisor_multifd_methods=['zlib', 'zstd', 'qatzip'],
                   group='qat_migration')
        drvr, _conn = self.started()
        self.assertEqual(ALL_METHODS, drvr._qat_caps.multifd_methods)
        traits = self.traits(drvr)
        for method in ('ZLIB', 'ZSTD', 'QATZIP'):
            self.assertIn('CUSTOM_MIGRATION_COMPRESS_' + method, traits)

    def test_bad_option_stops_start(self):
        # As if nova.conf said so: parsed, and refused, when read.
        self.useFixture(config_fixture.Config(qat_conf.CONF)).load_raw_values(
            group='qat_migration', hypervisor_multifd_methods='zstd,lz4')
        exc = self.assertRaises(exception.InvalidConfiguration,
                                self.driver().init_host, 'host')
        self.assertIn(caps_mod.OPTION_NAME, str(exc))

    def test_update_provider_tree_reprobes_when_a_domain_runs(self):
        self.flags(qemu_monitor_passthrough=True, group='qat_migration')
        drvr, conn = self.started()
        # A new host: nothing running at start-up, nothing to ask.
        self.assertEqual(caps_mod.SOURCE_UNKNOWN,
                         drvr._qat_caps.methods_source)
        self.assertNotIn('CUSTOM_MIGRATION_COMPRESS_QATZIP',
                         self.traits(drvr))
        start_domain(conn)
        monitor = self.useFixture(FakeMonitor(libvirt_version_of(conn)))
        # Not before the interval has passed.
        self.traits(drvr)
        self.assertEqual([], monitor.calls)
        self.now += caps_mod.REPROBE_INTERVAL_S
        traits = self.traits(drvr)
        self.assertIn('CUSTOM_MIGRATION_COMPRESS_QATZIP', traits)
        self.assertEqual(caps_mod.SOURCE_QMP, drvr._qat_caps.methods_source)
        # Final: never asked again.
        self.now += 10 * caps_mod.REPROBE_INTERVAL_S
        self.traits(drvr)
        self.assertEqual(2, len(monitor.calls))

    def test_reprobe_is_bounded_while_nothing_answers(self):
        self.flags(qemu_monitor_passthrough=True, group='qat_migration')
        drvr, conn = self.started()
        start_domain(conn)
        monitor = self.useFixture(FakeMonitor(
            libvirt_version_of(conn),
            error=fakelibvirt.libvirtError('monitor gone')))
        for _ in range(5):
            self.now += caps_mod.REPROBE_INTERVAL_S / 2
            self.traits(drvr)
        # 2.5 intervals: asked twice, each time one command that failed.
        self.assertEqual(2, len(monitor.calls))
        self.assertEqual(caps_mod.SOURCE_UNKNOWN,
                         drvr._qat_caps.methods_source)

    def test_reprobe_never_raises(self):
        self.flags(qemu_monitor_passthrough=True, group='qat_migration')
        drvr, _conn = self.started()
        self.now += caps_mod.REPROBE_INTERVAL_S
        logs = self.useFixture(fixtures.FakeLogger(level=logging.WARNING))
        with mock.patch.object(drvr._host, 'get_connection',
                               side_effect=RuntimeError('libvirt down')):
            traits = self.traits(drvr)
        self.assertIn(migration_traits.TRAIT_PLANNER, traits)
        self.assertIn('libvirt down', logs.output)

    def test_no_reprobe_without_passthrough(self):
        drvr, conn = self.started()
        start_domain(conn)
        monitor = self.useFixture(FakeMonitor(libvirt_version_of(conn)))
        self.now += 10 * caps_mod.REPROBE_INTERVAL_S
        self.traits(drvr)
        self.assertEqual([], monitor.calls)

    def test_source_side_reads_the_migrating_domain(self):
        self.flags(qemu_monitor_passthrough=True, group='qat_migration')
        drvr, conn = self.started()
        start_domain(conn)
        monitor = self.useFixture(FakeMonitor(libvirt_version_of(conn)))
        instance = mock.Mock(uuid=UUID_1)
        caps = drvr._qat_source_caps(instance)
        self.assertTrue(caps.accepts('qatzip'))
        self.assertEqual({'instance-00000001'},
                         {name for name, _cmd in monitor.calls})
        # Libvirt's current QEMU answered: it holds for the host too.
        self.assertIs(caps, drvr._qat_caps)
        self.assertIs(caps, drvr._qat_source_caps(instance))
        self.assertEqual(2, len(monitor.calls))

    def test_source_side_failure_plans_with_what_is_known(self):
        self.flags(qemu_monitor_passthrough=True, group='qat_migration')
        drvr, _conn = self.started()
        before = drvr._qat_caps
        instance = mock.Mock(uuid=UUID_2)     # no such domain
        self.assertIs(before, drvr._qat_source_caps(instance))
