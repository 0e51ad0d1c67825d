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
"""``nova-qat-migration status`` on a host with nothing installed.

libvirt is a socket that does not exist, QEMU a binary that does not exist,
QAT an empty sysfs, QATzip a library that does not exist, and Placement is
not configured; the state path is a temporary directory. Placement's
answers are given through ``_placement_get`` where a test needs them.
"""

import io
import json
import os
from unittest import mock

import fixtures
from oslo_upgradecheck import upgradecheck

from nova_qat_migration.cmd import cli
from nova_qat_migration.cmd import status
from nova_qat_migration import datamodel
from nova_qat_migration import exception
from nova_qat_migration.virt.libvirt import migration_traits
from tests.fixtures import qat_sysfs
from tests.unit import base

Code = upgradecheck.Code
MODERN = datamodel.HypervisorCaps(
    libvirt_version=(11, 3, 0), qemu_version=(10, 0, 0),
    multifd_methods=frozenset({'none', 'zlib', 'zstd'}))


class StatusTestCase(base.TestCase):

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.tree = self.useFixture(qat_sysfs.QATSysfs())
        self.missing = os.path.join(self.tmp, 'missing')
        self.state = os.path.join(self.tmp, 'state')
        os.mkdir(self.state)
        self.conf_file = os.path.join(self.tmp, 'nova.conf')
        self.write_conf()
        # No cloud credentials here: the flavors are not checked (a test
        # that wants flavors patches its own answer).
        self.useFixture(fixtures.MonkeyPatch(
            'nova_qat_migration.cmd.status.Checks._flavors',
            mock.Mock(side_effect=exception.CloudConfigError(
                'no cloud configured'))))

    def write_conf(self, default='', **group):
        values = dict(state_path=self.state, sysfs_root=self.tree.sysfs,
                      debugfs_root=self.tree.debugfs,
                      qatzip_library=os.path.join(self.missing,
                                                  'libqatzip.so.3'))
        values.update(group)
        with open(self.conf_file, 'w') as f:
            f.write('[DEFAULT]\n%s\n[libvirt]\nconnection_uri = '
                    'qemu+unix:///system?socket=%s/libvirt-sock\n'
                    '[qat_migration]\n' % (default, self.missing))
            for key, value in values.items():
                f.write('%s = %s\n' % (key, value))

    def run_status(self, *extra):
        out, err = io.StringIO(), io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', out))
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', err))
        code = cli.main(['--config-file', self.conf_file, 'status',
                         '--qemu', os.path.join(self.missing, 'qemu'),
                         '--json'] + list(extra))
        self.assertEqual('', err.getvalue())
        data = json.loads(out.getvalue())
        results = {c['check']: (c['result'], c['details'])
                   for c in data['checks']}
        return code, results

    def checks(self, **kw):
        """Checks after the configuration was read (as ``main`` does)."""
        from nova_qat_migration.conf import CONF
        CONF(args=[], project='nova', default_config_files=[self.conf_file])
        kw.setdefault('qemu_binary', os.path.join(self.missing, 'qemu'))
        return status.Checks(**kw)


