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
"""Issue 24, second hardening pass: one test class per finding.

Each test failed on the code before the fix. The generated-inputs test
(:class:`GeneratedImagePlansTest`) compares the *plans* the built-in
policies make with and without an image's hints: an image never adds a
method, level, channel, cache, throttle or post-copy that the operator's
plan would not allow, and never stops a guest from converging that the
operator's plan moves. Generated cases use a seeded ``random.Random`` so a
failure reproduces.
"""

import argparse
import dataclasses
import io
import json
import os
import random
import threading
import time
from unittest import mock

import ddt
import fixtures
from nova import objects
from oslo_config import cfg

from nova_qat_migration.cmd import cli
from nova_qat_migration.cmd import qat as qat_cmd
from nova_qat_migration import conf as qat_conf
from nova_qat_migration.conf import CONF
from nova_qat_migration.conf import qat_migration as qat_opts
from nova_qat_migration import datamodel
from nova_qat_migration import history
from nova_qat_migration import notifications
from nova_qat_migration import outcomes
from nova_qat_migration.policy import adaptive
from nova_qat_migration.policy import base as policy_base
from nova_qat_migration.policy import candidates
from nova_qat_migration.policy import common
from nova_qat_migration.policy import hints
from nova_qat_migration.policy import static
from nova_qat_migration.policy import tenant
from nova_qat_migration.qat import devices
from nova_qat_migration.qat import health
from nova_qat_migration.virt.libvirt import facts as qat_facts
from nova_qat_migration.virt.libvirt import report
from nova_qat_migration.virt.libvirt import tracker
from nova_qat_migration.virt.libvirt import translate
from tests.unit import base
from tests.unit.qat import base as qat_base
from tests.unit.virt.libvirt import test_driver

SEED = 20261224


def _image(**props):
    """System metadata as Nova keeps an image's properties."""
    return {'image_qat_migration:%s' % k: str(v) for k, v in props.items()}


def _flavor(**specs):
    return {'qat_migration:%s' % k: str(v) for k, v in specs.items()}


class _Planner:
    """Facts with the hints an instance would get, and both policies."""

    def __init__(self, test):
        self.test = test

    def hints(self, image=None, flavor=None, memory_mb=4096):
        got, _ignored = hints.resolve(extra_specs=flavor,
                                      system_metadata=image,
                                      conf=CONF, memory_mb=memory_mb)
        return got

    def facts(self, image=None, flavor=None, **sections):
        memory = (sections.get('instance') or {}).get('memory_mb', 4096)
        sections.setdefault('destination', base.DEST_SOFTWARE)
        return base.make_facts(hints=self.hints(image, flavor, memory),
                               **sections)

    @staticmethod
    def policies():
        pol = adaptive.AdaptivePolicy(CONF)
        pol.load()
        return pol, static.StaticPolicy(CONF)


# -- Medium: an image's method passes the operator's gates -----------------

class ImageMethodGatesTest(base.TestCase):
    """An image chooses among what the operator's gates allow; its level
    and channel count only lower the policy's choice.
    """

    def setUp(self):
        super().setUp()
        self.flags(**base.WIDENED)
        self.p = _Planner(self)
        self.adaptive, self.static = self.p.policies()

    def test_busy_cpu_keeps_software_compression_off(self):
        # 5% idle: the operator's plan is plain pre-copy; the image's
        # zstd-9 used to become zstd-9 on 4 channels.
        facts = self.p.facts(_image(method='zstd', level=9),
                             host={'cpu_idle_pct': 5.0})
        for option, value in (('max_guest_cpu_impact_pct', 0),
                              ('cpu_idle_threshold', 50)):
            self.flags(**{option: value})
            for policy in (self.adaptive, self.static):
                plan = policy.plan(facts)
                self.assertEqual('none', plan.method, policy.name)
                self.assertReason('qat_migration:method=zstd ignored',
                                  plan.reasons)
                self.assertReason(option, plan.reasons)
            self.conf.clear_override(option, group='qat_migration')

    def test_idle_cpu_lets_the_image_choose_zstd(self):
        facts = self.p.facts(_image(method='zstd'),
                             host={'cpu_idle_pct': 90.0})
        for policy in (self.adaptive, self.static):
            plan = policy.plan(facts)
            self.assertEqual('zstd', plan.method, policy.name)
            self.assertReason('chosen by the image', plan.reasons)

    def test_image_level_only_lowers(self):
        self.flags(zstd_level=3)
        facts = self.p.facts(_image(method='zstd', level=9),
                             host={'cpu_idle_pct': 90.0})
        for policy in (self.adaptive, self.static):
            self.assertEqual(3, policy.plan(facts).level, policy.name)
        facts = self.p.facts(_image(method='zstd', level=1),
                             host={'cpu_idle_pct': 90.0})
        for policy in (self.adaptive, self.static):
            self.assertEqual(1, policy.plan(facts).level, policy.name)

    def test_flavor_level_still_fixes_it(self):
        self.flags(zstd_level=3)
        facts = self.p.facts(flavor=_flavor(method='zstd', level=9),
                             host={'cpu_idle_pct': 90.0})
        self.assertEqual(9, self.static.plan(facts).level)
        self.assertEqual(9, self.adaptive.plan(facts).level)

    def test_static_channels_only_lowered_by_the_image(self):
        self.flags(parallel_connections=2, group='qat_migration_static')
        self.flags(method='zstd', group='qat_migration_static')
        facts = self.p.facts(_image(parallel_connections=4),
                             host={'cpu_idle_pct': 90.0})
        self.assertEqual(2, self.static.plan(facts).parallel_connections)
        facts = self.p.facts(_image(parallel_connections=1),
                             host={'cpu_idle_pct': 90.0})
        self.assertEqual(1, self.static.plan(facts).parallel_connections)

    def test_adaptive_channels_only_lowered_by_the_image(self):
        # Plain multifd on a fast link: the rules' own count, not the
        # image's larger one.
        self.flags(max_parallel_connections=8, adaptive_model=False)
        host = {'cpus': 2, 'cpu_idle_pct': 5.0}
        operator = self.adaptive.plan(self.p.facts(host=host))
        image = self.adaptive.plan(self.p.facts(
            _image(parallel_connections=8), host=host))
        self.assertLessEqual(image.parallel_connections,
                             operator.parallel_connections)

    def test_no_xbzrle_cache_below_the_memory_headroom(self):
        # 1000 MiB free under a 2048 MiB headroom: no cache for anyone.
        facts = self.p.facts(_image(method='xbzrle'),
                             host={'mem_free_mb': 1000})
        for policy in (self.adaptive, self.static):
            plan = policy.plan(facts)
            self.assertNotEqual('xbzrle', plan.method, policy.name)
            self.assertIsNone(plan.xbzrle_cache_mb, policy.name)
            self.assertReason('memory_headroom_mb', plan.reasons)

    def test_static_image_cache_bounded_by_spare_memory(self):
        self.flags(xbzrle_cache_mb=1024, group='qat_migration_static')
        facts = self.p.facts(_image(method='xbzrle'),
                             host={'mem_free_mb': 2048 + 300})
        plan = self.static.plan(facts)
        self.assertEqual('xbzrle', plan.method)
        self.assertEqual(256, plan.xbzrle_cache_mb)

    def test_image_qatzip_without_a_lease_ignored(self):
        self.flags(qemu_monitor_passthrough=True)
        facts = self.p.facts(_image(method='qatzip'),
                             host={'cpu_idle_pct': 5.0},
                             destination=base.DEST_QAT,
                             hypervisor=base.HV_QATZIP,
                             qat={'endpoints': 2, 'free_leases': 0},
                             passthrough_allowed=True)
        for policy in (self.adaptive, self.static):
            plan = policy.plan(facts)
            self.assertNotEqual('qatzip', plan.method, policy.name)
            self.assertFalse(plan.qat_lease, policy.name)


