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
"""``nova-qat-migration status``: is this compute host ready?

Built like ``nova-status upgrade check`` on ``oslo.upgradecheck``: every
check returns Success, Warning or Failure with a reason, the results are
printed as the same table (or ``--json``), and the exit code is the worst
result (0 success, 1 warning, 2 failure; 255 when a check itself crashed).

Read-only: it opens libvirt read-only, starts one ``-machine none`` QEMU
for its QMP schema (as the driver does at start-up), runs the QATzip
self-test on a 1 MiB sample and asks Placement for this host's traits.
"""

from __future__ import annotations

import argparse
import contextlib
from importlib import metadata as importlib_metadata
import os
import re
import sys
import tempfile
import traceback
import types
from typing import Any, Optional

import nova.conf  # noqa: F401 - registers compute_driver, [libvirt], ...
from oslo_upgradecheck import upgradecheck

from nova_qat_migration.cmd import errors
from nova_qat_migration.cmd import status_host
from nova_qat_migration import conf as qat_conf
from nova_qat_migration.conf import CONF
from nova_qat_migration import datamodel
from nova_qat_migration.policy import loader

Code = upgradecheck.Code
Result = upgradecheck.Result

DRIVER = 'qat_migration.QATLibvirtDriver'
#: The Nova releases whose libvirt driver this package hooks:
#: ``(lowest, first unsupported)`` (as ``nova>=34.0.0,<35`` in
#: requirements.txt).
NOVA_SUPPORTED = ((34, 0, 0), (35, 0, 0))
#: The host's checks' constants, in :mod:`.status_host`; importable here.
DEFAULT_URI = status_host.DEFAULT_URI
NOVA_MIN_LIBVIRT = status_host.NOVA_MIN_LIBVIRT
NOVA_MIN_QEMU = status_host.NOVA_MIN_QEMU
PLACEMENT_AUTH_HELP = status_host.PLACEMENT_AUTH_HELP


def _release(text: str) -> Optional[tuple]:
    """``(major, minor, patch)`` of a package version such as
    ``34.0.1.dev12``, or None when it does not start like one.
    """
    found = re.match(r'(\d+)(?:\.(\d+))?(?:\.(\d+))?', text)
    if not found:
        return None
    return tuple(int(part or 0) for part in found.groups())


_plain_error = status_host.plain_error


