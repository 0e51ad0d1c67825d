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
"""Loading policies from the ``nova_qat_migration.policies`` namespace."""

from importlib import metadata
from unittest import mock

from oslo_config import cfg
from stevedore import driver
from stevedore import extension

from nova_qat_migration import datamodel
from nova_qat_migration.policy import adaptive
from nova_qat_migration.policy import base as policy_base
from nova_qat_migration.policy import loader
from nova_qat_migration.policy import nova_default
from nova_qat_migration.policy import static
from tests.unit import base


class _QuietPolicy(policy_base.Policy):
    name = 'quiet'

    def plan(self, facts):
        return datamodel.Plan(policy=self.name, reasons=('test',))


class _OptionsPolicy(_QuietPolicy):
    """Declares options and records what it saw, in order."""

    name = 'withopts'
    CONFIG_GROUP = 'qat_migration_withopts'
    CONFIG_OPTS = (cfg.IntOpt('knob', default=7),)

    def __init__(self, options, shared):
        super().__init__(options, shared)
        # The loader registered the options before constructing, and
        # hands over the policy's own group only.
        self.events = [('init', options.knob)]

    def load(self):
        self.events.append('load')

    def plan(self, facts):
        self.events.append('plan')
        return super().plan(facts)


class _LoadFails(_QuietPolicy):
    name = 'loadfails'

    def load(self):
        raise OSError('calibration unreadable')


class _NoGroup(_QuietPolicy):
    """Options without a CONFIG_GROUP: the loader names the group."""

    name = 'nogroup'
    CONFIG_OPTS = (cfg.IntOpt('stray', default=3),)


class _OtherGroup(_QuietPolicy):
    """Options in a group that is not ``[qat_migration_<name>]``."""

    name = 'othergroup'
    CONFIG_GROUP = 'qat_migration'
    CONFIG_OPTS = (cfg.IntOpt('stray'),)


class _NotAPolicy(object):
    def __init__(self, conf):
        self.conf = conf


def _test_manager(name, cls):
    """A DriverManager holding one in-memory plugin (no entry point).

    Not invoked, as the loader asks for.
    """
    ep = metadata.EntryPoint(name=name, group=loader.NAMESPACE,
                             value='%s:%s' % (cls.__module__,
                                              cls.__qualname__))
    ext = extension.Extension(name, ep, cls, None)
    return driver.DriverManager.make_test_instance(
        ext, namespace=loader.NAMESPACE)


class TestInstalledPolicies(base.TestCase):
    """Through the real entry points of the installed package."""

    def test_namespace_lists_builtins(self):
        names = loader.available()
        for name in ('adaptive', 'static', 'nova_default'):
            self.assertIn(name, names)
        self.assertEqual(sorted(names), names)

    def test_stevedore_sees_builtins(self):
        mgr = extension.ExtensionManager(loader.NAMESPACE)
        by_name = {ext.name: ext.plugin for ext in mgr}
        self.assertIs(adaptive.AdaptivePolicy, by_name['adaptive'])
        self.assertIs(static.StaticPolicy, by_name['static'])
        self.assertIs(nova_default.NovaDefaultPolicy,
                      by_name['nova_default'])

    def test_load_each(self):
        for name, cls in (('adaptive', adaptive.AdaptivePolicy),
                          ('static', static.StaticPolicy),
                          ('nova_default', nova_default.NovaDefaultPolicy)):
            policy = loader.load_policy(name, self.conf)
            self.assertIsInstance(policy, cls)
            # Not the whole configuration: the shared groups, and its own.
            self.assertIsInstance(policy.shared, policy_base.SharedOptions)
            self.assertEqual(self.conf.qat_migration.policy,
                             policy.shared.qat_migration.policy)
            self.assertEqual(cls is nova_default.NovaDefaultPolicy,
                             policy.reproduces_nova)
            # The entry-point name and the name in plans agree.
            self.assertEqual(name, policy.name)

    def test_unknown_lists_installed(self):
        exc = self.assertRaises(loader.PolicyNotFound, loader.load_policy,
                                'agressive', self.conf)
        self.assertNotIsInstance(exc, loader.PolicyLoadError)
        message = str(exc)
        self.assertIn("'agressive'", message)
        self.assertIn('adaptive, nova_default, static', message)
        self.assertIn('[qat_migration] policy', message)