# -- Medium: the operator has the last word --------------------------------

class OperatorLastWordTest(base.TestCase):
    """Valid narrowing hints never make a guest unmigratable that the
    operator's plan moves.
    """

    #: A guest dirtying more than the 10 Gbit/s link moves.
    BUSY = dict(instance={'dirty_rate_mbps': 1500.0, 'memory_mb': 4096},
                host={'cpu_idle_pct': 5.0})
    NARROW = _image(max_downtime_ms=10, allow_throttle='false',
                    allow_post_copy='false')

    def setUp(self):
        super().setUp()
        self.flags(permit_post_copy=True)
        self.p = _Planner(self)
        self.adaptive, self.static = self.p.policies()
        self.cal = self.adaptive.calibration

    def test_image_downtime_floor(self):
        got = self.p.hints(_image(max_downtime_ms=10))
        self.assertEqual(hints.IMAGE_DOWNTIME_FLOOR_MS, got.max_downtime_ms)
        # Never above the operator's own, lower limit.
        self.flags(downtime_ms=50)
        self.assertEqual(50, self.p.hints(
            _image(max_downtime_ms=10)).max_downtime_ms)

    def test_operator_plan_when_the_image_would_not_converge(self):
        operator_facts = self.p.facts(**self.BUSY)
        facts = self.p.facts(self.NARROW, **self.BUSY)
        for policy in (self.adaptive, self.static):
            self.flags(auto_converge=True, group='qat_migration_static')
            operator = policy.plan(operator_facts)
            self.assertTrue(tenant.converges(operator_facts, operator,
                                             self.cal), policy.name)
            plan = policy.plan(facts)
            self.assertTrue(tenant.converges(operator_facts, plan,
                                             self.cal), policy.name)
            self.assertTrue(plan.auto_converge or plan.post_copy,
                            policy.name)
            self.assertEqual(operator.max_downtime_ms, plan.max_downtime_ms)
            self.assertReason('set aside', plan.reasons)
            self.assertReason('allow_throttle=False', plan.reasons)

    def test_image_kept_when_it_still_converges(self):
        quiet = dict(instance={'dirty_rate_mbps': 5.0},
                     host={'cpu_idle_pct': 5.0})
        facts = self.p.facts(self.NARROW, **quiet)
        for policy in (self.adaptive, self.static):
            plan = policy.plan(facts)
            self.assertEqual(hints.IMAGE_DOWNTIME_FLOOR_MS,
                             plan.max_downtime_ms, policy.name)
            self.assertFalse(plan.post_copy or plan.auto_converge)
            self.assertNoReason('set aside', plan.reasons)

    def test_image_kept_when_the_operators_plan_fails_too(self):
        self.flags(permit_post_copy=False, permit_auto_converge=False)
        facts = self.p.facts(self.NARROW, **self.BUSY)
        plan = self.adaptive.plan(facts)
        self.assertEqual(hints.IMAGE_DOWNTIME_FLOOR_MS, plan.max_downtime_ms)
        self.assertNoReason('set aside', plan.reasons)

    def test_image_working_set_cannot_talk_the_check_round(self):
        # A tiny working set would make the narrowed plan look like it
        # converges; the check reads the operator's view of the guest.
        facts = self.p.facts(
            _image(working_set_mb=1, allow_throttle='false',
                   allow_post_copy='false'), **self.BUSY)
        plan = self.adaptive.plan(facts)
        self.assertTrue(plan.auto_converge or plan.post_copy)


# -- the generated comparison of plans -------------------------------------

_METHOD_POOL = list(datamodel.METHODS)


