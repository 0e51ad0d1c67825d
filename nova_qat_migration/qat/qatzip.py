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
"""A minimal QATzip binding (cffi, ABI mode) and the host's self-test.

QATzip is what QEMU's ``qatzip`` multifd method compresses with, so a
round trip through the same library tells the adaptive policy what this
host really gets: whether the hardware path ran (or QATzip's software
fallback), the throughput, and the ratio on memory-like data.

ABI mode (``ffi.dlopen``) needs no compiler or headers on the compute host;
the declarations below follow ``qatzip.h`` of QATzip 1.x (the session
struct's first member is a ``signed long``). Nothing is loaded at import
time, and ``cffi`` itself is imported lazily: a host without cffi or QATzip
gets a result whose status is "QATzip not installed", never an ImportError
inside nova-compute.

Finding and loading the library is :mod:`.qatzip_lib`'s.

The tests exercise QATzip's software path (no QAT hardware needed); the
hardware/software decision follows QATzip's documented status codes, its
``QZ_SW_EXECUTION`` bit and ``qzGetStatus`` (``QzStatus_T``: a session
that ran on hardware is attached to a QAT instance and its
``hw_session_status`` is ``QZ_OK``). Only positive evidence of all of them
makes a self-test ``hardware``: QATzip falls back to software silently.
"""

from __future__ import annotations

import dataclasses
import random
import time
from typing import Any, Optional, Sequence

from oslo_log import log as logging

from nova_qat_migration import exception
from nova_qat_migration.qat import qatzip_lib

LOG = logging.getLogger(__name__)

#: Loading the library, in :mod:`.qatzip_lib`; importable from here.
SONAME = qatzip_lib.SONAME
DEPENDENCIES = qatzip_lib.DEPENDENCIES
SEARCH_DIRS = qatzip_lib.SEARCH_DIRS
CDEF = qatzip_lib.CDEF
_candidates = qatzip_lib._candidates
load = qatzip_lib.load

STATUS_OK = 'ok'
STATUS_MISSING = 'QATzip not installed'
STATUS_FAILED = 'QATzip self-test failed'

# Return codes (qatzip.h).
QZ_OK = 0
QZ_DUPLICATE = 1
QZ_FORCE_SW = 2
QZ_NO_HW = 11
QZ_NO_MDRV = 12
QZ_NO_INST_ATTACH = 13
QZ_LOW_MEM = 14
#: Codes meaning "works, but in software".
SOFTWARE_CODES = frozenset({QZ_FORCE_SW, QZ_NO_HW, QZ_NO_MDRV,
                            QZ_NO_INST_ATTACH, QZ_LOW_MEM})
QZ_SW_EXECUTION_MASK = 1 << 4
RC_NAMES = {
    0: 'QZ_OK', 1: 'QZ_DUPLICATE', 2: 'QZ_FORCE_SW', -1: 'QZ_PARAMS',
    -2: 'QZ_FAIL', -3: 'QZ_BUF_ERROR', -4: 'QZ_DATA_ERROR',
    -5: 'QZ_TIMEOUT', 11: 'QZ_NO_HW', 12: 'QZ_NO_MDRV',
    13: 'QZ_NO_INST_ATTACH', 14: 'QZ_LOW_MEM', -101: 'QZ_NOSW_NO_HW',
    -102: 'QZ_NOSW_NO_MDRV', -103: 'QZ_NOSW_NO_INST_ATTACH',
    -104: 'QZ_NOSW_LOW_MEM', -105: 'QZ_NO_SW_AVAIL',
}


def rc_name(rc: Optional[int]) -> str:
    if rc is None:
        return '-'
    return '%s(%d)' % (RC_NAMES.get(rc, 'rc'), rc)


#: Defined in :mod:`nova_qat_migration.exception`; importable from here.
QATzipError = exception.QATzipError
QATzipMissing = exception.QATzipMissing


def sample_buffer(size: int, seed: int = 4242) -> bytes:
    """Memory-like sample: zero, repetitive and random 4 KiB pages.

    Guest RAM is neither text nor noise: a share of pages is zero, many
    hold structured data, some hold compressed or encrypted data. The mix
    (30 % zero, 45 % structured, 25 % random) is fixed and seeded so runs
    are comparable; ratios measured on it are indicative, not a promise.
    """
    rng = random.Random(seed)
    page = 4096
    words = [b'%08x' % rng.getrandbits(32) for _ in range(64)]
    out = bytearray()
    while len(out) < size:
        pick = rng.random()
        if pick < 0.30:
            out += bytes(page)
        elif pick < 0.75:
            chunk = bytearray()
            while len(chunk) < page:
                chunk += words[rng.randrange(len(words))]
                chunk += b'\0' * rng.randrange(0, 24)
            out += chunk[:page]
        else:
            out += rng.randbytes(page)
    return bytes(out[:size])


