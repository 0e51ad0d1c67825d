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
"""An operator's cloud on one machine: every service its own process.

What runs, each from its released package and logging to its own file
under :data:`LOG_ROOT`:

* Debian's ``mariadb-server`` (databases ``keystone``, ``glance``,
  ``placement``, ``nova_api``, ``nova_cell0``, ``nova``), ``rabbitmq-server``
  (``transport_url = rabbit://``) and ``memcached`` (keystonemiddleware's
  token cache), started by their init scripts and bound on loopback;
* Keystone, Glance, Placement and Nova's compute API, each under
  gunicorn (a ``gunicorn.conf.py`` per service: Keystone's WSGI app parses
  ``sys.argv``), behind ``keystonemiddleware`` with service users in a
  ``service`` project;
* Neutron's API (:mod:`.neutron`: ML2, no agents), also under gunicorn:
  Nova asks Neutron for the instance's ports and networks even for servers
  booted with ``--nic none``;
* ``nova-conductor`` and ``nova-scheduler``, as their distribution's units
  start them (``--config-file /etc/nova/nova.conf``);
* one ``nova-compute`` per lab host, with **its own nova.conf** (``host``,
  ``my_ip``, ``[libvirt] connection_uri``, ``live_migration_inbound_addr``
  = that host's lab address) and ``compute_driver =
  qat_migration.QATLibvirtDriver``, in a mount namespace of its own where
  the host's instances directory is mounted (local disks: nothing is
  shared between the hosts, so Nova block-migrates) and, with
  ``qemu_visible=False``, where the QEMU binaries do not exist (as in
  kolla-ansible, whose QEMU runs in the ``nova_libvirt`` container).

The lab hosts (:class:`~nova_qat_migration_lab.hosts.Lab`: network
namespaces, one libvirt daemon each, the shaped link) are the same as the
in-process cloud's (:mod:`.cloud`), which stays the harness only for what
needs the driver's internals (fault injection).

State that survives ``down`` (databases, Glance's image files, Keystone's
keys, each compute's ``state_path``) lives under :data:`STATE_ROOT`, so a
second ``up`` reuses the databases; everything else ends with ``down``.
The running cloud is described in ``STATE_ROOT/cloud.json``:
:meth:`ServiceCloud.attach` reads it, so tests and benchmarks in other
processes use a cloud ``nova-qat-migration-lab cloud up`` started.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any, Callable, Iterator, Optional
import uuid

from oslo_log import log as logging

from nova_qat_migration import outcomes
from nova_qat_migration_lab import horizon
from nova_qat_migration_lab import hosts as hosts_mod
from nova_qat_migration_lab import neutron

LOG = logging.getLogger(__name__)

STATE_ROOT = '/var/lib/nqm-cloud'
LOG_ROOT = '/var/log/nqm-cloud'
#: The cloud's lab hosts are ``nqc-a`` and ``nqc-b``.
PREFIX = 'nqc'
#: Lab-only secrets: every service, user and database uses it.
PASSWORD = 'nqm-lab-secret'
REGION = 'RegionOne'
DRIVER = 'qat_migration.QATLibvirtDriver'
ADMIN_PROJECT = 'admin'
TENANT_PROJECT = 'lab'
MEMBER_USER = 'lab-member'
DATABASES = ('keystone', 'glance', 'placement', 'nova_api', 'nova_cell0',
             'nova')
#: Bumped when what ``_setup_databases`` writes changes: an older stamp
#: means the databases are rebuilt.
SCHEMA_STAMP = 'nqm-cloud-2'
PORTS = {'keystone': 5000, 'glance': 9292, 'placement': 8778,
         'nova-api': 8774, 'neutron': neutron.PORT, 'horizon': horizon.PORT}
DEBIAN_PACKAGES = ('mariadb-server', 'rabbitmq-server', 'memcached')
#: (init script, process name) of the Debian services the cloud uses.
SYSTEM_SERVICES = (('mariadb', 'mariadbd'), ('rabbitmq-server', 'beam.smp'),
                   ('memcached', 'memcached'))
TERMINAL_MIGRATION = ('completed', 'error', 'failed', 'cancelled')
#: A request on a kept-alive connection the server has just closed fails
#: before it is sent: try again (keystoneauth's connect retries).
CONNECT_RETRIES = 3
MIGRATION_TIMEOUT_S = 900.0
#: QEMU binaries a compute with ``qemu_visible=False`` must not see.
QEMU_GLOBS = ('/usr/bin/qemu-system-*',)


class CloudError(Exception):
    """The cloud did not come up, or Nova did not do what was asked."""


def _bin(name: str) -> str:
    """A console script of this environment (the venv's ``bin``)."""
    return os.path.join(os.path.dirname(sys.executable), name)


def _run(argv: list, timeout: float = 600, env: Optional[dict] = None,
         input: Optional[str] = None) -> str:
    res = subprocess.run(argv, capture_output=True, text=True,
                         timeout=timeout, env=env, input=input)
    if res.returncode != 0:
        raise CloudError('%s failed (%d): %s' % (
            ' '.join(shlex.quote(a) for a in argv), res.returncode,
            (res.stderr or res.stdout).strip()[-2000:]))
    return res.stdout


def _tail(path: str, lines: int = 25) -> str:
    try:
        with open(path, 'rb') as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode(errors='replace')
    except OSError:
        return '(no log at %s)' % path
    return '\n'.join(text.splitlines()[-lines:])


def _ini(sections: dict) -> str:
    out = []
    for section, options in sections.items():
        out.append('[%s]' % section)
        for key, value in options.items():
            if value is None:
                continue        # the option's default
            if isinstance(value, (list, tuple)):
                value = ','.join(str(v) for v in value)
            elif isinstance(value, bool):
                value = 'true' if value else 'false'
            out.append('%s = %s' % (key, value))
        out.append('')
    return '\n'.join(out)


def _write(path: str, text: str, mode: int = 0o640) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)
    os.chmod(path, mode)


def _pid_alive(pid: int) -> bool:
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (OSError, IndexError):
        return False


