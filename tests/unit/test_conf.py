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
"""``[qat_migration]`` and ``[qat_migration_static]`` options: bounds,
cross-option checks, the generator."""

import os
import subprocess
import sys

from unittest import mock

import ddt
import fixtures
from oslo_config import cfg
from stevedore import extension

from nova_qat_migration import conf
from nova_qat_migration.conf import opts
from nova_qat_migration.conf import qat_migration
from tests.unit import base


REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
SAMPLE = os.path.join(REPO, 'etc', 'nova-qat-migration',
                      'nova-qat-migration.conf.sample')
GENERATOR_CONF = os.path.join(REPO, 'tools', 'config',
                              'nova-qat-migration-config-generator.conf')


def _bin(name):
    """A console script of the interpreter running the tests."""
    return os.path.join(os.path.dirname(sys.executable), name)


@ddt.ddt
class TestOptionBounds(base.TestCase):

    def _fresh_conf(self, text):
        """A private ConfigOpts with our options and ``text`` as nova.conf."""
        return base.conf_from_text(self, text)

    @ddt.data(('zlib_level', 10), ('zlib_level', -1), ('zstd_level', 21),
              ('qatzip_level', 0), ('max_parallel_connections', 0),
              ('max_parallel_connections', 33), ('cpu_idle_threshold', 101),
              ('downtime_ms', 5), ('xbzrle_cache_ratio', 1.5),
              ('auto_converge_initial', 0))
    @ddt.unpack
    def test_set_override_out_of_range_refused(self, name, value):
        self.assertRaises(ValueError, self.conf.set_override, name, value,
                          group='qat_migration')

    def test_static_channels_bounded(self):
        for value in (0, 33):
            self.assertRaises(ValueError, self.conf.set_override,
                              'parallel_connections', value,
                              group='qat_migration_static')

    @ddt.data(('zlib_level', 9), ('zstd_level', 20), ('qatzip_level', 1),
              ('max_parallel_connections', 32), ('downtime_ms', 10))
    @ddt.unpack
    def test_set_override_bounds_inclusive(self, name, value):
        self.flags(**{name: value})
        self.assertEqual(value, getattr(self.conf.qat_migration, name))

    def test_unknown_method_refused(self):
        self.assertRaises(ValueError, self.conf.set_override,
                          'method', 'lz4', group='qat_migration_static')
        self.assertRaises(ValueError, self.conf.set_override,
                          'allowed_methods', ['zstd', 'lz4'],
                          group='qat_migration')

    def test_throttle_schedule_items_bounded(self):
        self.assertRaises(ValueError, self.conf.set_override,
                          'throttle_schedule', [0, 50],
                          group='qat_migration')
        self.assertRaises(ValueError, self.conf.set_override,
                          'throttle_schedule', [50, 100],
                          group='qat_migration')

    @ddt.data(('max_parallel_connections', '64'), ('zstd_level', '30'),
              ('cpu_idle_threshold', '-5'), ('downtime_ms', 'soon'))
    @ddt.unpack
    def test_config_file_value_error_names_option(self, name, value):
        conf_obj = self._fresh_conf('[qat_migration]\n%s = %s\n'
                                    % (name, value))
        exc = self.assertRaises(cfg.ConfigFileValueError, getattr,
                                conf_obj.qat_migration, name)
        self.assertIn(name, str(exc))

    def test_config_file_good_values(self):
        conf_obj = self._fresh_conf(
            '[qat_migration]\nmax_parallel_connections = 8\n'
            'allowed_methods = none,zstd\nthrottle_schedule = 30,60,90\n')
        self.assertEqual(8, conf_obj.qat_migration.max_parallel_connections)
        self.assertEqual(['none', 'zstd'],
                         conf_obj.qat_migration.allowed_methods)
        self.assertEqual([30, 60, 90],
                         conf_obj.qat_migration.throttle_schedule)

    @ddt.data('[qat_migration_static]\nmethod = lz4\n',
              '[qat_migration]\nstatic_method = lz4\n')
    def test_static_method_value_error_names_option(self, text):
        conf_obj = self._fresh_conf(text)
        exc = self.assertRaises(cfg.ConfigFileValueError, getattr,
                                conf_obj.qat_migration_static, 'method')
        self.assertIn('method', str(exc))

    def test_every_option_has_help(self):
        for opt in qat_migration.ALL_OPTS + qat_migration.static_opts:
            self.assertTrue(opt.help and opt.help.strip(),
                            'option %s has no help' % opt.name)