class GeneratedImagePlansTest(base.TestCase):
    """Property over generated options, flavors, images and hosts.

    For every built-in policy, the plan made with the image's hints
    against the plan made from the operator's alone: the image adds no
    method the operator's gates would not offer, no higher level, no
    more channels, no larger cache, no throttle or post-copy the
    operator does not permit, no longer downtime; and if the operator's
    plan is predicted to converge, so is the image's.
    """

    CASES = 600

    def _options(self, rng):
        allowed = rng.sample(_METHOD_POOL, rng.randint(1, len(_METHOD_POOL)))
        self.flags(
            downtime_ms=rng.choice([50, 200, 500, 5000]),
            permit_post_copy=rng.random() < 0.5,
            permit_auto_converge=rng.random() < 0.6,
            max_parallel_connections=rng.choice([1, 2, 4, 8]),
            allowed_methods=allowed,
            cpu_idle_threshold=rng.choice([0, 30, 50, 90]),
            memory_headroom_mb=rng.choice([0, 2048, 16384]),
            zstd_level=rng.choice([0, 1, 3]),
            zlib_level=rng.choice([1, 6]),
            qemu_monitor_passthrough=rng.random() < 0.5,
            adaptive_model=rng.random() < 0.8)
        self.flags(group='qat_migration_static',
                   method=rng.choice(sorted(set(allowed) | {'none'})),
                   parallel_connections=rng.choice([1, 2, 4]),
                   auto_converge=rng.random() < 0.5,
                   xbzrle_cache_mb=rng.choice([64, 256, 1024]))

    @staticmethod
    def _hints(rng, chance):
        values = {
            'method': rng.choice(_METHOD_POOL),
            'level': rng.choice([1, 5, 9]),
            'parallel_connections': rng.choice([1, 2, 3, 4, 32]),
            'max_downtime_ms': rng.choice([10, 100, 300, 2000, 60000]),
            'allow_post_copy': rng.choice(['true', 'false']),
            'allow_throttle': rng.choice(['true', 'false']),
            'working_set_mb': rng.choice([0, 64, 1024, 1 << 20]),
        }
        return {k: v for k, v in values.items() if rng.random() < chance}

    def _facts(self, rng, hint_values):
        memory = rng.choice([1024, 4096, 16384])
        qat = rng.random() < 0.4
        return base.make_facts(
            hints=hint_values,
            instance={'memory_mb': memory,
                      'dirty_rate_mbps': rng.choice(
                          [None, 0.0, 50.0, 400.0, 1500.0, 4000.0]),
                      'compress_ratio': rng.choice([None, 0.3, 0.95])},
            host={'cpus': rng.choice([2, 8, 32]),
                  'cpu_idle_pct': rng.choice([2.0, 40.0, 95.0]),
                  'mem_free_mb': rng.choice([0, 1000, 4096, 65536])},
            qat={'endpoints': 4 if qat else 0,
                 'free_leases': rng.choice([0, 1]) if qat else 0},
            hypervisor=rng.choice([datamodel.HypervisorCaps(),
                                   base.HV_QATZIP]),
            destination=rng.choice([datamodel.DestinationCaps(),
                                    base.DEST_SOFTWARE, base.DEST_QAT]),
            nova={'tunnelled': rng.random() < 0.1},
            link_mbps=rng.choice([100.0, 1192.0, 4768.0]),
            passthrough_allowed=CONF.qat_migration.qemu_monitor_passthrough)

    def test_image_never_adds_what_the_operator_would_not_allow(self):
        rng = random.Random(SEED)
        pol_adaptive, pol_static = _Planner(self).policies()
        cal = pol_adaptive.calibration
        for i in range(self.CASES):
            self._options(rng)
            flavor = _flavor(**self._hints(rng, 0.25))
            image = _image(**self._hints(rng, 0.6))
            facts = self._facts(rng, datamodel.Hints())
            memory = facts.instance.memory_mb
            operator_hints, _ = hints.resolve(extra_specs=flavor, conf=CONF,
                                              memory_mb=memory)
            image_hints, _ = hints.resolve(extra_specs=flavor,
                                           system_metadata=image, conf=CONF,
                                           memory_mb=memory)
            facts_op = _with_hints(facts, operator_hints)
            facts_img = _with_hints(facts, image_hints)
            for policy in (pol_adaptive, pol_static):
                case = (i, policy.name, flavor, image)
                op = policy.plan(facts_op)
                img = policy.plan(facts_img)
                policy_base.validate_plan(op)
                policy_base.validate_plan(img)
                self._compare(policy, facts_op, op, img, case)
                if tenant.converges(facts_op, op, cal):
                    self.assertTrue(tenant.converges(facts_op, img, cal),
                                    (case, op.describe(), img.describe()))

    def _compare(self, policy, facts_op, op, img, case):
        lim = common.limits(CONF, facts_op)
        why = (case, op.describe(), img.describe())
        self.assertLessEqual(img.max_downtime_ms, op.max_downtime_ms, why)
        if img.post_copy:
            self.assertTrue(lim.post_copy, why)
        if img.auto_converge:
            self.assertTrue(lim.throttle, why)
        if policy.name == 'static':
            offered = None
            if img.auto_converge:
                self.assertTrue(op.auto_converge, why)
            self.assertLessEqual(img.parallel_connections,
                                 op.parallel_connections, why)
        else:
            offered = candidates.generate(CONF, facts_op, lim).plans
            if img.auto_converge:
                self.assertIn(img.throttle_initial,
                              {p.throttle_initial for p in offered}, why)
        # The method: the operator's, or one the operator's gates offer.
        if img.method != op.method:
            self.assertIsNone(lim.forced_method, why)
            self.assertIsNone(candidates.closed(CONF, facts_op, lim,
                                                img.method), why)
            if offered is not None:
                self.assertIn(img.method, {p.method for p in offered}, why)
        same = [p for p in offered or () if p.method == img.method]
        # The level: never above what the operator's plan gives it.
        # (A level beside none or xbzrle is unused.)
        if img.level is not None and img.method in datamodel.LEVEL_RANGES:
            # (A flavor's level is for its method: a plan degraded to
            # another method runs that one's own level.)
            flavors = (lim.forced_level is not None and
                       lim.forced_method in (None, img.method))
            level = (lim.forced_level if flavors
                     else common.default_level(CONF, img.method))
            self.assertLessEqual(img.level, level, why)
            if img.method == op.method and op.level is not None:
                self.assertLessEqual(img.level, op.level, why)
        # Channels: no more than the operator's plans of that method.
        self.assertLessEqual(img.parallel_connections, lim.max_channels,
                             why)
        if same:
            self.assertLessEqual(
                img.parallel_connections,
                max(p.parallel_connections for p in same), why)
        # Cache: no more than the operator would give.
        if img.method == 'xbzrle':
            if op.method == 'xbzrle':
                self.assertLessEqual(img.xbzrle_cache_mb or 0,
                                     op.xbzrle_cache_mb or 0, why)
                self.assertLessEqual(img.xbzrle_cache_max_mb or 0,
                                     op.xbzrle_cache_max_mb or 0, why)
            else:
                bound = common.xbzrle_cache_max_mb(CONF, facts_op)
                self.assertLessEqual(img.xbzrle_cache_mb or 0, bound, why)
                self.assertLessEqual(img.xbzrle_cache_max_mb or 0, bound,
                                     why)
        else:
            self.assertIsNone(img.xbzrle_cache_mb, why)
        if img.qat_lease:
            self.assertTrue(op.qat_lease or common.qat_available(facts_op),
                            why)


