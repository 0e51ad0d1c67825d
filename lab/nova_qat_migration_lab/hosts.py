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
"""Two libvirt "hosts" on one machine: network namespaces + own daemons.

Each host is a network namespace (one end of a veth pair, an address from
TEST-NET-2, 198.51.100.0/24, checked to be on none of the machine's own
interfaces: some machines here have 192.0.2.2 on ``eth0``), a UTS namespace
(its own hostname: libvirt refuses to migrate to a host with the same name)
and a mount namespace in which libvirt's state, run, cache, log and config
directories are private bind mounts, so that two ``libvirtd`` can hold the
same domain during a migration. The daemons listen on TCP only inside their
namespace and on a unix socket under the lab's run directory, which is how
the (root-namespace) lab process talks to them.

The link between the hosts is shaped with ``tc`` (a token bucket on both
veth ends), so every plan sees the same wire.

Both hosts run Debian's QEMU, or with ``qemu='qatzip'`` the QEMU built with
QATzip (:mod:`~nova_qat_migration_lab.qemu_build`): libvirt looks its
emulators up on ``PATH``, so the build's ``bin`` directory goes first on
the ``PATH`` of both daemons and :meth:`Lab.up` checks that libvirt's
capabilities name it (the emulator Nova's guests then run). Nothing under
``/usr`` changes. Each QEMU's stderr is its domain's log,
:meth:`LabHost.qemu_log` (``/var/log/libvirt/qemu/<domain>.log`` inside
the daemon's mount namespace).

:class:`Lab` is a context manager: whatever happens, leaving it kills the
QEMU processes and daemons it started (by pid, and every process left in
its namespaces) and deletes the namespaces. :func:`cleanup` does the same
for leftovers of a lab that died hard.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import shutil
import signal
import subprocess
import time
from typing import Optional
import uuid

from oslo_log import log as logging

from nova_qat_migration.virt.libvirt import socket_queues
from nova_qat_migration_lab import qemu_build

LOG = logging.getLogger(__name__)

#: Where labs keep their runtime state. Short: unix socket paths are
#: limited to 107 bytes.
RUN_ROOT = '/run/nqm-lab'
SUBNET_PREFIX = '198.51.100.'   # TEST-NET-2 (RFC 5737): routed nowhere
LIBVIRT_DIRS = {
    'run': '/run/libvirt',
    'lib': '/var/lib/libvirt',
    'cache': '/var/cache/libvirt',
    'log': '/var/log/libvirt',
    'etc': '/etc/libvirt',
}
TCP_PORT = 16509


#: The QEMU a :class:`Lab` runs when none is given (``qemu_build.DISTRO``
#: or ``qemu_build.QATZIP``): commands whose labs are built elsewhere set it
#: for the process (``nova-qat-migration-lab faults --qemu``).
default_qemu = qemu_build.DISTRO


class LabError(Exception):
    """The lab could not be set up or a step in it failed."""


def _run(cmd: list[str], check: bool = True, timeout: float = 30,
         ) -> subprocess.CompletedProcess:
    LOG.debug('run: %s', ' '.join(cmd))
    res = subprocess.run(cmd, capture_output=True, text=True,
                         timeout=timeout)
    if check and res.returncode != 0:
        raise LabError('%s failed (%d): %s' % (
            ' '.join(cmd), res.returncode, res.stderr.strip()))
    return res


def missing_prerequisites() -> list[str]:
    """Why a lab cannot run here (empty when it can).

    Used by the lab tests to skip with a clear reason.
    """
    why = []
    if os.geteuid() != 0:
        why.append('needs root (network/mount namespaces, tc)')
    for tool in ('ip', 'tc', 'unshare', 'libvirtd', 'qemu-system-x86_64'):
        if shutil.which(tool) is None:
            why.append('%s not installed' % tool)
    try:
        import libvirt  # noqa: F401
    except ImportError:
        why.append('libvirt-python not installed')
    return why


@dataclasses.dataclass
class LabHost:
    """One namespaced libvirt host."""

    name: str          # namespace and hostname
    addr: str          # its address on the veth
    veth: str          # its veth end
    root: str          # runtime directory
    host_uuid: str
    process: Optional[subprocess.Popen] = None

    @property
    def sock_dir(self) -> str:
        return os.path.join(self.root, 'sock')

    @property
    def local_uri(self) -> str:
        """URI the lab process (root namespace) uses."""
        return 'qemu+unix:///system?socket=%s' % os.path.join(
            self.sock_dir, 'libvirt-sock')

    @property
    def tcp_uri(self) -> str:
        """URI the peer daemon uses (peer-to-peer migration)."""
        return 'qemu+tcp://%s/system' % self.addr

    def path(self, kind: str) -> str:
        """Host-visible path of one of libvirt's private directories."""
        return os.path.join(self.root, kind)

    def qemu_pids(self) -> list[int]:
        """PIDs of the QEMU processes this host's daemon runs."""
        pids = []
        piddir = os.path.join(self.path('run'), 'qemu')
        try:
            names = os.listdir(piddir)
        except OSError:
            return pids
        for name in names:
            if not name.endswith('.pid'):
                continue
            try:
                with open(os.path.join(piddir, name)) as f:
                    pids.append(int(f.read().strip()))
            except (OSError, ValueError):
                continue
        return [p for p in pids if _is_qemu(p)]

    def qemu_log(self, domain_name: str) -> str:
        """Host-visible path of domain ``domain_name``'s QEMU log here
        (QEMU's stderr: ``stdio_handler = "file"``).
        """
        return os.path.join(self.path('log'), 'qemu',
                            '%s.log' % domain_name)

    def qemu_pid(self, domain_name: str) -> Optional[int]:
        """PID of the QEMU running domain ``domain_name`` here, if any."""
        try:
            with open(os.path.join(self.path('run'), 'qemu',
                                   '%s.pid' % domain_name)) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return None
        return pid if _is_qemu(pid) else None

    def veth_bytes(self) -> tuple[int, int]:
        """(tx, rx) byte counters of this host's veth end."""
        out = _run(['ip', 'netns', 'exec', self.name, 'cat',
                    '/sys/class/net/%s/statistics/tx_bytes' % self.veth,
                    '/sys/class/net/%s/statistics/rx_bytes' % self.veth])
        tx, rx = out.stdout.split()
        return int(tx), int(rx)