class TestNothingInstalled(StatusTestCase):

    def test_every_check_reports_and_exit_code_is_failure(self):
        code, results = self.run_status()
        self.assertEqual(Code.FAILURE, code)
        self.assertEqual([name for name, _ in status.Checks._upgrade_checks],
                         list(results))
        for name, (result, details) in results.items():
            self.assertTrue(details, name)
        result, details = results['Compute driver']
        self.assertEqual(Code.FAILURE, result)
        self.assertIn('compute_driver', details)
        self.assertEqual(Code.SUCCESS, results['Options and policy'][0])
        self.assertEqual((Code.SUCCESS, '%s is writable' % self.state),
                         (results['State path'][0],
                          results['State path'][1].split(' (')[0]))
        result, details = results['libvirt and QEMU versions']
        self.assertEqual(Code.FAILURE, result)
        self.assertIn('cannot connect to libvirt', details)
        result, details = results['QEMU multifd compression methods']
        self.assertEqual(Code.FAILURE, result)
        self.assertIn('not found', details)
        result, details = results['QAT devices']
        self.assertEqual(Code.SUCCESS, result)
        self.assertIn('no QAT devices', details)
        result, details = results['QATzip self-test']
        self.assertEqual(Code.SUCCESS, result)
        self.assertIn('not needed: no QAT devices', details)
        self.assertEqual(Code.SUCCESS,
                         results['QEMU monitor passthrough'][0])
        result, details = results['Placement traits']
        self.assertEqual(Code.WARNING, result)
        self.assertIn('no credentials in nova.conf [placement]', details)

    def test_table_output(self):
        out = io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', out))
        code = cli.main(['--config-file', self.conf_file, 'status',
                         '--no-placement'])
        self.assertEqual(Code.FAILURE, code)
        text = out.getvalue()
        self.assertIn('nova-qat-migration Readiness Check Results', text)
        self.assertIn('Check: Compute driver', text)
        self.assertIn('Result: Failure', text)
        self.assertIn('not checked on request (--no-placement)', text)

    def test_driver_configured(self):
        self.write_conf(default='compute_driver = %s' % status.DRIVER)
        code, results = self.run_status()
        self.assertEqual(Code.SUCCESS, results['Compute driver'][0])
        self.write_conf(default='compute_driver = %s' % status.DRIVER,
                        enabled='false')
        code, results = self.run_status()
        self.assertEqual(Code.WARNING, results['Compute driver'][0])

    def test_state_path_not_writable(self):
        blocker = os.path.join(self.tmp, 'a-file')
        with open(blocker, 'w'):
            pass
        self.write_conf(state_path=os.path.join(blocker, 'state'))
        code, results = self.run_status()
        result, details = results['State path']
        self.assertEqual(Code.FAILURE, result)
        self.assertIn('not writable', details)

    def test_state_path_created_later(self):
        self.write_conf(state_path=os.path.join(self.state, 'new'))
        _code, results = self.run_status()
        result, details = results['State path']
        self.assertEqual(Code.SUCCESS, result)
        self.assertIn('will be created', details)
        self.assertFalse(os.path.exists(os.path.join(self.state, 'new')))

    def test_bad_option_and_unknown_policy(self):
        self.write_conf(policy='no_such_policy')
        _code, results = self.run_status()
        result, details = results['Options and policy']
        self.assertEqual(Code.FAILURE, result)
        self.assertIn('no_such_policy', details)

    def test_bad_value_in_plain_words(self):
        self.write_conf(downtime_ms='5', permit_post_copy='maybe')
        _code, results = self.run_status()
        result, details = results['Options and policy']
        self.assertEqual(Code.FAILURE, result)
        self.assertNotIn('LocationInfo', details)
        self.assertNotIn('Locations.', details)
        self.assertIn('in %s: ' % self.conf_file, details)
        self.assertTrue('must be at least 10' in details or
                        "'maybe' is not true or false" in details, details)

    def test_unknown_option_in_a_conf_d_flagged(self):
        # nova.conf.d layout: the typo sits in a drop-in file.
        conf_d = os.path.join(self.tmp, 'nova.conf.d')
        os.mkdir(conf_d)
        with open(os.path.join(conf_d, '50-qat.conf'), 'w') as f:
            f.write('[qat_migration]\ndowntime_msec = 300\n'
                    '[qat_migration_static]\nauto_convrge = true\n'
                    '[libvirt]\nnot_ours = 1\n')
        out, err = io.StringIO(), io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', out))
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', err))
        cli.main(['--config-file', self.conf_file, '--config-dir', conf_d,
                  'status', '--no-placement', '--json',
                  '--qemu', os.path.join(self.missing, 'qemu')])
        results = {c['check']: (c['result'], c['details'])
                   for c in json.loads(out.getvalue())['checks']}
        result, details = results['Options and policy']
        self.assertEqual(Code.WARNING, result)
        self.assertIn('[qat_migration] downtime_msec in %s/50-qat.conf '
                      '(did you mean downtime_ms?)' % conf_d, details)
        self.assertIn('[qat_migration_static] auto_convrge', details)
        # Nova's own groups are Nova's business.
        self.assertNotIn('not_ours', details)

    def test_deprecated_names_are_known(self):
        self.write_conf(static_method='none')
        _code, results = self.run_status()
        self.assertEqual(Code.SUCCESS, results['Options and policy'][0])

    def test_nova_version_in_range(self):
        _code, results = self.run_status()
        result, details = results['Nova version']
        self.assertEqual(Code.SUCCESS, result)
        self.assertIn('supported: >= 34.0.0, < 35.0.0', details)
        with mock.patch('importlib.metadata.version', return_value='35.1.0'):
            result = self.checks()._check_nova_version()
        self.assertEqual(Code.FAILURE, result.code)
        self.assertIn('Nova 35.1.0 is installed', result.details)

    def test_passthrough_taints(self):
        self.write_conf(qemu_monitor_passthrough='true')
        _code, results = self.run_status()
        result, details = results['QEMU monitor passthrough']
        self.assertEqual(Code.WARNING, result)
        self.assertIn('tainted', details)

    def test_qat_without_qatzip_fails(self):
        self.tree.add_pf('0000:6b:00.0', '4xxx', numvfs=4)
        _code, results = self.run_status()
        result, details = results['QAT devices']
        self.assertEqual(Code.SUCCESS, result)
        self.assertIn('1 QAT PF(s), 1 healthy', details)
        result, details = results['QATzip self-test']
        self.assertEqual(Code.FAILURE, result)
        self.assertIn('cannot compress', details)
        # qatzip allowed, QAT present, no passthrough: a warning.
        self.assertEqual(Code.WARNING,
                         results['QEMU monitor passthrough'][0])

    def test_qat_with_software_qatzip_warns(self):
        # The real library, no QAT hardware here: QATzip compresses in
        # software, which plans do not count as QAT unless allowed.
        from nova_qat_migration.qat import manager
        self.tree.add_pf('0000:6b:00.0', '4xxx', numvfs=4)
        self.write_conf(qatzip_library='libqatzip.so.3')
        _code, results = self.run_status()
        result, details = results['QATzip self-test']
        self.assertEqual(Code.WARNING, result, details)
        self.assertIn(manager.QATManager.SOFTWARE_ONLY, details)
        self.write_conf(qatzip_library='libqatzip.so.3',
                        qatzip_software_allowed=True)
        _code, results = self.run_status()
        self.assertEqual(Code.SUCCESS, results['QATzip self-test'][0])

    def test_unhealthy_qat_warns(self):
        self.tree.add_pf('0000:6b:00.0', '4xxx', numvfs=2, heartbeat=-1)
        _code, results = self.run_status()
        result, details = results['QAT devices']
        self.assertEqual(Code.WARNING, result)
        self.assertIn('0000:6b:00.0', details)

    def test_socket_queues(self):
        from tests.unit.virt.libvirt import test_socket_queues as tsq
        proc_sys = self.useFixture(fixtures.TempDir()).path
        tsq.write_proc_sys(proc_sys)
        self.write_conf('', link_gbps='0.25', max_parallel_connections='4')
        result = self.checks(proc_sys=proc_sys)._check_socket_queues()
        self.assertEqual(Code.WARNING, result.code)
        self.assertIn('tcp_notsent_lowat = 131072', result.details)
        self.assertIn('4 connection(s) on a 0.25 Gbit/s link',
                      result.details)
        tsq.write_proc_sys(proc_sys, lowat='131072')
        result = self.checks(proc_sys=proc_sys)._check_socket_queues()
        self.assertEqual(Code.SUCCESS, result.code)
        self.assertIn('at most 128 KiB unsent', result.details)

    def test_crashing_check_is_255(self):
        def crash(checks):
            raise RuntimeError('boom')

        class Crashing(status.Checks):
            _upgrade_checks = (('crash', crash),)

        self.checks()
        err = io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', err))
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', io.StringIO()))
        self.assertEqual(255, status.run(Crashing()))
        self.assertIn('RuntimeError: boom', err.getvalue())