class Checks(status_host.HostChecks, upgradecheck.UpgradeCommands):
    """The readiness checks of one compute host.

    :param libvirt_uri: libvirt to ask (default ``[libvirt]
        connection_uri`` or ``qemu:///system``).
    :param qemu_binary: QEMU to probe (default: the emulator libvirt
        names in its capabilities).
    :param nodename: compute node provider name in Placement (default:
        libvirt's host name, as Nova uses it, else this host's name).
    :param placement: whether to ask Placement at all.
    :param proc_sys: where the kernel's settings are read (the TCP send
        buffers of the migration connections).
    """

    display_title = 'nova-qat-migration Readiness Check Results'

    def __init__(self, libvirt_uri: Optional[str] = None,
                 qemu_binary: Optional[str] = None,
                 nodename: Optional[str] = None,
                 placement: bool = True,
                 proc_sys: str = '/proc/sys') -> None:
        self.libvirt_uri = libvirt_uri
        self.qemu_binary = qemu_binary
        self.nodename = nodename
        self.placement = placement
        self.proc_sys = proc_sys
        #: HypervisorCaps once the libvirt check connected.
        self.caps: Optional[datamodel.HypervisorCaps] = None
        self.libvirt_hostname: Optional[str] = None
        self.emulator: Optional[str] = None
        self.qat_healthy = False

    # -- configuration -----------------------------------------------------

    def _check_driver(self) -> Result:
        driver = CONF.compute_driver
        if driver != DRIVER:
            return Result(Code.FAILURE,
                          '[DEFAULT] compute_driver is %s: set it to %s '
                          '(and restart nova-compute) to plan migrations '
                          'per instance.' % (driver or '(unset)', DRIVER))
        if not CONF.qat_migration.enabled:
            return Result(Code.WARNING,
                          '[qat_migration] enabled = false: the driver '
                          "migrates exactly as Nova's libvirt driver.")
        return Result(Code.SUCCESS, '%s, policy %s'
                      % (DRIVER, CONF.qat_migration.policy))

    def _check_options(self) -> Result:
        try:
            qat_conf.check(CONF)
        except qat_conf.ConfigError as exc:
            return Result(Code.FAILURE, '%s (nova-compute would refuse to '
                                        'start)' % exc)
        try:
            loader.load_policy(CONF.qat_migration.policy, CONF)
        except loader.UnknownPolicy as exc:
            return Result(Code.FAILURE, str(exc))
        # NOTE(qat-migration): as oslo-config-validator: oslo.config
        # ignores an option nobody registered, so a typo silently keeps
        # the default.
        unknown = ['[%s] %s in %s%s' % (group, name, path,
                                        ' (did you mean %s?)' % close[0]
                                        if close else '')
                   for path, group, name, close in
                   qat_conf.unknown_options(CONF)]
        if unknown:
            return Result(Code.WARNING,
                          'unknown option(s), ignored by nova-compute (the '
                          'default applies): %s' % '; '.join(unknown))
        channels = qat_conf.nova_ceiling(CONF, 'max_parallel_connections')
        note = ('' if channels > 1 else
                '; multifd compression is not planned: one connection '
                '([qat_migration] max_parallel_connections unset and '
                '[libvirt] live_migration_parallel_connections = %d)'
                % CONF.libvirt.live_migration_parallel_connections)
        return Result(Code.SUCCESS, '[qat_migration] options valid; policy '
                                    '%s loads%s'
                      % (CONF.qat_migration.policy, note))

    def _check_nova_version(self) -> Result:
        try:
            text = importlib_metadata.version('nova')
        except importlib_metadata.PackageNotFoundError:
            return Result(Code.FAILURE, 'Nova is not installed in this '
                                        'environment (%s)' % sys.prefix)
        version = _release(text)
        low, high = NOVA_SUPPORTED
        supported = '>= %s, < %s' % (datamodel.version_str(low),
                                     datamodel.version_str(high))
        if version is None or not low <= version < high:
            return Result(Code.FAILURE,
                          'Nova %s is installed; this nova-qat-migration '
                          'supports Nova %s (it hooks Nova\'s libvirt '
                          'driver methods of those releases)'
                          % (text, supported))
        return Result(Code.SUCCESS, 'Nova %s (supported: %s)'
                      % (text, supported))

    def _check_state_path(self) -> Result:
        from nova_qat_migration import history
        path = history.HistoryStore.from_conf(CONF).path
        if not path:
            return Result(Code.FAILURE, 'no state path: set [qat_migration] '
                          'state_path (or [DEFAULT] state_path)')
        # Read-only: an existing directory gets a temporary file; a missing
        # one (the driver creates it on the first write) is judged by its
        # nearest existing parent.
        probe = path
        while not os.path.exists(probe) and os.path.dirname(probe) != probe:
            probe = os.path.dirname(probe)
        try:
            if probe == path:
                with tempfile.NamedTemporaryFile(dir=path,
                                                 prefix='.status-'):
                    pass
            elif not (os.path.isdir(probe) and
                      os.access(probe, os.W_OK | os.X_OK)):
                raise PermissionError(13, 'cannot create it under %s'
                                      % probe)
        except OSError as exc:
            return Result(Code.FAILURE,
                          '%s is not writable (%s): the migration history '
                          'the adaptive policy learns from would be lost. '
                          'Set [qat_migration] state_path to a directory '
                          'the nova user can write.'
                          % (path, exc.strerror or exc))
        who = (' (checked as root: nova-compute\'s user must be able to '
               'write it too)' if os.geteuid() == 0 else '')
        if probe != path:
            return Result(Code.SUCCESS, '%s will be created on the first '
                          'migration%s' % (path, who))
        return Result(Code.SUCCESS, '%s is writable%s' % (path, who))

    def _flavors(self) -> list:
        """``[(name, extra specs)]`` of every flavor, through Nova's API
        with the ``OS_*`` environment or ``clouds.yaml`` (as ``drain``).

        Separate for tests.

        :raises Exception: whatever stops the SDK (no cloud, auth, HTTP).
        """
        from nova_qat_migration.cmd import drain
        conn = drain.connect()
        # is_public=none: private flavors too (an admin's view).
        return [(flavor.name or flavor.id, dict(flavor.extra_specs or {}))
                for flavor in conn.compute.flavors(details=True,
                                                   is_public='none')]

    def _check_flavors(self) -> Result:
        from nova_qat_migration.policy import hints
        try:
            flavors = self._flavors()
        except errors.cloud_errors() as exc:
            # Optional: no cloud configured here, or its API unreachable.
            return Result(Code.SUCCESS,
                          'flavors not checked: Nova\'s API not reachable '
                          'with the OS_* environment or clouds.yaml (%s)'
                          % _plain_error(exc))
        bad = []
        for name, specs in flavors:
            _, ignored = hints.resolve(extra_specs=specs, lenient=True)
            bad += ['flavor %s: %s' % (name, message)
                    for message in ignored]
        if bad:
            return Result(Code.WARNING,
                          '%s. Migrations still run; these keys are '
                          'ignored. Fix them with openstack flavor set / '
                          'unset (Nova validates them from microversion '
                          '2.86 where nova-api has this package).'
                          % '; '.join(bad))
        return Result(Code.SUCCESS, '%d flavor(s), no invalid '
                      'qat_migration:* key' % len(flavors))

    _host = status_host.HostChecks
    _upgrade_checks = (
        ('Nova version', _check_nova_version),
        ('Compute driver', _check_driver),
        ('Options and policy', _check_options),
        ('State path', _check_state_path),
        ('libvirt and QEMU versions', _host._check_libvirt),
        ('QEMU multifd compression methods', _host._check_multifd),
        ('QAT devices', _host._check_qat_devices),
        ('QATzip self-test', _host._check_qatzip),
        ('Migration socket queues', _host._check_socket_queues),
        ('QEMU monitor passthrough', _host._check_passthrough),
        ('Placement traits', _host._check_placement),
        ('Flavor extra specs', _check_flavors),
    )