def _with_hints(facts, got):
    return dataclasses.replace(
        facts, instance=dataclasses.replace(facts.instance, hints=got))


def _returns_within(test, seconds, func, *args, fifos=()):
    """``func(*args)``, failing the test if it blocks.

    A call still blocked after ``seconds`` fails the test; a writer then
    opens each of ``fifos`` so the blocked reader returns and the test
    process can end.
    """
    out = []

    def run():
        try:
            out.append((func(*args), None))
        except BaseException as exc:  # handed back below
            out.append((None, exc))
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        for _ in range(int(seconds * 10)):
            for fifo in fifos:
                try:
                    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                except OSError:     # no reader on it (yet)
                    pass
            thread.join(0.1)
            if not thread.is_alive():
                break
        test.fail('%s blocked' % func.__name__)
    value, exc = out[0]
    if exc is not None:
        raise exc
    return value


# -- Medium: empty option values --------------------------------------------

#: Options that read ``name =`` as None (issue 24 counts 16 that failed
#: every migration and 4 that crashed start-up with a bare TypeError).
_NONE_WHEN_EMPTY = [
    ('qat_migration', o.name) for o in qat_opts.ALL_OPTS
    if isinstance(o, (cfg.IntOpt, cfg.FloatOpt)) and o.default is not None
] + [('qat_migration_static', o.name) for o in qat_opts.static_opts
     if isinstance(o, cfg.IntOpt)]


@ddt.ddt
class EmptyOptionsTest(base.TestCase):

    def test_every_integer_option_counted(self):
        names = {name for _group, name in _NONE_WHEN_EMPTY}
        # (downtime_ms and max_parallel_connections: empty is unset, which
        # follows [libvirt], see NovaCeilingTest in test_conf.)
        for name in ('memory_headroom_mb',
                     'xbzrle_cache_min_mb', 'xbzrle_cache_max_mb',
                     'xbzrle_cache_mb', 'parallel_connections',
                     'history_max_entries', 'qat_endpoints_for_migration'):
            self.assertIn(name, names)

    @ddt.data(*_NONE_WHEN_EMPTY)
    @ddt.unpack
    def test_empty_value_refused_naming_it(self, group, name):
        conf = base.conf_from_text(self, '[%s]\n%s =\n' % (group, name))
        exc = self.assertRaises(qat_conf.ConfigError, qat_conf.check, conf,
                                host_memory_mb=8192)
        self.assertIn('[%s] %s must not be empty' % (group, name), str(exc))

    @ddt.data('sysfs_root', 'debugfs_root', 'qatzip_library', 'policy')
    def test_empty_string_refused_where_the_default_is_not(self, name):
        conf = base.conf_from_text(self, '[qat_migration]\n%s =\n' % name)
        exc = self.assertRaises(qat_conf.ConfigError, qat_conf.check, conf,
                                host_memory_mb=8192)
        self.assertIn('[qat_migration] %s must not be empty' % name,
                      str(exc))

    @ddt.data('state_path', 'model_calibration', 'allowed_methods',
              'image_policies')
    def test_empty_keeps_its_meaning_where_the_default_is_empty(self, name):
        conf = base.conf_from_text(self, '[qat_migration]\n%s =\n' % name)
        qat_conf.check(conf, host_memory_mb=8192)


# -- Low: absurd numbers and files that block ------------------------------

