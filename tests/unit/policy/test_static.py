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
"""``static``: the operator's fixed choice from ``[qat_migration_static]``."""

from oslo_config import cfg

from nova_qat_migration.policy import loader
from nova_qat_migration.policy import static
from tests.unit import base


class TestStatic(base.TestCase):

    def setUp(self):
        super().setUp()
        self.flags(**base.WIDENED)
        self.policy = static.StaticPolicy(self.conf)

    def plan(self, **facts):
        return self.policy.plan(base.make_facts(**facts))

    def static(self, **kw):
        """Override ``[qat_migration_static]`` options for this test."""
        self.flags(group='qat_migration_static', **kw)

    def test_defaults_plain(self):
        plan = self.plan()
        self.assertEqual('static', plan.policy)
        self.assertEqual('none', plan.method)
        self.assertIsNone(plan.level)
        self.assertEqual(1, plan.parallel_connections)
        self.assertFalse(plan.auto_converge)
        self.assertFalse(plan.post_copy)
        self.assertFalse(plan.qat_lease)
        self.assertFalse(plan.nova_baseline)
        self.assertReason('[qat_migration_static] method=none', plan.reasons)

    def test_method_level_channels_from_options(self):
        self.static(method='zstd', parallel_connections=3)
        self.flags(zstd_level=7)
        plan = self.plan()
        self.assertEqual(('zstd', 7, 3), (plan.method, plan.level,
                                          plan.parallel_connections))

    def test_channels_capped_by_max(self):
        self.static(method='zlib', parallel_connections=16)
        self.flags(max_parallel_connections=6)
        self.assertEqual(6, self.plan().parallel_connections)

    def test_xbzrle_cache_bounded_by_guest_ram(self):
        self.static(method='xbzrle', xbzrle_cache_mb=512)
        plan = self.plan(instance={'memory_mb': 256})
        self.assertEqual(256, plan.xbzrle_cache_mb)
        self.assertReason("guest's RAM", plan.reasons)

    def test_xbzrle_cache_from_option(self):
        self.static(method='xbzrle', xbzrle_cache_mb=512)
        plan = self.plan()
        self.assertEqual('xbzrle', plan.method)
        self.assertEqual(512, plan.xbzrle_cache_mb)
        self.assertEqual(512, plan.xbzrle_cache_max_mb)

    def test_no_cache_for_other_methods(self):
        self.static(method='zstd', xbzrle_cache_mb=512)
        self.assertIsNone(self.plan().xbzrle_cache_mb)

    def test_method_not_allowed_falls_to_none(self):
        self.static(method='mt')   # not in the default allowed list
        plan = self.plan()
        self.assertEqual('none', plan.method)
        self.assertIsNone(plan.level)
        self.assertReason('mt not in [qat_migration] allowed_methods',
                          plan.reasons)

    def test_qatzip_wants_lease(self):
        self.static(method='qatzip')
        self.flags(qatzip_level=4)
        plan = self.plan()
        self.assertTrue(plan.qat_lease)
        self.assertEqual(4, plan.level)

    def test_auto_converge_from_options(self):
        self.static(auto_converge=True)
        self.flags(auto_converge_initial=35, auto_converge_increment=15)
        plan = self.plan()
        self.assertEqual((35, 15), (plan.throttle_initial,
                                    plan.throttle_increment))

    def test_auto_converge_needs_permission(self):
        self.static(auto_converge=True)
        self.flags(permit_auto_converge=False)
        self.assertFalse(self.plan().auto_converge)

    def test_auto_converge_refused_by_hint(self):
        self.static(auto_converge=True)
        self.assertFalse(
            self.plan(hints=dict(allow_throttle=False)).auto_converge)

    def test_post_copy_only_where_permitted(self):
        self.assertFalse(self.plan(hints=dict(
            allow_post_copy=True)).post_copy)
        self.flags(permit_post_copy=True)
        self.assertTrue(self.plan().post_copy)
        self.assertFalse(self.plan(hints=dict(
            allow_post_copy=False)).post_copy)

    def test_hint_forces_method_level_channels(self):
        self.static(method='zlib')
        self.flags(max_parallel_connections=8)
        plan = self.plan(hints=dict(method='zstd', level=9,
                                    parallel_connections=5))
        self.assertEqual(('zstd', 9, 5), (plan.method, plan.level,
                                          plan.parallel_connections))
        self.assertReason('method zstd forced', plan.reasons)

    def test_forced_channels_capped(self):
        plan = self.plan(hints=dict(method='zstd', parallel_connections=32))
        self.assertEqual(self.conf.qat_migration.max_parallel_connections,
                         plan.parallel_connections)

    def test_forced_method_not_allowed(self):
        self.flags(allowed_methods=['none', 'zlib'])
        plan = self.plan(hints=dict(method='zstd'))
        self.assertEqual('none', plan.method)

    def test_downtime_from_hint_or_option(self):
        self.flags(downtime_ms=800, progress_timeout=90,
                   post_copy_after_stalled=7)
        plan = self.plan()
        self.assertEqual(800, plan.max_downtime_ms)
        self.assertEqual(90, plan.progress_timeout_s)
        self.assertEqual(7, plan.post_copy_after_stalled)
        self.assertEqual(
            120, self.plan(hints=dict(max_downtime_ms=120)).max_downtime_ms)

    def test_bandwidth_from_nova(self):
        self.assertEqual(
            333, self.plan(nova=dict(bandwidth_mbps=333)).bandwidth_mbps)


class TestStaticOptions(base.TestCase):
    """``[qat_migration_static]``, declared by the policy, old names read."""

    def _conf(self, text):
        return base.conf_from_text(self, text, register=False)

    def test_declared_by_the_policy(self):
        self.assertEqual('qat_migration_static',
                         static.StaticPolicy.CONFIG_GROUP.name)
        self.assertEqual(
            ['auto_converge', 'method', 'parallel_connections',
             'xbzrle_cache_mb'],
            sorted(o.name for o in static.StaticPolicy.CONFIG_OPTS))

    def test_loader_registers_them(self):
        conf = self._conf('[qat_migration_static]\nmethod = zstd\n')
        self.assertRaises(cfg.NoSuchOptError, getattr, conf,
                          'qat_migration_static')
        loader.register_opts(conf, static.StaticPolicy)
        self.assertEqual('zstd', conf.qat_migration_static.method)

    def test_former_names_still_read(self):
        conf = self._conf('[qat_migration]\nstatic_method = xbzrle\n'
                          'static_parallel_connections = 3\n'
                          'static_xbzrle_cache_mb = 128\n'
                          'static_auto_converge = true\n')
        loader.register_opts(conf, static.StaticPolicy)
        group = conf.qat_migration_static
        self.assertEqual(('xbzrle', 3, 128, True),
                         (group.method, group.parallel_connections,
                          group.xbzrle_cache_mb, group.auto_converge))

    def test_new_name_wins_over_former(self):
        conf = self._conf('[qat_migration]\nstatic_method = xbzrle\n'
                          '[qat_migration_static]\nmethod = zstd\n')
        loader.register_opts(conf, static.StaticPolicy)
        self.assertEqual('zstd', conf.qat_migration_static.method)
