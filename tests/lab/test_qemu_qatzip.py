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
"""The QEMU built with QATzip (``tools/build-qemu-qatzip.sh``).

The checks on the binary skip, saying how to build it, where it is not
built (``NQM_QEMU_QATZIP`` or the default prefix). Where it is: the
project's capability probe finds ``qatzip`` among its multifd methods, it
is the distro QEMU's version (migrations between the two must work), it
starts without ``LD_LIBRARY_PATH`` (as libvirt starts it) and answers QMP.
"""

import os
import stat
from unittest import mock

import fixtures
import testtools

from nova_qat_migration import datamodel
from nova_qat_migration.virt.libvirt import capabilities
from nova_qat_migration_lab import qemu_build


def _touch_executable(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write('#!/bin/sh\n')
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)


class TestLocate(testtools.TestCase):
    """Where :mod:`qemu_build` looks (no build needed)."""

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.useFixture(fixtures.EnvironmentVariable(qemu_build.ENV))
        self.useFixture(fixtures.MockPatchObject(
            qemu_build, 'DEFAULT_PREFIX', os.path.join(self.tmp, 'default')))
        self.binary = os.path.join(self.tmp, 'default', 'bin',
                                   qemu_build.BINARY)

    def test_default_prefix_needs_the_stamp(self):
        _touch_executable(self.binary)
        self.assertIsNone(qemu_build.qatzip_qemu_bindir())
        open(os.path.join(self.tmp, 'default', qemu_build.STAMP), 'w').close()
        self.assertEqual(os.path.dirname(self.binary),
                         qemu_build.qatzip_qemu_bindir())

    def test_nothing_built(self):
        self.assertIsNone(qemu_build.qatzip_qemu_binary())
        self.assertIsNone(qemu_build.qatzip_qemu_bindir())

    def test_env_prefix_bindir_or_binary(self):
        other = os.path.join(self.tmp, 'other')
        binary = os.path.join(other, 'bin', qemu_build.BINARY)
        _touch_executable(binary)
        for value in (other, os.path.dirname(binary), binary):
            with mock.patch.dict(os.environ, {qemu_build.ENV: value}):
                self.assertEqual(binary, qemu_build.qatzip_qemu_binary())
                self.assertEqual(os.path.dirname(binary),
                                 qemu_build.qatzip_qemu_bindir())

    def test_env_wins_over_the_default_prefix(self):
        _touch_executable(self.binary)
        open(os.path.join(self.tmp, 'default', qemu_build.STAMP), 'w').close()
        with mock.patch.dict(os.environ, {
                qemu_build.ENV: os.path.join(self.tmp, 'missing')}):
            self.assertIsNone(qemu_build.qatzip_qemu_binary())

    def test_version_of_a_binary_that_does_not_run(self):
        self.assertIsNone(qemu_build.qemu_version(
            os.path.join(self.tmp, 'missing')))


class TestBuiltQemu(testtools.TestCase):
    """The built binary itself; skipped where it is not built."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.binary = qemu_build.qatzip_qemu_binary()

    def setUp(self):
        super().setUp()
        if self.binary is None:
            where = os.environ.get(qemu_build.ENV)
            looked = ('$%s=%s holds no %s' % (qemu_build.ENV, where,
                                              qemu_build.BINARY)
                      if where else
                      'no %s/bin/%s with its build stamp' % (
                          qemu_build.DEFAULT_PREFIX, qemu_build.BINARY))
            self.skipTest('QEMU with QATzip not available: %s; run %s as '
                          'root (about 6 minutes, once per machine)'
                          % (looked, qemu_build.BUILD_SCRIPT))

    def test_probe_lists_qatzip(self):
        methods = capabilities.probe_multifd_methods(self.binary)
        self.assertIn('qatzip', methods)
        self.assertTrue({'none', 'zlib', 'zstd'} <= methods, methods)
        caps = datamodel.HypervisorCaps(
            libvirt_version=(11, 3, 0), qemu_version=(10, 0, 0),
            multifd_methods=methods)
        self.assertIn(capabilities.compress_trait('qatzip'),
                      capabilities.traits_for(caps))

    def test_version_matches_the_distro_qemu(self):
        distro = qemu_build.qemu_version(capabilities.DEFAULT_QEMU)
        if distro is None:
            self.skipTest('no distro QEMU at %s to compare with'
                          % capabilities.DEFAULT_QEMU)
        self.assertEqual(distro, qemu_build.qemu_version(self.binary))

    def test_starts_without_ld_library_path(self):
        # libvirt starts QEMU with a clean environment: QATzip (in a private
        # prefix on Debian 12) must come from the binary's rpath.
        env = {k: v for k, v in os.environ.items()
               if k != 'LD_LIBRARY_PATH'}
        self.assertIsNotNone(qemu_build.qemu_version(self.binary, env=env),
                             '%s does not start without LD_LIBRARY_PATH'
                             % self.binary)

    def test_machine_none_answers_qmp(self):
        version, status = capabilities._qmp_exchange(
            self.binary, [{'execute': 'query-version'},
                          {'execute': 'query-status'}])
        qemu = version['return']['qemu']
        self.assertEqual(qemu_build.qemu_version(self.binary),
                         '%(major)d.%(minor)d.%(micro)d' % qemu)
        self.assertTrue(status['return']['running'])
