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
"""Nova's in-process stack with ``QATLibvirtDriver`` computes.

Nova's own harness does the work: API, conductor, scheduler, in-process
Placement and the fake libvirt (``nova/tests/functional/libvirt/base.py``).
Live migrations are requested through the REST API (``os-migrateLive``,
what ``openstack server migrate --live-migration`` and Horizon send); the
fake domain's ``migrateToURI3`` is replaced by a stub that records the
flags and params it receives and completes the job, as Nova's own
``LibvirtMigrationMixin`` does.
"""

import os
import sys
import threading
import time
import urllib.parse

import fixtures
from lxml import etree
from nova.tests.fixtures import libvirt as fakelibvirt
from nova.tests.functional import integrated_helpers
from nova.tests.functional.libvirt import base as libvirt_base

from nova_qat_migration import datamodel
from nova_qat_migration.virt.libvirt import driver as qat_driver

QAT_DRIVER = 'qat_migration.QATLibvirtDriver'
NOVA_DRIVER = 'libvirt.LibvirtDriver'

#: The wheel installs Nova's paste config under the prefix, not beside the
#: package where the test defaults look.
API_PASTE = os.path.join(sys.prefix, 'etc', 'nova', 'api-paste.ini')

#: libvirt 11.3 + QEMU 10.0 with zlib and zstd built in (this lab's pair).
MODERN = datamodel.HypervisorCaps(libvirt_version=(11, 3, 0),
                                  qemu_version=(10, 0, 0),
                                  multifd_methods=frozenset({'none', 'zlib',
                                                             'zstd'}))
#: A QEMU built without zstd.
NO_ZSTD = datamodel.HypervisorCaps(libvirt_version=(11, 3, 0),
                                   qemu_version=(10, 0, 0),
                                   multifd_methods=frozenset({'none', 'zlib'}))

IDLE = datamodel.HostLoad(cpus=16, cpu_idle_pct=95.0, mem_free_mb=64 * 1024)

XML_PARAMS = ('destination_xml', 'persistent_xml')


class HypervisorCapsFixture(fixtures.Fixture):
    """What each fake host's QEMU can do, by hostname.

    NOTE(qat-migration): the real probe asks the QEMU binary named in
    libvirt's capabilities for its QMP schema; the fake libvirt has no
    QEMU, and the shared test machine may have a real one we must not run.
    """

    def __init__(self, default=MODERN, **by_host):
        super().__init__()
        self.default = default
        self.by_host = dict(by_host)
        self.probed = []

    def _probe(self, conn, qemu_binary=None):
        hostname = conn.getHostname()
        self.probed.append(hostname)
        return self.by_host.get(hostname, self.default)

    def _setUp(self):
        self.useFixture(fixtures.MonkeyPatch(
            'nova_qat_migration.virt.libvirt.driver.QATMigrationMixin.'
            'qat_probe_hypervisor', staticmethod(self._probe)))


class HostLoadFixture(fixtures.Fixture):
    """The source's CPU idle and free memory when a migration starts.

    NOTE(qat-migration): the real measurement reads this machine's
    /proc/stat, which other engineers' QEMU migrations keep busy; the
    adaptive policy's choice must not depend on them.
    """

    def __init__(self, load=IDLE):
        super().__init__()
        self.load = load

    def _setUp(self):
        self.useFixture(fixtures.MonkeyPatch(
            'nova_qat_migration.virt.libvirt.measure.host_load',
            lambda *a, **k: self.load))