class TestCheck(base.TestCase):

    def test_defaults_pass(self):
        conf.check(self.conf)

    def test_cache_min_above_max_refused(self):
        self.flags(xbzrle_cache_min_mb=512, xbzrle_cache_max_mb=256)
        exc = self.assertRaises(conf.ConfigError, conf.check, self.conf)
        self.assertIn('xbzrle_cache_min_mb', str(exc))
        self.assertIn('xbzrle_cache_max_mb', str(exc))

    def test_cache_min_equal_max_accepted(self):
        self.flags(xbzrle_cache_min_mb=256, xbzrle_cache_max_mb=256)
        conf.check(self.conf)

    def test_non_increasing_schedule_refused(self):
        for schedule in ([40, 20], [20, 20, 40], [20, 60, 40]):
            self.flags(throttle_schedule=schedule)
            exc = self.assertRaises(conf.ConfigError, conf.check, self.conf)
            self.assertIn('throttle_schedule', str(exc))

    def test_empty_schedule_refused(self):
        self.flags(throttle_schedule=[])
        self.assertRaises(conf.ConfigError, conf.check, self.conf)

    def test_single_step_schedule_accepted(self):
        self.flags(throttle_schedule=[50])
        conf.check(self.conf)

    def test_static_method_must_be_allowed(self):
        self.flags(method='zstd', group='qat_migration_static')
        self.flags(allowed_methods=['none', 'zlib'])
        exc = self.assertRaises(conf.ConfigError, conf.check, self.conf)
        self.assertIn('[qat_migration_static] method zstd is not in '
                      '[qat_migration] allowed_methods', str(exc))

    def test_static_cache_bounded_by_max(self):
        self.flags(xbzrle_cache_mb=1024, group='qat_migration_static')
        self.flags(xbzrle_cache_max_mb=512)
        exc = self.assertRaises(conf.ConfigError, conf.check, self.conf,
                                host_memory_mb=65536)
        self.assertIn('[qat_migration_static] xbzrle_cache_mb (1024) must '
                      'not exceed [qat_migration] xbzrle_cache_max_mb',
                      str(exc))

    def test_check_registers_static_options(self):
        conf_obj = cfg.ConfigOpts()
        qat_migration.register_opts(conf_obj)
        conf_obj.unregister_opts(qat_migration.static_opts,
                                 group='qat_migration_static')
        conf_obj(args=[])
        conf.check(conf_obj, host_memory_mb=65536)
        self.assertEqual('none', conf_obj.qat_migration_static.method)


class TestGenerator(base.TestCase):

    def setUp(self):
        super().setUp()
        # The options of this source tree, not of an installed copy.
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (REPO, os.environ.get('PYTHONPATH')) if p))

    def test_list_opts_is_the_group_and_policies_groups(self):
        listed = {getattr(g, 'name', g): opts for g, opts in opts.list_opts()}
        self.assertEqual(['qat_migration', 'qat_migration_adaptive',
                          'qat_migration_static'], sorted(listed))
        self.assertEqual({o.name for o in qat_migration.ALL_OPTS},
                         {o.name for o in listed['qat_migration']})
        self.assertEqual(['method', 'parallel_connections',
                          'xbzrle_cache_mb', 'auto_converge'],
                         [o.name for o in listed['qat_migration_static']])
        self.assertEqual(['adaptive_model', 'gentle_tolerance'],
                         [o.name for o in listed['qat_migration_adaptive']])

    def test_policies_sharing_a_group_listed_once(self):
        shared = cfg.IntOpt('shared')

        class One(object):
            CONFIG_GROUP = 'qat_migration_x'
            CONFIG_OPTS = (shared, cfg.IntOpt('one'))

        class Two(object):
            CONFIG_GROUP = cfg.OptGroup('qat_migration_x')
            CONFIG_OPTS = (shared, cfg.IntOpt('two'))

        class NoOpts(object):
            pass

        mgr = extension.ExtensionManager.make_test_instance(
            [extension.Extension(n, None, cls, None)
             for n, cls in (('b', Two), ('a', One), ('c', NoOpts))],
            namespace=opts.POLICY_NAMESPACE)
        with mock.patch.object(opts.extension, 'ExtensionManager',
                               return_value=mgr):
            listed = opts.policy_opts()
        self.assertEqual(1, len(listed))
        group, options = listed[0]
        self.assertEqual('qat_migration_x', group)
        self.assertEqual(['shared', 'one', 'two'],
                         [o.name for o in options])

    def test_oslo_config_generator_prints_group(self):
        generator = _bin('oslo-config-generator')
        if not os.path.exists(generator):
            self.skipTest('oslo-config-generator not installed beside %s'
                          % sys.executable)
        result = subprocess.run(
            [generator, '--namespace', 'nova_qat_migration'],
            capture_output=True, text=True, timeout=120, env=self.env)
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertIn('[qat_migration]', result.stdout)
        for name in ('policy', 'allowed_methods', 'throttle_schedule',
                     'qat_endpoints_for_migration', 'state_path'):
            self.assertIn('#%s = ' % name, result.stdout)
        # A policy's own group, with the former names it still reads.
        static = result.stdout.split('[qat_migration_static]', 1)[1]
        self.assertIn('#method = none', static)
        self.assertIn('# Deprecated group/name - [qat_migration]/'
                      'static_method', static)
        adaptive = result.stdout.split('[qat_migration_adaptive]', 1)[1]
        adaptive = adaptive.split('\n[', 1)[0]
        self.assertIn('#adaptive_model = true', adaptive)
        self.assertIn('# Deprecated group/name - [qat_migration]/'
                      'gentle_tolerance', adaptive)
        # Bounds are shown to the operator.
        self.assertIn('Maximum value: 32', result.stdout)

    def test_sample_is_up_to_date(self):
        generator = _bin('oslo-config-generator')
        if not (os.path.exists(generator) and os.path.exists(SAMPLE) and
                os.path.exists(GENERATOR_CONF)):
            self.skipTest('generator, its config or the sample missing')
        out = os.path.join(self.useFixture(fixtures.TempDir()).path,
                           'sample.conf')
        result = subprocess.run(
            [generator, '--config-file', GENERATOR_CONF, '--output-file',
             out], capture_output=True, text=True, timeout=120,
            env=self.env, cwd=REPO)
        self.assertEqual(0, result.returncode, result.stderr)
        with open(out) as f, open(SAMPLE) as g:
            self.assertEqual(f.read(), g.read(),
                             'etc/ sample is stale: run tox -e genconfig')
