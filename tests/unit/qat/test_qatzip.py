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
"""The QATzip binding against the real libqatzip.so.3.

There is no QAT hardware in CI: these runs use QATzip's own software
fallback, which is the library's real code path (deflate in gzip members),
not a mock. ``tools/setup-host.sh`` installs the library (apt on Debian 13,
unpacked Debian 13 packages on Debian 12); the binding finds either.
"""

import gzip
import os
import subprocess
import sys
from unittest import mock

import fixtures
import testtools

from nova_qat_migration.qat import qatzip

MISSING = '/nonexistent/lib/libqatzip.so.3'


class QuietStderrFD(fixtures.Fixture):
    """Silence C-level writes to fd 2 (libusdm prints "Cannot open
    /dev/vfio" on a host without QAT). Test processes are single-test at a
    time, so swapping the descriptor is safe here (not in nova-compute).
    """

    def _setUp(self):
        saved = os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)

        def restore():
            os.dup2(saved, 2)
            os.close(saved)
        self.addCleanup(restore)


class TestQATzipLibrary(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(QuietStderrFD())
        self.qz = qatzip.QATzip()
        if not self.qz.available():
            self.fail('QATzip is not installed (run tools/setup-host.sh): '
                      '%s' % self.qz.error)

    def test_round_trip_byte_for_byte(self):
        samples = [qatzip.sample_buffer(3 * 1024 * 1024 + 17),
                   os.urandom(256 * 1024),       # incompressible
                   bytes(1024 * 1024),           # all zero
                   b'x' * 1000]                  # below the HW threshold
        with self.qz.session() as s:
            for data in samples:
                packed = s.compress(data)
                self.assertEqual(data, s.decompress(packed, len(data)))
                # The output is standard gzip: anything can read it back.
                self.assertEqual(data, gzip.decompress(packed))
        self.assertLess(len(gzip.compress(b'')), 100)

    def test_software_path_reported(self):
        # No QAT device here: QATzip falls back to software and says so.
        with self.qz.session() as s:
            s.compress(qatzip.sample_buffer(64 * 1024))
            self.assertTrue(s.software)
            self.assertIn(s.session_status, qatzip.SOFTWARE_CODES)

    def test_status_shows_no_hardware(self):
        # qzGetStatus of the real library on a host without QAT: no
        # device, no instance attached, the session in software.
        with self.qz.session() as s:
            s.compress(qatzip.sample_buffer(64 * 1024))
            status = s.status()
        self.assertEqual(0, status['qat_hw_count'])
        self.assertFalse(status['instance_attached'])
        result = self.qz.selftest(64 * 1024)
        self.assertEqual((0, False),
                         (result.qat_hw_count, result.instance_attached))

    def test_no_software_backup_fails_without_hardware(self):
        if not self.qz.session().software:
            self.skipTest('QAT hardware present')
        e = self.assertRaises(qatzip.QATzipError, self.qz.session,
                              sw_backup=False)
        self.assertEqual(-101, e.rc)
        self.assertIn('QZ_NOSW_NO_HW', str(e))
        # And a later session with the fallback still works.
        with self.qz.session() as s:
            self.assertEqual(b'abc' * 100,
                             s.decompress(s.compress(b'abc' * 100), 300))

    def test_selftest(self):
        result = self.qz.selftest(2 * 1024 * 1024)
        self.assertTrue(result.ok, result.message)
        self.assertEqual(qatzip.STATUS_OK, result.status)
        self.assertEqual('software', result.engine)
        self.assertFalse(result.hardware)
        self.assertTrue(result.roundtrip_ok)
        self.assertEqual(2 * 1024 * 1024, result.input_bytes)
        self.assertGreater(result.ratio, 0.1)
        self.assertLess(result.ratio, 0.8)
        self.assertGreater(result.compress_mbps, 1.0)
        self.assertGreater(result.decompress_mbps, 1.0)
        self.assertIn('QATzip software', result.describe())
        self.assertTrue(result.library.endswith('libqatzip.so.3'))
        self.assertEqual('software', result.to_dict()['engine'])

    def _full_path(self):
        if '/' in self.qz.path:
            return self.qz.path
        for path, _deps in qatzip._candidates(qatzip.SONAME, ()):
            if '/' in path:
                return path
        self.skipTest('QATzip only reachable by soname (system library)')

    def test_explicit_full_path(self):
        path = self._full_path()
        result = qatzip.QATzip(path).selftest(64 * 1024)
        self.assertTrue(result.ok)
        self.assertEqual(path, result.library)

    def test_full_path_without_ld_library_path(self):
        # The unpacked Debian 13 libraries have no RUNPATH: loading by
        # full path must work by preloading libusdm/libqat (RTLD_GLOBAL),
        # with no LD_LIBRARY_PATH in the environment.
        path = self._full_path()
        env = {k: v for k, v in os.environ.items()
               if k not in ('LD_LIBRARY_PATH', 'QATZIP_LIBDIR')}
        code = ('import sys; from nova_qat_migration.qat import qatzip; '
                'r = qatzip.QATzip(sys.argv[1]).selftest(65536); '
                'print(r.status, r.engine, r.roundtrip_ok)')
        out = subprocess.run([sys.executable, '-c', code, path], env=env,
                             check=True, capture_output=True, text=True)
        self.assertEqual('ok software True', out.stdout.strip())

    def test_sample_buffer_is_deterministic(self):
        self.assertEqual(qatzip.sample_buffer(100000),
                         qatzip.sample_buffer(100000))
        self.assertEqual(12345, len(qatzip.sample_buffer(12345)))


class FakeLib:
    """QATzip's calls as a library on a QAT host would answer them.

    No QAT hardware exists where the tests run, so what a hardware session
    reports (``qzInit`` QZ_OK, a session status of QZ_OK, no
    ``QZ_SW_EXECUTION`` bit, ``qzGetStatus`` with a device and an attached
    instance) is played here; each test then takes one piece of that
    evidence away. The data itself goes through zlib.
    """

    def __init__(self, ffi, **status):
        self.ffi = ffi
        self.init_rc = qatzip.QZ_OK
        self.session_status = qatzip.QZ_OK
        self.ext_rc = 0
        self.status = dict(qat_hw_count=1, qat_instance_attach=1,
                           hw_session_status=qatzip.QZ_OK)
        self.status.update(status)

    def qzSetLogLevel(self, level):
        pass

    def qzInit(self, sess, sw_backup):
        sess.hw_session_stat = self.session_status
        return self.init_rc

    def qzSetupSession(self, sess, params):
        return qatzip.QZ_OK

    def qzMaxCompressedLength(self, size, sess):
        return size + 1024

    def qzCompressExt(self, sess, src, src_len, dst, dst_len, last, ext):
        import zlib
        packed = zlib.compress(bytes(src)[:src_len[0]])
        self.ffi.memmove(dst, packed, len(packed))
        dst_len[0] = len(packed)
        ext[0] = self.ext_rc
        return qatzip.QZ_OK

    def qzDecompress(self, sess, src, src_len, dst, dst_len):
        import zlib
        data = zlib.decompress(bytes(src)[:src_len[0]])
        self.ffi.memmove(dst, data, len(data))
        dst_len[0] = len(data)
        return qatzip.QZ_OK

    def qzGetStatus(self, sess, st):
        for key, value in self.status.items():
            setattr(st, key, value)
        return qatzip.QZ_OK

    def qzTeardownSession(self, sess):
        return qatzip.QZ_OK

    def qzClose(self, sess):
        return qatzip.QZ_OK


class TestEngineEvidence(testtools.TestCase):
    """Only positive evidence of every kind makes a self-test hardware."""

    def _selftest(self, setup=None, lib_class=FakeLib, **status):
        import cffi
        ffi = cffi.FFI()
        ffi.cdef(qatzip.CDEF)
        lib = lib_class(ffi, **status)
        if setup:
            setup(lib)
        qz = qatzip.QATzip('fake')
        qz._ffi, qz._lib, qz.path = ffi, lib, 'fake'
        return qz.selftest(64 * 1024)

    def test_hardware_when_everything_says_so(self):
        result = self._selftest()
        self.assertEqual('hardware', result.engine)
        self.assertTrue(result.hardware)
        self.assertEqual((1, True), (result.qat_hw_count,
                                     result.instance_attached))

    def test_any_software_sign_means_software(self):
        def init_no_hw(lib):
            lib.init_rc = qatzip.QZ_NO_HW

        def session_no_hw(lib):
            lib.session_status = qatzip.QZ_NO_INST_ATTACH

        def sw_execution(lib):
            lib.ext_rc = qatzip.QZ_SW_EXECUTION_MASK

        cases = [self._selftest(init_no_hw), self._selftest(session_no_hw),
                 self._selftest(sw_execution),
                 # qzGetStatus alone: codes all QZ_OK, yet no device, no
                 # instance attached, or a session status not QZ_OK
                 self._selftest(qat_hw_count=0),
                 self._selftest(qat_instance_attach=0),
                 self._selftest(hw_session_status=qatzip.QZ_NO_HW)]
        for result in cases:
            self.assertTrue(result.ok, result)
            self.assertEqual('software', result.engine, result)
            self.assertFalse(result.hardware, result)

    def test_library_without_status_call_rests_on_codes(self):
        class OldLib(FakeLib):
            def __getattribute__(self, name):
                if name == 'qzGetStatus':
                    raise AttributeError(name)
                return super().__getattribute__(name)

        result = self._selftest(lib_class=OldLib)
        self.assertEqual('hardware', result.engine)
        self.assertIsNone(result.qat_hw_count)


class TestQATzipMissing(testtools.TestCase):

    def test_missing_library_is_a_status(self):
        qz = qatzip.QATzip(MISSING)
        self.assertFalse(qz.available())
        result = qz.selftest()
        self.assertEqual(qatzip.STATUS_MISSING, result.status)
        self.assertEqual('QATzip not installed', result.status)
        self.assertFalse(result.ok)
        self.assertFalse(result.hardware)
        self.assertIn(MISSING, result.message)
        self.assertIn('QATzip not installed', result.describe())
        self.assertRaises(qatzip.QATzipMissing, qz.session)

    def test_missing_soname(self):
        result = qatzip.selftest('libqatzip-does-not-exist.so.9')
        self.assertEqual(qatzip.STATUS_MISSING, result.status)

    def test_missing_cffi(self):
        with mock.patch.dict(sys.modules, {'cffi': None}):
            result = qatzip.QATzip('libqatzip.so.3-nocffi').selftest()
        self.assertEqual(qatzip.STATUS_MISSING, result.status)
        self.assertIn('cffi is not installed', result.message)

    def test_import_loads_neither_cffi_nor_qatzip(self):
        code = ('import sys, nova_qat_migration.qat.manager; '
                'print("cffi" in sys.modules)')
        out = subprocess.run([sys.executable, '-c', code], check=True,
                             capture_output=True, text=True).stdout
        self.assertEqual('False', out.strip())

    def test_rc_name(self):
        self.assertEqual('QZ_NO_HW(11)', qatzip.rc_name(11))
        self.assertEqual('rc(77)', qatzip.rc_name(77))
        self.assertEqual('-', qatzip.rc_name(None))
