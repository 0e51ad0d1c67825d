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
"""The ``qemu-passthrough`` backend helpers (QMP command, XML ``-global``)."""

import json
from unittest import mock

from lxml import etree

from nova_qat_migration.virt.libvirt import passthrough
from tests.unit import base

NS = {'qemu': passthrough.QEMU_NS}
ARGS = {'multifd-compression': 'qatzip', 'multifd-qatzip-level': 3}

PLAIN_XML = """<domain type='kvm'>
  <name>instance-00000001</name>
  <memory unit='KiB'>1048576</memory>
</domain>"""

XML_WITH_CMDLINE = """<domain type='kvm'
    xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>instance-00000002</name>
  <qemu:commandline>
    <qemu:arg value='-set'/>
    <qemu:arg value='device.net0.x-foo=on'/>
  </qemu:commandline>
</domain>"""


def _args(xml):
    doc = etree.fromstring(xml.encode())
    return [a.get('value') for a in doc.iterfind('qemu:commandline/qemu:arg',
                                                 NS)]


class TestQMP(base.TestCase):

    def test_set_parameters_command(self):
        command = json.loads(passthrough.set_parameters_command(ARGS))
        self.assertEqual({'execute': 'migrate-set-parameters',
                          'arguments': ARGS}, command)

    def test_restore_arguments(self):
        # Without knowing the previous values: QEMU's defaults.
        self.assertEqual({'multifd-compression': 'none',
                          'multifd-qatzip-level': 1},
                         passthrough.restore_arguments(ARGS))
        self.assertEqual({}, passthrough.restore_arguments({}))
        self.assertEqual({}, passthrough.restore_arguments(
            {'multifd-channels': 4}))

    def test_restore_arguments_previous_values(self):
        # A source that ran zstd level 3 before gets zstd level 3 back,
        # not a constant.
        previous = {'multifd-compression': 'zstd',
                    'multifd-qatzip-level': 4}
        self.assertEqual(previous,
                         passthrough.restore_arguments(ARGS, previous))

    def test_query_source(self):
        reply = json.dumps({'return': {'multifd-compression': 'zstd',
                                       'multifd-zstd-level': 3,
                                       'max-bandwidth': 1}})
        with mock.patch.object(passthrough, '_monitor',
                               return_value=reply) as monitor:
            self.assertEqual(
                {'multifd-compression': 'zstd'},
                passthrough.query_source(mock.sentinel.dom,
                                         ['multifd-compression']))
        self.assertEqual('query-migrate-parameters',
                         json.loads(monitor.call_args[0][1])['execute'])

    def test_query_source_refused(self):
        for reply in ('{"error": {"desc": "no"}}', '[]', '{"return": 3}'):
            with mock.patch.object(passthrough, '_monitor',
                                   return_value=reply):
                self.assertRaises(passthrough.PassthroughError,
                                  passthrough.query_source,
                                  mock.sentinel.dom, ['multifd-compression'])

    def test_globals_of_and_clean_params(self):
        xml = passthrough.add_globals(
            "<domain type='qemu'><name>x</name></domain>",
            {'multifd-compression': 'zstd', 'multifd-zstd-level': 3})
        self.assertEqual({'multifd-compression': 'zstd',
                          'multifd-zstd-level': 3},
                         passthrough.globals_of(xml))
        clean = passthrough.clean_params({'destination_xml': xml,
                                          'persistent_xml': xml,
                                          'bandwidth': 0})
        self.assertEqual({}, passthrough.globals_of(
            clean['destination_xml']))
        self.assertEqual({}, passthrough.globals_of(
            clean['persistent_xml']))
        self.assertEqual(0, clean['bandwidth'])

    def test_apply_source_ok(self):
        domain = mock.sentinel.domain
        with mock.patch.object(passthrough, '_monitor',
                               return_value='{"return": {}, "id": "x"}'
                               ) as monitor:
            passthrough.apply_source(domain, ARGS)
        sent_domain, command = monitor.call_args.args
        self.assertIs(domain, sent_domain)
        self.assertEqual(ARGS, json.loads(command)['arguments'])

    def test_apply_source_qemu_error(self):
        reply = json.dumps({'error': {
            'class': 'GenericError',
            'desc': "Parameter 'multifd-compression' does not accept "
                    "value 'qatzip'"}})
        with mock.patch.object(passthrough, '_monitor', return_value=reply):
            exc = self.assertRaises(passthrough.PassthroughError,
                                    passthrough.apply_source, None, ARGS)
        self.assertIn("does not accept value 'qatzip'", str(exc))

    def test_apply_source_libvirt_error(self):
        with mock.patch.object(passthrough, '_monitor',
                               side_effect=RuntimeError('domain gone')):
            exc = self.assertRaises(passthrough.PassthroughError,
                                    passthrough.apply_source, None, ARGS)
        self.assertIn('domain gone', str(exc))

    def test_apply_source_non_json_reply_refused(self):
        # Only QMP's {"return": ...} says the method is set; see
        # tests/unit/test_untrusted_inputs.py for every malformed shape.
        for reply in ('', 'OK', None):
            with mock.patch.object(passthrough, '_monitor',
                                   return_value=reply):
                self.assertRaises(passthrough.PassthroughError,
                                  passthrough.apply_source, None, ARGS)

    def test_restore_source(self):
        with mock.patch.object(passthrough, '_monitor',
                               return_value='{"return": {}}') as monitor:
            self.assertTrue(passthrough.restore_source(
                None, ARGS, {'multifd-compression': 'zlib'}))
        self.assertEqual({'multifd-compression': 'zlib',
                          'multifd-qatzip-level': 1},
                         json.loads(monitor.call_args.args[1])['arguments'])

    def test_restore_source_nothing_to_undo(self):
        with mock.patch.object(passthrough, '_monitor') as monitor:
            self.assertTrue(passthrough.restore_source(None, {}))
        monitor.assert_not_called()

    def test_restore_source_never_raises(self):
        with mock.patch.object(passthrough, '_monitor',
                               side_effect=RuntimeError('no domain')):
            self.assertFalse(passthrough.restore_source(None, ARGS))


