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
"""A real Nova over the lab's two libvirt hosts, in one process.

This is the harness for what needs the driver's internals (the fault
matrix injects faults into the computes' drivers and reads their state);
the demo, the benchmark and the lab's surface tests run on the operator's
cloud of :mod:`.services`, every service its own process.

What runs, in this one process, with native threads (no eventlet):

* **real**: Nova's REST API (also served on a local TCP port, where the
  ``openstack`` client talks to it), conductor, scheduler, Placement
  (in-process, ``openstack-placement``), two ``nova-compute`` services
  whose driver is ``qat_migration.QATLibvirtDriver`` talking to the lab's
  two libvirt 11 daemons, which run QEMU 10 (Debian's, or with the lab's
  ``qemu='qatzip'`` the build with QATzip: libvirt offers it as the
  default emulator and Nova's guests run it);
* **fixtures standing in**, as in Nova's own functional tests: Keystone
  (a token ``user:project`` becomes the request's identity), Glance (images
  held in memory, written to disk when Nova downloads them), Neutron (the
  guests have no ports), the message bus (oslo.messaging's in-process
  ``fake://`` transport) and SQLite databases.

Why one process: separate Nova processes need a real message broker and
WSGI servers for API and Placement; Nova's functional-test base already
wires every service together in-process, and everything on the path of a
migration (API -> conductor -> scheduler -> computes -> libvirt -> QEMU)
is the code an operator runs. The price is one ``CONF`` for both computes:
options that differ per host (``[DEFAULT] host``, ``[libvirt]
connection_uri``) are set as each compute starts, and the per-host
``live_migration_inbound_addr`` is replaced by name resolution (each
daemon resolves the other host's name to its lab address, as DNS would).
:meth:`LabCloud.nova_conf` writes each host's ``nova.conf`` as an
operator would.

The class derives from Nova's ``_IntegratedTestBase`` (a test case) and is
used programmatically by the benchmark and the demo: :meth:`LabCloud.up`
runs its set-up, :meth:`LabCloud.down` its clean-ups. Only the fixtures
that forbid real hosts (libvirt import poison, sysfs poison, the libvirt
event-loop poison, the privsep-helper poison) are left out.
"""

from __future__ import annotations

import os

# Native threads: the libvirt event loop, the monitor and the lab's own
# threads are ordinary threads. Must be decided before Nova is imported.
os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')

import contextlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import shlex  # noqa: E402
import socketserver  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from typing import Any, Callable, Iterator, Optional  # noqa: E402
from unittest import mock  # noqa: E402
from wsgiref import simple_server  # noqa: E402

# Nova's test package decides the concurrency mode when it is imported:
# it must come before anything that imports eventlet.
import nova.tests.functional  # noqa: E402,F401,I100

import fixtures  # noqa: E402
import libvirt  # noqa: E402,F401 - imported before Nova's import poison
from nova.tests import fixtures as nova_fixtures  # noqa: E402
from nova.tests.functional import integrated_helpers  # noqa: E402
from nova.virt.libvirt import host as libvirt_host  # noqa: E402
from oslo_log import log as oslo_logging  # noqa: E402

from nova_qat_migration import conf as qat_conf  # noqa: E402,F401
from nova_qat_migration import outcomes  # noqa: E402
from nova_qat_migration.virt.libvirt import report  # noqa: E402
from nova_qat_migration_lab import guest as guest_mod  # noqa: E402
from nova_qat_migration_lab import hosts as hosts_mod  # noqa: E402
from nova_qat_migration_lab import qemu_build  # noqa: E402
from nova_qat_migration_lab import services  # noqa: E402

LOG = oslo_logging.getLogger(__name__)

#: The wheel installs Nova's paste config under the prefix.
API_PASTE = os.path.join(sys.prefix, 'etc', 'nova', 'api-paste.ini')
DRIVER = 'qat_migration.QATLibvirtDriver'
PROJECT = 'lab'
#: Nova's monitor settles a finished migration within a few seconds.
MIGRATION_TIMEOUT_S = 600.0
TERMINAL_MIGRATION = ('completed', 'error', 'failed', 'cancelled')

#: Fixtures of Nova's test base that forbid what the lab is for: a real
#: libvirt module, real sysfs and host information, libvirt's event loop
#: and privileged helpers (the lab runs as root; privsep runs in-process).
_SKIPPED_FIXTURES = (
    nova_fixtures.ImportModulePoisonFixture,
    nova_fixtures.SysFsPoisonFixture,
    nova_fixtures.GenericPoisonFixture,
    nova_fixtures.PoisonFunctions,
    nova_fixtures.PrivsepNoHelperFixture,
    nova_fixtures.StandardLogging,
)


