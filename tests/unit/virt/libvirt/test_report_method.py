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
"""The report's ``method`` is what QEMU ran, read from the call sent.

Each test runs the operation thread's :class:`PlannedDomain` as the other
execution tests do (a recording domain, the QEMU monitor recorded) and
builds the report from what the session says was sent.
"""

import json  # noqa: F401 - used by the borrowed _monitor_calls

from nova_qat_migration import datamodel
from nova_qat_migration import outcomes
from nova_qat_migration.virt.libvirt import constants as c
from nova_qat_migration.virt.libvirt import operation as lm_operation
from nova_qat_migration.virt.libvirt import passthrough
from nova_qat_migration.virt.libvirt import report
from nova_qat_migration.virt.libvirt import translate
from tests.unit.virt.libvirt import test_execution

make_session = test_execution.make_session
NOVA_FLAGS = test_execution.NOVA_FLAGS
QATZIP_CAPS = datamodel.HypervisorCaps(
    multifd_methods=frozenset({'none', 'zlib', 'zstd', 'qatzip'}))
QATZIP_DEST = datamodel.DestinationCaps(
    known=True, methods=frozenset({'xbzrle', 'zlib', 'zstd', 'qatzip'}),
    multifd=True)
QAT = datamodel.QATState(endpoints=4, free_leases=1, hardware=True)


def _report(session):
    return report.build(
        instance_uuid='uuid-1', requested=session.requested,
        call=session.call, outcome=outcomes.OUTCOME_COMPLETED,
        sent_params=session.sent_params,
        sent_flags=(c.flag_names(session.sent_flags)
                    if session.sent_flags is not None else None),
        passthrough_globals=session.passthrough, notes=session.notes)


class ReportedMethodTest(test_execution._DomainTestBase):

    _monitor_calls = test_execution.PlannedDomainTest._monitor_calls

    def _run(self, session, params=None):
        lm_operation.PlannedDomain(self.domain, session).migrateToURI3(
            'uri', params or self.nova_params, NOVA_FLAGS)
        return _report(session)

    def _stale(self, method='qatzip'):
        xml = passthrough.add_globals(
            "<domain type='qemu'><name>vm</name></domain>",
            {'multifd-compression': method, 'multifd-%s-level' % method: 1})
        self.domain.XMLDesc.return_value = xml
        return {'bandwidth': 0, 'destination_xml': xml, 'persistent_xml': xml}

    def test_stale_method_kept_is_the_reported_method(self):
        # The operator turned passthrough off after a qatzip migration:
        # the source QEMU still defaults to qatzip, both ends keep it.
        self.flags(qemu_monitor_passthrough=False, group='qat_migration')
        calls = self._monitor_calls()
        session = make_session(datamodel.Plan(policy='static',
                                              parallel_connections=4))
        record = self._run(session, self._stale())
        self.assertEqual([], calls)
        self.assertEqual('qatzip', record['method'])
        # The plan keeps the planned method; a note says both.
        self.assertEqual('static[none x4] downtime<=500ms', record['plan'])
        self.assertIn("QEMU ran qatzip x4 (from the destination XML's "
                      "-global pairs), not the planned none x4",
                      record['notes'])
        # The history learns what ran.
        self.assertEqual('qatzip', report.history_values(record)['method'])

    def test_stale_method_reset_reports_none(self):
        self.flags(qemu_monitor_passthrough=True, group='qat_migration')
        self._monitor_calls()
        session = make_session(datamodel.Plan(policy='static',
                                              parallel_connections=4))
        record = self._run(session, self._stale())
        self.assertEqual('none', record['method'])
        self.assertFalse([n for n in record['notes'] if 'QEMU ran' in n])

    def test_passthrough_plan_reports_qatzip(self):
        self.flags(qemu_monitor_passthrough=True, group='qat_migration')
        calls = self._monitor_calls()
        facts = datamodel.Facts(hypervisor=QATZIP_CAPS,
                                destination=QATZIP_DEST, qat=QAT,
                                passthrough_allowed=True)
        session = make_session(datamodel.Plan(
            policy='static', method='qatzip', level=1,
            parallel_connections=4, qat_lease=True), facts)
        self.assertEqual(translate.BACKEND_PASSTHROUGH, session.call.backend)
        record = self._run(session)
        self.assertEqual('migrate-set-parameters', calls[-1]['execute'])
        self.assertEqual('qatzip', record['method'])
        self.assertEqual({'method': 'qatzip', 'level': 1, 'channels': 4,
                          'source': 'qemu-global'},
                         report.qemu_ran(session.sent_params,
                                         c.flag_names(session.sent_flags)))
        self.assertFalse([n for n in record['notes'] if 'QEMU ran' in n])
        # Structured, beside the prose note.
        self.assertEqual({'globals': {'multifd-compression': 'qatzip',
                                      'multifd-qatzip-level': 1}},
                         record['passthrough'])
        self.assertEqual('qatzip', record['effective_plan']['method'])
        self.assertEqual(4, record['effective_plan']['parallel_connections'])

    def test_refused_passthrough_reports_the_software_method(self):
        self.flags(qemu_monitor_passthrough=True, group='qat_migration')
        self._monitor_calls(reply='{"error": {"desc": "no qatzip"}}')
        facts = datamodel.Facts(hypervisor=QATZIP_CAPS,
                                destination=QATZIP_DEST, qat=QAT,
                                passthrough_allowed=True)
        plan = datamodel.Plan(policy='static', method='qatzip', level=1,
                              parallel_connections=4, qat_lease=True,
                              fallbacks=('zstd',))
        session = make_session(plan, facts)
        record = self._run(session)
        self.assertEqual('zstd', record['method'])
        self.assertEqual('qatzip', record['requested_plan']['method'])
        # The executed plan, field by field; nothing set on the source.
        self.assertEqual('zstd', record['effective_plan']['method'])
        self.assertEqual({}, record['passthrough'])

    def test_nothing_sent_reports_the_plan(self):
        session = self._zstd()
        record = _report(session)      # migrateToURI3 never called
        self.assertEqual('zstd', record['method'])


