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
built (``NQM_QEMU_QATZIP`` or the default prefix) -- and fail instead
where it is required (``NQM_REQUIRE_QATZIP_QEMU=1``, set by
``tools/run-tests.sh`` which builds it; ``CI=true``). Where it is: the
project's capability probe finds ``qatzip`` among its multifd methods, it
is the distro QEMU's version (migrations between the two must work), it
starts without ``LD_LIBRARY_PATH`` (as libvirt starts it) and answers QMP.
How the lab selects it (``--qemu``, ``Lab(qemu=...)``, the daemons'
``PATH``, the guest XML) is checked without a build or a lab; the lab with
it is ``test_qatzip_path``.
"""

import os
import stat
from unittest import mock

import fixtures
import testtools

from nova_qat_migration import datamodel
from nova_qat_migration.virt.libvirt import migration_traits
from nova_qat_migration.virt.libvirt import qemu_probe
from nova_qat_migration_lab import cli
from nova_qat_migration_lab import guest
from nova_qat_migration_lab import hosts
from nova_qat_migration_lab import qemu_build


def _touch_executable(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write('#!/bin/sh\n')
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)


class _NoBuildCase(testtools.TestCase):
    """No ``NQM_QEMU_QATZIP``; the default prefix is ``prefix`` in a
    temporary directory.
    """

    prefix = 'default'

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.useFixture(fixtures.EnvironmentVariable(qemu_build.ENV))
        self.useFixture(fixtures.MockPatchObject(
            qemu_build, 'DEFAULT_PREFIX', os.path.join(self.tmp,
                                                       self.prefix)))


class TestLocate(_NoBuildCase):
    """Where :mod:`qemu_build` looks (no build needed)."""

    def setUp(self):
        super().setUp()
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


class TestRequired(testtools.TestCase):
    """When a missing build fails the tests that need it (no build)."""

    def test_default_is_a_skip(self):
        self.assertFalse(qemu_build.required({}))
        self.assertFalse(qemu_build.required({'CI': 'false'}))

    def test_ci_requires_it(self):
        self.assertTrue(qemu_build.required({'CI': 'true'}))
        self.assertTrue(qemu_build.required({'CI': 'TRUE'}))

    def test_the_variable_decides_when_set(self):
        env = qemu_build.REQUIRE_ENV
        self.assertTrue(qemu_build.required({env: '1'}))
        self.assertTrue(qemu_build.required({env: 'yes'}))
        for off in ('0', 'false', 'no'):
            self.assertFalse(qemu_build.required({env: off, 'CI': 'true'}),
                             off)
        self.assertTrue(qemu_build.required({env: '', 'CI': 'true'}))

    def test_message_names_the_reason_and_the_switch(self):
        with mock.patch.dict(os.environ, {qemu_build.REQUIRE_ENV: '1'}):
            text = qemu_build.required_message('why not')
        self.assertIn(qemu_build.REQUIRE_ENV, text)
        self.assertTrue(text.endswith(': why not'), text)


class TestSelect(_NoBuildCase):
    """``distro`` or ``qatzip``: what the lab runs (no build, no lab)."""

    prefix = 'none'

    def _built(self):
        binary = os.path.join(self.tmp, 'built', 'bin', qemu_build.BINARY)
        _touch_executable(binary)
        self.useFixture(fixtures.EnvironmentVariable(
            qemu_build.ENV, os.path.dirname(os.path.dirname(binary))))
        return binary

    def test_distro_is_debians_qemu(self):
        self.assertEqual('/usr/bin/qemu-system-x86_64',
                         qemu_build.emulator(qemu_build.DISTRO))
        self.assertEqual('/a:/b', qemu_build.daemon_path(
            qemu_build.DISTRO_EMULATOR, '/a:/b'))

    def test_qatzip_not_built_names_the_build_script(self):
        with testtools.ExpectedException(qemu_build.NotBuilt,
                                         '.*tools/build-qemu-qatzip.sh.*'):
            qemu_build.emulator(qemu_build.QATZIP)
        with testtools.ExpectedException(qemu_build.NotBuilt,
                                         '.*tools/build-qemu-qatzip.sh.*'):
            hosts.Lab('zz0', qemu=qemu_build.QATZIP)

    def test_unknown_choice(self):
        self.assertRaises(ValueError, qemu_build.emulator, 'kvm')

    def test_qatzip_bin_first_on_the_daemons_path(self):
        binary = self._built()
        bindir = os.path.dirname(binary)
        self.assertEqual(binary, qemu_build.emulator(qemu_build.QATZIP))
        self.assertEqual(
            '%s:/usr/bin:/bin' % bindir,
            qemu_build.daemon_path(binary, '/usr/bin:%s:/bin' % bindir))
        lab = hosts.Lab('zz0', qemu=qemu_build.QATZIP,
                        daemon_env={'EXTRA': '1'})
        self.assertEqual(binary, lab.emulator)
        with mock.patch.dict(os.environ, {'LD_LIBRARY_PATH': '/qz'}):
            env = lab.daemon_environ()
        # QEMU finds QATzip through its rpath, as under an operator's
        # libvirtd (libvirt would pass LD_LIBRARY_PATH on to it).
        self.assertNotIn('LD_LIBRARY_PATH', env)
        self.assertEqual(bindir, env['PATH'].split(':')[0])
        self.assertEqual('1', env['EXTRA'])
        # Nothing under /usr is replaced: the distro QEMU stays on PATH.
        self.assertIn('/usr/bin', env['PATH'].split(':'))

    def test_lab_default_is_the_distro(self):
        lab = hosts.Lab('zz0')
        self.assertEqual(qemu_build.DISTRO, lab.qemu)
        self.assertEqual(qemu_build.DISTRO_EMULATOR, lab.emulator)
        self.assertEqual(os.environ.get('PATH', qemu_build.DEFAULT_PATH),
                         lab.daemon_environ()['PATH'])

    def test_guest_xml_follows_the_selection(self):
        images = {'kernel': '/k', 'initrd': '/i'}
        self.assertIn('<emulator>/usr/bin/qemu-system-x86_64</emulator>',
                      guest.domain_xml('g', 256, 'x', images, '/log'))
        binary = self._built()
        lab = hosts.Lab('zz0', qemu=qemu_build.QATZIP)
        self.assertIn('<emulator>%s</emulator>' % binary,
                      guest.domain_xml('g', 256, 'x', images, '/log',
                                       emulator=lab.emulator))

    def test_cli_qemu_flag(self):
        parser = cli.build_parser()
        for command in ('bench', 'demo', 'faults'):
            args = parser.parse_args([command])
            self.assertEqual(qemu_build.DISTRO, args.qemu, command)
            args = parser.parse_args([command, '--qemu', 'qatzip'])
            self.assertEqual(qemu_build.QATZIP, args.qemu, command)
        with testtools.ExpectedException(SystemExit):
            with mock.patch('sys.stderr'):
                parser.parse_args(['demo', '--qemu', 'kvm'])


class TestBuiltQemu(testtools.TestCase):
    """The built binary itself; skipped where it is not built."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.binary = qemu_build.qatzip_qemu_binary()

    def setUp(self):
        super().setUp()
        if self.binary is None:
            if qemu_build.required():
                self.fail(qemu_build.required_message(
                    qemu_build.missing_reason()))
            self.skipTest(qemu_build.missing_reason())

    def test_probe_lists_qatzip(self):
        methods = qemu_probe.probe_multifd_methods(self.binary)
        self.assertIn('qatzip', methods)
        self.assertTrue({'none', 'zlib', 'zstd'} <= methods, methods)
        caps = datamodel.HypervisorCaps(
            libvirt_version=(11, 3, 0), qemu_version=(10, 0, 0),
            multifd_methods=methods)
        self.assertIn(migration_traits.compress_trait('qatzip'),
                      migration_traits.traits_for(caps))

    def test_version_matches_the_distro_qemu(self):
        distro = qemu_build.qemu_version(qemu_probe.DEFAULT_QEMU)
        if distro is None:
            self.skipTest('no distro QEMU at %s to compare with'
                          % qemu_probe.DEFAULT_QEMU)
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
        version, status = qemu_probe._qmp_exchange(
            self.binary, [{'execute': 'query-version'},
                          {'execute': 'query-status'}])
        qemu = version['return']['qemu']
        self.assertEqual(qemu_build.qemu_version(self.binary),
                         '%(major)d.%(minor)d.%(micro)d' % qemu)
        self.assertTrue(status['return']['running'])
