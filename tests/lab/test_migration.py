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
"""Real migrations: two namespaced libvirt 11 daemons, QEMU 10 (TCG).

No mocks: these tests start the lab's two hosts, boot the self-checking
guest and migrate it with plans from the project's policies and
translation. Skipped, with the reason, where the machine cannot run them
(not root, no QEMU/libvirt). One guest serves the whole class (it moves
back and forth between the hosts), so the suite takes a few minutes.
"""

import os
import subprocess

import testtools

from nova_qat_migration.conf import CONF
from nova_qat_migration.lab import hosts
from nova_qat_migration.lab import runner
from nova_qat_migration.lab import scenarios as sc
from nova_qat_migration.policy import base
from nova_qat_migration.virt.libvirt import constants as c
from nova_qat_migration.virt.libvirt import translate

#: Per process: stestr may run the two classes in parallel workers, and a
#: benchmark (prefix nqm) may be running.
PREFIX = 't%05d' % (os.getpid() % 100000)

#: Small and busy enough to need a few iterations, quick to move at 1 Gbit/s.
SCENARIO = sc.Scenario('test-small', memory_mb=512, touch_mb=192, hot_mb=64,
                       rate=4000, pattern='small', link_mbit=1000)
TIMEOUT_S = 90


def _skip_reason():
    why = hosts.missing_prerequisites()
    if why:
        return 'lab needs root, QEMU and libvirt: %s' % '; '.join(why)
    try:
        out = subprocess.run(['qemu-system-x86_64', '--version'],
                             capture_output=True, text=True, timeout=30)
        version = tuple(int(x) for x in out.stdout.split()[3].split('.')[:2])
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return 'cannot tell the QEMU version'
    if version < (9, 0):
        return ('QEMU %s corrupts TCG guest memory in migration (< 9.0); '
                'install QEMU 10 (tools/setup-host.sh)' % '.'.join(
                    map(str, version)))
    return None


class LabTestCase(testtools.TestCase):
    """A lab and one booted guest per test class."""

    lab = None
    driver = None
    session = None
    scenario = SCENARIO

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.skip_reason = _skip_reason()
        if cls.skip_reason:
            return
        CONF(args=[], project='nova')
        cls.lab = hosts.Lab(PREFIX, link_mbit=cls.scenario.link_mbit)
        try:
            cls.lab.up()
            cls.driver = runner.LabDriver(cls.lab, CONF)
            cls.session = runner.GuestSession(cls.driver, cls.scenario)
            cls.session.boot()
        except BaseException:
            cls._teardown()
            raise

    @classmethod
    def _teardown(cls):
        if cls.session is not None:
            cls.session.destroy()
        if cls.driver is not None:
            cls.driver.close()
        if cls.lab is not None:
            cls.lab.down()

    @classmethod
    def tearDownClass(cls):
        cls._teardown()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        if self.skip_reason:
            self.skipTest(self.skip_reason)

    def migrate(self, spec, timeout_s=TIMEOUT_S):
        res = self.session.migrate(spec, timeout_s=timeout_s)
        self.addDetail('run', testtools.content.text_content(
            '%s %s %s s integrity=%s %s flags=%s params=%s actions=%s'
            % (res.plan, res.outcome, res.total_s, res.integrity,
               res.verdict, res.flags, res.params, res.actions)))
        return res

    def assertCompletedIntact(self, res):
        self.assertEqual(runner.OUTCOME_COMPLETED, res.outcome,
                         'migration did not complete: %s' % res.error)
        self.assertEqual('ok', res.integrity, res.verdict)
        self.assertEqual(res.dest, res.verified_on)


