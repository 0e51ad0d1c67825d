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
"""The product on the real path: Nova, ``QATLibvirtDriver``, libvirt, QEMU.

Nova's API, conductor, scheduler, Placement and two ``nova-compute``
services with ``compute_driver = qat_migration.QATLibvirtDriver`` run over
the lab's two libvirt 11 daemons (QEMU 10, TCG). Nova boots the
self-checking guest from images; every migration is requested with
``openstack server migrate --live-migration`` (python-openstackclient, a
subprocess talking HTTP to the lab's API). Keystone, Glance and Neutron
are Nova's functional-test fixtures. Skipped, with the reason, where the
machine cannot run them (not root, no QEMU/libvirt).
"""

import json
import os
import subprocess

import testtools

from nova_qat_migration_lab import hosts
from nova_qat_migration_lab import scenarios as sc

#: Per process: a benchmark (prefix nqm) may be running.
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


def monitor(dom, command):
    """One QMP command through libvirt's monitor passthrough."""
    import libvirt_qemu
    reply = libvirt_qemu.qemuMonitorCommand(
        dom, json.dumps({'execute': command}), 0)
    return json.loads(reply)['return']


class NovaLabTestCase(testtools.TestCase):
    """One lab, one Nova and one booted guest per test class."""

    nlab = None
    session = None
    scenario = SCENARIO
    qat_options: dict = {}
    driver = None
    #: The lab's QEMU (``hosts.Lab``'s ``qemu``); None: the distro's.
    qemu = None

    @classmethod
    def extra_skip_reason(cls):
        """Why this class cannot run beyond the lab's prerequisites."""
        return None

    @classmethod
    def prepare(cls):
        """Before the lab starts (e.g. fixtures its options name)."""

    @classmethod
    def cleanup(cls):
        """After the lab is gone."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.skip_reason = _skip_reason() or cls.extra_skip_reason()
        if cls.skip_reason:
            return
        from nova_qat_migration_lab import cloud
        from nova_qat_migration_lab import measure
        from nova_qat_migration_lab import runner
        cls.measure = measure
        cls.runner = runner
        try:
            cls.prepare()
            cls.nlab = runner.NovaLab(
                PREFIX, link_mbit=cls.scenario.link_mbit,
                qat_options=cls.qat_options,
                driver=cls.driver or cloud.DRIVER, qemu=cls.qemu)
            cls.nlab.__enter__()
            cls.cloud = cls.nlab.cloud
            cls.session = runner.GuestSession(cls.nlab, cls.scenario)
            cls.session.boot()
        except BaseException:
            cls._teardown()
            raise

    @classmethod
    def _teardown(cls):
        try:
            if cls.session is not None:
                try:
                    cls.session.destroy()
                finally:
                    cls.session = None
            if cls.nlab is not None:
                cls.nlab.__exit__()
                cls.nlab = None
        finally:
            cls.cleanup()

    @classmethod
    def tearDownClass(cls):
        cls._teardown()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        if self.skip_reason:
            self.skipTest(self.skip_reason)

    def migrate(self, spec, target=''):
        res = self.session.migrate(spec, timeout_s=TIMEOUT_S, target=target)
        self.addDetail('run-%s' % spec.name, testtools.content.text_content(
            json.dumps({k: v for k, v in res.to_dict().items()
                        if k != 'report'}, default=str)))
        return res

    def assertCompletedIntact(self, res):
        self.assertEqual(self.measure.OUTCOME_COMPLETED, res.outcome,
                         'migration did not complete: %s' % res.error)
        self.assertEqual('completed', res.migration_status)
        self.assertEqual('ok', res.integrity, res.verdict)
        self.assertEqual(res.dest, res.verified_on)
        self.assertNotEqual(res.source, res.dest)

    def domains(self):
        """{host name: the guest's domain there, or None}."""
        found = {}
        for host in self.nlab.lab.hosts:
            conn = self.cloud.connection(host)
            try:
                found[host.name] = conn.lookupByUUIDString(
                    self.session.server_id)
            except Exception:  # not defined there
                found[host.name] = None
        return found


class TestNovaPath(NovaLabTestCase):

    qat_options = {'qemu_monitor_passthrough': True}

    def test_1_booted_by_nova(self):
        # An ordinary Nova server: kernel and initramfs from images, the
        # dirtier's parameters from os_command_line, no ports.
        server = self.cloud.api.get_server(self.session.server_id)
        self.assertEqual('ACTIVE', server['status'])
        first = self.nlab.lab.hosts[0].name
        self.assertEqual(first, server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual({}, server['addresses'])
        xml = self.domains()[first].XMLDesc(0)
        self.assertIn(self.nlab.lab.instances_path, xml)
        self.assertIn('dirtier.mem=%d' % SCENARIO.touch_mb, xml)
        self.assertNotIn('<interface', xml)
        allocations = self.cloud.allocations(self.session.server_id)
        self.assertEqual([self.cloud.provider_uuid(first)],
                         list(allocations))

    def test_2_adaptive_through_the_openstack_client(self):
        res = self.migrate(sc.PLANS['adaptive'])
        self.assertCompletedIntact(res)
        self.assertEqual(
            ['openstack server migrate --live-migration --host %s %s'
             % (res.dest, self.session.server_id)], res.commands)
        # Nova's records moved with the guest.
        self.assertEqual(res.dest, self.session.host)
        self.assertEqual([self.cloud.provider_uuid(res.dest)],
                         list(self.cloud.allocations(
                             self.session.server_id)))
        self.assertIsNone(self.domains()[res.source])
        # The driver's record is complete on real libvirt.
        self.assertTrue(res.reasons, 'the adaptive plan must say why')
        self.assertEqual('adaptive', res.report['policy'])
        self.assertEqual(res.source, res.report['host'])
        for key in ('total_s', 'downtime_ms', 'bytes', 'iterations',
                    'memory_total_bytes'):
            self.assertIsNotNone(res.report[key], key)
        self.assertGreater(res.report['bytes'], SCENARIO.touch_mb * 2 ** 20)
        self.assertIsNotNone(res.facts['dirty_rate_mbps'],
                             'facts must come from libvirt measurement')
        self.assertTrue(res.prediction, 'the model predicted the plan')

    def test_3_scheduler_picks_and_history_learns(self):
        # No --host: the scheduler picks the only other host. The second
        # migration of this server plans with the first one's record.
        before = self.session.host
        res = self.migrate(sc.PLANS['adaptive'], target=None)
        self.assertCompletedIntact(res)
        self.assertEqual(['openstack server migrate --live-migration %s'
                          % self.session.server_id], res.commands)
        self.assertNotEqual(before, self.session.host)
        self.assertGreaterEqual(res.facts['history_migrations'], 1)
        self.assertIsNotNone(res.facts['history_converged'])

    # The monitor passthrough backend across hops (clean definitions, the
    # source's method reset) is proven with real qatzip on the QEMU built
    # with QATzip: test_qatzip_path.TestQatzipPath.test_4.

    def test_9_checker_catches_corruption(self):
        # The verdict is worth something only if it can fail (last: it
        # damages the guest's memory).
        ok, line = self.session.verify()
        self.assertTrue(ok, line)
        console = self.session.console
        start = len(console.text())
        console.send('CORRUPT')
        console.wait_for(r'CORRUPTED page=\d+', 30, start)
        ok, line = self.session.verify()
        self.assertFalse(ok)
        self.assertIn('bad=1', line)


class _Recorder:
    """Records what reaches libvirt's ``virDomain.migrateToURI3``."""

    def __init__(self, test):
        import libvirt
        self.calls = []
        real = libvirt.virDomain.migrateToURI3

        def record(dom, dconnuri, params, flags):
            self.calls.append({'flags': flags, 'params': dict(params)})
            return real(dom, dconnuri, params, flags)

        libvirt.virDomain.migrateToURI3 = record
        test.addCleanup(setattr, libvirt.virDomain, 'migrateToURI3', real)


class TestNovaDefaultIsNova(testtools.TestCase):
    """``policy = nova_default`` sends what plain ``LibvirtDriver`` sends
    on the same lab.
    """

    def setUp(self):
        super().setUp()
        why = _skip_reason()
        if why:
            self.skipTest(why)

    def _migrate_once(self, driver, options):
        from nova_qat_migration_lab import runner
        recorder = _Recorder(self)
        with runner.NovaLab(PREFIX + 'n', qat_options=options,
                            driver=driver) as nlab:
            with runner.GuestSession(nlab, SCENARIO) as session:
                res = session.migrate(sc.PLANS['nova_default'],
                                      timeout_s=TIMEOUT_S)
        self.assertEqual('completed', res.migration_status, res.error)
        self.assertEqual('ok', res.integrity, res.verdict)
        self.assertEqual(1, len(recorder.calls))
        return recorder.calls[0]

    def test_same_flags_and_params_as_libvirt_driver(self):
        nova = self._migrate_once('libvirt.LibvirtDriver', {})
        ours = self._migrate_once('qat_migration.QATLibvirtDriver',
                                  {'policy': 'nova_default'})
        self.assertEqual(nova['flags'], ours['flags'])
        xml = ('destination_xml', 'persistent_xml')
        self.assertEqual(
            {k: v for k, v in nova['params'].items() if k not in xml},
            {k: v for k, v in ours['params'].items() if k not in xml})
        self.assertEqual(sorted(nova['params']), sorted(ours['params']))


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
