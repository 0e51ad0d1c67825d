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
"""The words every layer shares: the page-compression methods and units.

Which methods exist, which of them run on multifd and which on a single
stream, their level ranges and the options that hold those levels are
defined here once, so that a policy, the options, the hints check, the
translation to libvirt and the commands cannot disagree about a method.
"""

from __future__ import annotations

#: Bytes in a MiB, the unit of every size and rate the planner uses.
MIB = 1024 * 1024

# -- the method vocabulary ---------------------------------------------------

#: Every page-compression method a plan can name, in the order operators
#: read them (``[qat_migration] allowed_methods`` and the hints check
#: against this).
METHODS = ('none', 'xbzrle', 'mt', 'zlib', 'zstd', 'qatzip')
#: Methods that run on the multifd (``VIR_MIGRATE_PARALLEL``) path.
MULTIFD_METHODS = frozenset({'zlib', 'zstd', 'qatzip'})
#: Methods that only run on a single migration stream.
SINGLE_STREAM_METHODS = frozenset({'xbzrle', 'mt'})
#: Every value QEMU's ``multifd-compression`` enum has had: ``none``,
#: ``zlib``, ``zstd`` (5.0), ``qpl``, ``uadk`` (9.1), ``qatzip`` (9.2). A
#: binary has only those it was built with (its ``query-qmp-schema``).
QEMU_MULTIFD_COMPRESSION = ('none', 'zlib', 'zstd', 'qpl', 'uadk', 'qatzip')
#: Valid compression levels per method (QEMU's ranges).
LEVEL_RANGES = {
    'mt': (0, 9),
    'zlib': (0, 9),
    'zstd': (0, 20),
    'qatzip': (1, 9),
}


def level_option(method: str) -> str:
    """The ``[qat_migration]`` option holding ``method``'s level."""
    return '%s_level' % method


def pow2_floor(mib: int) -> int:
    """The largest power of two not above ``mib`` (at least 1).

    QEMU wants an XBZRLE cache that is a power of two.
    """
    out = 1
    while out * 2 <= mib:
        out *= 2
    return out