#: Nova did not do what the lab asked (one class for both clouds).
CloudError = services.CloudError


def _start_events_once() -> None:
    """Run libvirt's event loop once per process.

    NOTE(qat-migration): each compute's ``Host`` starts the default event
    implementation and a thread looping over it; two such threads in one
    process would compete for one GLib main context. One loop serves every
    connection of the process.
    """
    handler_cls = libvirt_host._ThreadingLibvirtEventHandler
    if getattr(handler_cls, '_lab_once', False):
        return
    real_start = handler_cls.start
    lock = threading.Lock()
    state = {'started': False}

    def start(self: Any) -> None:
        with lock:
            if not state['started']:
                real_start(self)
                state['started'] = True

    handler_cls.start = start
    handler_cls._lab_once = True


class _StopThread(BaseException):
    """Ends a Nova loop that only catches ``Exception``."""


def _stop_thread() -> None:
    raise _StopThread()


class _Identity:
    """Keystone's stand-in for the API served on the local port.

    A token ``user:project`` becomes the identity Nova's test context
    middleware reads (user ``admin`` has the admin role), as Nova's
    functional client sends it.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict, start_response: Any) -> Any:
        token = environ.get('HTTP_X_AUTH_TOKEN', '')
        user, _sep, project = token.partition(':')
        if user:
            environ['HTTP_X_AUTH_USER'] = user
            environ['HTTP_X_AUTH_PROJECT_ID'] = project or PROJECT
            environ['HTTP_X_ROLES'] = ('reader,member,admin'
                                       if user == 'admin' else
                                       'reader,member')
        return self.app(environ, start_response)


class _QuietHandler(simple_server.WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        LOG.debug('api: ' + args[0], *args[1:])


class _ThreadingServer(socketserver.ThreadingMixIn,
                       simple_server.WSGIServer):
    daemon_threads = True


class ReportCollector(logging.Handler):
    """Keeps the driver's ``qat_migration report:`` records.

    The lab reads what the product logged; it never builds the record.
    """

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list = []
        self.cond = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a bad record is not ours
            return
        if not text.startswith(outcomes.PREFIX):
            return
        try:
            data = json.loads(text[len(outcomes.PREFIX):])
        except ValueError:
            return
        with self.cond:
            self.records.append(data)
            self.cond.notify_all()

    def mark(self) -> int:
        """Records from now on count for :meth:`wait_for`."""
        with self.cond:
            return len(self.records)

    def wait_for(self, instance: str, after: int,
                 timeout: float = 60.0) -> Optional[dict]:
        """The first record for ``instance`` past index ``after``."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for rec in self.records[after:]:
                    if rec.get('instance') == instance:
                        return rec
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)


