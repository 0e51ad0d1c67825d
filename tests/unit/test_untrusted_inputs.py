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
"""Every untrusted input, table-driven and generated, with its outcome.

Each input is either refused with a message naming the key, option or
field, or ignored with a warning -- never a traceback, never a widened
limit:

=====================  =========================  ========================
input                  who controls it            outcome when bad
=====================  =========================  ========================
flavor extra specs     operator                   API 400 naming the key;
                                                  an accepted flavor always
                                                  plans
image properties       tenant                     ignored with a warning;
                                                  valid ones only narrow
``history.json``       nobody (state on disk)     bad fields dropped, file
                                                  healed on the next write
``--facts`` file       operator at a shell        exit 2 naming the field
``[qat_migration]``    operator                   nova-compute does not
                                                  start, naming the option
QMP replies            the source QEMU            ``PassthroughError``
=====================  =========================  ========================

Generated cases use a seeded ``random.Random`` so a failure reproduces.
"""

import dataclasses
import io
import itertools
import json
import math
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from unittest import mock

import ddt
import fixtures
from nova.api.validation.extra_specs import validators
from nova import exception
from nova import objects
from oslo_config import cfg

from nova_qat_migration.cmd import cli
from nova_qat_migration import conf as qat_conf
from nova_qat_migration.conf import CONF
from nova_qat_migration.conf import qat_migration as qat_opts
from nova_qat_migration import datamodel
from nova_qat_migration import history
from nova_qat_migration import history_format
from nova_qat_migration.policy import adaptive
from nova_qat_migration.policy import common
from nova_qat_migration.policy import hints
from nova_qat_migration.policy import loader
from nova_qat_migration.policy import nova_default
from nova_qat_migration.policy import static
from nova_qat_migration.virt.libvirt import passthrough
from nova_qat_migration.virt.libvirt import qemu_probe
from nova_qat_migration.virt.libvirt import translate
from tests.unit import base
from tests.unit.virt.libvirt import test_driver

SEED = 20261130

#: Values of every type a tenant (or an old API) could put in a property.
WEIRD_VALUES = [
    '', ' ', 'nan', 'NaN', 'inf', '-inf', '1e400', '-1', '0', '1.5',
    '9' * 5000, 'x' * 10000, 'yes', 'None', 'null', '\x00', 'zstd ',
    'ZSTD', '../../etc', '{"a": 1}', '[1]', 10 ** 30, -5, 3.5,
    float('nan'), float('inf'), None, True, False, [], {}, ['zstd'],
    {'method': 'zstd'},
]

#: Per key: values the API accepts (and so must never fail a pre-check).
VALID = {
    'policy': ['adaptive', 'static', 'nova_default'],
    'method': list(datamodel.METHODS),
    'level': ['1', '5', '9'],
    'parallel_connections': ['1', '2', '32'],
    'max_downtime_ms': ['10', '300', '500', '60000'],
    'allow_post_copy': ['true', 'false'],
    'allow_throttle': ['yes', 'no'],
    'working_set_mb': ['0', '512', '16777216'],
}


def _spec(key):
    return '%s:%s' % (hints.NAMESPACE, key)


def _api_accepts(name, value):
    try:
        validators.validate(name, value)
        return True
    except exception.ValidationError:
        return False


class _Conf:
    """A stand-in for ``conf.qat_migration`` with chosen values."""

    def __init__(self, **values):
        group = {opt.dest: opt.default for opt in qat_opts.ALL_OPTS}
        group.update(values)
        self.qat_migration = type('Group', (), group)()


# -- flavor extra specs through the API validator --------------------------

@ddt.ddt
class FlavorExtraSpecsTest(base.TestCase):
    """The API refuses what a pre-check would; what it accepts plans."""

    def test_weird_values_api_and_precheck_agree(self):
        for key in hints.KEYS:
            for value in WEIRD_VALUES + VALID[key.name]:
                if not isinstance(value, str):
                    continue    # the API only ever receives strings
                api_ok = _api_accepts(key.spec, value)
                try:
                    hints.from_instance(extra_specs={key.spec: value})
                    hint_ok = True
                except hints.InvalidHint as exc:
                    hint_ok = False
                    self.assertIn(key.spec, str(exc))
                self.assertEqual(api_ok, hint_ok, (key.spec, value[:40]))

    def test_refusals_name_the_key(self):
        for key in hints.KEYS:
            for value in WEIRD_VALUES:
                if not isinstance(value, str) or _api_accepts(key.spec,
                                                              value):
                    continue
                exc = self.assertRaises(exception.ValidationError,
                                        validators.validate, key.spec, value)
                self.assertIn(key.spec, exc.format_message())
                self.assertEqual(400, exc.code)

    def test_unknown_keys_refused(self):
        for name in ('qat_migration:lvl', 'qat_migration:',
                     'qat_migration:method:extra'):
            self.assertFalse(_api_accepts(name, '1'), name)
            self.assertRaises(hints.InvalidHint, hints.from_instance,
                              extra_specs={name: '1'})

    @ddt.data(*itertools.product(datamodel.METHODS, VALID['level']))
    @ddt.unpack
    def test_every_method_level_pair_plans(self, method, level):
        self._plans({_spec('method'): method, _spec('level'): level})

    def test_generated_flavors_accepted_by_the_api_plan(self):
        rng = random.Random(SEED)
        for _ in range(150):
            specs = {_spec(k): rng.choice(v) for k, v in VALID.items()
                     if rng.random() < 0.6}
            for name, value in specs.items():
                self.assertTrue(_api_accepts(name, value), (name, value))
            self._plans(specs)

    def _plans(self, specs):
        """``specs`` pass the pre-check and every built-in policy plans."""
        got = hints.from_instance(extra_specs=specs)
        facts = base.make_facts(
            hints=got, host={'cpu_idle_pct': 90.0, 'mem_free_mb': 65536},
            destination=base.DEST_QAT, hypervisor=base.HV_QATZIP,
            qat={'endpoints': 4, 'free_leases': 1}, passthrough_allowed=True)
        for cls in (adaptive.AdaptivePolicy, static.StaticPolicy,
                    nova_default.NovaDefaultPolicy):
            plan = cls(self.conf).plan(facts)
            call = translate.to_libvirt(plan, facts)
            self.assertIsInstance(call.flags, int, (specs, cls))