class QATMigrationTestBase(libvirt_base.LibvirtMigrationMixin,
                           libvirt_base.ServersTestBase,
                           integrated_helpers.InstanceHelperMixin):
    """Two (or more) computes; migrations recorded per server."""

    microversion = 'latest'
    ADMIN_API = True
    #: ``[qat_migration] policy`` of the computes.
    POLICY = 'adaptive'
    #: Options set explicitly beyond Nova's ``[libvirt]`` defaults, which
    #: the planner follows while they are unset (no auto-converge, one
    #: connection: no multifd compression), as the lab's computes do.
    WIDENED = {'permit_auto_converge': True, 'max_parallel_connections': 4}

    def _setup_services(self):
        self.flags(api_paste_config=API_PASTE, group='wsgi')
        super()._setup_services()

    def setUp(self):
        super().setUp()
        self.caps = self.useFixture(HypervisorCapsFixture())
        self.load = self.useFixture(HostLoadFixture())
        state = self.useFixture(fixtures.TempDir()).path
        self.flags(policy=self.POLICY, dirty_rate_sample_seconds=0,
                   state_path=state, group='qat_migration', **self.WIDENED)
        self.flags(compute_driver=QAT_DRIVER)
        #: server uuid -> list of {'flags': int, 'params': dict}
        self.calls = {}
        self.calls_lock = threading.Lock()
        #: callable(params, flags) -> bool: refuse this call like libvirt
        self.refuse = None
        #: a threading.Barrier the stub waits on (concurrency tests)
        self.barrier = None

    # -- helpers -----------------------------------------------------------

    def start_qat_compute(self, hostname, driver=QAT_DRIVER, caps=None):
        if caps is not None:
            self.caps.by_host[hostname] = caps
        self.flags(compute_driver=driver)
        self.start_compute(hostname=hostname)
        return self.computes[hostname]

    def _migrate_stub(self, domain, destination, params, flags):
        uuid = etree.fromstring(params['destination_xml']).find('./uuid').text
        with self.calls_lock:
            self.calls.setdefault(uuid, []).append(
                {'flags': flags, 'params': dict(params)})
        if self.refuse is not None and self.refuse(params, flags):
            raise fakelibvirt.make_libvirtError(
                fakelibvirt.libvirtError,
                'argument unsupported: compression is not supported here',
                error_code=fakelibvirt.VIR_ERR_ARGUMENT_UNSUPPORTED,
                error_domain=fakelibvirt.VIR_FROM_QEMU)
        if self.barrier is not None:
            self.barrier.wait(timeout=60)
        dest = urllib.parse.urlparse(destination).hostname or destination
        self.computes[dest].driver._host.get_connection().createXML(
            params['destination_xml'],
            'fake-createXML-doesnt-care-about-flags')
        # The domain jobStats() now reports COMPLETED: Nova's monitor sees
        # the migration finish, as with a real libvirt.
        domain.complete_job()
        self.migrate_stub_ran = True

    def last_call(self, server):
        calls = self.calls.get(server['id'])
        self.assertTrue(calls, 'migrateToURI3 never called for %s'
                        % server['id'])
        return calls[-1]

    @staticmethod
    def without_xml(params):
        return {k: v for k, v in params.items() if k not in XML_PARAMS}

    def flavor(self, **extra_specs):
        return self._create_flavor(memory_mb=1024, vcpu=1, disk=1,
                                   ephemeral=0,
                                   extra_spec=extra_specs or None)

    def server_on(self, host, flavor_id=None):
        return self._create_server(host=host, flavor_id=flavor_id,
                                   networks='none')

    def migrate(self, server, host, **kw):
        return self._live_migrate(server, host=host, **kw)

    def driver_of(self, hostname):
        return self.computes[hostname].driver

    def wait_until(self, predicate, what, timeout=30):
        """Poll ``predicate``: Nova marks a migration completed from inside
        the driver's ``_live_migration``, before its cleanup has run.
        """
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                self.fail('timed out waiting for %s' % what)
            time.sleep(0.1)

    def wait_for_driver_cleanup(self, hostname):
        """Sessions closed and QAT leases (if any) released."""
        driver = self.driver_of(hostname)

        def done():
            manager = getattr(driver, '_qat_manager', None)
            in_use = manager.pool.in_use if manager is not None else 0
            return not driver._qat_sessions and in_use == 0

        self.wait_until(done, 'migration cleanup on %s' % hostname)


def flag_set(flags):
    from nova_qat_migration.virt.libvirt import constants
    return set(constants.flag_names(flags))


__all__ = ['QATMigrationTestBase', 'HypervisorCapsFixture',
           'HostLoadFixture', 'MODERN', 'NO_ZSTD', 'IDLE', 'QAT_DRIVER',
           'NOVA_DRIVER', 'flag_set', 'qat_driver']
