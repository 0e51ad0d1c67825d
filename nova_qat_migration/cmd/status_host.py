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
"""The host's readiness checks of ``nova-qat-migration status``: libvirt
and QEMU, the QAT devices and QATzip, the monitor passthrough, and what
Placement holds for this host (see :mod:`.status`).
"""

from __future__ import annotations

import os
import socket
from typing import Any

from oslo_config import cfg
from oslo_upgradecheck import upgradecheck

from nova_qat_migration.cmd import errors
from nova_qat_migration.conf import CONF
from nova_qat_migration import datamodel
from nova_qat_migration.virt.libvirt import capabilities
from nova_qat_migration.virt.libvirt import migration_traits
from nova_qat_migration.virt.libvirt import qemu_probe
from nova_qat_migration.virt.libvirt import socket_queues

Code = upgradecheck.Code
Result = upgradecheck.Result

DEFAULT_URI = 'qemu:///system'
#: Nova 34's own minimums (``nova.virt.libvirt.driver``): below them
#: nova-compute refuses to start, whatever this package does.
NOVA_MIN_LIBVIRT = (8, 0, 0)
NOVA_MIN_QEMU = (6, 2, 0)
#: libvirt's migration API knows multifd zlib/zstd from 9.4.
LIBVIRT_MULTIFD_COMPRESSION = (9, 4, 0)
SELFTEST_BYTES = 1024 * 1024
#: What to set in nova.conf when Placement's credentials are missing.
PLACEMENT_AUTH_HELP = (
    'set [placement] auth_type = password, auth_url, username, password, '
    'project_name, user_domain_name and project_domain_name in nova.conf '
    '(the credentials nova-compute uses), or pass --no-placement')
#: Placement microversion with ``GET /resource_providers/{uuid}/traits``.
PLACEMENT_TRAITS_VERSION = '1.6'


def plain_error(exc: BaseException) -> str:
    """``exc`` in plain words: its message, its type only without one."""
    text = str(exc).strip()
    return text or type(exc).__name__


def _methods_text(methods: Any) -> str:
    return ', '.join(sorted(methods)) or 'none'