# -- image properties through the pre-check --------------------------------

@ddt.ddt
class ImagePropertiesTest(base.TestCase):
    """Tenant input: ignored with a warning when bad, only ever narrows."""

    def _resolve(self, image, flavor=None, memory_mb=4096, **conf):
        self.flags(**conf)
        return hints.resolve(
            extra_specs=flavor,
            system_metadata={'image_' + k: v for k, v in image.items()},
            conf=self.conf, memory_mb=memory_mb)

    def test_every_weird_value_of_every_key_is_ignored_not_raised(self):
        for key in hints.KEYS:
            for value in WEIRD_VALUES:
                got, ignored = self._resolve({key.spec: value})
                if ignored:
                    self.assertIn('image property %s' % key.spec,
                                  ignored[0])
                # Whatever survived is a valid, finite value of its type.
                kept = getattr(got, key.name)
                if kept is not None:
                    self.assertIsInstance(kept, key.type)
                    if key.type is int:
                        self.assertTrue(key.min <= kept <= key.max)

    def test_unknown_key_ignored_naming_it(self):
        got, ignored = self._resolve({'qat_migration:compresion': 'zstd'})
        self.assertEqual(datamodel.Hints(), got)
        self.assertIn('qat_migration:compresion', ignored[0])

    def test_warning_logged(self):
        logger = self.useFixture(fixtures.FakeLogger())
        hints.from_instance(system_metadata={
            'image_qat_migration:method': 'lz4'})
        self.assertIn('image property qat_migration:method', logger.output)

    def test_flavor_stays_strict(self):
        exc = self.assertRaises(
            hints.InvalidHint, hints.resolve,
            extra_specs={'qat_migration:method': 'lz4'},
            system_metadata={'image_qat_migration:method': 'lz4'})
        self.assertIn('flavor extra spec qat_migration:method', str(exc))

    @ddt.data(('600', 500, 500), ('60000', 500, 500), ('300', 500, 300),
              # never under hints.IMAGE_DOWNTIME_FLOOR_MS, unless the
              # operator's own limit is
              ('10', 500, 100), ('99', 500, 100), ('100', 500, 100),
              ('10', 50, 50))
    @ddt.unpack
    def test_image_downtime_never_above_the_option(self, value, option,
                                                   want):
        got, _ = self._resolve({'qat_migration:max_downtime_ms': value},
                               downtime_ms=option)
        self.assertEqual(want, got.max_downtime_ms)

    def test_image_downtime_never_above_the_flavor(self):
        got, ignored = self._resolve(
            {'qat_migration:max_downtime_ms': '5000'},
            flavor={'qat_migration:max_downtime_ms': '2000'})
        self.assertEqual(2000, got.max_downtime_ms)
        self.assertIn('lowered', ignored[0])

    def test_flavor_may_widen_within_option_bounds(self):
        got, _ = self._resolve(
            {}, flavor={'qat_migration:max_downtime_ms': '2000'})
        self.assertEqual(2000, got.max_downtime_ms)

    def test_image_policy_ignored_by_default(self):
        got, ignored = self._resolve({'qat_migration:policy':
                                      'nova_default'}, policy='adaptive')
        self.assertIsNone(got.policy)
        self.assertIn('image_policies', ignored[0])

    def test_image_policy_when_operator_allows_it(self):
        got, ignored = self._resolve(
            {'qat_migration:policy': 'nova_default'},
            image_policies=['nova_default'])
        self.assertEqual('nova_default', got.policy)
        self.assertEqual([], ignored)
        got, ignored = self._resolve(
            {'qat_migration:policy': 'static'},
            image_policies=['nova_default'])
        self.assertIsNone(got.policy)

    def test_image_method_outside_allowed_methods_ignored(self):
        got, ignored = self._resolve({'qat_migration:method': 'mt'},
                                     allowed_methods=['none', 'zstd'])
        self.assertIsNone(got.method)
        self.assertIn('allowed_methods', ignored[0])
        got, _ = self._resolve({'qat_migration:method': 'none'},
                               allowed_methods=['zstd'])
        self.assertEqual('none', got.method)

    def test_image_cannot_turn_on_what_the_flavor_forbids(self):
        got, _ = self._resolve(
            {'qat_migration:allow_post_copy': 'true'},
            flavor={'qat_migration:allow_post_copy': 'false'})
        self.assertIs(False, got.allow_post_copy)

    def test_image_working_set_bounded_by_instance_ram(self):
        got, _ = self._resolve({'qat_migration:working_set_mb': '1048576'},
                               memory_mb=2048)
        self.assertEqual(2048, got.working_set_mb)

    def test_every_key_has_an_image_rule(self):
        rules = {hints.RULE_LOWER, hints.RULE_FORBID, hints.RULE_CHOOSE,
                 hints.RULE_POLICY}
        for key in hints.KEYS:
            self.assertIn(key.image_rule, rules, key.name)
            if key.image_rule == hints.RULE_LOWER:
                self.assertIs(int, key.type)
            if key.image_rule == hints.RULE_FORBID:
                self.assertIs(bool, key.type)

    def test_generated_images_never_widen(self):
        """Property: any flavor, image and options.

        The limits a policy sees with the image are within those without.
        """
        rng = random.Random(SEED)
        pool = {k: VALID[k] + WEIRD_VALUES for k in VALID}
        for i in range(300):
            conf = _Conf(
                downtime_ms=rng.choice([10, 200, 500, 5000]),
                permit_post_copy=rng.random() < 0.5,
                permit_auto_converge=rng.random() < 0.5,
                max_parallel_connections=rng.choice([1, 2, 4, 32]),
                allowed_methods=rng.sample(list(datamodel.METHODS),
                                           rng.randint(1, 6)),
                image_policies=rng.choice([[], ['nova_default']]))
            flavor = {_spec(k): rng.choice(v) for k, v in VALID.items()
                      if rng.random() < 0.3}
            image = {'image_' + _spec(k): rng.choice(v)
                     for k, v in pool.items() if rng.random() < 0.5}
            if rng.random() < 0.2:
                image['image_qat_migration:bogus_%d' % i] = 'x'
            memory = rng.choice([512, 4096, 65536])
            operator, _ = hints.resolve(extra_specs=flavor, conf=conf,
                                        memory_mb=memory)
            mixed, _ = hints.resolve(extra_specs=flavor,
                                     system_metadata=image, conf=conf,
                                     memory_mb=memory)
            self._assert_narrower(conf, operator, mixed, memory,
                                  (flavor, image))

    def _assert_narrower(self, conf, operator, mixed, memory, case):
        group = conf.qat_migration
        facts_op = base.make_facts(instance={'memory_mb': memory},
                                   host={'mem_free_mb': 1 << 20},
                                   hints=operator)
        facts_mix = base.make_facts(instance={'memory_mb': memory},
                                    host={'mem_free_mb': 1 << 20},
                                    hints=mixed)
        op = common.limits(conf, facts_op)
        mix = common.limits(conf, facts_mix)
        self.assertLessEqual(mix.max_downtime_ms, op.max_downtime_ms, case)
        self.assertLessEqual(mix.max_channels, op.max_channels, case)
        self.assertLessEqual(mix.post_copy, op.post_copy, case)
        self.assertLessEqual(mix.throttle, op.throttle, case)
        self.assertEqual(op.methods, mix.methods, case)
        if mix.forced_method is not None and \
                mix.forced_method != op.forced_method:
            self.assertIn(mix.forced_method,
                          set(group.allowed_methods) | {'none'}, case)
        if mixed.policy != operator.policy:
            self.assertIsNone(operator.policy, case)
            self.assertIn(mixed.policy, group.image_policies, case)
        cache_op = common.xbzrle_cache_mb(conf, facts_op) or 0
        cache_mix = common.xbzrle_cache_mb(conf, facts_mix) or 0
        self.assertLessEqual(cache_mix, cache_op, case)

    def test_plan_downtime_never_above_the_operators(self):
        self.flags(downtime_ms=500)
        got = hints.from_instance(system_metadata={
            'image_qat_migration:max_downtime_ms': '60000'}, conf=self.conf)
        for cls in (adaptive.AdaptivePolicy, static.StaticPolicy):
            plan = cls(self.conf).plan(base.make_facts(hints=got))
            self.assertLessEqual(plan.max_downtime_ms, 500, cls)


