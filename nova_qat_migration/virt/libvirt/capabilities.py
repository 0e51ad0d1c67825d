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
"""What a host's libvirt and QEMU can do for migrations, and its traits.

Probed once at start-up: versions from libvirt, and which multifd
compression methods the QEMU binary was built with from its QMP schema
(a ``-machine none`` QEMU, no guest). Each host publishes the result as
``CUSTOM_MIGRATION_*`` traits on its compute-node resource provider so a
source can tell what the destination can decode before choosing a plan.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any, Iterable, Optional

from oslo_log import log as logging

from nova_qat_migration import datamodel
from nova_qat_migration.qat import placement


LOG = logging.getLogger(__name__)

TRAIT_PREFIX = 'CUSTOM_MIGRATION_'
TRAIT_MULTIFD = TRAIT_PREFIX + 'MULTIFD'
TRAIT_POSTCOPY_MULTIFD = TRAIT_PREFIX + 'POSTCOPY_MULTIFD'
#: Marks a host that runs this planner (its other traits are meaningful).
TRAIT_PLANNER = TRAIT_PREFIX + 'PLANNER'

DEFAULT_QEMU = '/usr/bin/qemu-system-x86_64'
PROBE_TIMEOUT = 20.0


def compress_trait(method: str) -> str:
    return '%sCOMPRESS_%s' % (TRAIT_PREFIX, method.upper())


def _version_tuple(number: int) -> tuple[int, int, int]:
    """libvirt encodes versions as major * 1,000,000 + minor * 1000 + micro."""
    return (number // 1000000, (number // 1000) % 1000, number % 1000)


def _native_io() -> tuple:
    """``os`` and ``select`` as the interpreter made them.

    nova-compute may run under eventlet's monkey patching, whose green
    pipes never wake up for a peer that already exited. The probe runs once
    at start-up and is bounded by a timeout, so plain blocking I/O is
    right here in both modes.
    """
    import select
    if 'eventlet' not in sys.modules:   # nothing can have patched them
        return os, select
    from eventlet import patcher
    return patcher.original('os'), patcher.original('select')


#: util-linux's setpriv, which can set the parent-death signal and exec.
SETPRIV = 'setpriv'


@functools.lru_cache(maxsize=1)
def _death_signal_prefix() -> tuple:
    """argv that makes the probe's QEMU die with its prober, or ``()``.

    A ``-machine none`` QEMU does not exit when its QMP stdin closes, so a
    prober killed hard (a test timeout, an OOM kill) would leave it running
    for ever. ``PR_SET_PDEATHSIG`` must be set in the child between fork
    and exec; doing that from Python (``preexec_fn``) is unsafe in a
    threaded nova-compute (the child may deadlock on a lock another thread
    held at fork time), so a tiny exec wrapper does it: ``setpriv
    --pdeathsig KILL`` (util-linux 2.33+). Without it the probe still
    kills QEMU itself on every normal exit path.
    """
    path = shutil.which(SETPRIV)
    if not path:
        return ()
    try:
        result = subprocess.run([path, '--help'], capture_output=True,
                                text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return ()
    if '--pdeathsig' not in result.stdout:
        return ()
    return (path, '--pdeathsig', 'KILL', '--')


def _qmp_exchange(binary: str, commands: list,
                  timeout: float = PROBE_TIMEOUT) -> list:
    """Run ``binary`` with QMP on stdio and return one reply per command.

    Each command is sent only after the previous reply arrived, and the
    process is killed once the last reply is in (a ``quit`` could race a
    large reply).
    """
    n_os, n_select = _native_io()
    argv = list(_death_signal_prefix()) + [
        binary, '-machine', 'none', '-nodefaults', '-nographic',
        '-display', 'none', '-qmp', 'stdio']
    # NOTE(qat-migration): no preexec_fn (Python between fork and exec is
    # unsafe with threads); the death signal comes from the exec wrapper,
    # and the finally below kills QEMU on every exit path of ours.
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            close_fds=True)
    out_fd, in_fd = proc.stdout.fileno(), proc.stdin.fileno()
    deadline = time.monotonic() + timeout
    replies = []
    buf = b''

    def read_reply() -> dict:
        nonlocal buf
        while True:
            while b'\n' in buf:
                line, buf = buf.split(b'\n', 1)
                if not line.strip():
                    continue
                msg = json.loads(line)
                if 'return' in msg or 'error' in msg:
                    return msg
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError('QEMU QMP probe timed out')
            ready, _, _ = n_select.select([out_fd], [], [], left)
            if ready:
                try:
                    chunk = n_os.read(out_fd, 1 << 20)
                except BlockingIOError:
                    continue
                if not chunk:
                    raise EOFError('QEMU exited during the QMP probe')
                buf += chunk

    try:
        for command in [{'execute': 'qmp_capabilities'}] + commands:
            try:
                n_os.write(in_fd, json.dumps(command).encode() + b'\n')
            except (BrokenPipeError, BlockingIOError):
                raise EOFError('QEMU exited during the QMP probe')
            replies.append(read_reply())
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass
    return replies[1:]


def multifd_methods_from_schema(schema: list) -> frozenset[str]:
    """Values of ``multifd-compression`` in a ``query-qmp-schema`` reply."""
    by_name = {entry['name']: entry for entry in schema}
    command = by_name.get('migrate-set-parameters')
    if not command:
        return frozenset()
    args = by_name.get(command.get('arg-type'), {})
    for member in args.get('members', []):
        if member.get('name') == 'multifd-compression':
            enum = by_name.get(member.get('type'), {})
            return frozenset(enum.get('values', []))
    return frozenset()


def probe_multifd_methods(binary: str = DEFAULT_QEMU) -> frozenset[str]:
    """Multifd compression methods ``binary`` accepts; empty if unknown."""
    try:
        reply, = _qmp_exchange(binary, [{'execute': 'query-qmp-schema'}])
        return multifd_methods_from_schema(reply.get('return', []))
    except (OSError, ValueError, TimeoutError, EOFError) as exc:
        LOG.warning('Could not probe the multifd compression methods of '
                    '%(bin)s: %(exc)s; only libvirt-version rules apply.',
                    {'bin': binary, 'exc': exc})
        return frozenset()


def emulator_from_capabilities(caps_xml: str) -> Optional[str]:
    """The x86_64 (or first) emulator path in libvirt's capabilities."""
    from lxml import etree
    try:
        doc = etree.fromstring(caps_xml.encode())
    except (etree.XMLSyntaxError, ValueError):
        return None
    for arch in ('x86_64', None):
        path = 'guest/arch%s/emulator' % (
            "[@name='%s']" % arch if arch else '')
        found = doc.find(path)
        if found is not None and found.text:
            return found.text.strip()
    return None