class Lab:
    """Two namespaced libvirt hosts joined by a shaped veth pair.

    :param prefix: names namespaces, veths and the run directory, so that
        two labs (e.g. a benchmark and a test) can coexist.
    :param link_mbit: the emulated link rate.
    :param qemu: ``distro`` (Debian's QEMU) or ``qatzip`` (the QEMU built
        by ``tools/build-qemu-qatzip.sh``); ``None``: :data:`default_qemu`.
    :param daemon_env: more environment for both libvirt daemons (libvirt
        passes QEMU only a few variables of its own environment: ``PATH``,
        ``LD_PRELOAD``, ``LD_LIBRARY_PATH``...).
    :param storage: ``shared``: both hosts see one instances directory (as
        with NFS); ``local``: each host has its own directory mounted at
        :attr:`instances_path` (local disks: Nova block-migrates).
    :param resolve_names: each daemon resolves the other host's name to
        its lab address (a hosts file in its mount namespace), for a Nova
        whose computes share one ``CONF`` and so cannot each set
        ``live_migration_inbound_addr``.
    :param stable_ids: libvirt host UUIDs derived from the host names (a
        cloud whose databases outlive the lab sees the same hosts again).
    :raises qemu_build.NotBuilt: ``qatzip`` asked for and not built.
    """

    def __init__(self, prefix: Optional[str] = None,
                 link_mbit: int = 1000, qemu: Optional[str] = None,
                 daemon_env: Optional[dict] = None, storage: str = 'shared',
                 resolve_names: bool = True,
                 stable_ids: bool = False) -> None:
        if storage not in ('shared', 'local'):
            raise ValueError('storage must be shared or local')
        self.storage = storage
        self.resolve_names = resolve_names
        if prefix is None:
            prefix = free_prefix()
        if len(prefix) > 8:
            raise ValueError('prefix too long for interface names')
        self.qemu = qemu or default_qemu
        #: the qemu-system-x86_64 both hosts run
        self.emulator = qemu_build.emulator(self.qemu)
        self.daemon_env = dict(daemon_env or {})
        self.prefix = prefix
        self._lock_fd: Optional[int] = None
        self.link_mbit = link_mbit
        self.root = os.path.join(RUN_ROOT, prefix)
        self.hosts = [
            LabHost(name='%s-a' % prefix, addr=SUBNET_PREFIX + '1',
                    veth='%s-va' % prefix,
                    root=os.path.join(self.root, 'a'),
                    host_uuid=_host_uuid('%s-a' % prefix, stable_ids)),
            LabHost(name='%s-b' % prefix, addr=SUBNET_PREFIX + '2',
                    veth='%s-vb' % prefix,
                    root=os.path.join(self.root, 'b'),
                    host_uuid=_host_uuid('%s-b' % prefix, stable_ids)),
        ]

    @property
    def instances_path(self) -> str:
        """Where the hosts keep instances. With shared storage both see
        one directory (NFS in production): what makes a migration need no
        block copy. With local storage each host's own directory
        (``host.path('instances')``) is mounted here in its namespaces.
        """
        return os.path.join(self.root, 'instances')

    @property
    def hosts_file(self) -> str:
        """Name resolution inside the daemons' mount namespaces: each
        host's name resolves to its lab address, as DNS would.
        """
        return os.path.join(self.root, 'hosts')

    def host(self, name: str) -> LabHost:
        """The lab host called ``name``."""
        for host in self.hosts:
            if host.name == name:
                return host
        raise LabError('no lab host %r' % name)

    @property
    def source(self) -> LabHost:
        return self.hosts[0]

    @property
    def dest(self) -> LabHost:
        return self.hosts[1]

    # -- context manager -------------------------------------------------
    def __enter__(self) -> 'Lab':
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    # -- set up ------------------------------------------------------------
    def up(self) -> None:
        why = missing_prerequisites()
        if why:
            raise LabError('; '.join(why))
        self._lock()
        cleanup(self.prefix)      # leftovers of a lab that died hard
        _check_subnet_free()
        self._network()
        self.set_link(self.link_mbit)
        os.makedirs(self.instances_path, exist_ok=True)
        for host in self.hosts:
            os.makedirs(host.path('instances'), exist_ok=True)
        with open(self.hosts_file, 'w') as f:
            f.write('127.0.0.1 localhost\n')
            for host in self.hosts:
                f.write('%s %s\n' % (host.addr, host.name))
        for host in self.hosts:
            self._start_daemon(host)
        for host in self.hosts:
            self._wait_daemon(host)
        if self.qemu != qemu_build.DISTRO:
            for host in self.hosts:
                self._check_emulator(host)

    def _check_emulator(self, host: LabHost) -> None:
        """libvirt offers the selected QEMU (Nova's guests get libvirt's
        default emulator for the architecture).
        """
        from nova_qat_migration.virt.libvirt import capabilities
        conn = self.connect(host)
        try:
            found = capabilities.emulator_from_capabilities(
                conn.getCapabilities())
        finally:
            conn.close()
        if found is None or (os.path.realpath(found) !=
                             os.path.realpath(self.emulator)):
            raise LabError('libvirtd of %s offers %s as its x86_64 emulator, '
                           'not the %s QEMU %s' % (host.name, found,
                                                   self.qemu, self.emulator))

    def daemon_environ(self) -> dict:
        """The libvirt daemons' environment: this process's, the selected
        QEMU's directory first on ``PATH``, and :attr:`daemon_env`.

        With the QATzip build, without ``LD_LIBRARY_PATH`` (libvirt would
        pass it on to QEMU): the build finds QATzip through its rpath, as
        under an operator's libvirtd.
        """
        env = dict(os.environ)
        env['PATH'] = qemu_build.daemon_path(self.emulator,
                                             env.get('PATH'))
        if self.qemu != qemu_build.DISTRO:
            env.pop('LD_LIBRARY_PATH', None)
        env.update(self.daemon_env)
        return env

    def _network(self) -> None:
        a, b = self.hosts
        for host in self.hosts:
            _run(['ip', 'netns', 'add', host.name])
            _run(['ip', '-n', host.name, 'link', 'set', 'lo', 'up'])
            # The host tuning the operator guide recommends: a migration
            # connection holds little unsent data, so the switch-over
            # pause keeps QEMU's limit (socket_queues).
            _run(['ip', 'netns', 'exec', host.name, 'sysctl', '-qw',
                  'net.ipv4.tcp_notsent_lowat=%d'
                  % socket_queues.RECOMMENDED_NOTSENT_LOWAT])
        _run(['ip', 'link', 'add', a.veth, 'netns', a.name, 'type', 'veth',
              'peer', 'name', b.veth, 'netns', b.name])
        for host in self.hosts:
            _run(['ip', '-n', host.name, 'addr', 'add', host.addr + '/24',
                  'dev', host.veth])
            _run(['ip', '-n', host.name, 'link', 'set', host.veth, 'up'])

    def set_link(self, mbit: int) -> None:
        """Shape both directions of the link to ``mbit`` Mbit/s.

        A token bucket whose burst holds ~4 ms of traffic: big enough for
        GSO super-packets at 10 Gbit/s, small enough to keep the rate.
        """
        self.link_mbit = mbit
        burst = max(256 * 1024, mbit * 1000 * 1000 // 8 // 250)
        for host in self.hosts:
            _run(['ip', 'netns', 'exec', host.name, 'tc', 'qdisc',
                  'replace', 'dev', host.veth, 'root', 'tbf',
                  'rate', '%dmbit' % mbit, 'burst', str(burst),
                  'latency', '20ms'])

    def cut_link(self) -> str:
        """Drop every packet in both directions; :meth:`restore_link`
        ends it. Open TCP connections survive (nothing is reset).

        ``tc netem loss 100%`` where the kernel has netem, else both veth
        ends set down (IPv4 addresses stay; routes come back with the
        link). Returns which.
        """
        try:
            for host in self.hosts:
                _run(['ip', 'netns', 'exec', host.name, 'tc', 'qdisc',
                      'replace', 'dev', host.veth, 'root', 'netem',
                      'loss', '100%'])
            return 'netem loss 100%'
        except LabError as exc:
            LOG.info('no netem (%s): setting the veth down', exc)
        for host in self.hosts:
            _run(['ip', '-n', host.name, 'link', 'set', host.veth, 'down'])
        return 'veth down'

    def restore_link(self) -> None:
        """Undo :meth:`cut_link`: both ends up, the link shaped again."""
        for host in self.hosts:
            _run(['ip', '-n', host.name, 'link', 'set', host.veth, 'up'])
        self.set_link(self.link_mbit)

    def kill_daemon(self, host: LabHost, sig: int = signal.SIGKILL) -> None:
        """Kill ``host``'s libvirt daemon (its QEMU processes live on)."""
        if host.process is None:
            return
        pid = host.process.pid
        try:
            with open(os.path.join(host.root, 'libvirtd.pid')) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            pass    # not written yet: the shell has exec'd libvirtd
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
        try:
            host.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            raise LabError('libvirtd of %s did not exit on signal %d'
                           % (host.name, sig))

    def restart_daemon(self, host: LabHost, timeout: float = 30) -> None:
        """Start ``host``'s libvirt daemon again (stopping it first if it
        still runs) and wait until it answers. Running QEMU processes are
        taken over by the new daemon, as after ``systemctl restart``.
        """
        if host.process is not None and host.process.poll() is None:
            _kill(host.process.pid, wait=host.process)
        self._start_daemon(host)
        self._wait_daemon(host, timeout)

    def _write_config(self, host: LabHost) -> None:
        for kind in list(LIBVIRT_DIRS) + ['sock', 'instances']:
            os.makedirs(host.path(kind), exist_ok=True)
        os.makedirs(os.path.join(host.path('etc'), 'qemu'), exist_ok=True)
        with open(os.path.join(host.path('etc'), 'libvirtd.conf'), 'w') as f:
            f.write('\n'.join([
                'listen_tls = 0',
                'listen_tcp = 1',
                'listen_addr = "%s"' % host.addr,
                'tcp_port = "%d"' % TCP_PORT,
                'auth_tcp = "none"',
                'auth_unix_rw = "none"',
                'auth_unix_ro = "none"',
                'unix_sock_dir = "%s"' % host.sock_dir,
                'host_uuid = "%s"' % host.host_uuid,
                'log_outputs = "3:file:%s/libvirtd.log"' % host.root,
                '']))
        with open(os.path.join(host.path('etc'), 'qemu.conf'), 'w') as f:
            f.write('\n'.join([
                'security_driver = "none"',
                'stdio_handler = "file"',
                'user = "root"',
                'group = "root"',
                'dynamic_ownership = 0',
                'remember_owner = 0',
                'namespaces = [ ]',
                'cgroup_controllers = [ ]',
                'migration_address = "%s"' % host.addr,
                'migration_host = "%s"' % host.addr,
                ] + ([
                    # Both hosts see one instances directory (as with
                    # NFS); without this libvirt calls the migration
                    # unsafe.
                    'shared_filesystems = [ "%s" ]' % self.instances_path]
                     if self.storage == 'shared' else []) + ['']))
        for name in ('libvirt.conf',):
            open(os.path.join(host.path('etc'), name), 'a').close()

    def _start_daemon(self, host: LabHost) -> None:
        self._write_config(host)
        mounts = ' && '.join(
            'mkdir -p %s && mount --bind %s %s' % (target, host.path(kind),
                                                   target)
            for kind, target in LIBVIRT_DIRS.items())
        if self.resolve_names:
            mounts += ' && mount --bind %s /etc/hosts' % self.hosts_file
        if self.storage == 'local':
            mounts += ' && mount --bind %s %s' % (host.path('instances'),
                                                  self.instances_path)
        script = 'hostname %s && %s && exec libvirtd --listen --config ' \
                 '%s/libvirtd.conf --pid-file %s/libvirtd.pid' % (
                     host.name, mounts, host.path('etc'), host.root)
        log = open(os.path.join(host.root, 'daemon.out'), 'w')
        host.process = subprocess.Popen(
            ['ip', 'netns', 'exec', host.name, 'unshare', '--mount', '--uts',
             '--propagation', 'private', 'sh', '-c', script],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=self.daemon_environ(), start_new_session=True)
        log.close()

    def _wait_daemon(self, host: LabHost, timeout: float = 30) -> None:
        import libvirt
        # Connection attempts before the socket exists are expected.
        libvirt.registerErrorHandler(lambda *a: None, None)
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if host.process is not None and host.process.poll() is not None:
                raise LabError('libvirtd of %s exited: %s' % (
                    host.name, _tail(os.path.join(host.root, 'daemon.out'))))
            try:
                conn = libvirt.open(host.local_uri)
                conn.close()
                return
            except libvirt.libvirtError as exc:
                last = exc
            time.sleep(0.2)
        raise LabError('libvirtd of %s not ready: %s' % (host.name, last))

    def connect(self, host: LabHost):
        """A libvirt connection to ``host``'s daemon."""
        import libvirt
        return libvirt.open(host.local_uri)

    # -- tear down ---------------------------------------------------------
    def down(self) -> None:
        """Stop everything this lab started; never raises."""
        for host in self.hosts:
            for pid in host.qemu_pids():
                _kill(pid)
            if host.process is not None:
                _kill(host.process.pid, wait=host.process)
                host.process = None
        if self._lock_fd is not None:
            cleanup(self.prefix)
            try:
                os.unlink(_lock_path(self.prefix))
            except OSError:
                pass
            os.close(self._lock_fd)
            self._lock_fd = None

    def _lock(self) -> None:
        """Own the prefix: another lab with it running refuses to start
        (its clean-up of leftovers would kill this one).
        """
        if in_use(self.prefix):
            raise LabError('lab %r is in use by another process (see %s)'
                           % (self.prefix,
                              os.path.join(RUN_ROOT, self.prefix)))
        os.makedirs(RUN_ROOT, exist_ok=True)
        fd = os.open(_lock_path(self.prefix), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise LabError('lab %r is in use by another process'
                           % self.prefix)
        self._lock_fd = fd


def _host_uuid(name: str, stable: bool) -> str:
    if stable:
        return str(uuid.uuid5(uuid.NAMESPACE_DNS,
                              '%s.nova-qat-migration-lab' % name))
    return str(uuid.uuid4())


def _check_subnet_free() -> None:
    """The lab's addresses must be on none of the machine's interfaces
    (from the root namespace such an address would be the machine, not a
    lab host).
    """
    res = _run(['ip', '-4', '-o', 'addr', 'show'], check=False)
    for line in res.stdout.splitlines():
        if (' ' + SUBNET_PREFIX) in line:
            raise LabError('the lab subnet %s0/24 is in use on this machine '
                           '(%s)' % (SUBNET_PREFIX, line.split()[1]))


def _tail(path: str, n: int = 2000) -> str:
    try:
        with open(path, 'rb') as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - n))
            return f.read().decode(errors='replace')
    except OSError:
        return ''