# -- history.json -----------------------------------------------------------

def _deep(depth):
    return '[' * depth + ']' * depth


HISTORY_FILES = {
    'binary garbage': bytes(range(256)) * 8,
    'empty': b'',
    'a JSON list': b'[1, 2, 3]',
    'a JSON string': b'"history"',
    'a JSON number': b'42',
    'null': b'null',
    'deep nesting': _deep(100000).encode(),
    'deep nesting inside': ('{"instances": %s}' % _deep(50000)).encode(),
    'instances not a list': b'{"instances": {"a": 1}}',
    'truncated': b'{"instances": [{"uuid": "a", "migr',
    'utf-16': json.dumps({'instances': []}).encode('utf-16'),
}

#: Entries whose bad fields must be dropped, keeping the good ones.
BAD_FIELDS = [
    ('dirty_rate_mbps', 'NaN'), ('dirty_rate_mbps', 'Infinity'),
    ('dirty_rate_mbps', '-Infinity'), ('dirty_rate_mbps', '1e400'),
    ('dirty_rate_mbps', '-3'), ('dirty_rate_mbps', '"fast"'),
    ('wire_mbps', '1e300'), ('wire_mbps', 'true'), ('wire_mbps', '[]'),
    ('compression_ratio', '{"a": {"b": {}}}'), ('compression_ratio', '-1'),
    ('xbzrle_hit_ratio', '1.5'), ('xbzrle_hit_ratio', 'NaN'),
    ('total_s', '9' * 400), ('total_s', 'null'),
    ('method', '"lz4"'), ('method', '7'), ('method', '["zstd"]'),
    ('converged', '"yes"'), ('converged', '1'), ('converged', 'NaN'),
    ('migrations', '-1'), ('migrations', '1e400'), ('migrations', '"3"'),
    ('migrations', '99999999999999999999999'),
    ('updated_at', 'NaN'), ('updated_at', '"now"'),
]