class LabCloud(integrated_helpers._IntegratedTestBase):
    """Nova's control plane and two ``QATLibvirtDriver`` computes.

    :param lab: a running :class:`~nova_qat_migration_lab.hosts.Lab`.
    :param log_path: where Nova's and the driver's log goes (INFO).
    :param qat_options: ``[qat_migration]`` options of both computes.
    :param libvirt_options: ``[libvirt]`` options of both computes.
    :param driver: ``compute_driver`` (Nova's own for comparisons).
    """

    ADMIN_API = True
    CAST_AS_CALL = False
    microversion = 'latest'
    REQUIRES_LOCKING = True

    def __init__(self, lab: hosts_mod.Lab, log_path: Optional[str] = None,
                 qat_options: Optional[dict] = None,
                 libvirt_options: Optional[dict] = None,
                 driver: str = DRIVER) -> None:
        super().__init__('_lab')
        self.lab = lab
        self.log_path = log_path or os.path.join(lab.root, 'nova.log')
        self.qat_options = dict(qat_options or {})
        self.libvirt_options = dict(libvirt_options or {})
        self.driver_name = driver
        self.reports = ReportCollector()
        self.api_url: Optional[str] = None
        self.images: dict = {}
        self._flavors: dict = {}
        self._cli_env: Optional[dict] = None
        self.cli_log: list = []

    def _lab(self) -> None:
        """The "test method" of this case: the lab never runs it."""

    # -- life cycle ----------------------------------------------------------

    def useFixture(self, fixture: Any) -> Any:
        if isinstance(fixture, _SKIPPED_FIXTURES):
            return fixture
        return super().useFixture(fixture)

    def up(self) -> 'LabCloud':
        """Start every service; on failure, stop what started."""
        _start_events_once()
        self._logging()
        # The test base would capture stdout/stderr and arm a per-test
        # timeout: neither fits a benchmark that prints and runs for hours.
        env = {'OS_STDOUT_CAPTURE': '0', 'OS_STDERR_CAPTURE': '0',
               'OS_LOG_CAPTURE': '0', 'OS_TEST_TIMEOUT': '0'}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            self.setUp()
            self._serve_api()
        except BaseException:
            self.down()
            raise
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        return self

    def down(self) -> None:
        """Stop every service (never raises)."""
        for compute in self.computes.values():
            # Each libvirt Host loops for ever over its connection-event
            # queue inside Nova's thread pool, whose shutdown waits for it.
            try:
                compute.driver._host._conn_event_handler_queue.put(
                    _stop_thread)
            except Exception:  # no such queue: nothing waits
                pass
        try:
            self.doCleanups()
        except Exception:  # tear-down is best effort
            LOG.exception('cloud clean-up failed')

    def __enter__(self) -> 'LabCloud':
        return self.up()

    def __exit__(self, *exc: Any) -> None:
        self.down()

    def _logging(self) -> None:
        # As Nova's StandardLogging fixture does: services must not set up
        # logging again (oslo.log would add a console handler); the lab's
        # log goes to one file.
        self.useFixture(fixtures.MonkeyPatch('oslo_log.log.setup',
                                             lambda *args, **kwargs: None))
        root = logging.getLogger()
        handler = logging.FileHandler(self.log_path)
        handler.setLevel(logging.INFO)
        handler.setFormatter(logging.Formatter(
            '%(asctime)s %(levelname)s %(name)s %(message)s'))
        # The file gets INFO; handlers that were there (a console) keep
        # the level the root logger had for them.
        for existing in root.handlers:
            if existing.level == logging.NOTSET:
                existing.setLevel(root.level or logging.WARNING)
        root.addHandler(handler)
        root.setLevel(min(root.level or logging.INFO, logging.INFO))
        logging.getLogger(report.__name__).addHandler(self.reports)
        self.addCleanup(root.removeHandler, handler)
        self.addCleanup(handler.close)
        self.addCleanup(logging.getLogger(report.__name__).removeHandler,
                        self.reports)

    def setUp(self) -> None:
        super().setUp()
        self.privsep = self.useFixture(nova_fixtures.PrivsepFixture())
        # The image cache's periodic task would delete the lab's images.
        self.flags(remove_unused_base_images=False, group='image_cache')

    def _setup_services(self) -> None:
        self.flags(api_paste_config=API_PASTE, group='wsgi')
        self._configure()
        super()._setup_services()

    def _configure(self) -> None:
        """What an operator writes in nova.conf, for both hosts."""
        self.flags(compute_driver=self.driver_name,
                   instances_path=self.lab.instances_path,
                   state_path=os.path.join(self.lab.root, 'nova-state'))
        self.flags(virt_type='qemu', live_migration_scheme='tcp',
                   group='libvirt')
        for name, value in self.libvirt_options.items():
            self.flags(**{name: value, 'group': 'libvirt'})
        self.flags(enabled=False, group='vnc')
        self.flags(enabled=False, group='spice')
        self.flags(state_path=os.path.join(self.lab.root, 'qat-state'),
                   group='qat_migration')
        for name, value in self.qat_options.items():
            self.flags(**{name: value, 'group': 'qat_migration'})

    def _setup_compute_service(self) -> Any:
        for host in self.lab.hosts:
            self.start_lab_compute(host)
        return self.computes[self.lab.hosts[0].name]

    def start_lab_compute(self, host: hosts_mod.LabHost) -> Any:
        """Start ``nova-compute`` for ``host`` (its libvirt daemon)."""
        self.flags(connection_uri=host.local_uri, group='libvirt')
        with mock.patch('nova.virt.node.get_local_node_uuid',
                        return_value=host.host_uuid):
            compute = self.start_service('compute', host=host.name)
            # libvirt's Host caches the node identity while it is patched.
            compute.driver._host.get_node_uuid()
        self.computes[host.name] = compute
        return compute

    def nova_conf(self, host: hosts_mod.LabHost) -> str:
        """``host``'s nova.conf as an operator writes it (informational;
        the lab applies the same values to its in-process services).
        """
        lines = ['[DEFAULT]', 'host = %s' % host.name,
                 'compute_driver = %s' % self.driver_name,
                 'instances_path = %s  # shared by both hosts (NFS)'
                 % self.lab.instances_path, '',
                 '[libvirt]', 'virt_type = qemu',
                 'connection_uri = %s' % host.local_uri,
                 'live_migration_scheme = tcp',
                 '# live_migration_inbound_addr = %s  (resolved by name '
                 'in the lab)' % host.addr]
        if self.lab.qemu != qemu_build.DISTRO:
            lines.append('# QEMU: %s (%s build, first on the libvirt '
                         "daemon's PATH; libvirt's default emulator)"
                         % (self.lab.emulator, self.lab.qemu))
        lines += ['%s = %s' % kv for kv in sorted(
            self.libvirt_options.items())]
        lines += ['', '[qat_migration]']
        lines += ['%s = %s' % kv for kv in sorted(self.qat_options.items())]
        return '\n'.join(lines) + '\n'

    # -- the API on a port, and the real client ------------------------------

    def _serve_api(self) -> None:
        app = _Identity(self.api_fixture.app())
        server = simple_server.make_server(
            '127.0.0.1', 0, app, server_class=_ThreadingServer,
            handler_class=_QuietHandler)
        thread = threading.Thread(target=server.serve_forever,
                                  name='lab-nova-api', daemon=True)
        thread.start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        self.api_url = 'http://127.0.0.1:%d/v2.1' % server.server_port

    def cli_argv(self, *args: str) -> list:
        """An ``openstack`` command line against the lab's API."""
        return ['openstack', '--os-auth-type', 'admin_token',
                '--os-endpoint', self.api_url,
                '--os-token', 'admin:%s' % PROJECT,
                '--os-compute-api-version', '2.latest'] + list(args)

    def openstack(self, *args: str, timeout: float = 120) -> str:
        """Run the real ``openstack`` client (python-openstackclient)."""
        argv = self.cli_argv(*args)
        shown = 'openstack ' + ' '.join(shlex.quote(a) for a in args)
        self.cli_log.append(shown)
        exe = os.path.join(os.path.dirname(sys.executable), 'openstack')
        env = dict(os.environ)
        for key in list(env):
            if key.startswith('OS_') and key not in (
                    'OS_NOVA_DISABLE_EVENTLET_PATCHING',):
                env.pop(key)
        res = subprocess.run([exe] + argv[1:], capture_output=True,
                             text=True, timeout=timeout, env=env)
        if res.returncode != 0:
            raise CloudError('%s failed (%d): %s' % (
                shown, res.returncode, (res.stderr or res.stdout).strip()))
        return res.stdout

    # -- images, flavors, servers -------------------------------------------

    def upload_guest_images(self, images: dict) -> None:
        """Kernel, initramfs and a tiny root disk, as Glance images."""
        if self.images:
            return
        ctx = None
        with open(images['kernel'], 'rb') as f:
            kernel = self.glance.create(ctx, {
                'name': 'lab-kernel', 'disk_format': 'aki',
                'container_format': 'aki', 'status': 'active',
                'properties': {}}, data=f)
        with open(images['initrd'], 'rb') as f:
            ramdisk = self.glance.create(ctx, {
                'name': 'lab-initramfs', 'disk_format': 'ari',
                'container_format': 'ari', 'status': 'active',
                'properties': {}}, data=f)
        self.images = {'kernel': kernel['id'], 'ramdisk': ramdisk['id']}

    def guest_image(self, name: str, cmdline: str,
                    properties: Optional[dict] = None) -> str:
        """A bootable image: the lab kernel + initramfs, ``cmdline``."""
        key = ('image', cmdline, tuple(sorted((properties or {}).items())))
        if key in self._flavors:
            return self._flavors[key]
        props = {'kernel_id': self.images['kernel'],
                 'ramdisk_id': self.images['ramdisk'],
                 'os_command_line': cmdline,
                 'architecture': 'x86_64'}
        props.update(properties or {})
        image = self.glance.create(None, {
            'name': name, 'disk_format': 'raw', 'container_format': 'bare',
            'status': 'active', 'min_disk': 0, 'size': 1024 * 1024,
            'properties': props}, data=io.BytesIO(b'\0' * (1024 * 1024)))
        self._flavors[key] = image['id']
        return image['id']

    def lab_flavor(self, name: str, memory_mb: int,
                   extra_specs: Optional[dict] = None) -> str:
        key = ('flavor', memory_mb, tuple(sorted((extra_specs or {}).items())))
        if key not in self._flavors:
            self._flavors[key] = self._create_flavor(
                name=name, memory_mb=memory_mb, vcpu=1, disk=1, ephemeral=0,
                extra_spec=extra_specs or None)
        return self._flavors[key]

    def boot(self, name: str, image_id: str, flavor_id: str,
             host: Optional[str] = None, timeout: float = 180) -> dict:
        """Create a server (no network) and wait for ACTIVE."""
        body = self._build_server(name=name, image_uuid=image_id,
                                  flavor_id=flavor_id, networks='none',
                                  host=host)
        server = self.api.post_server({'server': body})
        return self.wait_server(server['id'], 'ACTIVE', timeout=timeout)

    def wait_server(self, server_id: str, status: str,
                    timeout: float = 180) -> dict:
        return services.wait_for_server(self, server_id, status, timeout)

    def delete(self, server_id: str, timeout: float = 120) -> None:
        try:
            self.api.delete_server(server_id)
        except Exception as exc:  # already gone
            LOG.info('delete %s: %s', server_id, exc)
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.api.get_server(server_id)
            except Exception:  # 404: deleted
                return
            time.sleep(0.5)

    def get_server(self, server_id: str) -> dict:
        return self.api.get_server(server_id)

    def reset_active(self, server_id: str) -> None:
        self.api.post_server_action(
            server_id, {'os-resetState': {'state': 'active'}})

    @contextlib.contextmanager
    def overrides(self, options: dict,
                  completion_timeout: Optional[int] = None) -> Iterator[None]:
        """``options`` (``[qat_migration]`` names, or ``group.name``) and
        Nova's completion timeout for what runs inside, as an operator's
        nova.conf would set them (one ``CONF`` for both computes).
        """
        from oslo_config import cfg
        conf = cfg.CONF
        for name, value in options.items():
            group, _dot, option = name.rpartition('.')
            conf.set_override(option, value, group=group or 'qat_migration')
        if completion_timeout is not None:
            conf.set_override('live_migration_completion_timeout',
                              completion_timeout, group='libvirt')
        try:
            yield
        finally:
            for name in options:
                group, _dot, option = name.rpartition('.')
                conf.clear_override(option, group=group or 'qat_migration')
            conf.clear_override('live_migration_completion_timeout',
                                group='libvirt')
            # The lab's own defaults come back (they are overrides too).
            for name, value in self.qat_options.items():
                conf.set_override(name, value, group='qat_migration')

    def set_link(self, mbit: int) -> None:
        """Shape the link and tell the planners its rate."""
        self.lab.set_link(mbit)
        self.qat_options['link_gbps'] = mbit / 1000.0
        self.flags(link_gbps=mbit / 1000.0, group='qat_migration')

    def host_of(self, server_id: str) -> str:
        return self.api.get_server(server_id)['OS-EXT-SRV-ATTR:host']

    def domain(self, server_id: str) -> Any:
        """The server's libvirt domain on the host Nova says runs it."""
        host = self.lab.host(self.host_of(server_id))
        conn = self.connection(host)
        return conn.lookupByUUIDString(server_id)

    def connection(self, host: hosts_mod.LabHost) -> Any:
        return self.computes[host.name].driver._host.get_connection()

    # -- migrations ---------------------------------------------------------

    def migrations(self, server_id: str) -> list:
        return self.api.api_get(
            '/os-migrations?instance_uuid=%s' % server_id
        ).body['migrations']

    def live_migrate(self, server_id: str, host: Optional[str] = None,
                     timeout: float = MIGRATION_TIMEOUT_S,
                     poll: Optional[Callable[[], None]] = None) -> dict:
        """``openstack server migrate --live-migration`` and wait for the
        migration record to end. Returns it (``status`` is Nova's).

        :param poll: called while waiting (the lab's own sampling).
        """
        before = {m['id'] for m in self.migrations(server_id)}
        args = ['server', 'migrate', '--live-migration']
        if host:
            args += ['--host', host]
        self.openstack(*(args + [server_id]))
        return services.wait_for_migration(self, server_id, before, timeout,
                                           poll)

    def allocations(self, server_id: str) -> dict:
        """Placement's allocations of the server: {provider: resources}."""
        body = self.placement.get('/allocations/%s' % server_id).body
        return {rp: alloc['resources']
                for rp, alloc in body['allocations'].items()}

    def provider_uuid(self, host_name: str) -> str:
        return self._get_provider_uuid_by_host(host_name)


def console_of(cloud: LabCloud, server_id: str) -> guest_mod.Console:
    """The guest's serial console on the host that runs it now."""
    return guest_mod.Console(cloud.domain(server_id))


__all__ = ['LabCloud', 'CloudError', 'ReportCollector', 'console_of']
