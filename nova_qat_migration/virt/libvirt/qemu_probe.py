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
"""Asking a QEMU over QMP, and reading what it answers.

Two ways to ask: run a binary with QMP on its stdio (:func:`_qmp_exchange`,
for a QEMU in nova-compute's own filesystem and for ``nova-qat-migration
status``), or send a command to a running domain's QEMU through libvirt's
QEMU monitor (:func:`ask_domain`, wherever that QEMU lives). Either way
the replies are read by the same checks: QEMU or libvirt may answer
anything, and an answer that is not QMP's success reply to the question
asked is a :class:`QMPReplyError`, never a crash.

Which QEMU to ask, in which order, and what the answer means for the host
is :mod:`.capabilities`' business; this module only asks and reads.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any

from oslo_log import log as logging

from nova_qat_migration import exception
from nova_qat_migration.virt.libvirt import passthrough


LOG = logging.getLogger(__name__)

DEFAULT_QEMU = '/usr/bin/qemu-system-x86_64'
PROBE_TIMEOUT = 20.0


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


class QMPReplyError(exception.QATMigrationError, ValueError):
    """A QMP reply that does not answer the question asked."""


def _clip(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + '...'


def _qmp_return(reply: Any, command: str) -> Any:
    """The ``return`` member of QMP's success reply to ``command``.

    :raises QMPReplyError: for an error reply or anything but an object
        with ``return``.
    """
    if not isinstance(reply, dict):
        raise QMPReplyError('%s: not a QMP reply object: %s'
                            % (command, _clip(reply)))
    if 'error' in reply:
        error = reply['error']
        desc = error.get('desc') if isinstance(error, dict) else None
        raise QMPReplyError('%s: %s' % (command, desc or _clip(error)))
    if 'return' not in reply:
        raise QMPReplyError('%s: reply without "return": %s'
                            % (command, _clip(reply)))
    return reply['return']


def qemu_version_from_reply(version: Any) -> tuple[int, int, int]:
    """``(major, minor, micro)`` from a ``query-version`` return."""
    try:
        qemu = version['qemu']
        return (int(qemu['major']), int(qemu['minor']), int(qemu['micro']))
    except (KeyError, TypeError, ValueError) as exc:
        raise QMPReplyError('query-version: unexpected return %s (%s)'
                            % (_clip(version), exc))


def multifd_methods_from_schema(schema: list) -> frozenset[str]:
    """Values of ``multifd-compression`` in a ``query-qmp-schema`` reply.

    Empty for a QEMU without multifd compression (before 5.0).

    :raises QMPReplyError: when ``schema`` is not a QMP schema.
    """
    if not isinstance(schema, list) or not schema:
        raise QMPReplyError('query-qmp-schema: not a schema: %s'
                            % _clip(schema))
    try:
        by_name = {entry['name']: entry for entry in schema}
        command = by_name.get('migrate-set-parameters')
        if not command:
            return frozenset()
        args = by_name.get(command.get('arg-type'), {})
        for member in args.get('members', []):
            if member.get('name') == 'multifd-compression':
                enum = by_name.get(member.get('type'), {})
                return frozenset(str(v) for v in enum.get('values', []))
    except (KeyError, TypeError, AttributeError) as exc:
        raise QMPReplyError('query-qmp-schema: malformed schema (%s)' % exc)
    return frozenset()


def probe_multifd_methods(binary: str = DEFAULT_QEMU) -> frozenset[str]:
    """Multifd compression methods ``binary`` accepts; empty if unknown."""
    try:
        reply, = _qmp_exchange(binary, [{'execute': 'query-qmp-schema'}])
        return multifd_methods_from_schema(
            _qmp_return(reply, 'query-qmp-schema'))
    except (OSError, ValueError, TimeoutError, EOFError) as exc:
        LOG.warning('Could not probe the multifd compression methods of '
                    '%(bin)s: %(exc)s; only libvirt-version rules apply.',
                    {'bin': binary, 'exc': exc})
        return frozenset()


def query_binary(binary: str) -> tuple[tuple[int, int, int], frozenset[str]]:
    """``(QEMU version, multifd compression methods)`` of ``binary``.

    One run answers both (``query-version``, then ``query-qmp-schema``).

    :raises OSError, ValueError, TimeoutError, EOFError: when the binary
        cannot be run or does not answer both (a :class:`QMPReplyError` is
        a ``ValueError``).
    """
    version_reply, schema_reply = _qmp_exchange(
        binary, [{'execute': 'query-version'},
                 {'execute': 'query-qmp-schema'}])
    version = qemu_version_from_reply(
        _qmp_return(version_reply, 'query-version'))
    methods = multifd_methods_from_schema(
        _qmp_return(schema_reply, 'query-qmp-schema'))
    return version, methods


def ask_domain(domain: Any, command: str) -> Any:
    """``command``'s return from ``domain``'s QEMU, through libvirt.

    :raises QMPReplyError: when libvirt or QEMU fails, or the reply is not
        QMP's success reply.
    """
    try:
        # The one sender of QMP through libvirt (and the tests' seam).
        reply = passthrough._monitor(domain,
                                     json.dumps({'execute': command}))
    except Exception as exc:  # libvirtError, no binding
        raise QMPReplyError('%s: %s' % (command, exc))
    try:
        answer = json.loads(reply)
    except (TypeError, ValueError, RecursionError):
        raise QMPReplyError('%s: malformed QMP reply %s'
                            % (command, _clip(reply)))
    return _qmp_return(answer, command)