def _record_in_process(path, prefix, count):
    store = history.HistoryStore(path, max_entries=10000)
    for i in range(count):
        store.record('%s-%d' % (prefix, i), {'method': 'zstd',
                                             'wire_mbps': float(i)})


class HistoryContentsTest(base.TestCase):

    def setUp(self):
        super().setUp()
        self.path = self.useFixture(fixtures.TempDir()).path
        self.file = os.path.join(self.path, history.FILENAME)
        self.logger = self.useFixture(fixtures.FakeLogger())

    def _write(self, data):
        with open(self.file, 'wb') as f:
            f.write(data if isinstance(data, bytes) else data.encode())

    def _assert_heals(self, store):
        store.record('healed', {'method': 'none', 'converged': True,
                                'dirty_rate_mbps': float('nan'),
                                'wire_mbps': float('inf')})
        with open(self.file) as f:
            # Strict JSON: no NaN/Infinity ever written.
            data = json.loads(f.read(), parse_constant=self._no_constant)
        uuids = [e['uuid'] for e in data['instances']]
        self.assertIn('healed', uuids)
        healed = history.HistoryStore(self.path).get('healed')
        self.assertEqual(('none', True, None, None),
                         (healed.method, healed.converged,
                          healed.dirty_rate_mbps, healed.wire_mbps))

    @staticmethod
    def _no_constant(name):
        raise AssertionError('%s written to history.json' % name)

    def test_any_file_content_is_survived(self):
        for what, data in HISTORY_FILES.items():
            self._write(data)
            store = history.HistoryStore(self.path)
            self.assertEqual(0, len(store), what)
            self.assertEqual(datamodel.History(), store.get('a'), what)
            self._assert_heals(store)
        self.assertIn('Ignoring unreadable migration history',
                      self.logger.output)

    def test_bad_fields_dropped_good_ones_kept(self):
        for field, raw in BAD_FIELDS:
            text = ('{"instances": [{"uuid": "a", "method": "zstd", '
                    '"wire_mbps": 100.0, "migrations": 2, "%s": %s}]}'
                    % (field, raw))
            self._write(text)
            got = history.HistoryStore(self.path).get('a')
            if field != 'method':
                self.assertEqual('zstd', got.method, (field, raw))
            if field != 'wire_mbps':
                self.assertEqual(100.0, got.wire_mbps, (field, raw))
            for name in ('dirty_rate_mbps', 'wire_mbps',
                         'compression_ratio', 'xbzrle_hit_ratio',
                         'total_s'):
                value = getattr(got, name)
                self.assertTrue(value is None or math.isfinite(value),
                                (field, raw, name, value))
            self.assertIsInstance(got.migrations, int)
            self.assertTrue(0 <= got.migrations <= 10 ** 9, (field, raw))
            self._assert_heals(history.HistoryStore(self.path))

    def test_bad_entries_skipped(self):
        self._write(json.dumps({'instances': [
            1, 'a', None, [], {}, {'uuid': 7}, {'uuid': ''},
            {'uuid': 'x' * 1000}, {'uuid': 'good', 'method': 'xbzrle'}]}))
        store = history.HistoryStore(self.path)
        self.assertEqual(1, len(store))
        self.assertEqual('xbzrle', store.get('good').method)
        self.assertIn('unusable entries skipped', self.logger.output)

    def test_record_with_bad_values_never_raises(self):
        store = history.HistoryStore(self.path)
        for value in WEIRD_VALUES:
            store.record('a', {name: value
                               for name in history_format.HISTORY_FIELDS})
        got = store.get('a')
        self.assertEqual(len(WEIRD_VALUES), got.migrations)
        self._assert_heals(store)

    def test_counter_saturates(self):
        self._write(json.dumps({'instances': [
            {'uuid': 'a', 'migrations': 10 ** 9}]}))
        store = history.HistoryStore(self.path)
        store.record('a', {})
        self.assertEqual(10 ** 9, store.get('a').migrations)

    def test_oversized_file_not_read(self):
        self._write(b'{"instances": [' + b' ' * (2 * 1024 * 1024) + b']}')
        self.assertEqual(0, len(history.HistoryStore(self.path,
                                                     max_entries=10)))

    def test_two_processes_lose_no_update(self):
        ctx = multiprocessing.get_context('fork')
        procs = [ctx.Process(target=_record_in_process,
                             args=(self.path, name, 40))
                 for name in ('p1', 'p2', 'p3')]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(120)
            self.assertEqual(0, proc.exitcode)
        store = history.HistoryStore(self.path, max_entries=10000)
        self.assertEqual(120, len(store))
        self.assertEqual(39.0, store.get('p2-39').wire_mbps)

    def test_other_process_updates_seen_by_get(self):
        first = history.HistoryStore(self.path)
        second = history.HistoryStore(self.path)
        second.record('a', {'method': 'zlib'})
        self.assertEqual('zlib', first.get('a').method)
        first.record('b', {'method': 'none'})
        # The first store re-read the file before writing: 'a' survived.
        self.assertEqual('zlib', history.HistoryStore(self.path)
                         .get('a').method)

    def test_directory_fsynced_after_rename(self):
        store = history.HistoryStore(self.path)
        synced = []
        real_fsync = os.fsync

        def fsync(fd):
            synced.append(os.path.realpath('/proc/self/fd/%d' % fd))
            return real_fsync(fd)

        with mock.patch.object(history.os, 'fsync', side_effect=fsync):
            store.record('a', {'method': 'none'})
        self.assertEqual(os.path.realpath(self.path), synced[-1])


