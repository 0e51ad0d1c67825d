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
"""Every surface an operator drives the product from, on an operator's
cloud (:mod:`nova_qat_migration_lab.services`): Keystone, Glance,
Placement, Neutron and Nova's API under gunicorn, conductor, scheduler,
RabbitMQ, MariaDB, one nova-compute per lab host with its own nova.conf
and local disks.

Each test asserts that the plan came from ``QATLibvirtDriver`` (its
report in the source compute's log, and its notification from RabbitMQ)
and that the guest's memory check passes at the destination. The member
user's surface (Nova's 403, image properties that narrow the plan) is
driven through Horizon in :mod:`tests.lab.test_horizon`.

The cloud is the one ``nova-qat-migration-lab cloud up`` started (the
test command starts it before this suite and stops it after); without
one, the first test starts it and the process stops it when it exits.
"""

import atexit
import json
import os
import subprocess
import threading
import time

import testtools

from nova_qat_migration_lab import guest as guest_mod
from nova_qat_migration_lab import measure
from nova_qat_migration_lab import qemu_build
from nova_qat_migration_lab import repo
from nova_qat_migration_lab import runner
from nova_qat_migration_lab import scenarios as sc
from nova_qat_migration_lab import services
from tests.lab import test_migration

#: Busy enough to need a few iterations, quick to move at 1 Gbit/s.
SCENARIO = sc.Scenario('cloud-small', memory_mb=512, touch_mb=160,
                       hot_mb=64, rate=3000, pattern='small',
                       link_mbit=1000)
TIMEOUT_S = 120
EVENT = 'qat_migration.live_migration.end'
QAT_PF = '0000:6b:00.0'

_cloud = {}


def cloud():
    """The running cloud (started here, once per process, if none is)."""
    if 'cloud' not in _cloud:
        if services.ServiceCloud.running():
            c = services.ServiceCloud.attach()
        else:
            c = services.ServiceCloud(
                qemu=qemu_build.QATZIP if qemu_build.qatzip_qemu_binary()
                else None, qat_options=dict(runner.LAB_QAT_OPTIONS))
            c.up()
            atexit.register(c.down)
        c.upload_guest_images(guest_mod.build())
        _cloud['cloud'] = c
        _cloud['listener'] = Notifications(c)
    return _cloud['cloud']


def skip_reason():
    why = test_migration._skip_reason()
    if why:
        return why
    if not services.ServiceCloud.running() and not os.path.exists(
            '/usr/sbin/mariadbd') and os.geteuid() != 0:
        return 'the cloud needs root'
    return None


class Notifications:
    """What a monitoring system sees: an oslo.messaging notification
    listener on RabbitMQ, in its own pool (Nova's own consumers keep
    theirs).
    """

    def __init__(self, c) -> None:
        from oslo_config import cfg
        import oslo_messaging
        conf = cfg.ConfigOpts()
        conf([], project='nqm-lab-listener')
        transport = oslo_messaging.get_notification_transport(
            conf, url=c.transport_url())
        self.events = []
        self.cond = threading.Condition()
        listener = self

        class Endpoint:
            def info(self, ctxt, publisher_id, event_type, payload,
                     metadata):
                with listener.cond:
                    listener.events.append({'publisher_id': publisher_id,
                                            'event_type': event_type,
                                            'payload': payload})
                    listener.cond.notify_all()

        self.listener = oslo_messaging.get_notification_listener(
            transport, [oslo_messaging.Target(topic='versioned_notifications',
                                              exchange='nova')],
            [Endpoint()], executor='threading', pool='nqm-lab-tests')
        self.listener.start()
        atexit.register(self.stop)

    def stop(self) -> None:
        try:
            self.listener.stop()
            self.listener.wait()
        except Exception:  # at exit
            pass

    def wait_for(self, instance_uuid, timeout=60.0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for event in self.events:
                    data = event['payload'].get('nova_object.data', {})
                    if (event['event_type'] == EVENT and
                            data.get('instance_uuid') == instance_uuid):
                        self.events.remove(event)
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)


