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
"""Real ``qatzip`` on the lab's path: Nova, the driver, libvirt, QEMU.

Both lab hosts run the QEMU built with QATzip
(``tools/build-qemu-qatzip.sh``; ``NovaLab(qemu='qatzip')`` puts its
``bin`` directory first on the libvirt daemons' ``PATH``). Nova boots the
self-checking guest on it and ``openstack server migrate
--live-migration`` moves it with the ``static`` policy asking for
``qatzip`` (``[qat_migration_static] method = qatzip``,
``parallel_connections = 4``; ``[qat_migration] qemu_monitor_passthrough =
true``, ``allowed_methods = none,qatzip``).

**No QAT hardware exists on the machines this runs on.** QEMU initialises
QATzip with its software fallback on, so the real ``qatzip`` multifd
method runs and compresses on the CPU. The ``static`` policy takes a QAT
lease for ``qatzip`` (without one the plan degrades to ``none``), so the
computes see one QAT PF in a sysfs tree (``tests/fixtures/qat_sysfs.py``
through ``[qat_migration] sysfs_root``, as the fault matrix's
``qat-unhealthy`` does): the lease is bookkeeping on a device that does
not exist; every page is compressed by QATzip's software path inside QEMU.

This is the lab's proof of the QEMU monitor passthrough backend: the
method libvirt cannot send is the real ``qatzip`` (no stand-in), and
``test_4`` alternates it with Nova's own plan and plain multifd, checking
after every hop that no ``-global`` outlives the hop that asked for it.
The computes allow monitor commands (``qemu_monitor_passthrough = true``),
as a host that offers ``qatzip`` must.

Skipped, with the reason, where the lab cannot run (not root, no
QEMU/libvirt) or the QEMU with QATzip is not built -- except where it is
required (``tools/run-tests.sh``, which builds it, sets
``NQM_REQUIRE_QATZIP_QEMU=1``; ``CI=true`` too): there every test fails
with the reason instead, so a failed build cannot hide behind a skip.
"""

import contextlib
import json
import os
from unittest import mock

import testtools

from nova_qat_migration import datamodel
from nova_qat_migration_lab import introspect
from nova_qat_migration_lab import qemu_build
from nova_qat_migration_lab import repo
from nova_qat_migration_lab import scenarios as sc
from tests.lab import test_migration

#: Text-like pages (compressible), busy enough for a few passes.
SCENARIO = sc.Scenario('test-qatzip', memory_mb=512, touch_mb=192,
                       hot_mb=64, rate=2000, pattern='text',
                       link_mbit=1000)
TIMEOUT_S = 120
QAT_PF = '0000:6b:00.0'

#: The static policy asking for qatzip level 1 over 4 channels.
QATZIP = sc.PlanSpec(
    'qatzip1x4', policy='static', options=tuple(sorted(dict(
        sc.static_options(datamodel.Plan(
            policy='static', method='qatzip', level=1,
            parallel_connections=4)),
        qemu_monitor_passthrough=True).items())))


def _qemu_method(dom):
    """The running QEMU's multifd method, asked through the monitor."""
    return test_migration.monitor(
        dom, 'query-migrate-parameters')['multifd-compression']