class TestPlacementTraits(StatusTestCase):

    def _answer(self, traits, name='cmp1'):
        def get(path):
            if path.startswith('/resource_providers?name='):
                if path.endswith('=' + name):
                    return {'resource_providers': [{'uuid': 'rp-1'}]}
                return {'resource_providers': []}
            self.assertEqual('/resource_providers/rp-1/traits', path)
            return {'traits': sorted(traits)}
        return get

    def _run(self, traits, nodename='cmp1', caps=MODERN):
        checks = self.checks(nodename=nodename)
        checks.caps = caps
        with mock.patch.object(checks, '_placement_get',
                               side_effect=self._answer(traits)):
            return checks._check_placement()

    def test_all_traits_present(self):
        expected = migration_traits.traits_for(MODERN)
        result = self._run(expected | {'COMPUTE_NET_ATTACH_INTERFACE'})
        self.assertEqual(Code.SUCCESS, result.code)
        self.assertIn('CUSTOM_MIGRATION_COMPRESS_ZSTD', result.details)

    def test_missing_and_stale_traits(self):
        expected = migration_traits.traits_for(MODERN)
        traits = (expected - {'CUSTOM_MIGRATION_COMPRESS_ZSTD'}) | {
            'CUSTOM_MIGRATION_COMPRESS_QATZIP'}
        result = self._run(traits)
        self.assertEqual(Code.WARNING, result.code)
        self.assertIn('missing CUSTOM_MIGRATION_COMPRESS_ZSTD', result.details)
        self.assertIn('stale CUSTOM_MIGRATION_COMPRESS_QATZIP',
                      result.details)

    def test_no_planner_trait(self):
        result = self._run({'COMPUTE_NET_ATTACH_INTERFACE'})
        self.assertEqual(Code.WARNING, result.code)
        self.assertIn(migration_traits.TRAIT_PLANNER, result.details)

    def test_provider_not_found(self):
        result = self._run(set(), nodename='other')
        self.assertEqual(Code.WARNING, result.code)
        self.assertIn('no resource provider named other', result.details)

    def test_no_placement_is_success(self):
        checks = self.checks(placement=False)
        result = checks._check_placement()
        self.assertEqual(Code.SUCCESS, result.code)
        self.assertEqual('not checked on request (--no-placement)',
                         result.details)

    def test_placement_credentials_missing_says_what_to_set(self):
        # The default nova.conf of the test: no [placement] auth at all.
        result = self.checks(nodename='cmp1')._check_placement()
        self.assertEqual(Code.WARNING, result.code)
        self.assertNotIn('MissingAuthPlugin', result.details)
        self.assertIn('[placement] auth_type = password', result.details)
        self.assertIn('--no-placement', result.details)

    def test_placement_unreachable(self):
        # A real keystoneauth adapter, to an address nothing listens on.
        self.write_conf(default='')
        with open(self.conf_file, 'a') as f:
            f.write('[placement]\nauth_type = none\nendpoint_override = '
                    'http://127.0.0.1:9/placement\n')
        checks = self.checks(nodename='cmp1')
        result = checks._check_placement()
        self.assertEqual(Code.WARNING, result.code)
        self.assertIn('Placement unreachable', result.details)