class TestWithTestManager(base.TestCase):
    """Through ``DriverManager.make_test_instance``: no installed plugins."""

    def test_third_party_policy_loaded(self):
        mgr = _test_manager('quiet', _QuietPolicy)
        with mock.patch.object(loader.driver, 'DriverManager',
                               return_value=mgr) as dm:
            policy = loader.load_policy('quiet', self.conf)
        self.assertIsInstance(policy, _QuietPolicy)
        self.assertEqual('quiet', policy.plan(datamodel.Facts()).policy)
        args, kwargs = dm.call_args
        self.assertEqual((loader.NAMESPACE, 'quiet'), args)
        # Constructed by the loader, after registering its options.
        self.assertFalse(kwargs['invoke_on_load'])
        # No options declared: no group of its own.
        self.assertIsNone(policy.options)
        self.assertFalse(policy.reproduces_nova)

    def _load(self, name, cls, conf=None):
        conf = conf or self.conf
        with mock.patch.object(loader.driver, 'DriverManager',
                               return_value=_test_manager(name, cls)):
            return loader.load_policy(name, conf)

    def test_options_registered_then_construct_then_load_then_plan(self):
        conf = cfg.ConfigOpts()
        conf(args=[])
        policy = self._load('withopts', _OptionsPolicy, conf)
        self.assertEqual([('init', 7), 'load'], policy.events)
        policy.plan(datamodel.Facts())
        self.assertEqual([('init', 7), 'load', 'plan'], policy.events)

    def test_own_group_only(self):
        conf = cfg.ConfigOpts()
        conf(args=[])
        policy = self._load('withopts', _OptionsPolicy, conf)
        self.assertEqual(7, policy.options.knob)
        self.assertRaises(cfg.NoSuchOptError, getattr, policy.options,
                          'policy')
        # Another policy's group is not reachable from the shared view.
        self.assertNotIn('qat_migration_withopts', policy.shared)
        self.assertFalse(hasattr(policy.shared, 'qat_migration_withopts'))

    def test_load_failure_becomes_unknown_policy(self):
        exc = self.assertRaises(loader.PolicyLoadError, self._load,
                                'loadfails', _LoadFails)
        self.assertIsInstance(exc, loader.UnknownPolicy)
        self.assertIsInstance(exc.__cause__, OSError)
        self.assertIn("'loadfails' failed to load", str(exc))
        self.assertIn('calibration unreadable', str(exc))

    def test_options_without_group_get_their_own(self):
        conf = cfg.ConfigOpts()
        conf(args=[])
        policy = self._load('nogroup', _NoGroup, conf)
        self.assertEqual(3, conf.qat_migration_nogroup.stray)
        self.assertEqual(3, policy.options.stray)

    def test_options_in_another_group_refused(self):
        exc = self.assertRaises(loader.PolicyLoadError, self._load,
                                'othergroup', _OtherGroup)
        self.assertIn('[qat_migration_othergroup]', str(exc))

    def test_default_load_is_a_no_op(self):
        self.assertIsNone(_QuietPolicy(self.conf).load())

    def test_constructed_from_a_whole_conf(self):
        # As tests and tools do: the policy takes its parts from it.
        conf = cfg.ConfigOpts()
        conf(args=[])
        policy = _NoGroup(conf)
        self.assertEqual(3, policy.options.stray)
        self.assertIsInstance(policy.shared, policy_base.SharedOptions)

    def test_not_a_policy_refused(self):
        mgr = _test_manager('odd', _NotAPolicy)
        with mock.patch.object(loader.driver, 'DriverManager',
                               return_value=mgr):
            exc = self.assertRaises(loader.PolicyLoadError,
                                    loader.load_policy, 'odd', self.conf)
        self.assertIn("'odd'", str(exc))
        self.assertIn('not a Policy', str(exc))

    def test_import_failure_becomes_unknown_policy(self):
        ep = metadata.EntryPoint(name='broken', group=loader.NAMESPACE,
                                 value='no_such_module:Policy')

        def fake_manager(namespace, name, on_load_failure_callback=None,
                         **kwargs):
            # What stevedore does when the plugin cannot be imported.
            on_load_failure_callback(None, ep,
                                     ImportError('No module named x'))

        with mock.patch.object(loader.driver, 'DriverManager',
                               side_effect=fake_manager):
            exc = self.assertRaises(loader.PolicyLoadError,
                                    loader.load_policy, 'broken', self.conf)
        self.assertIn("'broken' failed to load", str(exc))
        self.assertIn('No module named x', str(exc))

    def test_unknown_with_nothing_installed(self):
        empty = extension.ExtensionManager.make_test_instance(
            [], namespace=loader.NAMESPACE)
        with mock.patch.object(loader.extension, 'ExtensionManager',
                               return_value=empty):
            self.assertEqual([], loader.available())
            exc = self.assertRaises(loader.PolicyNotFound,
                                    loader.load_policy, 'adaptive-x',
                                    self.conf)
        self.assertIn('installed policies: none', str(exc))


class TestPolicySet(base.TestCase):

    def test_default_from_conf(self):
        self.flags(policy='static')
        policies = loader.PolicySet(self.conf)
        self.assertIsInstance(policies.default, static.StaticPolicy)
        self.assertIs(policies.default,
                      policies.for_hints(datamodel.Hints()))

    def test_hint_selects_and_caches(self):
        policies = loader.PolicySet(self.conf)
        self.assertIsInstance(policies.default, adaptive.AdaptivePolicy)
        hinted = policies.for_hints(datamodel.Hints(policy='nova_default'))
        self.assertIsInstance(hinted, nova_default.NovaDefaultPolicy)
        with mock.patch.object(loader, 'load_policy') as load:
            again = policies.for_hints(
                datamodel.Hints(policy='nova_default'))
        self.assertIs(hinted, again)
        load.assert_not_called()

    def test_unknown_configured_policy_fails_at_start(self):
        self.flags(policy='fastest')
        exc = self.assertRaises(loader.UnknownPolicy, loader.PolicySet,
                                self.conf)
        self.assertIn('adaptive', str(exc))

    def test_unknown_hinted_policy(self):
        policies = loader.PolicySet(self.conf)
        self.assertRaises(loader.UnknownPolicy, policies.for_hints,
                          datamodel.Hints(policy='fastest'))