@contextlib.contextmanager
def _json_output(enabled: bool) -> Any:
    """Make ``UpgradeCommands.check`` print JSON.

    NOTE(qat-migration): oslo.upgradecheck reads ``--json`` from the
    module-level ``CONF`` its own ``main()`` sets up; this command has its
    own argparse parser, so it hands the flag over the same way.
    """
    saved = upgradecheck.CONF
    if enabled:
        upgradecheck.CONF = types.SimpleNamespace(
            command=types.SimpleNamespace(json=True))
    else:
        upgradecheck.CONF = None
    try:
        yield
    finally:
        upgradecheck.CONF = saved


def run(checks: Checks, as_json: bool = False) -> int:
    """Run ``checks``; the exit code is oslo.upgradecheck's."""
    try:
        with _json_output(as_json):
            return int(checks.check())
    except Exception:
        # NOTE(qat-migration): as oslo.upgradecheck's own run(): a check
        # that breaks is reported with its traceback (not silent), exit
        # code 255.
        print('Error:\n%s' % traceback.format_exc(), file=sys.stderr)
        return 255


def cmd_status(args: argparse.Namespace) -> int:
    if not args.config_file and not getattr(args, 'config_dir', None):
        # NOTE(qat-migration): like nova-status, read nova.conf from its
        # usual places when no --config-file was given.
        CONF(args=[], project='nova', validate_default_values=True)
    checks = Checks(libvirt_uri=args.connection_uri,
                    qemu_binary=args.qemu, nodename=args.nodename,
                    placement=not args.no_placement)
    return run(checks, as_json=args.json)


def _add_check_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument('--connection-uri', metavar='URI',
                   help='libvirt URI (default [libvirt] connection_uri, '
                        'else %s)' % DEFAULT_URI)
    p.add_argument('--qemu', metavar='PATH',
                   help="QEMU binary to probe (default: libvirt's emulator)")
    p.add_argument('--nodename', help='compute node provider name in '
                   "Placement (default: libvirt's host name)")
    p.add_argument('--no-placement', action='store_true',
                   help='do not ask Placement for the traits (the check '
                        'then reads "not checked on request", a success)')
    p.add_argument('--json', action='store_true',
                   help='print the results as JSON')
    p.set_defaults(func=cmd_status)


#: What both forms say about themselves.
_DESCRIPTION = (
    'Readiness checks of this compute host, in the shape of nova-status '
    'upgrade check (oslo.upgradecheck): the Nova version, the driver, the '
    'options (bad values and unknown names), libvirt/QEMU, QAT, the QEMU '
    'monitor passthrough, Placement traits and, where OS_CLOUD or OS_AUTH_URL '
    'and the like or clouds.yaml reach Nova\'s API, the flavors\' '
    'qat_migration keys. Reads nova.conf from --config-file / --config-dir '
    "(before the subcommand) or from oslo.config's default places "
    '(/etc/nova/nova.conf). Exit code: 0 success, 1 warning, 2 failure, '
    '255 a check crashed.')


def add_parsers(subparsers: Any) -> None:
    """Register ``status`` and ``upgrade check`` on the main CLI.

    ``upgrade check`` is the name deployment tools call on every
    OpenStack service (``nova-status upgrade check``,
    ``placement-status upgrade check``); both run the same checks.
    """
    p = subparsers.add_parser(
        'status',
        help='check that this compute host is ready (driver, options, '
             'libvirt/QEMU, QAT, passthrough, Placement traits); exit 0 '
             'success, 1 warning, 2 failure',
        description=_DESCRIPTION)
    _add_check_arguments(p)
    upgrade = subparsers.add_parser(
        'upgrade', help='upgrade checks, as nova-status upgrade check',
        description='Checks for deployment tools, as other OpenStack '
                    'services have them.')
    commands = upgrade.add_subparsers(dest='upgrade_command',
                                      metavar='COMMAND',
                                      parser_class=type(upgrade))
    commands.required = True
    check = commands.add_parser(
        'check', help='the checks of status (same options, same exit '
                      'codes)', description=_DESCRIPTION)
    _add_check_arguments(check)