class TestRealMigration(LabTestCase):

    def test_1_nova_default(self):
        res = self.migrate(sc.PLANS['nova_default'])
        self.assertCompletedIntact(res)
        # Nova's call exactly: no parallel, no compression.
        self.assertEqual(translate.nova_flags(base.NovaSettings()),
                         sum(getattr(c, 'VIR_MIGRATE_' + f)
                             for f in res.flags))
        self.assertNotIn(c.PARAM_COMPRESSION, res.params)
        self.assertGreater(res.wire_bytes, SCENARIO.touch_mb * base.MIB)

    def test_2_adaptive(self):
        res = self.migrate(sc.PLANS['adaptive'])
        self.assertCompletedIntact(res)
        self.assertTrue(res.reasons, 'the adaptive plan must say why')
        self.assertIsNotNone(res.facts['dirty_rate_mbps'],
                             'facts must come from libvirt measurement')

    def test_3_zstd_multifd(self):
        res = self.migrate(sc.PLANS['zstd1x4'])
        self.assertCompletedIntact(res)
        self.assertIn('PARALLEL', res.flags)
        self.assertEqual('zstd', res.params[c.PARAM_COMPRESSION])
        self.assertEqual(4, res.params[c.PARAM_PARALLEL_CONNECTIONS])

    def test_4_xbzrle(self):
        res = self.migrate(sc.PLANS['xbzrle128'])
        self.assertCompletedIntact(res)
        self.assertEqual('xbzrle', res.params[c.PARAM_COMPRESSION])
        self.assertNotIn('PARALLEL', res.flags)

    def test_5_timeout_aborts_and_guest_stays_intact(self):
        # A completion timeout far too short: the runner aborts the job,
        # the guest keeps running on the source, memory intact.
        here = self.session.where
        res = self.migrate(sc.PLANS['plain'], timeout_s=1.0)
        self.assertEqual(runner.OUTCOME_TIMEOUT, res.outcome, res.error)
        self.assertFalse(res.converged)
        self.assertEqual(here, self.session.where)
        self.assertEqual('ok', res.integrity, res.verdict)
        self.assertEqual(res.source, res.verified_on)

    def test_6_checker_catches_corruption(self):
        # The verdict is worth something only if it can fail.
        ok, line = self.session.verify()
        self.assertTrue(ok, line)
        start = len(self.session.console.text())
        self.session.console.send('CORRUPT')
        self.session.console.wait_for(r'CORRUPTED page=\d+', 30, start)
        ok, line = self.session.verify()
        self.assertFalse(ok)
        self.assertIn('bad=1', line)


class TestForbiddenCombinations(LabTestCase):
    """What QEMU 10 refuses is never sent, whatever a plan asks.

    The capabilities are probed from the lab's real libvirt and QEMU; the
    degraded plans are then run for real and must not be rejected.
    """

    def _facts(self):
        return self.session.gather_facts()

    def test_translation_never_sends_forbidden(self):
        facts = self._facts()
        hv = facts.hypervisor
        asks = list(sc.FORBIDDEN_ASKS.values()) + [
            s.plan for s in sc.PLANS.values() if s.fixed]
        for policy in ('adaptive', 'static', 'nova_default'):
            asks.append(self.driver.policy(policy).plan(facts))
        for plan in asks:
            call = translate.to_libvirt(plan, facts)
            method = call.params.get(c.PARAM_COMPRESSION)
            parallel = bool(call.flags & c.VIR_MIGRATE_PARALLEL)
            what = '%s -> %s %s' % (plan.describe(), call.flag_names(),
                                    call.params)
            if parallel:
                self.assertNotIn(method, ('xbzrle', 'mt'), what)
                if not hv.postcopy_with_multifd:
                    self.assertFalse(call.flags & c.VIR_MIGRATE_POSTCOPY,
                                     what)
            else:
                self.assertNotIn(method, ('zlib', 'zstd'), what)
            if not hv.has_mt:
                self.assertNotEqual('mt', method, what)
        self.assertLess(hv.qemu_version, (10, 1, 0),
                        'update this test: QEMU >= 10.1 allows post-copy '
                        'with multifd')

    def test_degraded_asks_run_for_real(self):
        for name in ('xbzrle-multifd', 'postcopy-multifd', 'mt'):
            spec = sc.PlanSpec(name, plan=sc.FORBIDDEN_ASKS[name])
            res = self.migrate(spec)
            self.assertTrue(res.degradations, name)
            self.assertCompletedIntact(res)


class TestLabLifecycle(testtools.TestCase):
    """The lab leaves nothing behind and never tears down another lab."""

    def setUp(self):
        super().setUp()
        why = _skip_reason()
        if why:
            self.skipTest(why)

    def test_cleanup_after_failure_and_lock(self):
        prefix = 'u%05d' % (os.getpid() % 100000)
        daemons = []

        class Boom(Exception):
            pass

        with testtools.ExpectedException(Boom):
            with hosts.Lab(prefix) as lab:
                daemons = [h.process.pid for h in lab.hosts]
                self.assertTrue(hosts.in_use(prefix))
                # A second lab with the same name refuses to start and
                # leaves the running one alone.
                with testtools.ExpectedException(hosts.LabError,
                                                 '.*in use.*'):
                    with hosts.Lab(prefix):
                        pass
                self.assertTrue(os.path.exists('/run/netns/%s-a' % prefix))
                lab.connect(lab.dest).close()
                raise Boom()
        for suffix in ('a', 'b'):
            self.assertFalse(os.path.exists('/run/netns/%s-%s'
                                            % (prefix, suffix)))
        for pid in daemons:
            self.assertFalse(os.path.exists('/proc/%d' % pid)
                             and not hosts._zombie(pid), pid)
        self.assertFalse(hosts.in_use(prefix))
        self.assertFalse(os.path.exists(os.path.join(hosts.RUN_ROOT,
                                                     prefix)))