@dataclasses.dataclass
class Process:
    """One service process of the cloud."""

    name: str
    argv: list
    cwd: Optional[str] = None
    env: dict = dataclasses.field(default_factory=dict)
    pid: Optional[int] = None

    @property
    def log(self) -> str:
        return os.path.join(LOG_ROOT, '%s.log' % self.name)

    @property
    def console_log(self) -> str:
        """What the process wrote to stdout/stderr (before its logging)."""
        return os.path.join(LOG_ROOT, '%s.out' % self.name)

    def start(self) -> None:
        os.makedirs(LOG_ROOT, exist_ok=True)
        env = dict(os.environ)
        env.pop('OS_NOVA_DISABLE_EVENTLET_PATCHING', None)
        env.update(self.env)
        with open(self.console_log, 'ab') as out:
            proc = subprocess.Popen(self.argv, cwd=self.cwd, env=env,
                                    stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.pid = proc.pid

    def alive(self) -> bool:
        return self.pid is not None and _pid_alive(self.pid)

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM its process group, SIGKILL after ``timeout``."""
        stop_all([self], timeout)

    def failure(self) -> str:
        """Why it is not running, with the last lines it logged."""
        text = _tail(self.log)
        if not text.strip() or text.startswith('(no log'):
            text = _tail(self.console_log)
        return '%s is not running; last lines of %s:\n%s' % (
            self.name, self.log, text)


def stop_all(processes: list, timeout: float = 20) -> None:
    """SIGTERM every process group at once, SIGKILL what is left after
    ``timeout``: one shared wait, not one per process (two gunicorns that
    outlive SIGTERM cost 20 s each, one after the other).
    """
    running = [p for p in processes if p.pid is not None]
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
        for proc in list(running):
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                running.remove(proc)
        deadline = time.monotonic() + wait
        while running and time.monotonic() < deadline:
            running = [p for p in running if _group_alive(p.pid)]
            if running:
                time.sleep(0.2)
        if not running:
            break
    for proc in processes:
        proc.pid = None


def _group_alive(pgid: int) -> bool:
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry) as f:
                fields = f.read().rsplit(')', 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != 'Z' and int(fields[2]) == pgid:
            return True
    return False


@dataclasses.dataclass
class ComputeHost:
    """A lab host as its nova-compute sees it."""

    name: str
    addr: str
    uri: str
    #: the host's own instances directory (local disk)
    instances: str
    qemu_visible: bool = True

    @property
    def conf_dir(self) -> str:
        return os.path.join(STATE_ROOT, 'compute', self.name)

    @property
    def state_path(self) -> str:
        return os.path.join(self.conf_dir, 'state')

    @property
    def conf_file(self) -> str:
        return os.path.join(self.conf_dir, 'nova.conf')


class ServiceCloud:
    """The control plane, two computes and their lab hosts.

    :param link_mbit: the lab link's rate.
    :param qemu: the lab hosts' QEMU (``distro`` or ``qatzip``).
    :param qat_options: ``[qat_migration]`` options of both computes.
    :param libvirt_options: more ``[libvirt]`` options of both computes.
    :param qemu_visible: per host name, whether its nova-compute sees the
        QEMU binaries (``False``: as with kolla's ``nova_libvirt``).
    :param compute_extra: per host name, more ``{section: {option:
        value}}`` for that compute's nova.conf (e.g. a QAT sysfs fixture).
    """

    def __init__(self, link_mbit: int = 1000, qemu: Optional[str] = None,
                 qat_options: Optional[dict] = None,
                 libvirt_options: Optional[dict] = None,
                 qemu_visible: Optional[dict] = None,
                 compute_extra: Optional[dict] = None) -> None:
        self.lab = hosts_mod.Lab(PREFIX, link_mbit=link_mbit, qemu=qemu,
                                 storage='local', resolve_names=False,
                                 stable_ids=True)
        self.qat_options = dict(qat_options or {})
        self.libvirt_options = dict(libvirt_options or {})
        self.qemu_visible = dict(qemu_visible or {})
        self.compute_extra = dict(compute_extra or {})
        #: per API service, the server error it last answered with
        self._api_errors: dict = {}
        self.processes: dict = {}
        self.started_system: list = []
        self.reports = LogReports(self)
        self.cli_log: list = []
        self.images: dict = {}
        self._objects: dict = {}
        self._session: Any = None
        self._clients: dict = {}
        self._conns: dict = {}

    # -- paths and hosts ----------------------------------------------------

    @property
    def computes(self) -> list:
        return [ComputeHost(name=h.name, addr=h.addr, uri=h.local_uri,
                            instances=h.path('instances'),
                            qemu_visible=self.qemu_visible.get(h.name,
                                                               True))
                for h in self.lab.hosts]

    def compute(self, name: str) -> ComputeHost:
        for host in self.computes:
            if host.name == name:
                return host
        raise CloudError('no compute %r' % name)

    @staticmethod
    def url(service: str, path: str = '') -> str:
        return 'http://127.0.0.1:%d%s' % (PORTS[service], path)

    @property
    def api_url(self) -> str:
        return self.url('nova-api', '/v2.1')

    @property
    def clouds_yaml(self) -> str:
        return os.path.join(STATE_ROOT, 'clouds.yaml')

    # -- life cycle ---------------------------------------------------------

    def up(self) -> 'ServiceCloud':
        """Bring everything up (idempotent); on failure tear down what
        this call started and raise naming the service.
        """
        started = time.monotonic()
        if self.running():
            raise CloudError('the cloud is already up (%s); `down` first'
                             % self.state_file())
        self.timings: dict = {}
        hosts = static = None
        try:
            self._step('install', self._install)
            self._check_ports()
            self._step('system services', self._system_services)
            self._step('configuration', self._write_configs)
            # The lab hosts need nothing of the control plane: they come
            # up meanwhile.
            hosts = _Background(self.lab.up)
            # Horizon's static files need no service either.
            static = _Background(horizon.prepare_static,
                                 os.path.join(STATE_ROOT, 'horizon'))
            warm = self._step('databases', self._setup_databases)
            self._step('keystone', self._start_apis, ['keystone'])
            if not warm:
                self._step('identity registration', self._register)
            self._step('apis', self._start_apis, [
                'placement', 'glance', 'nova-api', 'neutron',
                'nova-conductor', 'nova-scheduler'])
            self._step('horizon static files', static.result)
            self._step('horizon', self._start_apis, ['horizon'])
            self._step('lab hosts', hosts.result)
            self._step('computes', self._start_computes)
            self._step('computes up', self._wait_computes)
            self._save()
        except BaseException:
            for background in (hosts, static):
                # Let the hosts finish coming up before taking them down.
                with contextlib.suppress(BaseException):
                    if background is not None:
                        background.result()
            self.down()
            raise
        LOG.info('cloud up in %.1f s', time.monotonic() - started)
        self.up_seconds = time.monotonic() - started
        return self

    def _step(self, name: str, func: Callable, *args: Any) -> Any:
        started = time.monotonic()
        try:
            return func(*args)
        finally:
            self.timings[name] = round(time.monotonic() - started, 1)
            LOG.info('cloud up: %s %.1f s', name, self.timings[name])

    def _check_ports(self) -> None:
        """Every port the cloud binds is free (else name who holds it).
    """
        import socket
        for service, port in sorted(PORTS.items()):
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind(('127.0.0.1', port))
                except OSError:
                    holder = subprocess.run(
                        ['ss', '-Hltnp', 'sport = :%d' % port],
                        capture_output=True, text=True).stdout.strip()
                    raise CloudError('port %d (%s) is in use: %s' % (
                        port, service, holder or 'unknown process'))

    def down(self) -> list:
        """Stop everything the cloud runs; never raises. Returns what it
        did.
        """
        done = []
        if self.running() and not self.processes:
            self._load()
        try:
            if self._api_answers('nova-api'):
                done += self._delete_servers()
        except Exception as exc:  # best effort
            done.append('servers not deleted: %s' % exc)
        for conn in self._conns.values():
            with contextlib.suppress(Exception):
                conn.close()
        self._conns = {}
        # The computes first (their shutdown may still call the
        # conductor), then every other service at once.
        names = list(reversed(list(self.processes)))
        computes = [n for n in names if n.startswith('nova-compute')]
        for wave in (computes, [n for n in names if n not in computes]):
            stop_all([self.processes[n] for n in wave])
            done += ['stopped %s' % n for n in wave]
        self.processes = {}
        # What the services started themselves (privsep daemons) names
        # their configuration files.
        for line in _stray_processes():
            pid = int(line.split(':', 1)[0])
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            done.append('killed %s' % line)
        self.lab.down()
        done += hosts_mod.cleanup(PREFIX)
        for script, proc in SYSTEM_SERVICES:
            if _system_running(script):
                subprocess.run(['/etc/init.d/%s' % script, 'stop'],
                               capture_output=True, timeout=120)
                deadline = time.monotonic() + 15
                while (_system_running(script) and
                       time.monotonic() < deadline):
                    time.sleep(0.2)
                if _system_running(script):
                    subprocess.run(['pkill', '-x', proc],
                                   capture_output=True)
                done.append('stopped %s' % script)
        # rabbitmq-server's stop leaves Erlang's port mapper running.
        subprocess.run(['pkill', '-x', 'epmd'], capture_output=True)
        with contextlib.suppress(OSError):
            os.unlink(self.state_file())
        return done

    def __enter__(self) -> 'ServiceCloud':
        return self.up()

    def __exit__(self, *exc: Any) -> None:
        self.down()

    @staticmethod
    def state_file() -> str:
        return os.path.join(STATE_ROOT, 'cloud.json')

    @classmethod
    def running(cls) -> bool:
        return os.path.exists(cls.state_file())

    def _save(self) -> None:
        state = {
            'link_mbit': self.lab.link_mbit, 'qemu': self.lab.qemu,
            'qat_options': self.qat_options,
            'libvirt_options': self.libvirt_options,
            'qemu_visible': self.qemu_visible,
            'compute_extra': self.compute_extra,
            'processes': {n: dataclasses.asdict(p)
                          for n, p in self.processes.items()},
            'hosts': {h.name: {'uuid': h.host_uuid, 'addr': h.addr}
                      for h in self.lab.hosts},
        }
        _write(self.state_file(), json.dumps(state, indent=1), 0o600)

    def _load(self) -> None:
        with open(self.state_file()) as f:
            state = json.load(f)
        self.processes = {n: Process(**p)
                          for n, p in state['processes'].items()}

    @classmethod
    def attach(cls) -> 'ServiceCloud':
        """The cloud ``up`` started in another process.
        """
        if not cls.running():
            raise CloudError('no cloud is up (nova-qat-migration-lab cloud '
                             'up)')
        with open(cls.state_file()) as f:
            state = json.load(f)
        cloud = cls(link_mbit=state['link_mbit'], qemu=state['qemu'],
                    qat_options=state['qat_options'],
                    libvirt_options=state['libvirt_options'],
                    qemu_visible=state['qemu_visible'],
                    compute_extra=state.get('compute_extra'))
        cloud.processes = {n: Process(**p)
                           for n, p in state['processes'].items()}
        cloud.lab.link_mbit = state['link_mbit']
        return cloud

    def status(self) -> dict:
        """{service: 'up'|'down'|reason} for every process and API."""
        out = {}
        for script, proc in SYSTEM_SERVICES:
            out[script] = 'up' if _system_running(script) else 'down'
        for name, process in self.processes.items():
            out[name] = 'up' if process.alive() else 'down'
        for service in PORTS:
            if service in self.processes:
                out[service] = ('up' if self._api_answers(service)
                                else 'not answering on %s'
                                % self.url(service))
        try:
            for svc in self.compute_services():
                out['compute %s' % svc['host']] = svc['state']
        except Exception as exc:  # informational
            out['compute services'] = 'unknown: %s' % exc
        return out

    # -- installation and system services -----------------------------------

    @staticmethod
    def _install() -> None:
        missing = [p for p in DEBIAN_PACKAGES if subprocess.run(
            ['dpkg-query', '-W', '-f=${Status}', p], capture_output=True,
            text=True).stdout.split()[-1:] != ['installed']]
        if missing:
            LOG.info('installing %s', ', '.join(missing))
            env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
            _run(['apt-get', 'install', '-y', '-q', '--no-install-recommends']
                 + missing, timeout=900, env=env)

    def _system_services(self) -> None:
        # Loopback only: RabbitMQ and Erlang's port mapper listen on every
        # address by default.
        _write('/etc/rabbitmq/rabbitmq-env.conf', textwrap.dedent('''\
            # nova-qat-migration lab: loopback only
            NODE_IP_ADDRESS=127.0.0.1
            ERL_EPMD_ADDRESS=127.0.0.1
            '''), 0o644)
        _write('/etc/rabbitmq/rabbitmq.conf', textwrap.dedent('''\
            listeners.tcp.default = 127.0.0.1:5672
            distribution.listener.interface = 127.0.0.1
            loopback_users = none
            '''), 0o644)
        # The three start at once (RabbitMQ alone takes about 10 s).
        starts = [_Background(self._start_system, script)
                  for script, _proc in SYSTEM_SERVICES]
        for start in starts:
            start.result()
        users = subprocess.run(
            ['rabbitmqctl', '-q', 'list_users'], capture_output=True,
            text=True, timeout=60).stdout
        if 'openstack' not in users.split():
            _run(['rabbitmqctl', '-q', 'add_user', 'openstack', PASSWORD])
            _run(['rabbitmqctl', '-q', 'set_permissions', 'openstack', '.*',
                  '.*', '.*'])

    def _start_system(self, script: str) -> None:
        if _system_running(script) and not _listens_beyond_loopback(script):
            return
        if _system_running(script):
            # Started by its package with the distribution's defaults
            # (every address): again, with the lab's.
            subprocess.run(['/etc/init.d/%s' % script, 'stop'],
                           capture_output=True, timeout=120)
        res = subprocess.run(['/etc/init.d/%s' % script, 'start'],
                             capture_output=True, text=True, timeout=180)
        # A daemon may appear a moment after its script returns.
        deadline = time.monotonic() + 15
        while (res.returncode == 0 and not _system_running(script) and
               time.monotonic() < deadline):
            time.sleep(0.2)
        if res.returncode != 0 or not _system_running(script):
            raise CloudError('%s did not start: %s' % (
                script, (res.stdout + res.stderr).strip()[-1500:]))
        self.started_system.append(script)

    # -- configuration ------------------------------------------------------

    @staticmethod
    def _db(name: str) -> str:
        return 'mysql+pymysql://%s:%s@127.0.0.1/%s' % (
            name, PASSWORD, name)

    def _authtoken(self, user: str) -> dict:
        return {'www_authenticate_uri': self.url('keystone', '/v3'),
                'auth_url': self.url('keystone', '/v3'),
                'memcached_servers': '127.0.0.1:11211',
                'auth_type': 'password', 'project_domain_name': 'Default',
                'user_domain_name': 'Default', 'project_name': 'service',
                'username': user, 'password': PASSWORD,
                'service_token_roles_required': True}

    def _service_auth(self, user: str, **extra: Any) -> dict:
        auth = {'auth_type': 'password', 'auth_url':
                self.url('keystone', '/v3'), 'project_domain_name':
                'Default', 'user_domain_name': 'Default', 'project_name':
                'service', 'username': user, 'password': PASSWORD,
                'region_name': REGION}
        auth.update(extra)
        return auth

    @staticmethod
    def transport_url() -> str:
        return 'rabbit://openstack:%s@127.0.0.1:5672/' % PASSWORD

    def _nova_common(self) -> dict:
        return {
            'DEFAULT': {'transport_url': self.transport_url(),
                        'state_path': os.path.join(STATE_ROOT, 'nova'),
                        # nova-api's (under gunicorn); every other
                        # service names its own on the command line.
                        'log_file': os.path.join(LOG_ROOT, 'nova-api.log'),
                        'use_stderr': False},
            'api': {'auth_strategy': 'keystone'},
            'keystone_authtoken': self._authtoken('nova'),
            'service_user': self._service_auth(
                'nova', send_service_user_token=True),
            'placement': self._service_auth('placement-client',
                                            username='nova'),
            'glance': {'api_servers': self.url('glance'),
                       'num_retries': 2},
            'neutron': neutron.nova_options(self._service_auth('nova')),
            'oslo_concurrency': {'lock_path': os.path.join(
                STATE_ROOT, 'nova', 'lock')},
            'oslo_messaging_notifications': {'driver': 'messagingv2'},
            'notifications': {'notification_format': 'versioned'},
            'scheduler': {'workers': 1,
                          'discover_hosts_in_cells_interval': 10},
            'conductor': {'workers': 1},
            'vnc': {'enabled': False}, 'spice': {'enabled': False},
        }

    def _write_configs(self) -> None:
        for d in (STATE_ROOT, LOG_ROOT):
            os.makedirs(d, exist_ok=True)
        os.chmod(STATE_ROOT, 0o700)
        ks = os.path.join(STATE_ROOT, 'keystone')
        _write(os.path.join(ks, 'keystone.conf'), _ini({
            'DEFAULT': {'log_file': os.path.join(LOG_ROOT, 'keystone.log'),
                        'use_stderr': False},
            'database': {'connection': self._db('keystone')},
            'token': {'provider': 'fernet'},
            'fernet_tokens': {'key_repository': os.path.join(
                ks, 'fernet-keys')},
            'credential': {'key_repository': os.path.join(
                ks, 'credential-keys')},
            'cache': {'enabled': False},
        }))
        pl = os.path.join(STATE_ROOT, 'placement')
        _write(os.path.join(pl, 'placement.conf'), _ini({
            'DEFAULT': {'log_file': os.path.join(LOG_ROOT, 'placement.log'),
                        'use_stderr': False},
            'placement_database': {'connection': self._db('placement')},
            'api': {'auth_strategy': 'keystone'},
            'keystone_authtoken': self._authtoken('placement'),
        }))
        gl = os.path.join(STATE_ROOT, 'glance')
        paste = os.path.join(sys.prefix, 'etc', 'glance',
                             'glance-api-paste.ini')
        shutil.copy(paste, os.path.join(gl, 'glance-api-paste.ini')) \
            if os.path.isdir(gl) else None
        _write(os.path.join(gl, 'glance-api.conf'), _ini({
            'DEFAULT': {'log_file': os.path.join(LOG_ROOT, 'glance.log'),
                        'use_stderr': False,
                        'enabled_backends': 'file:file'},
            'database': {'connection': self._db('glance')},
            'keystone_authtoken': self._authtoken('glance'),
            'paste_deploy': {'flavor': 'keystone',
                             'config_file': os.path.join(
                                 gl, 'glance-api-paste.ini')},
            'glance_store': {'default_backend': 'file'},
            'file': {'filesystem_store_datadir': os.path.join(gl, 'images')},
            'os_glance_staging_store': {
                'filesystem_store_datadir': os.path.join(gl, 'staging')},
            'os_glance_tasks_store': {
                'filesystem_store_datadir': os.path.join(gl, 'tasks')},
            'oslo_concurrency': {'lock_path': os.path.join(gl, 'lock')},
        }))
        shutil.copy(paste, os.path.join(gl, 'glance-api-paste.ini'))
        nv = os.path.join(STATE_ROOT, 'nova')
        common = self._nova_common()
        common.update({
            'api_database': {'connection': self._db('nova_api')},
            'database': {'connection': self._db('nova')},
            'wsgi': {'api_paste_config': os.path.join(nv, 'api-paste.ini')},
        })
        _write(os.path.join(nv, 'nova.conf'), _ini(common))
        shutil.copy(os.path.join(sys.prefix, 'etc', 'nova', 'api-paste.ini'),
                    os.path.join(nv, 'api-paste.ini'))
        # Per-service log files: each process gets its own --log-file.
        neutron.write_config(os.path.join(STATE_ROOT, 'neutron'),
                             self._db('neutron'), self.transport_url(),
                             self._authtoken('neutron'),
                             os.path.join(STATE_ROOT, 'neutron', 'state'),
                             LOG_ROOT)
        horizon.write_config(os.path.join(STATE_ROOT, 'horizon'),
                             self.url('keystone', '/v3'), '127.0.0.1:11211',
                             LOG_ROOT)
        for host in self.computes:
            self.write_compute_conf(host)
        _write(self.clouds_yaml, self._clouds_yaml(), 0o600)

    def _clouds_yaml(self) -> str:
        def cloud(user: str, project: str) -> str:
            return textwrap.dedent('''\
              %s:
                auth:
                  auth_url: %s
                  username: %s
                  password: %s
                  project_name: %s
                  user_domain_name: Default
                  project_domain_name: Default
                region_name: %s
                identity_api_version: 3
            ''') % ('nqm-' + user, self.url('keystone', '/v3'), user,
                    PASSWORD, project, REGION)
        return 'clouds:\n' + textwrap.indent(
            cloud('admin', ADMIN_PROJECT) + cloud(MEMBER_USER,
                                                  TENANT_PROJECT), '  ')

    def compute_conf(self, host: ComputeHost) -> dict:
        """``host``'s nova.conf, as an operator writes it for that host."""
        conf = self._nova_common()
        conf['DEFAULT'].update({
            'host': host.name, 'my_ip': host.addr,
            'compute_driver': DRIVER,
            'instances_path': self.lab.instances_path,
            'state_path': host.state_path,
            # The lab restarts nova-compute between migrations, never
            # during one; the RPC server's stop and an idle thread pool
            # otherwise hold every restart for the whole timeout.
            'graceful_shutdown_timeout': 4,
            'manager_shutdown_timeout': 1,
            'heal_instance_info_cache_interval': -1,
        })
        conf['oslo_concurrency'] = {'lock_path': os.path.join(
            host.state_path, 'lock')}
        libvirt = {'virt_type': 'qemu', 'connection_uri': host.uri,
                   'live_migration_scheme': 'tcp',
                   'live_migration_inbound_addr': host.addr}
        libvirt.update(self.libvirt_options)
        conf['libvirt'] = libvirt
        conf['image_cache'] = {'remove_unused_base_images': False}
        # NOTE(qat-migration): Nova 34's pre_live_migration on a
        # destination without shared storage fetches the instance's kernel
        # through fetch_to_raw, whose deep inspection takes an x86 bzImage
        # (a legacy boot sector ending in 0x55AA) for an MBR disk and
        # refuses it ("Image does not pass safety check"); the boot path
        # caches the same file without that check. Operators whose
        # instances boot from AKI/ARI images and block-migrate need this
        # workaround (see doc/source/contributor/lab.rst).
        conf['workarounds'] = {'disable_deep_image_inspection': True}
        conf['nova_sys_admin'] = {'helper_command': '%s --config-file %s' % (
            _bin('privsep-helper'), host.conf_file)}
        conf['qat_migration'] = dict(self.qat_options)
        conf['qat_migration'].setdefault('state_path', os.path.join(
            host.state_path, 'qat'))
        for section, options in self.compute_extra.get(host.name,
                                                       {}).items():
            conf.setdefault(section, {}).update(options)
        return conf

    def write_compute_conf(self, host: ComputeHost) -> bool:
        """Write ``host``'s nova.conf; whether it changed."""
        text = _ini(self.compute_conf(host))
        try:
            with open(host.conf_file) as f:
                if f.read() == text:
                    return False
        except OSError:
            pass
        _write(host.conf_file, text)
        return True

    # -- databases and identity ---------------------------------------------

    def _stamp(self) -> str:
        return os.path.join(STATE_ROOT, 'databases.stamp')

    def _setup_databases(self) -> bool:
        """Create and sync every database unless they are in place.

        :returns: whether they were (a warm start).
        """
        try:
            with open(self._stamp()) as f:
                if f.read().strip() == SCHEMA_STAMP:
                    return True
        except OSError:
            pass
        sql = []
        for name in DATABASES + neutron.DATABASES:
            sql += ['DROP DATABASE IF EXISTS %s;' % name,
                    'CREATE DATABASE %s;' % name,
                    "CREATE USER IF NOT EXISTS '%s'@'127.0.0.1' "
                    "IDENTIFIED BY '%s';" % (name, PASSWORD),
                    "GRANT ALL ON %s.* TO '%s'@'127.0.0.1';" % (name, name)]
        # Nova's API database user also reaches the cells' databases.
        for name in ('nova_cell0', 'nova'):
            sql.append("GRANT ALL ON %s.* TO 'nova_api'@'127.0.0.1';" % name)
        _run(['mysql', '-uroot'], input='\n'.join(sql))
        for path in ('glance/images', 'keystone/fernet-keys',
                     'keystone/credential-keys'):
            shutil.rmtree(os.path.join(STATE_ROOT, path), ignore_errors=True)
        for host in self.computes:
            shutil.rmtree(host.state_path, ignore_errors=True)
        ks = ['--config-file', os.path.join(STATE_ROOT, 'keystone',
                                            'keystone.conf')]
        for d in ('fernet-keys', 'credential-keys'):
            os.makedirs(os.path.join(STATE_ROOT, 'keystone', d),
                        exist_ok=True)
        _run([_bin('keystone-manage')] + ks + ['db_sync'])
        _run([_bin('keystone-manage')] + ks + [
            'fernet_setup', '--keystone-user', 'root',
            '--keystone-group', 'root'])
        _run([_bin('keystone-manage')] + ks + [
            'credential_setup', '--keystone-user', 'root',
            '--keystone-group', 'root'])
        _run([_bin('keystone-manage')] + ks + [
            'bootstrap', '--bootstrap-password', PASSWORD,
            '--bootstrap-admin-url', self.url('keystone', '/v3'),
            '--bootstrap-internal-url', self.url('keystone', '/v3'),
            '--bootstrap-public-url', self.url('keystone', '/v3'),
            '--bootstrap-region-id', REGION])
        gl = ['--config-file', os.path.join(STATE_ROOT, 'glance',
                                            'glance-api.conf')]
        _run([_bin('glance-manage')] + gl + ['db_sync'])
        _run([_bin('glance-manage')] + gl + [
            'db_load_metadefs', _metadefs_dir()])
        _run([_bin('placement-manage'), '--config-file', os.path.join(
            STATE_ROOT, 'placement', 'placement.conf'), 'db', 'sync'])
        nova = [_bin('nova-manage'), '--config-file',
                os.path.join(STATE_ROOT, 'nova', 'nova.conf')]
        _run(nova + ['api_db', 'sync'])
        _run(nova + ['cell_v2', 'map_cell0', '--database_connection',
                     self._db('nova_cell0').replace('nova_cell0:', 'nova_api:',
                                                    1)])
        _run(nova + ['cell_v2', 'create_cell', '--name', 'cell1',
                     '--database_connection',
                     self._db('nova').replace('nova:', 'nova_api:', 1)])
        _run(nova + ['db', 'sync'])
        neutron.sync_database(os.path.join(STATE_ROOT, 'neutron'))
        return False

    def _register(self) -> None:
        """Service users, catalog, projects and the lab's users (one
        process, through the identity API).
        """
        from keystoneauth1 import session as ks_session
        from keystoneclient.v3 import client as ks_client
        sess = self.session()
        ks = ks_client.Client(session=sess)
        ks_session  # noqa: B018 - keystoneauth is what the client uses
        service = ks.projects.create('service', 'default')
        tenant = ks.projects.create(TENANT_PROJECT, 'default')
        admin_role = ks.roles.find(name='admin')
        member_role = ks.roles.find(name='member')
        service_role = _find_or_create_role(ks, 'service')
        for user in ('nova', 'glance', 'placement', 'neutron'):
            u = ks.users.create(user, domain='default', password=PASSWORD)
            ks.roles.grant(admin_role, user=u, project=service)
            ks.roles.grant(service_role, user=u, project=service)
        admin = ks.users.find(name='admin')
        ks.roles.grant(admin_role, user=admin, project=tenant)
        member = ks.users.create(MEMBER_USER, domain='default',
                                 password=PASSWORD)
        ks.roles.grant(member_role, user=member, project=tenant)
        for name, stype, port_name, path in (
                ('nova', 'compute', 'nova-api', '/v2.1'),
                ('placement', 'placement', 'placement', ''),
                ('glance', 'image', 'glance', ''),
                ('neutron', 'network', 'neutron', '')):
            svc = ks.services.create(name, type=stype)
            for interface in ('public', 'internal', 'admin'):
                ks.endpoints.create(svc, self.url(port_name, path),
                                    interface=interface, region=REGION)
        _write(self._stamp(), SCHEMA_STAMP + '\n', 0o600)

    def session(self, user: str = 'admin',
                project: str = ADMIN_PROJECT) -> Any:
        """A keystoneauth session of ``user`` in ``project``."""
        from keystoneauth1.identity import v3
        from keystoneauth1 import session as ks_session
        key = (user, project)
        if key not in self._clients:
            auth = v3.Password(auth_url=self.url('keystone', '/v3'),
                               username=user, password=PASSWORD,
                               project_name=project,
                               user_domain_name='Default',
                               project_domain_name='Default')
            self._clients[key] = ks_session.Session(auth=auth)
        return self._clients[key]

    # -- processes ------------------------------------------------------------

    def _gunicorn(self, name: str, app: str, env: dict,
                  workers: int = 1) -> Process:
        cwd = os.path.join(STATE_ROOT, 'gunicorn', name)
        _write(os.path.join(cwd, 'gunicorn.conf.py'), textwrap.dedent('''\
            # %(name)s under gunicorn (nova-qat-migration lab)
            wsgi_app = %(app)r
            bind = '127.0.0.1:%(port)d'
            workers = %(workers)d
            worker_class = 'gthread'
            threads = 4
            timeout = 300
            # Longer than the clients' idle gaps (gunicorn's default, 2 s,
            # races a client reusing the connection).
            keepalive = 75
            # On SIGTERM, a worker holding an idle kept-alive connection
            # would keep its default 30 s; a lab has nothing to finish.
            graceful_timeout = 3
            control_socket_disable = True
            accesslog = %(access)r
            errorlog = %(error)r
            ''') % {'name': name, 'app': app, 'port': PORTS[name],
                    'workers': workers,
                    'access': os.path.join(LOG_ROOT, '%s.access' % name),
                    'error': os.path.join(LOG_ROOT, '%s.out' % name)}, 0o644)
        return Process(name=name, argv=[_bin('gunicorn')], cwd=cwd, env=env)

    def _start_apis(self, names: list) -> None:
        nv = os.path.join(STATE_ROOT, 'nova')
        nova_conf = os.path.join(nv, 'nova.conf')
        apis = [
            self._gunicorn('keystone', 'keystone.wsgi.api:application',
                           {'OS_KEYSTONE_CONFIG_DIR': os.path.join(
                               STATE_ROOT, 'keystone')}),
            self._gunicorn('placement', 'placement.wsgi.api:application',
                           {'OS_PLACEMENT_CONFIG_DIR': os.path.join(
                               STATE_ROOT, 'placement')}),
            self._gunicorn('glance', 'glance.wsgi.api:application',
                           {'OS_GLANCE_CONFIG_DIR': os.path.join(
                               STATE_ROOT, 'glance')}),
            self._gunicorn('nova-api', 'nova.wsgi.osapi_compute:application',
                           {'OS_NOVA_CONFIG_DIR': nv}),
            neutron.process(self, os.path.join(STATE_ROOT, 'neutron')),
            horizon.process(self, os.path.join(STATE_ROOT, 'horizon')),
            Process(name='nova-conductor', argv=[
                _bin('nova-conductor'), '--config-file', nova_conf,
                '--log-file', os.path.join(LOG_ROOT, 'nova-conductor.log')]),
            Process(name='nova-scheduler', argv=[
                _bin('nova-scheduler'), '--config-file', nova_conf,
                '--log-file', os.path.join(LOG_ROOT, 'nova-scheduler.log')]),
        ]
        apis = [p for p in apis if p.name in names]
        for proc in apis:
            proc.start()
            self.processes[proc.name] = proc
        deadline = time.monotonic() + 120
        waiting = [p.name for p in apis if p.name in PORTS]
        self._api_errors.clear()
        while waiting:
            for name in list(waiting):
                if not self.processes[name].alive():
                    raise CloudError(self.processes[name].failure())
                if self._api_answers(name):
                    waiting.remove(name)
            if waiting and time.monotonic() > deadline:
                first = waiting[0]
                raise CloudError('%s not answering after 120 s (%s); %s' % (
                    ', '.join(waiting),
                    self._api_errors.get(first, 'no answer'),
                    self.processes[first].failure().replace(
                        'is not running', 'is running but failing')))
            time.sleep(0.3)
        for proc in apis:
            if not proc.alive():
                raise CloudError(proc.failure())

    def _api_answers(self, service: str) -> bool:
        """Whether ``service`` answers ``/`` without a server error (a
        401 or 300 is an answer; a 500, e.g. Horizon missing a module for
        its session cache, is a service that is up and broken).
        """
        import urllib.error
        import urllib.request
        try:
            urllib.request.urlopen(self.url(service, '/'), timeout=3)
            return True
        except urllib.error.HTTPError as exc:
            if exc.code >= 500:
                self._api_errors[service] = 'HTTP %d on /' % exc.code
                return False
            return True
        except (OSError, ValueError):
            return False

    def compute_process(self, host: ComputeHost) -> Process:
        """``nova-compute`` of ``host``, as its distribution's unit starts
        it, in a mount namespace of its own: the host's instances
        directory at the shared path, and no QEMU binary where the host's
        QEMU lives elsewhere.
        """
        mounts = ['mount --bind %s %s' % (shlex.quote(host.instances),
                                          shlex.quote(
                                              self.lab.instances_path))]
        if not host.qemu_visible:
            mounts += _hide_qemu_commands(os.path.join(
                host.conf_dir, 'hide'), self.lab.emulator)
        script = ' && '.join(mounts + [
            'exec %s --config-file %s --log-file %s' % (
                _bin('nova-compute'), shlex.quote(host.conf_file),
                os.path.join(LOG_ROOT, 'nova-compute-%s.log' % host.name))])
        return Process(name='nova-compute-%s' % host.name, argv=[
            'unshare', '--mount', '--propagation', 'private',
            'sh', '-c', script])

    def _start_computes(self) -> None:
        os.makedirs(self.lab.instances_path, exist_ok=True)
        for host in self.computes:
            os.makedirs(host.instances, exist_ok=True)
            os.makedirs(host.state_path, exist_ok=True)
            proc = self.compute_process(host)
            proc.start()
            self.processes[proc.name] = proc

    def _wait_computes(self, timeout: float = 180,
                       since: Optional[float] = None) -> None:
        """Until both computes are up in Nova, mapped to the cell, and
        consume their RPC queues.
        """
        deadline = time.monotonic() + timeout
        nova_manage = [_bin('nova-manage'), '--config-file', os.path.join(
            STATE_ROOT, 'nova', 'nova.conf')]
        names = [h.name for h in self.computes]
        while True:
            for host in self.computes:
                proc = self.processes['nova-compute-%s' % host.name]
                if not proc.alive():
                    raise CloudError(proc.failure())
            up = {s['host'] for s in self.compute_services(since=since)
                  if s['state'] == 'up'}
            consumers = _rpc_consumers()
            if set(names) <= up and all(consumers.get('compute.%s' % n)
                                        for n in names):
                break
            if time.monotonic() > deadline:
                raise CloudError('computes %s not up after %.0f s; %s' % (
                    ', '.join(sorted(set(names) - up)) or '(RPC)', timeout,
                    _tail(os.path.join(LOG_ROOT, 'nova-compute-%s.log'
                                       % names[0]))))
            time.sleep(1)
        if len(self.hypervisors()) < len(names):
            # New hosts (a first start): map them to the cell now rather
            # than at the scheduler's next periodic discovery.
            _run(nova_manage + ['cell_v2', 'discover_hosts'])
        while time.monotonic() < deadline:
            if len(self.hypervisors()) >= len(names):
                return
            time.sleep(1)
        raise CloudError('hypervisors not listed after %.0f s' % timeout)

    # -- clients ------------------------------------------------------------

    def compute_services(self, since: Optional[float] = None) -> list:
        body = self.compute_get('/os-services?binary=nova-compute')
        services = body['services']
        if since is not None:
            services = [s for s in services if s.get('updated_at')]
        return services

    def hypervisors(self) -> list:
        return self.compute_get('/os-hypervisors')['hypervisors']

    def compute_get(self, path: str, user: str = 'admin',
                    project: str = ADMIN_PROJECT) -> dict:
        resp = self.session(user, project).get(
            self.api_url + path, headers={
                'OpenStack-API-Version': 'compute latest',
                'X-OpenStack-Nova-API-Version': 'latest'},
            raise_exc=True, connect_retries=CONNECT_RETRIES)
        return resp.json()

    def compute_request(self, method: str, path: str,
                        body: Optional[dict] = None) -> Any:
        resp = self.session().request(
            self.api_url + path, method, json=body, headers={
                'OpenStack-API-Version': 'compute latest',
                'X-OpenStack-Nova-API-Version': 'latest'},
            raise_exc=True, connect_retries=CONNECT_RETRIES)
        return resp.json() if resp.content else None

    def cli_env(self, user: str = 'admin') -> dict:
        """Environment for ``openstack``/``nova`` with ``user``'s cloud
        from clouds.yaml (``OS_CLOUD``).
        """
        env = {k: v for k, v in os.environ.items()
               if not k.startswith('OS_')}
        env.update({'OS_CLIENT_CONFIG_FILE': self.clouds_yaml,
                    'OS_CLOUD': 'nqm-' + user})
        return env

    def cli(self, tool: str, *args: str, user: str = 'admin',
            timeout: float = 180, check: bool = True) -> str:
        """Run ``openstack`` or ``nova`` (novaclient's CLI) as ``user``.

        novaclient reads no clouds.yaml: it gets the same credentials as
        ``OS_*`` variables.
        """
        env = self.cli_env(user)
        if tool == 'nova':
            project = ADMIN_PROJECT if user == 'admin' else TENANT_PROJECT
            env.pop('OS_CLOUD')
            env.update({'OS_AUTH_URL': self.url('keystone', '/v3'),
                        'OS_USERNAME': user, 'OS_PASSWORD': PASSWORD,
                        'OS_PROJECT_NAME': project,
                        'OS_USER_DOMAIN_NAME': 'Default',
                        'OS_PROJECT_DOMAIN_NAME': 'Default',
                        'OS_REGION_NAME': REGION,
                        'OS_COMPUTE_API_VERSION': '2.latest'})
        shown = '%s %s' % (tool, ' '.join(shlex.quote(a) for a in args))
        if user != 'admin':
            shown = '(as %s) %s' % (user, shown)
        self.cli_log.append(shown)
        res = subprocess.run([_bin(tool)] + list(args), capture_output=True,
                             text=True, timeout=timeout, env=env)
        if check and res.returncode != 0:
            raise CloudError('%s failed (%d): %s' % (
                shown, res.returncode, (res.stderr or res.stdout).strip()))
        return res.stdout if check else res

    def openstack(self, *args: str, **kwargs: Any) -> str:
        return self.cli('openstack', *args, **kwargs)

    def openstack_json(self, *args: str, **kwargs: Any) -> Any:
        return json.loads(self.openstack(*(list(args) + ['-f', 'json']),
                                         **kwargs))

    # -- images, flavors, servers (the runner's interface) ------------------

    def upload_guest_images(self, images: dict) -> None:
        """The lab kernel and initramfs in Glance (reused when the same
        files are there already).
        """
        if self.images:
            return
        found = {}
        for kind, name, fmt in (('kernel', 'lab-kernel', 'aki'),
                                ('initrd', 'lab-initramfs', 'ari')):
            checksum = _md5(images[kind])
            existing = [i for i in self.openstack_json(
                'image', 'list', '--name', name, '--long')
                if i.get('Checksum') == checksum]
            if existing:
                found[kind] = existing[0]['ID']
                continue
            found[kind] = self.openstack_json(
                'image', 'create', name, '--public', '--disk-format', fmt,
                '--container-format', fmt, '--file', images[kind])['id']
        self.images = {'kernel': found['kernel'],
                       'ramdisk': found['initrd']}

    def guest_image(self, name: str, cmdline: str,
                    properties: Optional[dict] = None,
                    disk_mb: int = 1, owner: str = 'admin',
                    disk_file: Optional[str] = None) -> str:
        """A bootable image: the lab kernel + initramfs with ``cmdline``
        and a root disk of ``disk_mb`` MiB (zeros: the guest runs from its
        initramfs), or the raw ``disk_file``.
        """
        props = {'kernel_id': self.images['kernel'],
                 'ramdisk_id': self.images['ramdisk'],
                 'os_command_line': cmdline, 'architecture': 'x86_64'}
        props.update(properties or {})
        key = ('image', owner, disk_file or disk_mb,
               tuple(sorted(props.items())))
        if key in self._objects:
            return self._objects[key]
        disk = disk_file or os.path.join(STATE_ROOT, 'disk-%dm.raw' % disk_mb)
        if not os.path.exists(disk):
            with open(disk, 'wb') as f:
                f.truncate(disk_mb * 1024 * 1024)
        args = ['image', 'create', '%s-%s' % (name, uuid.uuid4().hex[:6]),
                '--disk-format', 'raw', '--container-format', 'bare',
                '--file', disk]
        if owner == 'admin':
            args.append('--public')
        for k, v in sorted(props.items()):
            args += ['--property', '%s=%s' % (k, v)]
        image = self.openstack_json(*args, user=owner)['id']
        self._objects[key] = image
        return image

    def lab_flavor(self, name: str, memory_mb: int,
                   extra_specs: Optional[dict] = None,
                   disk_gb: int = 1) -> str:
        key = ('flavor', memory_mb, disk_gb,
               tuple(sorted((extra_specs or {}).items())))
        if key in self._objects:
            return self._objects[key]
        args = ['flavor', 'create', '%s-%s' % (name, uuid.uuid4().hex[:6]),
                '--ram', str(memory_mb), '--vcpus', '1', '--disk',
                str(disk_gb), '--public']
        for k, v in sorted((extra_specs or {}).items()):
            args += ['--property', '%s=%s' % (k, v)]
        flavor = self.openstack_json(*args)['id']
        self._objects[key] = flavor
        return flavor

    def boot(self, name: str, image_id: str, flavor_id: str,
             host: Optional[str] = None, timeout: float = 240,
             user: str = 'admin') -> dict:
        args = ['server', 'create', '--image', image_id, '--flavor',
                flavor_id, '--nic', 'none', '--os-compute-api-version',
                '2.74']
        if host:
            args += ['--host', host]
        server = self.openstack_json(*(args + [name]), user=user)
        return self.wait_server(server['id'], 'ACTIVE', timeout=timeout)

    def get_server(self, server_id: str) -> dict:
        return self.compute_get('/servers/%s' % server_id)['server']

    def wait_server(self, server_id: str, status: str,
                    timeout: float = 240) -> dict:
        return wait_for_server(self, server_id, status, timeout)

    def reset_active(self, server_id: str) -> None:
        self.compute_request('POST', '/servers/%s/action' % server_id,
                             {'os-resetState': {'state': 'active'}})

    def delete(self, server_id: str, timeout: float = 120) -> None:
        from keystoneauth1 import exceptions as ks_exc
        try:
            self.compute_request('DELETE', '/servers/%s' % server_id)
        except ks_exc.NotFound:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.get_server(server_id)
            except ks_exc.NotFound:
                return
            time.sleep(0.5)

    def _delete_servers(self) -> list:
        servers = self.compute_get('/servers?all_tenants=1')['servers']
        for server in servers:
            self.delete(server['id'])
        return ['deleted server %s' % s['id'] for s in servers]

    def host_of(self, server_id: str) -> str:
        return self.get_server(server_id)['OS-EXT-SRV-ATTR:host']

    def connection(self, host: hosts_mod.LabHost) -> Any:
        """A libvirt connection of the lab's own (not the compute's)."""
        conn = self._conns.get(host.name)
        if conn is None:
            import libvirt
            # A domain looked up where it is not (yet) is an answer, not
            # an error to print.
            libvirt.registerErrorHandler(lambda *args: None, None)
        if conn is None or not conn.isAlive():
            conn = self._conns[host.name] = self.lab.connect(host)
        return conn

    def domain(self, server_id: str) -> Any:
        host = self.lab.host(self.host_of(server_id))
        return self.connection(host).lookupByUUIDString(server_id)

    def migrations(self, server_id: str) -> list:
        return self.compute_get('/os-migrations?instance_uuid=%s'
                                % server_id)['migrations']

    def live_migrate(self, server_id: str, host: Optional[str] = None,
                     timeout: float = MIGRATION_TIMEOUT_S,
                     poll: Optional[Callable[[], None]] = None,
                     tool: str = 'openstack',
                     block_migration: Optional[bool] = None) -> dict:
        """Ask for a live migration with ``tool``'s CLI and wait for the
        migration record to end; returns it.

        ``openstack server migrate --live-migration [--host H]
        [--block-migration]``, or ``nova live-migration [--block-migrate]
        SERVER [H]``. ``block_migration=None``: Nova decides (``auto``).
        """
        before = {m['id'] for m in self.migrations(server_id)}
        if tool == 'nova':
            args = ['live-migration']
            if block_migration:
                args.append('--block-migrate')
            args.append(server_id)
            if host:
                args.append(host)
            self.cli('nova', *args)
        else:
            args = ['server', 'migrate', '--live-migration']
            if host:
                args += ['--host', host]
            if block_migration is True:
                args.append('--block-migration')
            elif block_migration is False:
                args.append('--shared-migration')
            self.openstack(*(args + ['--os-compute-api-version', '2.latest',
                                     server_id]))
        return wait_for_migration(self, server_id, before, timeout, poll)

    # -- Placement ------------------------------------------------------------

    def placement_get(self, path: str) -> dict:
        return self.session().get(
            self.url('placement', path),
            headers={'OpenStack-API-Version': 'placement latest'},
            raise_exc=True, connect_retries=CONNECT_RETRIES).json()

    def provider_uuid(self, host_name: str) -> str:
        rps = self.placement_get('/resource_providers?name=%s'
                                 % host_name)['resource_providers']
        if not rps:
            raise CloudError('no resource provider %s' % host_name)
        return rps[0]['uuid']

    def allocations(self, server_id: str) -> dict:
        body = self.placement_get('/allocations/%s' % server_id)
        return {rp: alloc['resources']
                for rp, alloc in body['allocations'].items()}

    # -- per-migration options ------------------------------------------------

    @contextlib.contextmanager
    def overrides(self, options: dict,
                  completion_timeout: Optional[int] = None) -> Iterator[None]:
        """The computes run with ``options`` (``[qat_migration]`` names, or
        ``group.name``) and Nova's completion timeout, as an operator's
        nova.conf would set them: each changed nova.conf is rewritten and
        its nova-compute restarted (options nova-compute reads at
        start-up, like Nova's own ``[libvirt]`` ones, need it).
        """
        saved = (dict(self.qat_options), dict(self.libvirt_options),
                 json.loads(json.dumps(self.compute_extra)))
        for name, value in options.items():
            group, _sep, option = name.rpartition('.')
            if not group or group == 'qat_migration':
                self.qat_options[option] = value
            else:
                for host in self.computes:
                    self.compute_extra.setdefault(host.name, {}).setdefault(
                        group, {})[option] = value
        if completion_timeout is not None:
            self.libvirt_options['live_migration_completion_timeout'] = \
                completion_timeout
        self.apply()
        try:
            yield
        finally:
            self.qat_options, self.libvirt_options, self.compute_extra = \
                saved
            # apply() saved the overridden options: the next process that
            # attaches (the next benchmark, test or demo) must read the
            # cloud's own, not the last plan's (a static plan's
            # ``allowed_methods`` would narrow every later adaptive run).
            if self.running():
                self._save()

    def apply(self, restart: tuple = ()) -> list:
        """Rewrite the computes' nova.conf; restart those that changed
        (and those named in ``restart``, e.g. after a change of
        :attr:`qemu_visible`). Returns their names.
        """
        changed = [h for h in self.computes
                   if self.write_compute_conf(h) or h.name in restart]
        if not changed:
            return []
        since = time.time()
        stop_all([self.processes['nova-compute-%s' % h.name]
                  for h in changed])
        for host in changed:
            proc = self.compute_process(host)
            proc.start()
            self.processes[proc.name] = proc
        self._wait_rpc([h.name for h in changed])
        self._save()
        LOG.info('restarted nova-compute on %s after %.1f s',
                 ', '.join(h.name for h in changed), time.time() - since)
        return [h.name for h in changed]

    def _wait_rpc(self, names: list, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for name in names:
                proc = self.processes['nova-compute-%s' % name]
                if not proc.alive():
                    raise CloudError(proc.failure())
            consumers = _rpc_consumers()
            if all(consumers.get('compute.%s' % n) for n in names):
                return
            if time.monotonic() > deadline:
                raise CloudError('nova-compute on %s not consuming RPC '
                                 'after %.0f s' % (', '.join(names),
                                                   timeout))
            time.sleep(0.5)

    def set_link(self, mbit: int) -> None:
        """Shape the link and tell the planners its rate."""
        self.lab.set_link(mbit)
        self.qat_options['link_gbps'] = mbit / 1000.0
        if self.running():
            self._save()

    def compute_pid(self, host_name: str) -> Optional[int]:
        return self.processes['nova-compute-%s' % host_name].pid

    def sees_qemu(self, host_name: str) -> bool:
        """Whether ``host_name``'s nova-compute finds the emulator libvirt
        runs, in its own mount namespace.
        """
        res = subprocess.run(['nsenter', '-t', str(self.compute_pid(
            host_name)), '-m', 'test', '-e', self.lab.emulator],
            capture_output=True)
        return res.returncode == 0

    def provider_traits(self, host_name: str) -> set:
        """The traits Placement holds for ``host_name``'s compute node."""
        return set(self.placement_get(
            '/resource_providers/%s/traits'
            % self.provider_uuid(host_name))['traits'])

    def nova_conf(self, host: hosts_mod.LabHost) -> str:
        """``host``'s nova-compute configuration, as written."""
        return _ini(self.compute_conf(self.compute(host.name)))

    def compute_log(self, host_name: str) -> str:
        return os.path.join(LOG_ROOT, 'nova-compute-%s.log' % host_name)


def wait_for_server(cloud: Any, server_id: str, status: str,
                    timeout: float) -> dict:
    """Wait until the server is ``status`` (raise on ERROR or timeout);
    ``cloud`` has ``get_server`` (either cloud).
    """
    deadline = time.monotonic() + timeout
    while True:
        server = cloud.get_server(server_id)
        if server['status'] == status:
            return server
        if server['status'] == 'ERROR':
            raise CloudError('server %s went to ERROR: %s' % (
                server_id, server.get('fault')))
        if time.monotonic() > deadline:
            raise CloudError('server %s is %s after %.0f s, not %s' % (
                server_id, server['status'], timeout, status))
        time.sleep(0.5)


def wait_for_migration(cloud: Any, server_id: str, before: set,
                       timeout: float,
                       poll: Optional[Callable[[], None]] = None) -> dict:
    """Wait for the server's new migration record (not in ``before``) to
    end and the server to settle; returns the record (``status`` is
    Nova's). ``cloud`` has ``migrations`` and ``get_server`` (either
    cloud).
    """
    deadline = time.monotonic() + timeout
    while True:
        new = [m for m in cloud.migrations(server_id)
               if m['id'] not in before]
        if new and new[0]['status'] in TERMINAL_MIGRATION:
            break
        if time.monotonic() > deadline:
            raise CloudError('migration of %s not finished after %.0f s'
                             % (server_id, timeout))
        if poll is not None:
            poll()
        time.sleep(0.25)
    # The server leaves MIGRATING once Nova has cleaned up.
    while time.monotonic() < deadline:
        server = cloud.get_server(server_id)
        if server['status'] != 'MIGRATING' and not server.get(
                'OS-EXT-STS:task_state'):
            break
        time.sleep(0.25)
    return new[0]


class LogReports:
    """The driver's ``qat_migration report:`` records, read from the
    computes' log files (what a log shipper would collect).
    """

    def __init__(self, cloud: ServiceCloud) -> None:
        self.cloud = cloud
        self._offsets: dict = {}
        self._records: list = []

    def _poll(self) -> None:
        for host in self.cloud.computes:
            path = self.cloud.compute_log(host.name)
            try:
                with open(path, 'rb') as f:
                    size = os.fstat(f.fileno()).st_size
                    offset = self._offsets.get(path)
                    if offset is None or offset > size:
                        offset = 0
                    f.seek(offset)
                    data = f.read()
            except OSError:
                continue
            end = data.rfind(b'\n') + 1
            self._offsets[path] = offset + end
            for line in data[:end].decode(errors='replace').splitlines():
                at = line.find(outcomes.PREFIX)
                if at < 0:
                    continue
                try:
                    self._records.append(json.loads(
                        line[at + len(outcomes.PREFIX):]))
                except ValueError:
                    continue

    @property
    def records(self) -> list:
        self._poll()
        return self._records

    def mark(self) -> int:
        """Only records logged from now on count for :meth:`wait_for`
        (the logs hold earlier runs' too).
        """
        self._poll()
        return len(self._records)

    def wait_for(self, instance: str, after: int,
                 timeout: float = 60.0) -> Optional[dict]:
        deadline = time.monotonic() + timeout
        while True:
            for rec in self.records[after:]:
                if rec.get('instance') == instance:
                    return rec
            if time.monotonic() > deadline:
                return None
            time.sleep(0.3)


class _Background:
    """``func(*args)`` in a thread; :meth:`result` joins and re-raises."""

    def __init__(self, func: Callable, *args: Any) -> None:
        self._value: Any = None
        self._error: Optional[BaseException] = None

        def target() -> None:
            try:
                self._value = func(*args)
            except BaseException as exc:  # re-raised
                self._error = exc

        self._thread = threading.Thread(target=target, daemon=True)
        self._thread.start()

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


def _find_or_create_role(ks: Any, name: str) -> Any:
    try:
        return ks.roles.find(name=name)
    except Exception:  # keystoneclient's NotFound
        return ks.roles.create(name)


def _metadefs_dir() -> str:
    """The project's Glance metadefs (``etc/metadefs``)."""
    from nova_qat_migration_lab import repo
    path = repo.path('etc', 'metadefs')
    if not os.path.isdir(path):
        raise CloudError('no metadefs at %s' % path)
    return path


def _md5(path: str) -> str:
    import hashlib
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def _system_running(script: str) -> bool:
    proc = dict(SYSTEM_SERVICES)[script]
    return subprocess.run(['pgrep', '-x', proc],
                          capture_output=True).returncode == 0


#: The ports each Debian service must bind on loopback only.
SYSTEM_PORTS = {'mariadb': (3306,),
                'rabbitmq-server': (5672, 4369, 25672),
                'memcached': (11211,)}


def _listens_beyond_loopback(script: str) -> bool:
    out = subprocess.run(['ss', '-Hltn'], capture_output=True,
                         text=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        addr, _sep, port = parts[3].rpartition(':')
        if (port.isdigit() and int(port) in SYSTEM_PORTS[script] and
                addr not in ('127.0.0.1', '[::1]')):
            return True
    return False


def _rpc_consumers() -> dict:
    """{queue: consumers} from RabbitMQ."""
    res = subprocess.run(['rabbitmqctl', '-q', 'list_queues', 'name',
                          'consumers'], capture_output=True, text=True,
                         timeout=60)
    out = {}
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


def _hide_qemu_commands(workdir: str, emulator: str) -> list:
    """Shell commands that make the QEMU system emulators vanish from this
    mount namespace (an overlay with whiteouts over their directory), as
    in a container that does not ship them.
    """
    import glob
    commands = []
    dirs: dict = {}
    for pattern in QEMU_GLOBS + (emulator,):
        for path in glob.glob(pattern):
            dirs.setdefault(os.path.dirname(os.path.realpath(path)),
                            set()).add(os.path.basename(path))
    for i, (directory, names) in enumerate(sorted(dirs.items())):
        upper = os.path.join(workdir, str(i), 'upper')
        work = os.path.join(workdir, str(i), 'work')
        shutil.rmtree(os.path.join(workdir, str(i)), ignore_errors=True)
        os.makedirs(upper)
        os.makedirs(work)
        for name in sorted(names):
            os.mknod(os.path.join(upper, name), 0o600 | 0o020000,
                     os.makedev(0, 0))    # an overlay whiteout
        commands.append(
            'mount -t overlay overlay -o lowerdir=%s,upperdir=%s,workdir=%s'
            ' %s' % (directory, upper, work, directory))
    return commands


def _stray_processes() -> list:
    """Names of cloud processes still running (none after ``down``).
    """
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % entry, 'rb') as f:
                argv = f.read().split(b'\0')
        except OSError:
            continue
        text = b' '.join(argv).decode(errors='replace')
        if STATE_ROOT in text or any(
                ('bin/%s' % name) in text for name in (
                    'nova-compute', 'nova-conductor', 'nova-scheduler',
                    'gunicorn', 'neutron-server', 'privsep-helper')):
            found.append('%s: %s' % (entry, text[:120]))
    return found


#: Process names of the control plane (everything but the computes).
CONTROL_PLANE = ('mariadbd', 'beam.smp', 'epmd', 'erl_child_setup',
                 'inet_gethost', 'memcached', 'gunicorn', 'nova-conductor',
                 'nova-scheduler')
COMPUTE = ('nova-compute', 'privsep-helper')


def _classify(pid: str) -> Optional[str]:
    try:
        with open('/proc/%s/cmdline' % pid, 'rb') as f:
            argv = f.read().replace(b'\0', b' ').decode(errors='replace')
        with open('/proc/%s/comm' % pid) as f:
            comm = f.read().strip()
    except OSError:
        return None
    if any(n in argv for n in COMPUTE):
        return 'compute'
    if comm in CONTROL_PLANE or any(n in argv for n in CONTROL_PLANE):
        return 'control'
    return None


def _cpu_ticks(pid: str) -> int:
    try:
        with open('/proc/%s/stat' % pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0


def _rss_kib(pid: str) -> int:
    try:
        with open('/proc/%s/status' % pid) as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def footprint(seconds: float = 60.0) -> dict:
    """The cloud's idle cost: RSS (MiB) and CPU (% of one core over
    ``seconds``) of the control plane and of the computes, from /proc.
    """
    def snapshot() -> dict:
        out: dict = {}
        for pid in os.listdir('/proc'):
            if pid.isdigit():
                kind = _classify(pid)
                if kind:
                    out[pid] = (kind, _cpu_ticks(pid))
        return out
    before = snapshot()
    time.sleep(seconds)
    after = snapshot()
    hz = os.sysconf('SC_CLK_TCK')
    result = {}
    for kind in ('control', 'compute'):
        pids = [p for p, (k, _t) in after.items() if k == kind]
        ticks = sum(after[p][1] - before.get(p, (kind, after[p][1]))[1]
                    for p in pids)
        result[kind] = {
            'processes': len(pids),
            'rss_mib': round(sum(_rss_kib(p) for p in pids) / 1024.0),
            'cpu_pct_of_one_core': round(100.0 * ticks / hz / seconds, 2)}
    return result


def stray_processes() -> list:
    """What of the cloud still runs (``ps``), and its namespaces.
    """
    out = _stray_processes()
    for script, proc in SYSTEM_SERVICES:
        if _system_running(script):
            out.append('%s (%s)' % (script, proc))
    res = subprocess.run(['ip', 'netns', 'list'], capture_output=True,
                         text=True)
    out += ['netns %s' % line.split()[0] for line in res.stdout.splitlines()
            if line.startswith(PREFIX + '-')]
    return out