@ddt.ddt
class SaneBoundsTest(base.TestCase):

    @ddt.data('1e308', '10001', '1e5')
    def test_link_gbps_bounded(self, value):
        conf = base.conf_from_text(
            self, '[qat_migration]\nlink_gbps = %s\n' % value)
        exc = self.assertRaises(qat_conf.ConfigError, qat_conf.check, conf,
                                host_memory_mb=8192)
        self.assertIn('[qat_migration] link_gbps must be at most', str(exc))

    def test_fast_link_accepted(self):
        conf = base.conf_from_text(self,
                                   '[qat_migration]\nlink_gbps = 400\n')
        qat_conf.check(conf, host_memory_mb=8192)

    @ddt.data(('stream_mbps', 1e-300), ('stream_mbps', 0.5),
              ('compress_mbps', 1e9), ('setup_s', 3000.0),
              ('switchover_s', 120.0))
    @ddt.unpack
    def test_absurd_calibration_refused(self, field, value):
        path = base.temp_file(self, 'cal.json',
                              '{"%s": %r}' % (field, value))
        exc = self.assertRaises(qat_conf.ConfigError,
                                qat_conf.check_calibration, path)
        self.assertIn(field, str(exc))

    def test_committed_calibration_still_accepted(self):
        path = os.path.join(os.path.dirname(os.path.dirname(
            os.path.dirname(os.path.abspath(__file__)))),
            'benchmarks', 'calibration.json')
        self.assertIn('stream_mbps', qat_conf.check_calibration(path))

    def _raised(self, func, *args, fifos=()):
        try:
            _returns_within(self, 10, func, *args, fifos=fifos)
        except Exception as exc:  # handed to the test
            return exc
        return None

    def test_fifo_calibration_refused_without_blocking(self):
        path = os.path.join(self.useFixture(fixtures.TempDir()).path, 'cal')
        os.mkfifo(path)
        exc = self._raised(qat_conf.check_calibration, path, fifos=[path])
        self.assertIsInstance(exc, qat_conf.ConfigError)
        self.assertIn('not a regular file', str(exc))
        self.assertIn('[qat_migration] model_calibration', str(exc))

    def test_directory_calibration_refused(self):
        path = self.useFixture(fixtures.TempDir()).path
        exc = self._raised(qat_conf.check_calibration, path)
        self.assertIsInstance(exc, qat_conf.ConfigError)


# -- Low: case variants of the namespace -----------------------------------

class NamespaceCaseTest(base.TestCase):
    """``QAT_MIGRATION:x`` passes Nova's API (an unknown namespace to it)
    and is never read: every migration says so, naming the key.
    """

    def test_flavor_case_variant_named(self):
        got, ignored = hints.resolve(
            extra_specs={'QAT_MIGRATION:allow_post_copy': 'false',
                         'qat_migration:max_downtime_ms': '300'})
        self.assertIsNone(got.allow_post_copy)
        self.assertEqual(300, got.max_downtime_ms)
        self.assertEqual(1, len(ignored))
        self.assertIn('flavor extra spec QAT_MIGRATION:allow_post_copy',
                      ignored[0])
        self.assertIn('lower case', ignored[0])

    def test_image_case_variants_named(self):
        _got, ignored = hints.resolve(system_metadata={
            'image_Qat_Migration:method': 'zstd'},
            image_properties={'QAT_migration:level': '3'})
        text = '\n'.join(ignored)
        self.assertIn('image property Qat_Migration:method', text)
        self.assertIn('image property QAT_migration:level', text)

    def test_warning_logged_at_each_migration(self):
        logger = self.useFixture(fixtures.FakeLogger())
        hints.from_instance(extra_specs={
            'QAT_MIGRATION:allow_post_copy': 'false'})
        self.assertIn('QAT_MIGRATION:allow_post_copy', logger.output)

    def test_other_namespaces_silent(self):
        _got, ignored = hints.resolve(
            extra_specs={'hw:cpu_policy': 'dedicated',
                         'qat_migrationx:y': '1'},
            system_metadata={'image_hw_disk_bus': 'virtio'})
        self.assertEqual([], ignored)


# -- Low: one bad history entry costs that entry, not the file -------------

class HistoryEntryTest(base.TestCase):

    def setUp(self):
        super().setUp()
        self.logger = self.useFixture(fixtures.FakeLogger())
        self.path = self.useFixture(fixtures.TempDir()).path
        self.file = os.path.join(self.path, history.FILENAME)

    def _write(self, text):
        self.file = base.temp_file(self, history.FILENAME, text)
        self.path = os.path.dirname(self.file)

    def _entries(self, *bad):
        good = [{'uuid': 'good-1', 'wire_mbps': 100.0, 'method': 'zstd'},
                {'uuid': 'good-2', 'converged': True}]
        return ('{"version": 1, "instances": [%s]}'
                % ', '.join([json.dumps(good[0])] + list(bad) +
                            [json.dumps(good[1])]))

    def _assert_good_kept(self, store):
        self.assertEqual(100.0, store.get('good-1').wire_mbps)
        self.assertEqual('zstd', store.get('good-1').method)
        self.assertIs(True, store.get('good-2').converged)

    def test_number_of_5000_digits_costs_the_field(self):
        self._write(self._entries(
            '{"uuid": "bad", "method": "xbzrle", "total_s": %s}'
            % ('9' * 5000)))
        store = history.HistoryStore(self.path)
        self._assert_good_kept(store)
        self.assertEqual('xbzrle', store.get('bad').method)
        self.assertIsNone(store.get('bad').total_s)

    def test_huge_uuid_or_counter_costs_the_entry_or_field(self):
        self._write(self._entries(
            '{"uuid": %s}' % ('1' * 5000),
            '{"uuid": "c", "migrations": %s}' % ('7' * 5000)))
        store = history.HistoryStore(self.path)
        self._assert_good_kept(store)
        self.assertEqual(0, store.get('c').migrations)

    def test_deep_value_costs_the_field(self):
        deep = '[' * 100000 + ']' * 100000
        self._write(self._entries(
            '{"uuid": "deep", "method": "zlib", "wire_mbps": %s}' % deep))
        store = history.HistoryStore(self.path)
        self._assert_good_kept(store)
        self.assertEqual('zlib', store.get('deep').method)

    def test_deep_entry_costs_the_entry(self):
        self._write(self._entries('[' * 100000 + ']' * 100000,
                                  '{"uuid": "x\\"[[["}'))
        store = history.HistoryStore(self.path)
        self._assert_good_kept(store)
        self.assertEqual(3, len(store))

    def test_next_write_keeps_the_good_entries(self):
        self._write(self._entries('{"uuid": "bad", "total_s": %s}'
                                  % ('9' * 5000)))
        store = history.HistoryStore(self.path)
        store.record('new', {'method': 'none'})
        reread = history.HistoryStore(self.path)
        self._assert_good_kept(reread)
        self.assertEqual('none', reread.get('new').method)

    def test_unreadable_file_moved_aside_before_it_is_replaced(self):
        garbage = b'\x00not a history\xff' * 10
        self._write(garbage)
        store = history.HistoryStore(self.path)
        store.record('new', {'method': 'zstd'})
        with open(self.file + history.CORRUPT_SUFFIX, 'rb') as f:
            self.assertEqual(garbage, f.read())
        self.assertEqual('zstd', history.HistoryStore(self.path)
                         .get('new').method)
        self.assertIn(history.CORRUPT_SUFFIX, self.logger.output)

    def test_lock_that_cannot_be_taken_keeps_the_history_in_memory(self):
        # The lock file's name is taken by a directory: the lock cannot
        # be taken (even as root).
        os.mkdir(os.path.join(self.path, history.LOCKNAME))
        store = history.HistoryStore(self.path)
        store.record('a', {'method': 'zstd'})
        store.record('a', {'converged': True})
        got = store.get('a')
        self.assertEqual(('zstd', True, 2),
                         (got.method, got.converged, got.migrations))
        self.assertEqual(1, self.logger.output.count('kept in memory'))
        self.assertFalse(os.path.exists(self.file))

    def test_state_path_that_is_a_file_keeps_the_history_in_memory(self):
        path = os.path.join(self.path, 'not-a-dir')
        with open(path, 'w') as f:
            f.write('x')
        store = history.HistoryStore(path)
        store.record('a', {'method': 'xbzrle'})
        self.assertEqual('xbzrle', store.get('a').method)
        self.assertIn('kept in memory', self.logger.output)

    def test_lock_failure_never_raises_from_record(self):
        store = history.HistoryStore(self.path)
        self.useFixture(fixtures.MockPatch(
            'oslo_concurrency.lockutils.lock',
            side_effect=PermissionError(13, 'Permission denied')))
        store.record('a', {'method': 'zstd'})
        self.assertEqual('zstd', store.get('a').method)