class QemuRanTest(test_execution._DomainTestBase):
    """:func:`report.qemu_ran` reads back every call translate builds."""

    def test_every_translated_plan_reads_back(self):
        facts = datamodel.Facts(
            hypervisor=datamodel.HypervisorCaps(
                qemu_version=(9, 0, 0),
                multifd_methods=frozenset({'none', 'zlib', 'zstd',
                                           'qatzip'})),
            destination=datamodel.DestinationCaps(
                known=True, multifd=True,
                methods=frozenset({'xbzrle', 'mt', 'zlib', 'zstd',
                                   'qatzip'})),
            qat=QAT, passthrough_allowed=True)
        plans = [
            datamodel.Plan(policy='p'),
            datamodel.Plan(policy='p', parallel_connections=4),
            datamodel.Plan(policy='p', method='xbzrle', xbzrle_cache_mb=64),
            datamodel.Plan(policy='p', method='mt', level=2),
            datamodel.Plan(policy='p', method='zlib', level=3,
                           parallel_connections=2),
            datamodel.Plan(policy='p', method='zstd', level=5,
                           parallel_connections=8),
            datamodel.Plan(policy='p', method='qatzip', level=4,
                           parallel_connections=4, qat_lease=True),
        ]
        xml = "<domain type='qemu'><name>vm</name></domain>"
        for plan in plans:
            call = translate.to_libvirt(plan, facts)
            self.assertEqual(plan.method, call.plan.method)
            params = dict(call.params, destination_xml=xml,
                          persistent_xml=xml)
            if call.passthrough:
                params = passthrough.rewrite_params(params, call.passthrough)
            ran = report.qemu_ran(params, c.flag_names(call.flags))
            self.assertEqual(
                (call.plan.method, call.plan.level,
                 call.plan.parallel_connections),
                (ran['method'], ran['level'], ran['channels']), plan)

    def test_defaults_and_garbage(self):
        self.assertIsNone(report.qemu_ran(None, ['LIVE']))
        self.assertIsNone(report.qemu_ran({}, None))
        # COMPRESSED without a method: libvirt's XBZRLE.
        self.assertEqual('xbzrle', report.qemu_ran(
            {}, ['LIVE', 'COMPRESSED'])['method'])
        # PARALLEL without a count: libvirt's 2 channels.
        self.assertEqual(2, report.qemu_ran({}, ['PARALLEL'])['channels'])
        # A destination XML that is not XML is no -global: none.
        ran = report.qemu_ran({'destination_xml': '<not xml',
                               'parallel.connections': 'x'}, ['PARALLEL'])
        self.assertEqual(('none', 2), (ran['method'], ran['channels']))