class CloudTestCase(testtools.TestCase):
    """One guest per test class on the operator's cloud.
    """

    scenario = SCENARIO
    properties: dict = {}
    extra_specs: dict = {}
    owner = 'admin'

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.skip = skip_reason()
        if cls.skip:
            return
        cls.cloud = cloud()
        cls.nlab = _Attached(cls.cloud)

    def setUp(self):
        super().setUp()
        if self.skip:
            self.skipTest(self.skip)
        self.addCleanup(self._logs_on_failure)

    def _logs_on_failure(self):
        for host in self.cloud.lab.hosts:
            path = self.cloud.compute_log(host.name)
            self.addDetail('nova-compute-%s' % host.name,
                           testtools.content.text_content(
                               services._tail(path, 60)))

    def boot(self, **kwargs):
        session = runner.GuestSession(
            self.nlab, self.scenario, name=self.id().rsplit('.', 1)[-1],
            properties=kwargs.pop('properties', self.properties),
            extra_specs=kwargs.pop('extra_specs', self.extra_specs))
        session.boot()
        self.addCleanup(session.destroy)
        return session

    def attach(self, server_id):
        """A session for a server booted otherwise (its guest ready)."""
        session = runner.GuestSession(self.nlab, self.scenario)
        session.server_id = server_id
        session.console = guest_mod.Console(self.cloud.domain(server_id))
        session.console.wait_for(r'READY pages=\d+|STAT t=', 180)
        self.addCleanup(session.console.close)
        return session

    def assert_planned(self, res, session, policy=None):
        """The driver planned it, reported it in its log and through
        RabbitMQ, and the guest is intact at the destination.
        """
        self.addDetail('run', testtools.content.text_content(json.dumps(
            {k: v for k, v in res.to_dict().items() if k != 'report'},
            default=str)))
        self.assertEqual(measure.OUTCOME_COMPLETED, res.outcome, res.error)
        self.assertEqual('completed', res.report.get('outcome'))
        self.assertTrue(res.effective_plan, res.report)
        if policy:
            self.assertEqual(policy, res.report.get('policy'))
        event = _cloud['listener'].wait_for(session.server_id)
        self.assertIsNotNone(event, 'no %s from RabbitMQ' % EVENT)
        data = event['payload']['nova_object.data']
        self.assertEqual(res.report['policy'], data['policy'])
        self.assertEqual(res.effective_plan, data['plan'])
        self.assertEqual('completed', data['outcome'])
        self.assertEqual('nova-qat-migration:%s' % res.source,
                         event['publisher_id'])
        self.assertEqual('ok', res.integrity, res.verdict)
        self.assertEqual(res.dest, res.verified_on)
        return data


class _Attached:
    """What :class:`runner.GuestSession` needs of a :class:`NovaLab`."""

    def __init__(self, c):
        self.cloud = c
        self.lab = c.lab
        self.qat_options = c.qat_options

    def set_link(self, mbit):
        self.cloud.set_link(mbit)


class TestSurfaces(CloudTestCase):
    """The CLIs operators use, a notification consumer, block migration
    over local disks.
    """

    def test_1_openstack_client_block_migrates(self):
        session = self.boot()
        dest = session.other_host()
        res = session.migrate(sc.PLANS['adaptive'], timeout_s=TIMEOUT_S)
        data = self.assert_planned(res, session, 'adaptive')
        self.assertEqual(dest, session.host)
        self.assertIn('openstack server migrate --live-migration --host %s'
                      % dest, ' '.join(res.commands))
        # No shared storage: Nova chose a block migration, the driver ran
        # it (the disks are copied, NON_SHARED_INC) and knew it.
        self.assertIn('NON_SHARED_INC', res.flags)
        self.assertEqual(['vda'], res.params.get('migrate_disks'))
        self.assertTrue(res.report['facts'].get('block_migration'),
                        res.report['facts'])
        self.assertEqual(data['instance_uuid'], session.server_id)

    def test_2_nova_client_live_migration(self):
        session = self.boot()
        dest = session.other_host()
        mark = self.cloud.reports.mark()
        with self.cloud.overrides({'policy': 'adaptive'}):
            migration = self.cloud.live_migrate(session.server_id,
                                                host=dest, tool='nova')
        self.assertEqual('completed', migration['status'])
        self.assertIn('nova live-migration %s %s'
                      % (session.server_id, dest), self.cloud.cli_log)
        record = self.cloud.reports.wait_for(session.server_id, mark, 30)
        self.assertIsNotNone(record, 'no report in the source log')
        self.assertEqual('completed', record['outcome'])
        self.assertEqual('adaptive', record['policy'])
        event = _cloud['listener'].wait_for(session.server_id)
        self.assertIsNotNone(event)
        self.assertEqual(record['plan'],
                         event['payload']['nova_object.data']['plan'])
        self.assertEqual(dest, session.host)
        session.reattach()
        ok, verdict = session.verify()
        self.assertTrue(ok, verdict)


