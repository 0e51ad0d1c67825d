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
"""``nova-qat-migration devices`` and ``nova-qat-migration selftest``.

``devices`` shows what nova-compute would discover and report to Placement
on this host (read-only; run it as root to see debugfs health).
``selftest`` runs the QATzip round trip the adaptive policy calibrates
from. Both exit 0 on success and 2 with a message on stderr otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
from typing import Any, Iterator

from nova_qat_migration.conf import CONF
from nova_qat_migration.qat import manager as qat_manager
from nova_qat_migration.qat import placement


def _error(message: str) -> int:
    print('nova-qat-migration: error: %s' % message, file=sys.stderr)
    return 2


def _override(name: str, value: Any) -> None:
    if value is not None:
        CONF.set_override(name, value, group='qat_migration')


@contextlib.contextmanager
def _quiet_c_stderr(enabled: bool) -> Iterator[None]:
    """Hide what the C libraries print on fd 2.

    libusdm prints ``Cannot open /dev/vfio`` on a host without QAT. Only
    done in this short-lived, single-threaded command, never in
    nova-compute.
    """
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def _printable(text: str) -> str:
    """``text`` as a UTF-8 terminal can print it.

    Names read from sysfs (a driver's link, an entry's name) are bytes
    the kernel does not promise to be UTF-8; Python keeps the undecodable
    ones as surrogates, which ``print`` refuses under a UTF-8 locale.
    They are shown escaped (``\\xff``).
    """
    return text.encode('utf-8', 'surrogateescape').decode(
        'utf-8', 'backslashreplace')


def _say(text: str = '') -> None:
    print(_printable(text))


def _vf_summary(vfs: list) -> str:
    by_driver: dict[str, int] = {}
    for vf in vfs:
        key = vf['driver'] or 'unbound'
        by_driver[key] = by_driver.get(key, 0) + 1
    return ', '.join('%s x%d' % kv for kv in sorted(by_driver.items()))


def cmd_devices(args: argparse.Namespace) -> int:
    for path, what in ((args.sysfs_root, 'sysfs root'),
                       (args.debugfs_root, 'debugfs root')):
        if path is not None and not os.path.isdir(path):
            return _error('%s %s is not a directory' % (what, path))
    _override('sysfs_root', args.sysfs_root)
    _override('debugfs_root', args.debugfs_root)
    mgr = qat_manager.QATManager(CONF)
    statuses = mgr.scan()
    nodename = args.nodename or socket.gethostname()
    host_plan = mgr.plan(nodename, statuses)
    if args.json:
        _say(json.dumps({
            'sysfs_root': CONF.qat_migration.sysfs_root,
            'debugfs_root': CONF.qat_migration.debugfs_root,
            'devices': [s.to_dict() for s in statuses],
            'placement': host_plan.to_dict(),
        }, indent=2, sort_keys=True))
        return 0
    if not statuses:
        # NOTE(qat-migration): nothing to list, and nothing for Placement:
        # say so in words rather than print an empty inventory.
        _say('No QAT devices under %s: this host plans without QAT '
             '(qatzip is not used; software methods are), and publishes '
             'no QAT inventory to Placement for node %s.'
             % (CONF.qat_migration.sysfs_root, nodename))
        if host_plan.host_traits:
            _say('Compute node traits: %s'
                 % ','.join(sorted(host_plan.host_traits)))
        return 0
    for s in statuses:
        pf = s.pf
        h = s.health
        _say('PF %s  %s (gen %d, 0x%04x)  driver %s  NUMA %d'
              % (pf.address, pf.product, pf.generation, pf.device_id,
                 pf.driver or 'unbound', pf.numa_node))
        util = ('%.1f%%' % h.dc_utilization
                if h.dc_utilization is not None else '-')
        _say('   state %s  services %s  heartbeat %s  dc util %s  -> %s'
              % (pf.state or 'n/a (gen %d)' % pf.generation,
                 ';'.join(pf.services) or '-', h.status, util,
                 'healthy' if s.healthy else 'NOT USABLE'))
        data = pf.to_dict()
        _say('   SR-IOV %d/%d VFs%s; compression endpoints: %d'
              % (pf.sriov_numvfs, pf.sriov_totalvfs,
                 ' (%s)' % _vf_summary(data['vfs']) if pf.vfs else '',
                 len(s.compression_endpoints())))
        if args.verbose:
            for vf in pf.vfs:
                _say('     VF %s  driver %s'
                      % (vf.address, vf.driver or 'unbound'))
    _say()
    kept = CONF.qat_migration.qat_endpoints_for_migration
    _say('Placement (node %s; %s kept for migrations, [qat_migration] '
         'qat_endpoints_for_migration):'
         % (nodename, '1 endpoint is' if kept == 1
            else '%d endpoints are' % kept))
    for child in host_plan.children:
        inv = child.inventory().get(placement.RESOURCE_CLASS)
        _say('  %s  %s total %d reserved %d  traits %s'
              % (child.name, placement.RESOURCE_CLASS,
                 inv['total'] if inv else 0, inv['reserved'] if inv else 0,
                 ','.join(sorted(child.traits))))
    _say('  compute node traits: %s'
          % (','.join(sorted(host_plan.host_traits)) or '-'))
    return 0


def cmd_selftest(args: argparse.Namespace) -> int:
    if not 1 <= args.size <= 1024:
        return _error('--size must be 1..1024 MiB, got %d' % args.size)
    _override('qatzip_library', args.library)
    mgr = qat_manager.QATManager(CONF)
    with _quiet_c_stderr(not args.debug):
        result = mgr.selftest(size=args.size * 1024 * 1024, refresh=True)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, sort_keys=True))
    elif result.ok:
        print('QATzip:      %s' % result.library)
        print('engine:      %s%s' % (
            result.engine, '' if result.hardware else
            ' (no QAT hardware reachable; QATzip software fallback)'))
        print('sample:      %d KiB, memory-like'
              % (result.input_bytes // 1024))
        print('ratio:       %.3f (compressed/original)' % result.ratio)
        print('compress:    %.1f MiB/s' % result.compress_mbps)
        print('decompress:  %.1f MiB/s' % result.decompress_mbps)
        print('round trip:  %s' % ('byte-for-byte identical'
                                   if result.roundtrip_ok else 'MISMATCH'))
    if not result.ok:
        return _error('%s: %s' % (result.status, result.message))
    return 0


def add_parsers(subparsers: Any) -> None:
    """Register ``devices`` and ``selftest`` on the main CLI."""
    p = subparsers.add_parser(
        'devices',
        help='list QAT PFs/VFs and what would be reported to Placement')
    p.add_argument('--sysfs-root', metavar='PATH',
                   help='sysfs to scan (default [qat_migration] sysfs_root)')
    p.add_argument('--debugfs-root', metavar='PATH',
                   help='debugfs for heartbeat/telemetry (default '
                        '[qat_migration] debugfs_root)')
    p.add_argument('--nodename', help='compute node name used in provider '
                   'names (default: this host name)')
    p.add_argument('-v', '--verbose', action='store_true',
                   help='list every VF')
    p.add_argument('--json', action='store_true',
                   help='print the devices and the Placement view as JSON')
    p.set_defaults(func=cmd_devices)

    p = subparsers.add_parser(
        'selftest', help='QATzip compress/decompress round trip: '
                         'hardware or software, ratio, MiB/s')
    p.add_argument('--size', type=int, default=16, metavar='MiB',
                   help='sample size (default 16)')
    p.add_argument('--library', metavar='PATH',
                   help='QATzip library (default [qat_migration] '
                        'qatzip_library)')
    p.add_argument('--debug', action='store_true',
                   help="show the C libraries' own messages")
    p.add_argument('--json', action='store_true',
                   help='print the self-test result as JSON')
    p.set_defaults(func=cmd_selftest)