# -- --facts files ----------------------------------------------------------

FACTS = [
    ('{"instance": {"memory_mb": NaN}}', 'instance.memory_mb'),
    ('{"instance": {"memory_mb": 1e400}}', 'instance.memory_mb'),
    ('{"instance": {"memory_mb": Infinity}}', 'instance.memory_mb'),
    ('{"instance": {"memory_mb": 0}}', 'instance.memory_mb'),
    ('{"instance": {"memory_mb": -4096}}', 'instance.memory_mb'),
    ('{"instance": {"memory_mb": 1e30}}', 'instance.memory_mb'),
    ('{"instance": {"vcpus": 0}}', 'instance.vcpus'),
    ('{"instance": {"dirty_rate_mbps": NaN}}', 'instance.dirty_rate_mbps'),
    ('{"instance": {"dirty_rate_mbps": -1}}', 'instance.dirty_rate_mbps'),
    ('{"instance": {"zero_fraction": 2}}', 'instance.zero_fraction'),
    ('{"instance": {"compress_ratio": 0}}', 'instance.compress_ratio'),
    ('{"link_mbps": 0}', 'facts.link_mbps'),
    ('{"link_mbps": -100}', 'facts.link_mbps'),
    ('{"link_mbps": NaN}', 'facts.link_mbps'),
    ('{"link_mbps": -Infinity}', 'facts.link_mbps'),
    ('{"host": {"cpus": 0}}', 'host.cpus'),
    ('{"host": {"cpus": -2}}', 'host.cpus'),
    ('{"host": {"cpus": 1.5}}', 'host.cpus'),
    ('{"host": {"mem_free_mb": -1}}', 'host.mem_free_mb'),
    ('{"host": {"cpu_idle_pct": 101}}', 'host.cpu_idle_pct'),
    ('{"host": {"cpu_idle_pct": NaN}}', 'host.cpu_idle_pct'),
    ('{"qat": {"endpoints": -1}}', 'qat.endpoints'),
    ('{"qat": {"throughput_mbps": Infinity}}', 'qat.throughput_mbps'),
    ('{"nova": {"parallel_connections": 0}}', 'nova.parallel_connections'),
    ('{"nova": {"downtime_ms": 0}}', 'nova.downtime_ms'),
    ('{"nova": {"downtime_steps": 0}}', 'nova.downtime_steps'),
    ('{"history": {"wire_mbps": NaN}}', 'history.wire_mbps'),
    ('{"history": {"migrations": 1e400}}', 'history.migrations'),
    ('{"hypervisor": {"qemu_version": [10, -1, 0]}}',
     'hypervisor.qemu_version'),
    ('{"instance": {"hints": {"level": "15"}}}', 'qat_migration:level'),
    ('{"instance": {"hints": {"nope": "1"}}}', 'qat_migration:nope'),
    (_deep(100000), 'nest deeper'),
    ('{"instance": %s}' % _deep(40), 'nest deeper'),
    ('[1, 2]', 'facts must be an object'),
    ('{"instance": [1]}', 'instance must be an object'),
]

ARGS = [
    (('--link-gbps', 'nan'), '--link-gbps'),
    (('--link-gbps', '0'), '--link-gbps'),
    (('--link-gbps', '-1'), '--link-gbps'),
    (('--link-gbps', 'inf'), '--link-gbps'),
    (('--ram', '0'), '--ram'),
    (('--ram', '-1'), '--ram'),
    (('--cpus', '0'), '--cpus'),
    (('--mem-free', '-5'), '--mem-free'),
    (('--cpu-idle', '150'), '--cpu-idle'),
    (('--dirty-rate', 'nan'), '--dirty-rate'),
    (('--vcpus', '0'), '--vcpus'),
]