class HostChecks:
    """The checks of :class:`.status.Checks` that ask the host (libvirt,
    QEMU, QAT) and Placement; a mixin, the state is ``Checks``'.
    """

    # -- hypervisor --------------------------------------------------------

    def _uri(self) -> str:
        return (self.libvirt_uri or CONF.libvirt.connection_uri or
                DEFAULT_URI)

    def _check_libvirt(self) -> Result:
        uri = self._uri()
        try:
            import libvirt
        except ImportError:
            return Result(Code.FAILURE, 'libvirt-python is not installed '
                                        'in this environment')
        libvirt.registerErrorHandler(lambda *args: None, None)
        try:
            conn = libvirt.openReadOnly(uri)
        except libvirt.libvirtError as exc:
            return Result(Code.FAILURE, 'cannot connect to libvirt at %s: '
                                        '%s' % (uri, exc))
        try:
            lv = capabilities._version_tuple(conn.getLibVersion())
            qv = capabilities._version_tuple(conn.getVersion())
            try:
                self.libvirt_hostname = conn.getHostname()
            except libvirt.libvirtError:
                self.libvirt_hostname = None
            if self.qemu_binary is None:
                try:
                    self.emulator = capabilities.emulator_from_capabilities(
                        conn.getCapabilities())
                except libvirt.libvirtError:
                    self.emulator = None
            else:
                self.emulator = self.qemu_binary
        except libvirt.libvirtError as exc:
            return Result(Code.FAILURE, 'libvirt at %s: %s' % (uri, exc))
        finally:
            conn.close()
        self.caps = datamodel.HypervisorCaps(libvirt_version=lv,
                                             qemu_version=qv,
                                             multifd_methods=frozenset())
        text = 'libvirt %s, QEMU %s' % (datamodel.version_str(lv),
                                        datamodel.version_str(qv))
        if lv < NOVA_MIN_LIBVIRT or qv < NOVA_MIN_QEMU:
            return Result(Code.FAILURE, '%s: Nova needs libvirt >= %s and '
                          'QEMU >= %s' % (text,
                                          datamodel.version_str(
                                              NOVA_MIN_LIBVIRT),
                                          datamodel.version_str(
                                              NOVA_MIN_QEMU)))
        notes = []
        if lv < LIBVIRT_MULTIFD_COMPRESSION:
            notes.append('libvirt < 9.4 cannot ask for multifd zlib/zstd '
                         '(only through [qat_migration] '
                         'qemu_monitor_passthrough)')
        if not self.caps.postcopy_with_multifd:
            notes.append('post-copy cannot follow multifd before QEMU 10.1')
        if lv < LIBVIRT_MULTIFD_COMPRESSION:
            return Result(Code.WARNING, '%s; %s' % (text, '; '.join(notes)))
        return Result(Code.SUCCESS, '; '.join([text] + notes))

    def _check_multifd(self) -> Result:
        binary = (self.emulator or self.qemu_binary or
                  qemu_probe.DEFAULT_QEMU)
        if not os.path.exists(binary):
            return Result(Code.FAILURE, 'QEMU binary %s not found' % binary)
        methods = qemu_probe.probe_multifd_methods(binary)
        if not methods:
            return Result(Code.WARNING,
                          'could not read the multifd compression methods '
                          'of %s (QMP query-qmp-schema); plans fall back to '
                          'the libvirt-version rules' % binary)
        if self.caps is not None:
            self.caps = datamodel.HypervisorCaps(
                libvirt_version=self.caps.libvirt_version,
                qemu_version=self.caps.qemu_version, multifd_methods=methods)
        allowed = set(CONF.qat_migration.allowed_methods)
        text = '%s accepts %s' % (binary, _methods_text(methods))
        missing = sorted(m for m in allowed & {'zlib', 'zstd', 'qatzip'}
                         if m not in methods)
        if missing:
            text += '; allowed but not built in (never planned here): %s' % (
                ', '.join(missing))
        return Result(Code.SUCCESS, text)

    # -- QAT ---------------------------------------------------------------

    def _manager(self) -> Any:
        from nova_qat_migration.qat import manager
        return manager.QATManager(CONF)

    def _check_qat_devices(self) -> Result:
        statuses = self._manager().scan()
        root = CONF.qat_migration.sysfs_root
        if not statuses:
            return Result(Code.SUCCESS,
                          'no QAT devices under %s: qatzip is not planned '
                          'on this host; software methods are' % root)
        healthy = [s for s in statuses if s.healthy]
        endpoints = sum(len(s.compression_endpoints()) for s in healthy)
        self.qat_healthy = endpoints > 0
        text = '%d QAT PF(s), %d healthy, %d compression endpoint(s)' % (
            len(statuses), len(healthy), endpoints)
        if len(healthy) < len(statuses) or not endpoints:
            bad = ', '.join(s.pf.address for s in statuses if not s.healthy)
            return Result(Code.WARNING, '%s; not usable: %s (see '
                          '`nova-qat-migration devices`)'
                          % (text, bad or 'no compression endpoints'))
        return Result(Code.SUCCESS, text)

    def _check_qatzip(self) -> Result:
        from nova_qat_migration.cmd import qat as qat_cmd
        with qat_cmd._quiet_c_stderr(True):
            result = self._manager().selftest(size=SELFTEST_BYTES,
                                              refresh=True)
        if (result.ok and self.qat_healthy and not result.hardware and
                not CONF.qat_migration.qatzip_software_allowed):
            from nova_qat_migration.qat import manager
            return Result(Code.WARNING, '%s: %s' % (
                manager.QATManager.SOFTWARE_ONLY, result.describe()))
        if result.ok:
            return Result(Code.SUCCESS, result.describe())
        text = 'QATzip self-test: %s: %s' % (result.status, result.message)
        if self.qat_healthy:
            return Result(Code.FAILURE, '%s; this host has QAT devices but '
                          'cannot compress with them' % text)
        return Result(Code.SUCCESS, '%s (not needed: no QAT devices)' % text)

    def _check_socket_queues(self) -> Result:
        """Whether a switch-over pause can outlast QEMU's limit by what
        waits in the migration connections' send buffers
        (:mod:`~nova_qat_migration.virt.libvirt.socket_queues`).
        """
        cap = socket_queues.unsent_cap_bytes(self.proc_sys)
        try:
            warning = socket_queues.advice_from_conf(CONF, cap)
        except (cfg.Error, ValueError) as exc:
            return Result(Code.WARNING, 'not checked: the options it needs '
                          'are invalid (%s)' % plain_error(exc))
        if warning:
            return Result(Code.WARNING, warning)
        return Result(Code.SUCCESS, 'a migration connection holds at most '
                      '%d KiB unsent (net.ipv4.tcp_notsent_lowat, tcp_wmem)'
                      % (cap // 1024))

    def _check_passthrough(self) -> Result:
        if CONF.qat_migration.qemu_monitor_passthrough:
            return Result(Code.WARNING,
                          '[qat_migration] qemu_monitor_passthrough = true: '
                          'libvirt marks every domain that receives a QEMU '
                          'monitor command as tainted (custom-monitor); '
                          'this is how qatzip (and zlib/zstd on libvirt < '
                          '9.4) reaches QEMU')
        allowed = CONF.qat_migration.allowed_methods
        if 'qatzip' in allowed and self.qat_healthy:
            return Result(Code.WARNING,
                          'passthrough disabled: qatzip is allowed and QAT '
                          'is present, but libvirt cannot ask QEMU for '
                          'qatzip without qemu_monitor_passthrough')
        return Result(Code.SUCCESS, 'disabled: no domain is tainted')

    # -- Placement ---------------------------------------------------------

    def _placement_get(self, path: str) -> Any:
        """GET from Placement with nova.conf's ``[placement]`` credentials.

        Separate for tests, like ``nova-status``'s own ``_placement_get``.
        """
        from nova import utils as nova_utils
        client = nova_utils.get_ksa_adapter('placement')
        return client.get(path, raise_exc=True,
                          microversion=PLACEMENT_TRAITS_VERSION).json()

    def _nodename(self) -> str:
        return (self.nodename or self.libvirt_hostname or
                socket.gethostname())

    def _check_placement(self) -> Result:
        if not self.placement:
            return Result(Code.SUCCESS,
                          'not checked on request (--no-placement)')
        nodename = self._nodename()
        try:
            found = self._placement_get('/resource_providers?name=%s'
                                        % nodename)
            providers = found.get('resource_providers') or []
            if not providers:
                return Result(Code.WARNING,
                              'no resource provider named %s in Placement: '
                              'nova-compute has not reported this host yet '
                              '(or use --nodename)' % nodename)
            uuid = providers[0]['uuid']
            traits = set(self._placement_get(
                '/resource_providers/%s/traits' % uuid).get('traits') or ())
        except (errors.cloud_errors() + errors.CONFIG_ERRORS +
                (ValueError, LookupError, TypeError, AttributeError)) as exc:
            # keystoneauth's (no credentials, auth, HTTP), a bad
            # [placement] section, or an answer not shaped as Placement's.
            from keystoneauth1 import exceptions as ksa_exc
            if isinstance(exc, ksa_exc.MissingAuthPlugin):
                return Result(Code.WARNING, 'Placement not checked: no '
                              'credentials in nova.conf [placement]: %s'
                              % PLACEMENT_AUTH_HELP)
            return Result(Code.WARNING, 'Placement unreachable with '
                          'nova.conf [placement]: %s'
                          % plain_error(exc))
        ours = {t for t in traits
                if t.startswith(migration_traits.TRAIT_PREFIX)}
        if migration_traits.TRAIT_PLANNER not in traits:
            return Result(Code.WARNING,
                          'provider %s has no %s: this host does not publish '
                          'what it can receive (driver not running here '
                          'yet?); sources send it nothing compressed'
                          % (nodename, migration_traits.TRAIT_PLANNER))
        if self.caps is None or not self.caps.multifd_methods:
            return Result(Code.SUCCESS, 'provider %s: %s'
                          % (nodename, _methods_text(ours)))
        expected = migration_traits.traits_for(self.caps)
        missing = expected - traits
        extra = ours - expected
        if missing or extra:
            return Result(Code.WARNING,
                          'provider %s differs from this host: missing %s, '
                          'stale %s (nova-compute updates them at start-up '
                          'and in its periodic task)'
                          % (nodename, _methods_text(missing),
                             _methods_text(extra)))
        return Result(Code.SUCCESS, 'provider %s has %s'
                      % (nodename, _methods_text(expected)))