class TestQATPlacement(CloudTestCase):
    """QAT capacity in the real Placement, and a migration holding and
    releasing a lease (QAT sysfs fixture on one compute; QATzip in
    software: no QAT hardware here).
    """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if cls.skip:
            return
        if cls.cloud.lab.qemu != qemu_build.QATZIP:
            cls.skip = ('the cloud runs %s QEMU; qatzip needs the build '
                        '(cloud up --qemu qatzip)' % cls.cloud.lab.qemu)
            return
        tree = repo.load_fixture('qat_sysfs').QATSysfs()
        tree.setUp()
        tree.add_pf(QAT_PF, '4xxx', numvfs=4, services='dc')
        cls.tree = tree
        cls.source = cls.cloud.lab.hosts[0].name
        cls.cloud.compute_extra.setdefault(cls.source, {})[
            'qat_migration'] = {
            'sysfs_root': tree.sysfs, 'debugfs_root': tree.debugfs,
            'qat_endpoints_for_migration': 1,
            'qemu_monitor_passthrough': True,
            'qatzip_software_allowed': True}
        cls.cloud.apply()

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, 'tree', None) is not None:
            cls.cloud.compute_extra.get(cls.source, {}).pop(
                'qat_migration', None)
            cls.cloud.apply()
            cls.tree.cleanUp()
        super().tearDownClass()

    def _osc_json(self, *args):
        return self.cloud.openstack_json(*args)

    def test_inventory_traits_and_lease(self):
        c = self.cloud
        node = c.provider_uuid(self.source)
        child = 'nqc-a_qat_%s' % QAT_PF
        deadline = time.monotonic() + 120
        while True:
            rps = self._osc_json('resource', 'provider', 'list', '--name',
                                 child)
            if rps or time.monotonic() > deadline:
                break
            time.sleep(3)
        self.assertEqual(1, len(rps), 'no QAT provider %s' % child)
        inventory = {r['resource_class']: r for r in self._osc_json(
            'resource', 'provider', 'inventory', 'list', rps[0]['uuid'])}
        self.assertIn('CUSTOM_QAT_DC', inventory)
        self.assertEqual(1, inventory['CUSTOM_QAT_DC']['reserved'])
        traits = {t['name'] for t in self._osc_json(
            'resource', 'provider', 'trait', 'list', rps[0]['uuid'])}
        self.assertIn('CUSTOM_QAT_GEN4', traits)
        self.assertIn('CUSTOM_QAT_DC', traits)
        node_traits = {t['name'] for t in self._osc_json(
            'resource', 'provider', 'trait', 'list', node)}
        self.assertIn('CUSTOM_QAT_MIGRATION', node_traits)
        self.assertIn('CUSTOM_MIGRATION_COMPRESS_QATZIP', node_traits)
        # Two migrations from the QAT host, one endpoint kept for
        # migrations: the second holds the lease only if the first gave
        # it back.
        session = self.boot()
        self._migrate_holding_the_lease(session)
        # Back with the same options (no restart): the destination has no
        # QAT, so its plan does without.
        back = session.migrate(_qatzip_plan(), timeout_s=TIMEOUT_S)
        self.assertEqual(measure.OUTCOME_COMPLETED, back.outcome, back.error)
        # Its notification too, so the next hop reads its own.
        self.assertIsNotNone(_cloud['listener'].wait_for(session.server_id))
        session.reattach()
        self._migrate_holding_the_lease(session)

    def _migrate_holding_the_lease(self, session):
        self.assertEqual(self.source, session.host)
        res = session.migrate(_qatzip_plan(), timeout_s=TIMEOUT_S)
        self.assert_planned(res, session, 'static')
        self.assertEqual('qatzip', res.report['method'], res.notes)
        self.assertTrue(any(n.startswith('holding QAT lease')
                            for n in res.notes), res.notes)


def _qatzip_plan():
    """The static qatzip plan of the lab's qatzip path test."""
    from tests.lab import test_qatzip_path
    return test_qatzip_path.QATZIP


