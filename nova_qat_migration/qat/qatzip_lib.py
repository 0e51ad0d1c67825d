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
"""Finding and loading QATzip (cffi, ABI mode) for :mod:`.qatzip`.

Finding the library: the ``[qat_migration] qatzip_library`` option (a
soname or a full path), then the soname through the normal dynamic loader
search (``LD_LIBRARY_PATH``, ldconfig cache -- Debian 13 installs
``libqatzip3`` into the system library directory), then the directories in
``$QATZIP_LIBDIR`` and :data:`SEARCH_DIRS` (where ``tools/setup-host.sh``
unpacks the Debian 13 packages on Debian 12). The unpacked libraries carry
no RUNPATH, so when loading from a directory its ``libusdm.so.0`` and
``libqat.so.4`` are opened first by full path with ``RTLD_GLOBAL``; the
loader then satisfies ``libqatzip.so.3``'s dependencies by soname from the
already-loaded objects, and no ``LD_LIBRARY_PATH`` is needed.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Sequence

from nova_qat_migration import exception

SONAME = 'libqatzip.so.3'
#: Libraries libqatzip.so.3 needs that are not in a stock Debian 12.
DEPENDENCIES = ('libusdm.so.0', 'libqat.so.4')
#: Where the QATzip packages may live when not in the loader's path.
SEARCH_DIRS = (
    '/opt/nova-qat-migration/qatzip/usr/lib/x86_64-linux-gnu',
    '/usr/local/lib',
    '/usr/local/lib64',
)

CDEF = """
typedef struct QzSession_S {
    signed long int hw_session_stat;
    int thd_sess_stat;
    void *internal;
    unsigned long total_in;
    unsigned long total_out;
} QzSession_T;
int qzInit(QzSession_T *sess, unsigned char sw_backup);
int qzSetupSession(QzSession_T *sess, void *params);
int qzCompressExt(QzSession_T *sess, const unsigned char *src,
                  unsigned int *src_len, unsigned char *dest,
                  unsigned int *dest_len, unsigned int last,
                  uint64_t *ext_rc);
int qzDecompress(QzSession_T *sess, const unsigned char *src,
                 unsigned int *src_len, unsigned char *dest,
                 unsigned int *dest_len);
int qzTeardownSession(QzSession_T *sess);
int qzClose(QzSession_T *sess);
unsigned int qzMaxCompressedLength(unsigned int src_sz, QzSession_T *sess);
void qzSetLogLevel(int level);
typedef struct QzStatus_S {
    unsigned short int qat_hw_count;
    unsigned char qat_service_init;
    unsigned char qat_mem_drvr;
    unsigned char qat_instance_attach;
    unsigned long int memory_alloced;
    unsigned char using_huge_pages;
    signed long int hw_session_status;
    unsigned char algo_sw[255];
    unsigned char algo_hw[255];
} QzStatus_T;
int qzGetStatus(QzSession_T *sess, QzStatus_T *status);
"""


_LOAD_LOCK = threading.Lock()
_LOADED: dict[str, tuple[Any, Any, str]] = {}


def _candidates(library: str,
                extra_dirs: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``(path, dependencies to preload)`` in the order to try them."""
    if '/' in library:
        d = os.path.dirname(library)
        return [(library, [os.path.join(d, dep) for dep in DEPENDENCIES])]
    out: list[tuple[str, list[str]]] = [(library, [])]
    dirs = []
    env = os.environ.get('QATZIP_LIBDIR')
    if env:
        dirs.extend(env.split(':'))
    dirs.extend(extra_dirs)
    dirs.extend(SEARCH_DIRS)
    for d in dirs:
        path = os.path.join(d, library)
        if d and os.path.exists(path):
            out.append((path, [os.path.join(d, dep) for dep in DEPENDENCIES]))
    return out


def load(library: str = SONAME,
         extra_dirs: Sequence[str] = ()) -> tuple[Any, Any, str]:
    """``(ffi, lib, path)`` for QATzip; cached per name.

    :raises QATzipMissing: cffi is not installed or no candidate loads.
    """
    with _LOAD_LOCK:
        key = '%s|%s' % (library, ':'.join(extra_dirs))
        if key in _LOADED:
            return _LOADED[key]
        try:
            import cffi
        except ImportError as exc:
            raise exception.QATzipMissing('cffi is not installed (%s)' % exc)
        ffi = cffi.FFI()
        ffi.cdef(CDEF)
        errors = []
        for path, deps in _candidates(library, extra_dirs):
            try:
                for dep in deps:
                    if os.path.exists(dep):
                        # Kept alive by the loader (RTLD_GLOBAL, never
                        # closed): they satisfy libqatzip's DT_NEEDED.
                        ffi.dlopen(dep, ffi.RTLD_NOW | ffi.RTLD_GLOBAL)
                lib = ffi.dlopen(path, ffi.RTLD_NOW)
                # Touch one symbol: a wrong library fails here, not later.
                lib.qzInit
            except (OSError, AttributeError) as exc:
                errors.append('%s: %s' % (path, exc))
                continue
            _LOADED[key] = (ffi, lib, path)
            return _LOADED[key]
        raise exception.QATzipMissing('; '.join(errors) or
                                      'no candidate for %s' % library)