def _kill(pid: int, wait: Optional[subprocess.Popen] = None,
          timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL after ``timeout``: bounded either way."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if wait is not None:
            if wait.poll() is not None:
                return
        elif not os.path.exists('/proc/%d' % pid) or _zombie(pid):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    if wait is not None:
        try:
            wait.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def _is_qemu(pid: int) -> bool:
    # The run directory also holds the daemon's own driver.pid.
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return b'qemu-system' in f.read().split(b'\0', 1)[0]
    except OSError:
        return False


def _zombie(pid: int) -> bool:
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] == 'Z'
    except (OSError, IndexError):
        return True


def _lock_path(prefix: str) -> str:
    return os.path.join(RUN_ROOT, '%s.lock' % prefix)


def in_use(prefix: str) -> bool:
    """Whether a live lab holds ``prefix`` (its lock, or a running
    libvirtd of its own).
    """
    try:
        fd = os.open(_lock_path(prefix), os.O_RDWR)
    except OSError:
        fd = None
    if fd is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError:
            return True
        finally:
            os.close(fd)
    for suffix in ('a', 'b'):
        try:
            with open(os.path.join(RUN_ROOT, prefix, suffix,
                                   'libvirtd.pid')) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if os.path.exists('/proc/%d' % pid) and not _zombie(pid):
            return True
    return False


def free_prefix(base: str = 'nqm', tries: int = 10) -> str:
    """The first of nqm, nqm1, nqm2... no live lab holds."""
    for i in range(tries):
        prefix = base if i == 0 else '%s%d' % (base, i)
        if not in_use(prefix):
            return prefix
    raise LabError('%d labs already running' % tries)


def cleanup(prefix: str = 'nqm') -> list[str]:
    """Remove what a lab named ``prefix`` may have left: processes in its
    namespaces, the namespaces, its run directory. Returns what it did.
    """
    done = []
    for suffix in ('a', 'b'):
        ns = '%s-%s' % (prefix, suffix)
        if not os.path.exists('/run/netns/%s' % ns):
            continue
        res = _run(['ip', 'netns', 'pids', ns], check=False)
        for pid in (int(p) for p in res.stdout.split() if p.isdigit()):
            _kill(pid)
            done.append('killed %d in %s' % (pid, ns))
        _run(['ip', 'netns', 'del', ns], check=False)
        done.append('deleted netns %s' % ns)
    root = os.path.join(RUN_ROOT, prefix)
    if os.path.isdir(root):
        shutil.rmtree(root, ignore_errors=True)
        done.append('removed %s' % root)
    return done