def probe_hypervisor(conn: Any, qemu_binary: Optional[str] = None,
                     ) -> datamodel.HypervisorCaps:
    """Probe a libvirt connection (a ``virConnect``) once at start-up."""
    libvirt_version = _version_tuple(conn.getLibVersion())
    qemu_version = _version_tuple(conn.getVersion())
    binary = qemu_binary
    if binary is None:
        try:
            binary = emulator_from_capabilities(conn.getCapabilities())
        except Exception as exc:  # noqa: broad: any libvirt failure
            LOG.warning('Could not read libvirt capabilities: %s', exc)
        binary = binary or DEFAULT_QEMU
    methods = (probe_multifd_methods(binary) if os.path.exists(binary)
               else frozenset())
    caps = datamodel.HypervisorCaps(libvirt_version=libvirt_version,
                                    qemu_version=qemu_version,
                                    multifd_methods=methods)
    LOG.info('Migration capabilities: libvirt %(lv)s, QEMU %(qv)s, multifd '
             'compression %(m)s',
             {'lv': datamodel.version_str(libvirt_version),
              'qv': datamodel.version_str(qemu_version),
              'm': ','.join(sorted(methods)) or 'unknown'})
    return caps


def traits_for(caps: datamodel.HypervisorCaps) -> set[str]:
    """The ``CUSTOM_MIGRATION_*`` traits a host publishes about itself.

    They describe what the host can *receive*: QEMU decodes a multifd
    method whenever its binary has it, whatever libvirt knows.
    """
    traits = {TRAIT_PLANNER, TRAIT_MULTIFD, compress_trait('xbzrle')}
    receivable = set(caps.multifd_methods) - {'none'}
    if not caps.multifd_methods:
        receivable = {m for m in ('zlib', 'zstd')
                      if caps.accepts(m) and m in caps.libvirt_methods}
    traits |= {compress_trait(m) for m in receivable}
    if caps.has_mt:
        traits.add(compress_trait('mt'))
    if caps.postcopy_with_multifd:
        traits.add(TRAIT_POSTCOPY_MULTIFD)
    # Whether the host can lend QAT (placement.HOST_TRAIT) is published by
    # the QAT device manager alone.
    return traits


def destination_from_traits(traits: Optional[Iterable[str]],
                            ) -> datamodel.DestinationCaps:
    """Destination capabilities from its provider traits.

    ``None`` (traits unreadable) or a host without the planner's traits
    gives ``known=False``: only plans needing nothing from it are used.
    """
    if traits is None:
        return datamodel.DestinationCaps()
    traits = set(traits)
    if TRAIT_PLANNER not in traits:
        return datamodel.DestinationCaps()
    prefix = TRAIT_PREFIX + 'COMPRESS_'
    methods = frozenset(t[len(prefix):].lower() for t in traits
                        if t.startswith(prefix))
    return datamodel.DestinationCaps(
        known=True, methods=methods,
        multifd=TRAIT_MULTIFD in traits,
        postcopy_with_multifd=TRAIT_POSTCOPY_MULTIFD in traits,
        qat=placement.HOST_TRAIT in traits)