@ddt.ddt
class FactsFileTest(base.TestCase):

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path

    def _run(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', out))
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', err))
        code = cli.main(['plan', '--policy', 'adaptive'] + list(argv))
        return code, out.getvalue(), err.getvalue()

    def _facts(self, data):
        path = os.path.join(self.tmp, 'facts.json')
        with open(path, 'wb') as f:
            f.write(data if isinstance(data, bytes) else data.encode())
        return path

    def _assert_refused(self, result, fragment):
        code, out, err = result
        self.assertEqual(2, code, (out, err))
        self.assertNotIn('Traceback', err)
        self.assertIn(fragment, err)

    @ddt.data(*FACTS)
    @ddt.unpack
    def test_bad_facts_exit_2_naming_the_field(self, text, field):
        self._assert_refused(self._run('--facts', self._facts(text)), field)

    @ddt.data(*ARGS)
    @ddt.unpack
    def test_bad_numbers_on_the_command_line(self, argv, option):
        self._assert_refused(self._run(*argv), option)

    def test_binary_file(self):
        self._assert_refused(
            self._run('--facts', self._facts(bytes(range(256)))),
            'not UTF-8')

    def test_generated_numbers_never_traceback(self):
        rng = random.Random(SEED)
        fields = [('instance', f.name) for f in
                  dataclasses.fields(datamodel.InstanceFacts)
                  if f.name not in ('hints', 'uuid', 'name', 'paused')]
        fields += [('host', f.name) for f in
                   dataclasses.fields(datamodel.HostLoad)]
        numbers = ['NaN', 'Infinity', '-Infinity', '1e400', '-1e400', '0',
                   '-1', '1e308', '0.5', '7', '"7"', 'true', 'null', '[]']
        for _ in range(120):
            section, name = rng.choice(fields)
            value = rng.choice(numbers)
            code, out, err = self._run('--facts', self._facts(
                '{"%s": {"%s": %s}, "destination": {"known": true, '
                '"methods": ["zstd"]}}' % (section, name, value)))
            self.assertIn(code, (0, 2), (section, name, value, err))
            self.assertNotIn('Traceback', err)
            if code == 2:
                self.assertIn('%s.%s' % (section, name), err)


# -- [qat_migration] options ------------------------------------------------

#: ``[qat_migration]`` options, each refused naming itself.
OPTION_FILES = [
    ('link_gbps', 'nan'), ('link_gbps', 'inf'), ('link_gbps', '-inf'),
    ('link_gbps', '0'), ('link_gbps', 'fast'),
    ('xbzrle_cache_ratio', 'nan'), ('xbzrle_cache_ratio', 'inf'),
    ('downtime_ms', 'soon'), ('downtime_ms', '1e400'),
    ('max_parallel_connections', '64'), ('allowed_methods', 'zstd,lz4'),
    ('throttle_schedule', '50,20'), ('throttle_schedule', '0,50'),
    ('xbzrle_cache_min_mb', '8192'),
    ('image_policies', 'Bad Name'),
    ('history_max_entries', '0'),
    ('enabled', 'maybe'),
]

#: ``[qat_migration_static]`` options, refused under their new name whether
#: set under it or under their former name ``[qat_migration] static_<name>``.
STATIC_OPTION_FILES = [
    ('method', 'lz4'), ('method', 'mt'), ('xbzrle_cache_mb', '8192'),
]

CALIBRATIONS = [
    ('[1, 2]', 'JSON object'),
    ('"stream_mbps"', 'JSON object'),
    ('{"stream_mbps": NaN}', 'model_calibration'),
    ('{"stream_mbps": Infinity}', 'model_calibration'),
    ('{"stream_mbps": 1e400}', 'stream_mbps'),
    ('{"stream_mbps": 0}', 'stream_mbps'),
    ('{"stream_mbps": -5}', 'stream_mbps'),
    ('{"stream_mbps": "fast"}', 'stream_mbps'),
    ('{"stream_mbps": true}', 'stream_mbps'),
    ('{"stream_mbps": [1]}', 'stream_mbps'),
    ('{"xbzrle_residue": 2}', 'xbzrle_residue'),
    ('{"setup_s": -1}', 'setup_s'),
    ('{"stream_mpbs": 100}', 'stream_mpbs'),
    ('{"stream_mbps": %s}' % _deep(100000), 'model_calibration'),
    ('', 'model_calibration'),
]


@ddt.ddt
class OptionsTest(base.TestCase):
    """Every bad option stops start-up with ``[qat_migration] name``."""

    def _conf(self, text):
        return base.conf_from_text(self, text)

    @ddt.data(*OPTION_FILES)
    @ddt.unpack
    def test_bad_option_refused_naming_it(self, name, value):
        conf = self._conf('[qat_migration]\n%s = %s\n' % (name, value))
        exc = self.assertRaises(qat_conf.ConfigError, qat_conf.check, conf,
                                host_memory_mb=8192)
        self.assertIn('[qat_migration] %s' % name, str(exc))

    @ddt.data(*STATIC_OPTION_FILES)
    @ddt.unpack
    def test_bad_static_option_refused_naming_it(self, name, value):
        for text in ('[qat_migration_static]\n%s = %s\n',
                     '[qat_migration]\nstatic_%s = %s\n'):
            conf = self._conf(text % (name, value))
            exc = self.assertRaises(qat_conf.ConfigError, qat_conf.check,
                                    conf, host_memory_mb=8192)
            self.assertIn('[qat_migration_static] %s' % name, str(exc))

    def test_defaults_pass(self):
        qat_conf.check(self._conf(''), host_memory_mb=8192)

    def test_every_float_option_refuses_non_finite(self):
        floats = [o for o in qat_opts.ALL_OPTS
                  if isinstance(o, cfg.FloatOpt)]
        self.assertTrue(floats)
        for opt in floats:
            for value in ('nan', 'inf'):
                conf = self._conf('[qat_migration]\n%s = %s\n'
                                  % (opt.name, value))
                exc = self.assertRaises(qat_conf.ConfigError,
                                        qat_conf.check, conf,
                                        host_memory_mb=8192)
                self.assertIn('[qat_migration] %s' % opt.name, str(exc))

    def test_static_cache_bounded_by_host_memory(self):
        conf = self._conf('[qat_migration]\nmemory_headroom_mb = 1024\n'
                          '[qat_migration_static]\nxbzrle_cache_mb = 2048\n')
        qat_conf.check(conf, host_memory_mb=4096)
        exc = self.assertRaises(qat_conf.ConfigError, qat_conf.check, conf,
                                host_memory_mb=2048)
        self.assertIn('[qat_migration_static] xbzrle_cache_mb', str(exc))

    def test_host_memory_read_from_meminfo(self):
        path = os.path.join(self.useFixture(fixtures.TempDir()).path, 'mi')
        with open(path, 'w') as f:
            f.write('MemTotal:       16384000 kB\nMemFree: 1 kB\n')
        self.assertEqual(16000, qat_conf.host_memory_mb(path))
        self.assertIsNone(qat_conf.host_memory_mb(path + '.missing'))

    @ddt.data(*CALIBRATIONS)
    @ddt.unpack
    def test_bad_calibration_file_refused(self, text, fragment):
        path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                            'cal.json')
        with open(path, 'w') as f:
            f.write(text)
        conf = self._conf('[qat_migration]\nmodel_calibration = %s\n' % path)
        exc = self.assertRaises(qat_conf.ConfigError, qat_conf.check, conf,
                                host_memory_mb=8192)
        self.assertIn('[qat_migration] model_calibration', str(exc))
        self.assertIn(fragment, str(exc))

    def test_missing_calibration_file_refused(self):
        conf = self._conf('[qat_migration]\nmodel_calibration = /nonexist\n')
        exc = self.assertRaises(qat_conf.ConfigError, qat_conf.check, conf,
                                host_memory_mb=8192)
        self.assertIn('/nonexist', str(exc))

    def test_committed_calibration_accepted(self):
        repo = os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__))))
        path = os.path.join(repo, 'benchmarks', 'calibration.json')
        if not os.path.exists(path):
            self.skipTest('no committed calibration')
        self.assertIn('stream_mbps', qat_conf.check_calibration(path))

    def test_state_path_default_under_nova_state_path(self):
        conf = self._conf('')
        conf.register_opt(cfg.StrOpt('state_path', default='/var/lib/nova'))
        store = history.HistoryStore.from_conf(conf)
        self.assertEqual('/var/lib/nova/qat_migration', store.path)


