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
"""libvirt migration constants, carried here on purpose.

The ``libvirt`` module a process gets is not always the real binding: Nova's
fake libvirt (used by its tests) lacks the compression constants, and an old
binding lacks newer ones. Values are libvirt's stable ABI
(``include/libvirt/libvirt-domain.h``).
"""

from typing import Any

VIR_MIGRATE_LIVE = 1 << 0
VIR_MIGRATE_PEER2PEER = 1 << 1
VIR_MIGRATE_TUNNELLED = 1 << 2
VIR_MIGRATE_PERSIST_DEST = 1 << 3
VIR_MIGRATE_UNDEFINE_SOURCE = 1 << 4
VIR_MIGRATE_PAUSED = 1 << 5
VIR_MIGRATE_NON_SHARED_DISK = 1 << 6
VIR_MIGRATE_NON_SHARED_INC = 1 << 7
VIR_MIGRATE_CHANGE_PROTECTION = 1 << 8
VIR_MIGRATE_UNSAFE = 1 << 9
VIR_MIGRATE_OFFLINE = 1 << 10
VIR_MIGRATE_COMPRESSED = 1 << 11
VIR_MIGRATE_ABORT_ON_ERROR = 1 << 12
VIR_MIGRATE_AUTO_CONVERGE = 1 << 13
VIR_MIGRATE_RDMA_PIN_ALL = 1 << 14
VIR_MIGRATE_POSTCOPY = 1 << 15
VIR_MIGRATE_TLS = 1 << 16
VIR_MIGRATE_PARALLEL = 1 << 17
VIR_MIGRATE_NON_SHARED_SYNCHRONOUS_WRITES = 1 << 18
VIR_MIGRATE_POSTCOPY_RESUME = 1 << 19
VIR_MIGRATE_ZEROCOPY = 1 << 20

FLAG_NAMES = {
    value: name[len('VIR_MIGRATE_'):]
    for name, value in sorted(globals().items())
    if name.startswith('VIR_MIGRATE_') and isinstance(value, int)
}

#: The flags a plan decides; everything else comes from Nova's settings.
PLANNED_FLAGS = (VIR_MIGRATE_COMPRESSED | VIR_MIGRATE_AUTO_CONVERGE |
                 VIR_MIGRATE_POSTCOPY | VIR_MIGRATE_PARALLEL)

# migrateToURI3 typed parameter names (VIR_MIGRATE_PARAM_*).
PARAM_BANDWIDTH = 'bandwidth'
PARAM_COMPRESSION = 'compression'
PARAM_COMPRESSION_MT_LEVEL = 'compression.mt.level'
PARAM_COMPRESSION_MT_THREADS = 'compression.mt.threads'
PARAM_COMPRESSION_MT_DTHREADS = 'compression.mt.dthreads'
PARAM_COMPRESSION_XBZRLE_CACHE = 'compression.xbzrle.cache'
PARAM_COMPRESSION_ZLIB_LEVEL = 'compression.zlib.level'
PARAM_COMPRESSION_ZSTD_LEVEL = 'compression.zstd.level'
PARAM_PARALLEL_CONNECTIONS = 'parallel.connections'
PARAM_AUTO_CONVERGE_INITIAL = 'auto_converge.initial'
PARAM_AUTO_CONVERGE_INCREMENT = 'auto_converge.increment'
PARAM_DESTINATION_XML = 'destination_xml'

LEVEL_PARAMS = {
    'mt': PARAM_COMPRESSION_MT_LEVEL,
    'zlib': PARAM_COMPRESSION_ZLIB_LEVEL,
    'zstd': PARAM_COMPRESSION_ZSTD_LEVEL,
}

# libvirt error codes that mean "this call was refused before anything ran"
# (raised while libvirt validates the call's arguments). libvirt's values.
VIR_ERR_INVALID_ARG = 8
VIR_ERR_CONFIG_UNSUPPORTED = 67
VIR_ERR_OPERATION_UNSUPPORTED = 84
VIR_ERR_ARGUMENT_UNSUPPORTED = 74
#: Those codes by name. The loaded module's numbers win where it has the
#: name: Nova's fake libvirt numbers some of them differently.
REFUSED_ERRORS = {'VIR_ERR_INVALID_ARG': VIR_ERR_INVALID_ARG,
                  'VIR_ERR_CONFIG_UNSUPPORTED': VIR_ERR_CONFIG_UNSUPPORTED,
                  'VIR_ERR_OPERATION_UNSUPPORTED':
                      VIR_ERR_OPERATION_UNSUPPORTED,
                  'VIR_ERR_ARGUMENT_UNSUPPORTED': VIR_ERR_ARGUMENT_UNSUPPORTED}


def refused_error_codes(libvirt_module: Any) -> frozenset:
    """The codes of :data:`REFUSED_ERRORS` as ``libvirt_module`` has them."""
    return frozenset(getattr(libvirt_module, name, value)
                     for name, value in REFUSED_ERRORS.items())


def flag_names(flags: int) -> list:
    """Names of the set flags, lowest bit first (unknown bits in hex)."""
    names = []
    for bit in range(0, 32):
        value = 1 << bit
        if flags & value:
            names.append(FLAG_NAMES.get(value, hex(value)))
    return names