# -- Low: non-finite numbers in job stats or facts --------------------------

INF, NAN = float('inf'), float('nan')


def _refuse(name):
    raise ValueError(name)


class NonFiniteNumbersTest(base.TestCase):
    """NaN and infinity become None: the report, the notification and the
    history record all survive, and the log line is strict JSON.
    """

    STATS = {'memory_total': INF, 'memory_processed': NAN,
             'memory_iteration': INF, 'time_elapsed': NAN,
             'compression_bytes': INF, 'compression_pages': NAN,
             'compression_cache_misses': INF, 'compression_overflow': NAN,
             'memory_remaining': INF, 'memory_dirty_rate': NAN,
             'auto_converge_throttle': INF}

    def _record(self):
        track = tracker.ProgressTracker()
        track.update(dict(self.STATS))
        facts = base.make_facts(
            instance={'dirty_rate_mbps': NAN, 'compress_ratio': INF},
            host={'cpu_idle_pct': NAN}, link_mbps=INF)
        plan = datamodel.Plan(policy='adaptive')
        return report.build(
            instance_uuid='3e5d2c1a-8b7f-4f6e-9a0b-1c2d3e4f5a6b',
            requested=plan, outcome=outcomes.OUTCOME_COMPLETED,
            total_s=INF, last_stats=dict(self.STATS),
            completed_stats={'downtime': NAN, 'time_elapsed': INF},
            summary=track.summary(), facts=facts,
            prediction={'total_s': INF, 'downtime_ms': NAN})

    def test_record_is_strict_json(self):
        record = self._record()
        text = json.dumps(record, allow_nan=False, default=str)
        back = json.loads(text, parse_constant=_refuse)
        self.assertIsNone(back['iterations'])
        self.assertIsNone(back['total_s'])
        self.assertIsNone(back['facts']['dirty_rate_mbps'])
        self.assertIsNone(back['prediction']['total_s'])

    def test_notification_built(self):
        note = notifications.build(self._record(), host='cmp1')
        data = note.payload.obj_to_primitive()['nova_object.data']
        self.assertIsNone(data['iterations'])
        self.assertIsNone(data['facts']['cpu_idle_pct'])

    def test_payload_from_a_record_not_made_by_build(self):
        record = {'instance': '3e5d2c1a-8b7f-4f6e-9a0b-1c2d3e4f5a6b',
                  'outcome': 'failed', 'iterations': INF, 'bytes': NAN,
                  'total_s': INF, 'monitor': {'iterations': INF,
                                              'max_dirty_rate_mbps': NAN},
                  'compression': {'bytes': INF}, 'facts': {'x': NAN}}
        payload = notifications.QATMigrationPayload(record)
        self.assertIsNone(payload.iterations)
        self.assertIsNone(payload.monitor.iterations)
        self.assertIsNone(payload.compression.bytes)
        self.assertIsNone(payload.facts['x'])

    def test_emit_logs_strict_json_and_records_history(self):
        logs = self.useFixture(fixtures.FakeLogger())
        store = history.HistoryStore(None)
        with mock.patch.object(notifications, 'emit_report') as sent:
            report.emit(self._record(), store)
        sent.assert_called_once()
        line = [x for x in logs.output.splitlines() if outcomes.PREFIX in x][0]
        json.loads(line.split(outcomes.PREFIX, 1)[1], parse_constant=_refuse)
        self.assertEqual(1, store.get(
            '3e5d2c1a-8b7f-4f6e-9a0b-1c2d3e4f5a6b').migrations)
        self.assertNotIn('Could not', logs.output)

    def test_tracker_survives_non_finite_stats(self):
        track = tracker.ProgressTracker()
        track.update(dict(self.STATS))
        summary = track.summary()
        self.assertEqual(0, summary['iterations'])


# -- Low: sysfs entries that block or hide devices -------------------------