# -- QMP replies ------------------------------------------------------------

QMP_REPLIES = [
    '[]', '[{"return": {}}]', '"ok"', '42', 'true', 'null', '',
    'not json', '{}', '{"error": "string"}', '{"error": ["a"]}',
    '{"error": 5}', '{"error": {"desc": 5}}', '{"error": {}}',
    '{"error": null}', '{"retrun": {}}', _deep(100000), None, 5,
    b'{"return": {}}'[:3],
]


@ddt.ddt
class QMPReplyTest(base.TestCase):

    @ddt.data(*QMP_REPLIES)
    def test_malformed_reply_is_a_passthrough_error(self, reply):
        with mock.patch.object(passthrough, '_monitor', return_value=reply):
            self.assertRaises(passthrough.PassthroughError,
                              passthrough.apply_source, None,
                              {'multifd-compression': 'qatzip'})

    def test_error_desc_kept(self):
        reply = json.dumps({'error': {'class': 'GenericError',
                                      'desc': 'no qatzip'}})
        with mock.patch.object(passthrough, '_monitor', return_value=reply):
            exc = self.assertRaises(passthrough.PassthroughError,
                                    passthrough.apply_source, None, {})
        self.assertEqual('no qatzip', str(exc))

    def test_success(self):
        with mock.patch.object(passthrough, '_monitor',
                               return_value='{"return": {}, "id": 1}'):
            passthrough.apply_source(None, {})


# -- the QEMU probe process -------------------------------------------------

_PROBER = textwrap.dedent('''
    import sys
    sys.path.insert(0, %(repo)r)
    from nova_qat_migration.virt.libvirt import qemu_probe
    qemu_probe._qmp_exchange(%(binary)r, [], timeout=120)
''')


class ProbeProcessTest(base.TestCase):

    def test_no_python_runs_between_fork_and_exec(self):
        with mock.patch.object(qemu_probe.subprocess, 'Popen',
                               side_effect=OSError('stop')) as popen:
            self.assertRaises(OSError, qemu_probe._qmp_exchange,
                              '/bin/true', [])
        self.assertNotIn('preexec_fn', popen.call_args.kwargs)

    def test_probe_qemu_dies_with_its_prober(self):
        if not qemu_probe._death_signal_prefix():
            self.skipTest('setpriv --pdeathsig not available')
        tmp = self.useFixture(fixtures.TempDir()).path
        pidfile = os.path.join(tmp, 'pid')
        binary = os.path.join(tmp, 'fake-qemu')
        with open(binary, 'w') as f:
            f.write('#!/bin/sh\necho $$ > %s\nexec sleep 300\n' % pidfile)
        os.chmod(binary, 0o755)
        repo = os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__))))
        prober = subprocess.Popen(
            [sys.executable, '-c', _PROBER % {'repo': repo,
                                              'binary': binary}])
        try:
            deadline = time.monotonic() + 30
            while not os.path.exists(pidfile) or \
                    not open(pidfile).read().strip():
                self.assertLess(time.monotonic(), deadline)
                time.sleep(0.05)
            qemu = int(open(pidfile).read())
            prober.send_signal(signal.SIGKILL)
            prober.wait(30)
            deadline = time.monotonic() + 30
            while _alive(qemu):
                self.assertLess(time.monotonic(), deadline,
                                'probe QEMU survived its prober')
                time.sleep(0.05)
        finally:
            if prober.poll() is None:
                prober.kill()
                prober.wait()