class TestQatzipPath(test_migration.NovaLabTestCase):
    """One lab on the qatzip QEMU, one guest, its qatzip migrations."""

    scenario = SCENARIO
    qemu = qemu_build.QATZIP
    qat_tree = None

    @classmethod
    def extra_skip_reason(cls):
        if qemu_build.qatzip_qemu_binary() is None:
            return qemu_build.missing_reason()
        return None

    @classmethod
    def prepare(cls):
        cls.binary = qemu_build.qatzip_qemu_binary()
        tree = repo.load_fixture('qat_sysfs').QATSysfs()
        tree.setUp()
        cls.qat_tree = tree
        tree.add_pf(QAT_PF, '4xxx', numvfs=4, services='dc')
        cls.qat_options = {'sysfs_root': tree.sysfs,
                           'debugfs_root': tree.debugfs,
                           'qat_endpoints_for_migration': 1,
                           'qemu_monitor_passthrough': True,
                           # QATzip's self-test runs in software here.
                           'qatzip_software_allowed': True}

    @classmethod
    def cleanup(cls):
        if cls.qat_tree is not None:
            cls.qat_tree.cleanUp()
            cls.qat_tree = None

    def setUp(self):
        if self.skip_reason and qemu_build.required():
            testtools.TestCase.setUp(self)
            self.fail(qemu_build.required_message(self.skip_reason))
        super().setUp()

    def test_1_guest_runs_the_built_qemu(self):
        lab = self.nlab.lab
        self.assertEqual(self.binary, lab.emulator)
        # Nova wrote no <emulator>: libvirt filled in its default, the
        # build first on the daemon's PATH.
        dom = self.cloud.domain(self.session.server_id)
        self.assertIn('<emulator>%s</emulator>' % self.binary,
                      dom.XMLDesc(0))
        pid = lab.source.qemu_pid(dom.name())
        self.assertEqual(os.path.realpath(self.binary),
                         os.path.realpath('/proc/%d/exe' % pid))
        version = test_migration.monitor(dom, 'query-version')['qemu']
        self.assertEqual(qemu_build.qemu_version(self.binary),
                         '%(major)d.%(minor)d.%(micro)d' % version)

    def test_2_probe_and_traits_list_qatzip(self):
        from nova_qat_migration.virt.libvirt import migration_traits
        self.cloud._run_periodics()
        trait = migration_traits.compress_trait('qatzip')
        self.assertEqual('CUSTOM_MIGRATION_COMPRESS_QATZIP', trait)
        for host in self.nlab.lab.hosts:
            caps = introspect.capabilities(
                self.cloud.computes[host.name].driver)
            self.assertIn('qatzip', caps.multifd_methods, host.name)
            self.assertIn(trait, self.cloud._get_provider_traits(
                self.cloud.provider_uuid(host.name)), host.name)

    def test_3_static_qatzip_through_nova(self):
        res = self.session.migrate(QATZIP, timeout_s=TIMEOUT_S)
        self.addDetail('run', testtools.content.text_content(json.dumps(
            {k: v for k, v in res.to_dict().items() if k != 'report'},
            default=str)))
        self.assertEqual(self.measure.OUTCOME_COMPLETED, res.outcome,
                         'migration did not complete: %s' % res.error)
        self.assertEqual('completed', res.migration_status)
        self.assertEqual('completed', res.report['outcome'])
        # The driver's report: qatzip on the passthrough backend, over 4
        # channels, with a QAT lease (the fixture's PF).
        self.assertEqual('qatzip', res.report['method'], res.notes)
        self.assertEqual('qemu-passthrough', res.backend)
        self.assertIn('PARALLEL', res.flags)
        self.assertEqual(4, res.params.get('parallel.connections'))
        self.assertTrue(any(n.startswith('holding QAT lease')
                            for n in res.notes), res.notes)
        self.assertTrue(any('qatzip' in n and n.startswith('passthrough')
                            for n in res.notes), res.notes)
        self.assertEqual(self.binary, res.emulator)
        # The guest's memory check passes on the destination.
        self.assertEqual('ok', res.integrity, res.verdict)
        self.assertEqual(res.dest, res.verified_on)
        self.assertEqual(res.dest, self.session.host)
        # The destination QEMU received with qatzip: its own parameters,
        # asked through libvirt's monitor passthrough (it started with
        # -global migration.multifd-compression=qatzip from the live
        # destination XML; the persistent XML has no -global).
        import libvirt
        from nova_qat_migration.virt.libvirt import passthrough
        dom = self.cloud.domain(self.session.server_id)
        params = test_migration.monitor(dom, 'query-migrate-parameters')
        self.assertEqual('qatzip', params['multifd-compression'])
        self.assertEqual(1, params['multifd-qatzip-level'])
        self.assertEqual('qatzip', passthrough.globals_of(
            dom.XMLDesc(0)).get('multifd-compression'))
        self.assertEqual({}, passthrough.globals_of(
            dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)))
        # QATzip ran, on the CPU: both QEMUs logged its software fallback
        # (no QAT hardware here), the destination once per packet it
        # decompressed.
        for end in ('source', 'dest'):
            self.assertGreater(
                res.qemu_log[end]['qatzip_fallback_lines'], 0,
                '%s QEMU log: %s' % (end, res.qemu_log))

    def test_4_multi_hop_leaves_clean_definitions(self):
        # qatzip through the passthrough alternates with Nova's own plan
        # and plain multifd. After every hop no definition on either host
        # carries a -global the plan did not ask for, and the running
        # QEMU's method is the plan's (qatzip on the destination QEMU
        # whenever the plan sent it).
        import libvirt
        from nova_qat_migration.virt.libvirt import passthrough
        hops = [(QATZIP, 'qatzip'), (sc.PLANS['nova_default'], 'none'),
                (QATZIP, 'qatzip'), (sc.PLANS['parallel4'], 'none')]
        for spec, method in hops:
            res = self.migrate(spec)
            self.assertCompletedIntact(res)
            self.assertEqual(spec is QATZIP,
                             res.backend == 'qemu-passthrough', res.backend)
            domains = self.domains()
            self.assertIsNone(domains[res.source])
            dom = domains[res.dest]
            persistent = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
            self.assertEqual({}, passthrough.globals_of(persistent),
                             spec.name)
            live = passthrough.globals_of(dom.XMLDesc(0))
            self.assertEqual(method, live.get('multifd-compression',
                                              'none'), spec.name)
            self.assertEqual(method, _qemu_method(dom), spec.name)
        # The last hop found the source QEMU defaulting to qatzip (started
        # with the -global) and set it back before sending multifd pages
        # without compression.
        self.assertTrue(any('reset to none' in n for n in res.notes),
                        res.notes)

    def test_5_unplanned_hops_after_qatzip_go_out_clean(self):
        # After a qatzip hop (the destination QEMU started with -global
        # ...=qatzip), a migration the driver does not plan, because
        # planning failed or because the planner is disabled, still leaves
        # no -global in the destination's definitions, and a multifd call
        # (Nova's own parallel connections) finds the source QEMU set back
        # to no compression (else it would send qatzip pages to a QEMU
        # that expects none, and the guest would not arrive intact).
        import libvirt
        from nova_qat_migration.virt.libvirt import passthrough
        failing = sc.PlanSpec('planning-fails', policy='adaptive')
        disabled = sc.PlanSpec('planner-disabled', policy='adaptive',
                               options=(('enabled', False),))
        # Nova's own call is multifd: its flags are parsed at start-up.
        self._nova_parallel(4)
        self.addCleanup(self._nova_parallel, 1)
        for spec in (failing, disabled):
            res = self.migrate(QATZIP)
            self.assertCompletedIntact(res)
            self.assertEqual('qatzip', _qemu_method(
                self.domains()[res.dest]))
            with contextlib.ExitStack() as stack:
                if spec is failing:
                    for compute in self.cloud.computes.values():
                        stack.enter_context(mock.patch.object(
                            compute.driver, '_qat_plan',
                            side_effect=RuntimeError('planning fails')))
                res = self.migrate(spec)
            self.assertCompletedIntact(res)
            # Nothing was planned: no report.
            self.assertEqual({}, res.report, spec.name)
            dom = self.domains()[res.dest]
            self.assertEqual({}, passthrough.globals_of(
                dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)), spec.name)
            self.assertEqual({}, passthrough.globals_of(dom.XMLDesc(0)),
                             spec.name)
            self.assertEqual('none', _qemu_method(dom), spec.name)

    def _nova_parallel(self, connections):
        """``[libvirt] live_migration_parallel_connections`` on both
        computes, as after a restart with it.
        """
        self.cloud.flags(live_migration_parallel_connections=connections,
                         group='libvirt')
        for compute in self.cloud.computes.values():
            compute.driver._parse_migration_flags()