class SysfsTest(qat_base.QATTestCase):

    def setUp(self):
        super().setUp()
        self.fifos = []

    def _fifo(self, path):
        os.unlink(path)
        os.mkfifo(path)
        self.fifos.append(path)

    def test_fifo_attribute_does_not_block_the_scan(self):
        self.tree.add_pf('0000:6b:00.0', '4xxx', numvfs=2)
        self.tree.add_pf('0000:70:00.0', '4xxx', numvfs=2)
        pf = self.tree.device_dir('0000:6b:00.0')
        self._fifo(os.path.join(pf, 'numa_node'))
        self._fifo(os.path.join(pf, 'qat', 'state'))
        pfs = _returns_within(self, 10, devices.discover, self.tree.sysfs,
                              fifos=self.fifos)
        self.assertEqual(['0000:6b:00.0', '0000:70:00.0'],
                         [p.address for p in pfs])
        self.assertEqual(-1, pfs[0].numa_node)
        self.assertIn('not a regular file', self.log.output)

    def test_fifo_heartbeat_does_not_block_the_health_check(self):
        self.tree.add_pf('0000:6b:00.0', '4xxx', numvfs=2)
        self.tree.set_heartbeat('0000:6b:00.0', 0)
        status = os.path.join(self.tree.debugfs_dir('0000:6b:00.0'),
                              'heartbeat', 'status')
        self._fifo(status)
        reader = health.HealthReader(self.tree.debugfs)
        directory = self.tree.debugfs_dir('0000:6b:00.0')
        self.assertIsNone(_returns_within(self, 10, reader.heartbeat,
                                          directory, fifos=self.fifos))

    def test_non_ascii_virtfn_hides_nothing(self):
        self.tree.add_pf('0000:6b:00.0', '4xxx', numvfs=3)
        self.tree.add_pf('0000:70:00.0', '4xxx', numvfs=2)
        pf = self.tree.device_dir('0000:6b:00.0')
        os.symlink(os.readlink(os.path.join(pf, 'virtfn1')),
                   os.path.join(pf, 'virtfn\u00b2'))
        pfs = devices.discover(self.tree.sysfs)
        self.assertEqual([3, 2], [len(p.vfs) for p in pfs])
        self.assertIn('not a VF link', self.log.output)

    def _non_utf8_pf(self):
        self.tree.add_pf('0000:6b:00.0', '4xxx', numvfs=2)
        self.tree.add_pf('0000:70:00.0', '4xxx', numvfs=2)
        links = os.path.join(self.tree.sysfs, 'bus', 'pci', 'devices')
        os.rename(os.path.join(links, '0000:70:00.0').encode(),
                  os.path.join(links.encode(), b'0000:70:00.\xff'))

    def test_non_utf8_pf_name_ignored(self):
        self._non_utf8_pf()
        pfs = devices.discover(self.tree.sysfs)
        self.assertEqual(['0000:6b:00.0'], [p.address for p in pfs])
        self.assertIn('not a PCI address', self.log.output)

    def test_devices_command_prints_under_a_utf8_locale(self):
        self._non_utf8_pf()
        parser = argparse.ArgumentParser()
        qat_cmd.add_parsers(parser.add_subparsers())
        args = parser.parse_args(['devices', '--sysfs-root',
                                  self.tree.sysfs, '-v'])
        raw = io.BytesIO()
        out = io.TextIOWrapper(raw, encoding='utf-8', errors='strict')
        with mock.patch('sys.stdout', out):
            rc = args.func(args)
            out.flush()
        self.assertEqual(0, rc)
        self.assertIn(b'PF 0000:6b:00.0', raw.getvalue())

    def test_printable_escapes_undecodable_names(self):
        name = os.fsdecode(b'drv\xff')
        self.assertEqual('drv\\xff', qat_cmd._printable(name))


# -- Low: command-line tracebacks ------------------------------------------

class CommandLineTest(base.TestCase):

    def _main(self, argv, env=None):
        err, out = io.StringIO(), io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', err))
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', out))
        for name, value in (env or {}).items():
            self.useFixture(fixtures.EnvironmentVariable(name, value))
        return cli.main(argv), out.getvalue(), err.getvalue()

    def test_plan_runs_the_start_up_check(self):
        for text, option in (
                ('[qat_migration]\ndowntime_ms = 5\n', 'downtime_ms'),
                ('[qat_migration]\nmemory_headroom_mb =\n',
                 'memory_headroom_mb'),
                ('[qat_migration]\nlink_gbps = 1e308\n', 'link_gbps'),
                ('[qat_migration]\nxbzrle_cache_min_mb = 8192\n',
                 'xbzrle_cache_min_mb')):
            conf = base.temp_file(self, 'nova.conf', text)
            rc, _out, err = self._main(['--config-file', conf, 'plan'])
            self.assertEqual(2, rc, text)
            self.assertIn('[qat_migration] %s' % option, err)
            self.assertIn('nova-compute would not start', err)
            self.assertNotIn('Traceback', err)
            CONF.reset()
            CONF.clear()

    def test_drain_with_a_malformed_clouds_yaml(self):
        for text in ('clouds: 5\n', 'clouds: [1, 2]\n',
                     'clouds: {a: 5}\n', 'clouds: {: ]\n'):
            clouds = base.temp_file(self, 'clouds.yaml', text)
            rc, _out, err = self._main(
                ['drain', 'cmp1', '--dry-run'],
                env={'OS_CLIENT_CONFIG_FILE': clouds, 'OS_CLOUD': 'a'})
            self.assertEqual(2, rc, text)
            self.assertIn('clouds.yaml', err)
            self.assertNotIn('Traceback', err)


# -- Low: a plugin's invalid plan; the plan lock and slow measurements -----

_PLAN = datamodel.Plan(policy='plugin')