class TestFlavors(StatusTestCase):

    def _run(self, flavors):
        checks = self.checks()
        with mock.patch.object(checks, '_flavors', return_value=flavors):
            return checks._check_flavors()

    def test_invalid_keys_listed_by_flavor(self):
        result = self._run([
            ('m1.ok', {'qat_migration:method': 'zstd', 'hw:cpu': 'x'}),
            ('m1.typo', {'qat_migration:method': 'bogus',
                         'qat_migration:downtime_msec': '300'})])
        self.assertEqual(Code.WARNING, result.code)
        self.assertIn("flavor m1.typo: flavor extra spec "
                      "qat_migration:method: 'bogus' is not one of",
                      result.details)
        self.assertIn('qat_migration:downtime_msec is not a known key',
                      result.details)
        self.assertNotIn('m1.ok', result.details)
        self.assertIn('Migrations still run', result.details)

    def test_all_flavors_valid(self):
        result = self._run([('m1.ok', {'qat_migration:level': '3'})])
        self.assertEqual(Code.SUCCESS, result.code)
        self.assertIn('1 flavor(s), no invalid', result.details)

    def test_without_cloud_not_checked(self):
        checks = self.checks()
        result = checks._check_flavors()
        self.assertEqual(Code.SUCCESS, result.code)
        self.assertIn('flavors not checked', result.details)
        self.assertIn('no cloud configured', result.details)


class TestUpgradeCheck(StatusTestCase):

    def test_upgrade_check_is_status(self):
        out = io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', out))
        code = cli.main(['--config-file', self.conf_file, 'upgrade',
                         'check', '--no-placement', '--json', '--qemu',
                         os.path.join(self.missing, 'qemu')])
        data = json.loads(out.getvalue())
        self.assertEqual([name for name, _ in status.Checks._upgrade_checks],
                         [c['check'] for c in data['checks']])
        self.assertEqual(Code.FAILURE, code)   # no libvirt here

    def test_upgrade_without_command_is_a_usage_error(self):
        err = io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', err))
        self.assertEqual(2, cli.main(['upgrade']))
