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
"""Where the lab finds the QEMU built with QATzip.

``tools/build-qemu-qatzip.sh`` builds the distro's QEMU version with
``--enable-qatzip`` into its own prefix (default
``/opt/nova-qat-migration/qemu-qatzip``) and writes a stamp there once the
build passed its checks. Its ``bin`` directory holds ``qemu-system-x86_64``
and nothing else, so putting it first on a libvirt daemon's ``PATH`` (libvirt
looks emulators up on ``PATH``) swaps the emulator and nothing more. The
binary finds QATzip through its rpath and the system firmware by its
configured firmware path: no ``LD_LIBRARY_PATH`` needed.

``NQM_QEMU_QATZIP`` overrides the location: a prefix directory (with
``bin/qemu-system-x86_64``), a ``bin`` directory, or the binary itself.

The lab's hosts run Debian's QEMU (:data:`DISTRO`) unless asked for
:data:`QATZIP` (``NovaLab(qemu='qatzip')``, ``--qemu qatzip``): then both
libvirt daemons get this ``bin`` directory first on their ``PATH``
(:func:`daemon_path`) and nothing under ``/usr`` changes. No QAT hardware
exists on the machines the lab runs on: QEMU's ``qatzip`` method
initialises QATzip with its software fallback on, so the real method runs,
compressing on the CPU.

The project's test command (``tools/run-tests.sh``) builds it before the
lab suite and sets ``NQM_REQUIRE_QATZIP_QEMU=1``; with that (or ``CI=true``)
the tests that need it fail instead of skipping when it is missing
(:func:`required`), so a broken build cannot pass as a skip.
"""

from __future__ import annotations

import os
import re
import subprocess
from typing import Optional

ENV = 'NQM_QEMU_QATZIP'
DEFAULT_PREFIX = '/opt/nova-qat-migration/qemu-qatzip'
BINARY = 'qemu-system-x86_64'
#: Written last by the build script, only after its checks passed.
STAMP = '.build-stamp'
BUILD_SCRIPT = 'tools/build-qemu-qatzip.sh'
#: Set (``1``) by ``tools/run-tests.sh``: the QEMU with QATzip must be there.
REQUIRE_ENV = 'NQM_REQUIRE_QATZIP_QEMU'

#: The lab's QEMU choices: Debian's, or the build with QATzip.
DISTRO = 'distro'
QATZIP = 'qatzip'
CHOICES = (DISTRO, QATZIP)
#: Debian's QEMU, the emulator libvirt finds on a default ``PATH``.
DISTRO_EMULATOR = '/usr/bin/qemu-system-x86_64'
#: A ``PATH`` for a daemon started without one.
DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'


class NotBuilt(Exception):
    """The QEMU with QATzip was asked for and is not built here."""


def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def qatzip_qemu_binary() -> Optional[str]:
    """Path of the built ``qemu-system-x86_64``, or None if not built.

    With ``NQM_QEMU_QATZIP`` set, only that location is considered (the
    operator said where it is); otherwise the default prefix, and only
    with the build's stamp (a build that failed or is still installing
    has none).
    """
    where = os.environ.get(ENV)
    if where:
        for path in (os.path.join(where, 'bin', BINARY),
                     os.path.join(where, BINARY), where):
            if _executable(path):
                return os.path.abspath(path)
        return None
    path = os.path.join(DEFAULT_PREFIX, 'bin', BINARY)
    if _executable(path) and os.path.isfile(
            os.path.join(DEFAULT_PREFIX, STAMP)):
        return path
    return None


def qatzip_qemu_bindir() -> Optional[str]:
    """The directory of the built QEMU (for a ``PATH``), or None."""
    binary = qatzip_qemu_binary()
    return os.path.dirname(binary) if binary else None


def missing_reason() -> str:
    """Why :func:`qatzip_qemu_binary` found nothing, and how to build it."""
    where = os.environ.get(ENV)
    looked = ('$%s=%s holds no %s' % (ENV, where, BINARY) if where else
              'no %s/bin/%s with its build stamp' % (DEFAULT_PREFIX, BINARY))
    return ('QEMU with QATzip not available: %s; run %s as root (about 7 '
            'minutes on 2 cores, once per machine)' % (looked, BUILD_SCRIPT))


def required(environ: Optional[dict] = None) -> bool:
    """Whether a missing QEMU with QATzip is a failure, not a skip.

    ``NQM_REQUIRE_QATZIP_QEMU`` decides when set (``0``/``false``/``no``:
    not required); otherwise ``CI=true`` requires it (the test command
    builds it on every CI machine).
    """
    environ = os.environ if environ is None else environ
    value = environ.get(REQUIRE_ENV, '').strip().lower()
    if value:
        return value not in ('0', 'false', 'no')
    return environ.get('CI', '').strip().lower() == 'true'


def required_message(reason: str) -> str:
    """The failure text of a test that needs the build and cannot run."""
    return ('not skipped, the QEMU with QATzip is required here ($%s=%r, '
            '$CI=%r; a skip would hide a failed build): %s'
            % (REQUIRE_ENV, os.environ.get(REQUIRE_ENV, ''),
               os.environ.get('CI', ''), reason))


def require_qatzip_qemu() -> str:
    """The built binary's path.

    :raises NotBuilt: naming :data:`BUILD_SCRIPT` when it is not built.
    """
    binary = qatzip_qemu_binary()
    if binary is None:
        raise NotBuilt(missing_reason())
    return binary


def emulator(choice: str) -> str:
    """The ``qemu-system-x86_64`` the lab's hosts run for ``choice``.

    :raises ValueError: for a choice not in :data:`CHOICES`.
    :raises NotBuilt: for :data:`QATZIP` when it is not built.
    """
    if choice == DISTRO:
        return DISTRO_EMULATOR
    if choice == QATZIP:
        return require_qatzip_qemu()
    raise ValueError('unknown QEMU %r (choose from %s)'
                     % (choice, ', '.join(CHOICES)))


def daemon_path(emulator_path: str, path: Optional[str] = None) -> str:
    """``PATH`` for a libvirt daemon that must find ``emulator_path``
    first: its directory ahead of ``path`` (default: this process's
    ``PATH``). The distro emulator needs no change.
    """
    path = path if path is not None else os.environ.get('PATH',
                                                         DEFAULT_PATH)
    if emulator_path == DISTRO_EMULATOR:
        return path
    bindir = os.path.dirname(emulator_path)
    rest = [p for p in path.split(os.pathsep) if p and p != bindir]
    return os.pathsep.join([bindir] + rest)


def qemu_version(binary: str, env: Optional[dict] = None,
                 ) -> Optional[str]:
    """``10.0.2`` from ``binary --version``; None if it does not run."""
    try:
        out = subprocess.run([binary, '--version'], capture_output=True,
                             text=True, timeout=30, env=env).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r'QEMU emulator version (\d+(?:\.\d+)*)', out)
    return found.group(1) if found else None