def _alive(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().split(')')[-1].split()[0] != 'Z'
    except OSError:
        return False


# -- QAT self-test and the policy cache --------------------------------------

class QATSelfTestGateTest(base.TestCase):

    def _manager(self, result):
        from nova_qat_migration.qat import manager
        mgr = manager.QATManager(self.conf)
        status = mock.Mock(**{'compression_endpoints.return_value':
                              ('0000:6b:00.1', '0000:6b:00.2')})
        mgr.scan = mock.Mock(return_value=[status])
        mgr.pool.resize(2)
        if isinstance(result, Exception):
            mgr.selftest = mock.Mock(side_effect=result)
        else:
            mgr.selftest = mock.Mock(return_value=result)
        return mgr

    def test_failed_or_missing_selftest_stops_qat_plans(self):
        from nova_qat_migration.qat import qatzip
        self.useFixture(fixtures.FakeLogger())
        for result in (qatzip.SelfTestResult(status=qatzip.STATUS_MISSING),
                       qatzip.SelfTestResult(status=qatzip.STATUS_FAILED),
                       RuntimeError('cffi exploded')):
            state = self._manager(result).state()
            self.assertFalse(state.available, result)
            self.assertEqual(0, state.endpoints)
            plan = adaptive.AdaptivePolicy(self.conf).plan(base.make_facts(
                qat=state, hypervisor=base.HV_QATZIP,
                destination=base.DEST_QAT, passthrough_allowed=True,
                hints={'method': 'qatzip'}))
            self.assertFalse(plan.qat_lease)

    def test_passing_selftest_keeps_qat(self):
        from nova_qat_migration.qat import qatzip
        state = self._manager(qatzip.SelfTestResult(
            status=qatzip.STATUS_OK, engine='hardware', compress_mbps=900.0,
            ratio=0.4)).state()
        self.assertTrue(state.available)
        self.assertEqual(2, state.endpoints)
        self.assertEqual('', state.unusable)

    def test_software_only_selftest_stops_qat_plans(self):
        # QATzip's silent software fallback passes the round trip but is
        # no QAT: the plan must not count on the devices.
        from nova_qat_migration.qat import qatzip
        self.useFixture(fixtures.FakeLogger())
        state = self._manager(qatzip.SelfTestResult(
            status=qatzip.STATUS_OK, engine='software', compress_mbps=300.0,
            ratio=0.4, session_status=qatzip.QZ_NO_HW)).state()
        self.assertEqual((0, 0, False), (state.endpoints, state.free_leases,
                                         state.hardware))
        self.assertIn('ran in software', state.unusable)
        plan = adaptive.AdaptivePolicy(self.conf).plan(base.make_facts(
            qat=state, hypervisor=base.HV_QATZIP,
            destination=base.DEST_QAT, passthrough_allowed=True,
            hints={'method': 'qatzip'}))
        self.assertFalse(plan.qat_lease)


class PolicySetLockTest(base.TestCase):

    def test_concurrent_first_use_loads_once(self):
        loads = []
        real = loader.load_policy

        def slow_load(name, conf):
            loads.append(name)
            time.sleep(0.05)
            return real(name, conf)

        self.useFixture(fixtures.MonkeyPatch(
            'nova_qat_migration.policy.loader.load_policy', slow_load))
        policies = loader.PolicySet(self.conf)
        got = []
        threads = [threading.Thread(
            target=lambda: got.append(policies.get('static')))
            for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual(1, loads.count('static'))
        self.assertEqual(1, len({id(p) for p in got}))


# -- through the driver -------------------------------------------------------

class DriverStartAndPreCheckTest(test_driver.DriverTestBase):
    """What nova-compute does with the inputs above."""

    def _instance(self, extra_specs=None, image=None):
        flavor = objects.Flavor(memory_mb=2048, vcpus=2,
                                extra_specs=extra_specs or {})
        return objects.Instance(
            uuid='11111111-2222-3333-4444-555555555555', vm_state='active',
            flavor=flavor, system_metadata={
                'image_' + k: v for k, v in (image or {}).items()})

    def test_bad_option_stops_start_naming_it(self):
        for name, value in (('link_gbps', float('nan')),
                            ('xbzrle_cache_ratio', float('nan')),
                            ('image_policies', ['fastest'])):
            self.flags(**{name: value, 'group': 'qat_migration'})
            exc = self.assertRaises(exception.InvalidConfiguration,
                                    self.driver().init_host, 'host')
            self.assertIn('[qat_migration] %s' % name, str(exc))
            self.conf_reset()

    def conf_reset(self):
        for name in ('link_gbps', 'xbzrle_cache_ratio', 'image_policies'):
            CONF.clear_override(name, group='qat_migration')

    def test_image_never_fails_the_precheck(self):
        drvr = self.driver()
        drvr.init_host('host')
        self.useFixture(fixtures.FakeLogger())
        for key in hints.KEYS:
            for value in WEIRD_VALUES:
                if isinstance(value, str):   # Nova keeps only strings
                    drvr._qat_check_hints(
                        self._instance(image={key.spec: value[:255]}))
        drvr._qat_check_hints(self._instance(image={
            'qat_migration:nonsense': 'x', 'qat_migration:': '',
            'qat_migration:policy': 'not_installed'}))

    def test_bad_flavor_never_fails_the_precheck_naming_the_key(self):
        drvr = self.driver()
        drvr.init_host('host')
        logger = self.useFixture(fixtures.FakeLogger())
        for specs, fragment in (
                ({'qat_migration:level': '15'}, 'qat_migration:level'),
                ({'qat_migration:nonsense': '1'}, 'qat_migration:nonsense'),
                ({'qat_migration:policy': 'not_installed'},
                 'qat_migration:policy=not_installed')):
            hints = drvr._qat_check_hints(self._instance(extra_specs=specs))
            self.assertEqual(datamodel.Hints(), hints)
            self.assertIn(fragment, logger.output)