@dataclasses.dataclass(frozen=True)
class SelfTestResult:
    """What one QATzip round trip showed.

    :param status: :data:`STATUS_OK`, :data:`STATUS_MISSING` or
        :data:`STATUS_FAILED`.
    :param engine: ``hardware``, ``software`` or ``none``.
    :param ratio: compressed size / original size (smaller is better),
        as :class:`~nova_qat_migration.datamodel.QATState` expects.
    :param compress_mbps: MiB/s of original data compressed.
    """

    status: str
    library: Optional[str] = None
    engine: str = 'none'
    init_rc: Optional[int] = None
    session_status: Optional[int] = None
    ext_rc: Optional[int] = None
    #: From ``qzGetStatus`` after the round trip (None: not available):
    #: QAT devices QATzip found on the PCI bus, and whether the session
    #: was attached to a hardware instance.
    qat_hw_count: Optional[int] = None
    instance_attached: Optional[bool] = None
    input_bytes: int = 0
    compressed_bytes: int = 0
    ratio: float = 0.0
    compress_mbps: float = 0.0
    decompress_mbps: float = 0.0
    roundtrip_ok: bool = False
    message: str = ''

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    @property
    def hardware(self) -> bool:
        return self.ok and self.engine == 'hardware'

    def describe(self) -> str:
        if not self.ok:
            return '%s: %s' % (self.status, self.message)
        return ('QATzip %s: %.1f MiB/s compress, %.1f MiB/s decompress, '
                'ratio %.3f on %d KiB (%s)'
                % (self.engine, self.compress_mbps, self.decompress_mbps,
                   self.ratio, self.input_bytes // 1024, self.library))

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data['hardware'] = self.hardware
        return data


class Session:
    """One QATzip session (``qzInit`` with software fallback + defaults).

    QATzip binds sessions to the calling thread's instance; use a session
    from the thread that opened it and close it there.
    """

    def __init__(self, ffi: Any, lib: Any, sw_backup: bool = True,
                 quiet: bool = True) -> None:
        self.ffi = ffi
        self.lib = lib
        if quiet:
            try:
                # LOG_NONE: QATzip otherwise prints "no hardware" errors
                # on every init of a host without QAT.
                lib.qzSetLogLevel(0)
            except AttributeError:
                pass
        self.sess = ffi.new('QzSession_T *')
        self.init_rc = lib.qzInit(self.sess, 1 if sw_backup else 0)
        if self.init_rc < 0:
            raise QATzipError('qzInit', self.init_rc, rc_name(self.init_rc))
        rc = lib.qzSetupSession(self.sess, ffi.NULL)
        if rc < 0:
            lib.qzClose(self.sess)
            raise QATzipError('qzSetupSession', rc, rc_name(rc))
        self.setup_rc = rc
        self.last_ext_rc = 0

    @property
    def session_status(self) -> int:
        return int(self.sess.hw_session_stat)

    def status(self) -> Optional[dict]:
        """``qzGetStatus`` of this session, None if it cannot be read.

        A library without the call (or refusing it) gives no evidence
        either way; :attr:`software` then rests on the return codes.
        """
        try:
            get_status = self.lib.qzGetStatus
        except AttributeError:
            return None
        st = self.ffi.new('QzStatus_T *')
        if get_status(self.sess, st) != QZ_OK:
            return None
        return {'qat_hw_count': int(st.qat_hw_count),
                'instance_attached': bool(st.qat_instance_attach),
                'hw_session_status': int(st.hw_session_status)}

    @property
    def software(self) -> bool:
        """Whether the software fallback is (or was last) doing the work.

        Any sign of software counts: a software return code of
        ``qzInit``/``qzSetupSession``, the session's status, the last
        compression's ``QZ_SW_EXECUTION`` bit, or ``qzGetStatus``
        reporting no QAT device, no attached instance or a session status
        other than ``QZ_OK``.
        """
        return self.software_given(self.status())

    def software_given(self, status: Optional[dict]) -> bool:
        """:attr:`software`, with ``qzGetStatus`` already read (``status``,
        None when it could not be).
        """
        if (self.init_rc in SOFTWARE_CODES
                or self.setup_rc in SOFTWARE_CODES
                or self.session_status in SOFTWARE_CODES
                or bool(self.last_ext_rc & QZ_SW_EXECUTION_MASK)):
            return True
        if status is None:
            return False
        return (status['qat_hw_count'] == 0
                or not status['instance_attached']
                or status['hw_session_status'] != QZ_OK)

    def max_compressed(self, size: int) -> int:
        bound = int(self.lib.qzMaxCompressedLength(size, self.sess))
        # Never trust a bound below a safe margin of our own.
        return max(bound, size + size // 8 + 65536)

    def compress(self, data: bytes) -> bytes:
        ffi = self.ffi
        cap = self.max_compressed(len(data))
        dst = ffi.new('unsigned char[]', cap)
        src_len = ffi.new('unsigned int *', len(data))
        dst_len = ffi.new('unsigned int *', cap)
        ext = ffi.new('uint64_t *', 0)
        rc = self.lib.qzCompressExt(self.sess, data, src_len, dst, dst_len,
                                    1, ext)
        self.last_ext_rc = int(ext[0])
        if rc != QZ_OK:
            raise QATzipError('qzCompress', rc, rc_name(rc))
        if src_len[0] != len(data):
            raise QATzipError('qzCompress (partial input)', -3, rc_name(-3))
        return bytes(ffi.buffer(dst, dst_len[0]))

    def decompress(self, data: bytes, original_size: int) -> bytes:
        ffi = self.ffi
        dst = ffi.new('unsigned char[]', max(original_size, 1))
        src_len = ffi.new('unsigned int *', len(data))
        dst_len = ffi.new('unsigned int *', original_size)
        rc = self.lib.qzDecompress(self.sess, data, src_len, dst, dst_len)
        if rc != QZ_OK:
            raise QATzipError('qzDecompress', rc, rc_name(rc))
        return bytes(ffi.buffer(dst, dst_len[0]))

    def close(self) -> None:
        if self.sess is not None:
            self.lib.qzTeardownSession(self.sess)
            self.lib.qzClose(self.sess)
            self.sess = None

    def __enter__(self) -> 'Session':
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class QATzip:
    """The QATzip library named by ``[qat_migration] qatzip_library``."""

    def __init__(self, library: str = SONAME,
                 extra_dirs: Sequence[str] = ()) -> None:
        self.library = library
        self.extra_dirs = tuple(extra_dirs)
        self.error: Optional[str] = None
        self.path: Optional[str] = None
        self._ffi: Any = None
        self._lib: Any = None

    def available(self) -> bool:
        """Load the library if not yet done; False (and ``error``) if not."""
        if self._lib is not None:
            return True
        try:
            self._ffi, self._lib, self.path = load(self.library,
                                                   self.extra_dirs)
        except QATzipMissing as exc:
            self.error = str(exc)
            return False
        return True

    def session(self, sw_backup: bool = True) -> Session:
        if not self.available():
            raise QATzipMissing(self.error)
        return Session(self._ffi, self._lib, sw_backup=sw_backup)

    def selftest(self, size: int = 4 * 1024 * 1024,
                 data: Optional[bytes] = None) -> SelfTestResult:
        """Compress and decompress a sample; never raises.

        :param size: bytes of :func:`sample_buffer` to use (if no ``data``).
        """
        if not self.available():
            return SelfTestResult(status=STATUS_MISSING, message=self.error
                                  or 'library not found')
        if data is None:
            data = sample_buffer(size)
        try:
            with self.session() as s:
                t0 = time.perf_counter()
                packed = s.compress(data)
                t1 = time.perf_counter()
                unpacked = s.decompress(packed, len(data))
                t2 = time.perf_counter()
                found = s.status()
                engine = 'software' if s.software_given(found) \
                    else 'hardware'
                init_rc, stat, ext = (s.init_rc, s.session_status,
                                      s.last_ext_rc)
                status = found or {}
        except (QATzipError, MemoryError, OverflowError) as exc:
            LOG.warning('QATzip self-test failed: %s', exc)
            return SelfTestResult(status=STATUS_FAILED, library=self.path,
                                  message=str(exc))
        same = unpacked == data
        mib = len(data) / (1024.0 * 1024.0)
        return SelfTestResult(
            status=STATUS_OK if same else STATUS_FAILED,
            library=self.path, engine=engine, init_rc=init_rc,
            session_status=stat, ext_rc=ext,
            qat_hw_count=status.get('qat_hw_count'),
            instance_attached=status.get('instance_attached'),
            input_bytes=len(data), compressed_bytes=len(packed),
            ratio=round(len(packed) / len(data), 4) if data else 0.0,
            compress_mbps=round(mib / max(t1 - t0, 1e-9), 1),
            decompress_mbps=round(mib / max(t2 - t1, 1e-9), 1),
            roundtrip_ok=same,
            message='' if same else 'decompressed data differs')


def selftest(library: str = SONAME,
             size: int = 4 * 1024 * 1024) -> SelfTestResult:
    return QATzip(library).selftest(size)