@ddt.ddt
class ValidatePlanTest(base.TestCase):

    @ddt.data(('bandwidth_mbps', -1), ('bandwidth_mbps', 1.5),
              ('parallel_connections', 0), ('parallel_connections', True),
              ('level', float('nan')), ('max_downtime_ms', float('inf')),
              ('max_downtime_ms', 0), ('throttle_initial', 150),
              ('xbzrle_cache_mb', -64), ('progress_timeout_s', -1),
              ('method', 'lz4'), ('post_copy', 'yes'),
              ('fallbacks', (('zstd', 99),)), ('fallbacks', 'zstd'),
              ('reasons', (1, 2)))
    @ddt.unpack
    def test_invalid_field_named(self, field, value):
        plan = dataclasses.replace(_PLAN, **{field: value})
        exc = self.assertRaises(policy_base.InvalidPlan,
                                policy_base.validate_plan, plan)
        self.assertIn(field.rstrip('s') if field == 'fallbacks' else field,
                      str(exc))

    def test_level_checked_against_the_method(self):
        policy_base.validate_plan(dataclasses.replace(
            _PLAN, method='zstd', level=20))
        self.assertRaises(policy_base.InvalidPlan, policy_base.validate_plan,
                          dataclasses.replace(_PLAN, method='zlib',
                                              level=20))

    def test_not_a_plan(self):
        self.assertRaises(policy_base.InvalidPlan, policy_base.validate_plan,
                          {'policy': 'x'})

    def test_built_in_plans_valid(self):
        facts = base.make_facts()
        for cls in (adaptive.AdaptivePolicy, static.StaticPolicy):
            policy_base.validate_plan(cls(CONF).plan(facts))
        from nova_qat_migration.policy import nova_default
        policy_base.validate_plan(
            nova_default.NovaDefaultPolicy(CONF).plan(facts))


class _DriverTest(test_driver.DriverTestBase):

    A = '11111111-2222-3333-4444-00000000000a'
    B = '11111111-2222-3333-4444-00000000000b'

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.MonkeyPatch(
            'nova_qat_migration.virt.libvirt.measure.host_load',
            lambda *a, **k: datamodel.HostLoad()))

    def _instance(self, uuid):
        flavor = objects.Flavor(memory_mb=2048, vcpus=2, extra_specs={})
        return objects.Instance(uuid=uuid, vm_state='active', flavor=flavor,
                                system_metadata={})


class PluginPlanTest(_DriverTest):

    def test_invalid_plugin_plan_falls_back_to_novas_call(self):
        self.flags(policy='static', group='qat_migration')
        drvr = self.driver()
        drvr.init_host('host')
        self.useFixture(fixtures.MonkeyPatch(
            'nova_qat_migration.policy.static.StaticPolicy.plan',
            lambda self_, facts: datamodel.Plan(policy='static',
                                                bandwidth_mbps=-5)))
        logger = self.useFixture(fixtures.FakeLogger())
        migrate_data = objects.LibvirtLiveMigrateData(block_migration=False)
        session = drvr._qat_plan(None, self._instance(self.A), 'dest',
                                 migrate_data)
        self.assertEqual('nova_default', session.plan.policy)
        self.assertEqual(session.nova_call.params, session.call.params)
        self.assertNotIn(-5, session.call.params.values())
        self.assertIn('bandwidth_mbps -5', logger.output)

    def test_translate_never_sees_an_invalid_plan(self):
        self.flags(policy='static', group='qat_migration')
        drvr = self.driver()
        drvr.init_host('host')
        self.useFixture(fixtures.MonkeyPatch(
            'nova_qat_migration.policy.static.StaticPolicy.plan',
            lambda self_, facts: datamodel.Plan(
                policy='static', method='zstd', level=float('nan'),
                parallel_connections=4)))
        seen = []
        real = translate.to_libvirt

        def to_libvirt(plan, facts):
            seen.append(plan)
            return real(plan, facts)
        self.useFixture(fixtures.MonkeyPatch(
            'nova_qat_migration.virt.libvirt.translate.to_libvirt',
            to_libvirt))
        self.useFixture(fixtures.FakeLogger())
        drvr._qat_plan(None, self._instance(self.A), 'dest',
                       objects.LibvirtLiveMigrateData(block_migration=False))
        self.assertTrue(seen)
        for plan in seen:
            policy_base.validate_plan(plan)


class PlanLockTest(_DriverTest):
    """Measuring one guest does not hold up another migration's plan."""

    def test_slow_measurement_does_not_delay_another_plan(self):
        self.flags(policy='static', group='qat_migration')
        drvr = self.driver()
        drvr.init_host('host')
        self.useFixture(fixtures.FakeLogger())
        a_measuring = threading.Event()
        b_planned = threading.Event()
        real_gather = qat_facts.gather

        def gather(conf, context, instance, *args, **kwargs):
            if instance.uuid == self.A:
                # Guest A's measurement lasts until B has been planned
                # (or 10 s, when B waits for A's lock).
                a_measuring.set()
                b_planned.wait(10)
            return real_gather(conf, context, instance, *args, **kwargs)
        self.useFixture(fixtures.MonkeyPatch(
            'nova_qat_migration.virt.libvirt.facts.gather', gather))
        planned = {}

        def nova_live_migration(self_, context, instance, *args):
            planned[instance.uuid] = time.monotonic()
            if instance.uuid == self.B:
                b_planned.set()
        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.driver.LibvirtDriver._live_migration',
            nova_live_migration))

        def migrate(uuid):
            drvr._live_migration(
                None, self._instance(uuid), 'dest', 'post', 'recover', False,
                objects.LibvirtLiveMigrateData(block_migration=False))
        thread_a = threading.Thread(target=migrate, args=(self.A,))
        thread_a.start()
        self.assertTrue(a_measuring.wait(10))
        started = time.monotonic()
        migrate(self.B)
        thread_a.join(30)
        self.assertLess(planned[self.B] - started, 5.0)
        self.assertLess(planned[self.B], planned[self.A])
        self.assertEqual({}, drvr._qat_budget.shares())