class TestQemuInAnotherContainer(CloudTestCase):
    """nova-compute without the QEMU binary (kolla's nova_libvirt split):
    capabilities come through libvirt or the operator's option, never by
    running a binary.
    """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if cls.skip:
            return
        c = cls.cloud
        a, b = [h.name for h in c.lab.hosts]
        cls.saved = (dict(c.qemu_visible),
                     json.loads(json.dumps(c.compute_extra)))
        c.qemu_visible.update({a: False, b: False})
        methods = 'zlib,zstd' + (',qatzip' if c.lab.qemu ==
                                 qemu_build.QATZIP else '')
        # The source reads its QEMU through libvirt (QMP on the domain it
        # migrates); the destination, with no domain to ask, from the
        # operator's option.
        c.compute_extra.setdefault(a, {}).setdefault('qat_migration', {})[
            'qemu_monitor_passthrough'] = True
        c.compute_extra.setdefault(b, {}).setdefault('qat_migration', {})[
            'hypervisor_multifd_methods'] = methods
        c.apply(restart=(a, b))

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, 'saved', None) is not None:
            c = cls.cloud
            c.qemu_visible, c.compute_extra = cls.saved
            c.apply(restart=tuple(h.name for h in c.lab.hosts))
        super().tearDownClass()

    def test_traits_and_zstd_plan_without_the_binary(self):
        c = self.cloud
        a, b = [h.name for h in c.lab.hosts]
        for host in (a, b):
            self.assertFalse(c.sees_qemu(host), host)
        deadline = time.monotonic() + 120
        while ('CUSTOM_MIGRATION_COMPRESS_ZSTD' not in c.provider_traits(b)
               and time.monotonic() < deadline):
            time.sleep(3)
        self.assertIn('CUSTOM_MIGRATION_COMPRESS_ZSTD', c.provider_traits(b))
        session = self.boot()
        self.assertEqual(a, session.host)
        res = session.migrate(sc.PLANS['zstd1x4'], timeout_s=TIMEOUT_S)
        self.assert_planned(res, session, 'static')
        self.assertEqual('zstd', res.params.get('compression'), res.notes)
        self.assertIn('PARALLEL', res.flags)


class TestLongBlockMigration(CloudTestCase):
    """A disk copy that outlasts the planner's progress timeout completes
    with the adaptive policy, as it would with Nova.

    The computes run with ``progress_timeout`` lowered from its default 150 s
    to :attr:`PROGRESS_TIMEOUT_S`, so that a shorter disk copy (CI time)
    still outlasts it.
    """

    scenario = sc.Scenario('cloud-disk', memory_mb=256, touch_mb=16,
                           hot_mb=8, rate=200, pattern='small',
                           link_mbit=12)
    DISK_MB = 64
    PROGRESS_TIMEOUT_S = 20

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if cls.skip:
            return
        c = cls.cloud
        cls.saved = dict(c.libvirt_options)
        cls.saved_qat = dict(c.qat_options)
        # Flat images: the instance's disk is a copy of the image, all of
        # it copied by a block migration.
        c.libvirt_options['images_type'] = 'flat'
        c.qat_options['progress_timeout'] = cls.PROGRESS_TIMEOUT_S
        c.apply()

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, 'saved', None) is not None:
            c = cls.cloud
            c.libvirt_options = cls.saved
            c.qat_options = cls.saved_qat
            c.set_link(1000)
            c.apply()
        super().tearDownClass()

    def test_disk_copy_longer_than_progress_timeout(self):
        c = self.cloud
        disk = os.path.join(services.STATE_ROOT, 'random-%dm.raw'
                            % self.DISK_MB)
        if not os.path.exists(disk):
            subprocess.run(['dd', 'if=/dev/urandom', 'of=%s' % disk,
                            'bs=1M', 'count=%d' % self.DISK_MB],
                           check=True, capture_output=True)
        image = c.guest_image('disk-guest', self.scenario.cmdline(1),
                              disk_file=disk)
        flavor = c.lab_flavor('disk', self.scenario.memory_mb)
        server = c.boot('disk-guest', image, flavor,
                        host=c.lab.hosts[0].name)
        self.addCleanup(c.delete, server['id'])
        session = self.attach(server['id'])
        c.set_link(self.scenario.link_mbit)
        started = time.monotonic()
        res = session.migrate(sc.PLANS['adaptive'], timeout_s=900)
        took = time.monotonic() - started
        self.assert_planned(res, session, 'adaptive')
        self.assertGreater(took, self.PROGRESS_TIMEOUT_S + 15,
                           'the disk copy was not long enough to test the '
                           'progress timeout')
        facts = res.report['facts']
        self.assertTrue(facts.get('block_migration'), facts)
        self.assertGreaterEqual(facts.get('disk_bytes') or 0,
                                self.DISK_MB * 1024 * 1024 * 0.9, facts)
        self.assertNotEqual('aborted', res.report.get('outcome'))
