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