class TestGlobals(base.TestCase):

    def test_add_globals_to_plain_domain(self):
        xml = passthrough.add_globals(PLAIN_XML, ARGS)
        self.assertEqual(['-global', 'migration.multifd-compression=qatzip',
                          '-global', 'migration.multifd-qatzip-level=3'],
                         _args(xml))
        self.assertTrue(passthrough.globals_of(xml))
        self.assertFalse(passthrough.globals_of(PLAIN_XML))
        # The rest of the domain is untouched.
        doc = etree.fromstring(xml.encode())
        self.assertEqual('instance-00000001', doc.findtext('name'))

    def test_add_globals_keeps_existing_commandline(self):
        xml = passthrough.add_globals(XML_WITH_CMDLINE,
                                      {'multifd-compression': 'qatzip'})
        self.assertEqual(['-set', 'device.net0.x-foo=on', '-global',
                          'migration.multifd-compression=qatzip'],
                         _args(xml))

    def test_only_multifd_arguments_become_globals(self):
        xml = passthrough.add_globals(PLAIN_XML, {'max-bandwidth': 10,
                                                  'multifd-channels': 4})
        self.assertEqual(['-global', 'migration.multifd-channels=4'],
                         _args(xml))

    def test_strip_round_trip(self):
        added = passthrough.add_globals(PLAIN_XML, ARGS)
        stripped = passthrough.strip_globals(added)
        self.assertFalse(passthrough.globals_of(stripped))
        doc = etree.fromstring(stripped.encode())
        self.assertIsNone(doc.find('qemu:commandline', NS))
        self.assertEqual('instance-00000001', doc.findtext('name'))

    def test_strip_keeps_other_arguments(self):
        added = passthrough.add_globals(XML_WITH_CMDLINE, ARGS)
        stripped = passthrough.strip_globals(added)
        self.assertEqual(['-set', 'device.net0.x-foo=on'], _args(stripped))

    def test_strip_without_commandline_is_identity(self):
        self.assertEqual(PLAIN_XML, passthrough.strip_globals(PLAIN_XML))

    def test_rewrite_params(self):
        params = {'bandwidth': 0, 'destination_xml': PLAIN_XML,
                  'persistent_xml': PLAIN_XML, 'migrate_disks': ['vda']}
        out = passthrough.rewrite_params(params, ARGS)
        self.assertTrue(passthrough.globals_of(out['destination_xml']))
        self.assertFalse(passthrough.globals_of(out['persistent_xml']))
        self.assertEqual(['vda'], out['migrate_disks'])
        self.assertEqual(PLAIN_XML, params['destination_xml'])

    def test_rewrite_params_is_idempotent(self):
        params = {'destination_xml': PLAIN_XML}
        once = passthrough.rewrite_params(params, ARGS)
        twice = passthrough.rewrite_params(once, ARGS)
        self.assertEqual(4, len(_args(twice['destination_xml'])))
        self.assertFalse(passthrough.globals_of(twice['persistent_xml']))

    def test_rewrite_params_without_xml(self):
        params = {'bandwidth': 0}
        self.assertEqual(params, passthrough.rewrite_params(params, ARGS))
