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
"""The ``qemu-passthrough`` backend, end to end, with zstd standing in.

``qatzip`` needs a QEMU built with QATzip (and QAT to be useful); Debian's
QEMU has zlib and zstd only. The backend does not care which method it
carries, so here it carries ``zstd``: the planner is told the source
libvirt is too old to ask for zstd itself (libvirt < 9.4), which makes the
translation pick the passthrough backend, exactly as it does for qatzip.
Then a real migration between the lab's two hosts must show: compressed
bytes on the wire, the destination QEMU running with the method, the
guest's memory intact, and a persistent definition without the
``-global`` (future boots unaffected).
"""

import dataclasses
import json

from nova_qat_migration.lab import scenarios as sc
from nova_qat_migration.policy import base
from nova_qat_migration.virt.libvirt import passthrough
from nova_qat_migration.virt.libvirt import translate
from tests.lab import test_migration as lab_base

#: Compressible pages (text), little dirtying: the wire shows compression.
TEXT = sc.Scenario('test-text', memory_mb=512, touch_mb=256, hot_mb=32,
                   rate=500, pattern='text', link_mbit=1000)
TOUCHED = TEXT.touch_mb * base.MIB

PLAN = sc.PlanSpec('passthrough-zstd', plan=base.Plan(
    policy='fixed:passthrough', method='zstd', level=1,
    parallel_connections=4))


def _old_libvirt_with_passthrough(facts: base.Facts) -> base.Facts:
    return dataclasses.replace(
        facts, passthrough_allowed=True,
        hypervisor=dataclasses.replace(facts.hypervisor,
                                       libvirt_version=(9, 3, 0)))


def _monitor(dom, command: dict) -> dict:
    import libvirt_qemu
    return json.loads(libvirt_qemu.qemuMonitorCommand(
        dom, json.dumps(command), 0))


class TestPassthroughBackend(lab_base.LabTestCase):

    scenario = TEXT

    def test_1_refused_method_raises(self):
        # A method this QEMU was not built with is refused by QEMU itself;
        # the driver turns that into its software plan.
        self.assertRaises(passthrough.PassthroughError,
                          passthrough.apply_source, self.session.dom,
                          {'multifd-compression': 'qatzip'})
        params = _monitor(self.session.dom,
                          {'execute': 'query-migrate-parameters'})
        self.assertEqual('none', params['return']['multifd-compression'])

    def test_2_zstd_through_passthrough(self):
        import libvirt
        res = self.session.migrate(
            PLAN, timeout_s=lab_base.TIMEOUT_S,
            adjust_facts=_old_libvirt_with_passthrough)
        self.addDetail('run', lab_base.testtools.content.text_content(
            json.dumps(res.to_dict(), default=str)[:4000]))
        self.assertEqual(translate.BACKEND_PASSTHROUGH, res.backend)
        self.assertNotIn('compression', res.params)
        self.assertIn('PARALLEL', res.flags)
        self.assertCompletedIntact(res)
        # Text pages deflate to ~0.45: far fewer bytes than were touched.
        self.assertLess(res.wire_bytes, 0.7 * TOUCHED,
                        'wire %d bytes for %d touched' % (res.wire_bytes,
                                                          TOUCHED))
        dest = self.session.dom
        params = _monitor(dest, {'execute': 'query-migrate-parameters'})
        self.assertEqual('zstd', params['return']['multifd-compression'])
        self.assertTrue(passthrough.has_globals(dest.XMLDesc(0)))
        self.assertFalse(passthrough.has_globals(
            dest.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)))
