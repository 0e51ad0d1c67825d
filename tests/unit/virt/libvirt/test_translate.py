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
"""Plan -> libvirt flags and params: one test per libvirt/QEMU rule.

Every rule in the module docstring of ``translate`` has a test here built
so that it fails if the rule is dropped: the plan asks for the forbidden
combination and the test checks the call does not contain it (and, where
the rule has a positive side, that the allowed combination is produced).
"""

import ddt

from nova_qat_migration import datamodel
from nova_qat_migration.virt.libvirt import constants as c
from nova_qat_migration.virt.libvirt import translate
from tests.unit import base

MIB = datamodel.MIB

#: Source and destination both on QEMU >= 10.1 with qatzip.
HV_101 = datamodel.HypervisorCaps(
    qemu_version=(10, 1, 0),
    multifd_methods=frozenset({'none', 'zlib', 'zstd', 'qatzip'}))
DEST_101 = datamodel.DestinationCaps(
    known=True, methods=frozenset({'xbzrle', 'zlib', 'zstd', 'qatzip'}),
    multifd=True, postcopy_with_multifd=True)
#: An old source that still has the legacy compression threads.
HV_OLD = datamodel.HypervisorCaps(
    libvirt_version=(9, 0, 0), qemu_version=(8, 2, 0),
    multifd_methods=frozenset({'none', 'zlib', 'zstd'}))
DEST_MT = datamodel.DestinationCaps(
    known=True, methods=frozenset({'xbzrle', 'mt', 'zlib', 'zstd'}),
    multifd=True)

TUNING_PARAMS = (c.PARAM_COMPRESSION_XBZRLE_CACHE,
                 c.PARAM_COMPRESSION_MT_LEVEL, c.PARAM_COMPRESSION_MT_THREADS,
                 c.PARAM_COMPRESSION_MT_DTHREADS,
                 c.PARAM_COMPRESSION_ZLIB_LEVEL,
                 c.PARAM_COMPRESSION_ZSTD_LEVEL)


def _plan(**kw):
    kw.setdefault('policy', 'test')
    return datamodel.Plan(**kw)


def _facts(**kw):
    kw.setdefault('destination', base.DEST_SOFTWARE)
    kw.setdefault('host', dict(cpu_idle_pct=100.0))
    return base.make_facts(**kw)


class TranslateTestCase(base.TestCase):

    def call(self, facts=None, **plan):
        result = translate.to_libvirt(_plan(**plan), facts or _facts())
        self.assertLibvirtValid(result)
        return result

    def assertFlag(self, flag, call):
        self.assertTrue(call.flags & flag, '%s not in %s'
                        % (c.FLAG_NAMES[flag], call.flag_names()))

    def assertNoFlag(self, flag, call):
        self.assertFalse(call.flags & flag, '%s in %s'
                         % (c.FLAG_NAMES[flag], call.flag_names()))

    def assertLibvirtValid(self, call):
        """The combination rules libvirt itself enforces, on any result."""
        flags, params = call.flags, call.params
        parallel = bool(flags & c.VIR_MIGRATE_PARALLEL)
        method = params.get(c.PARAM_COMPRESSION)
        self.assertFalse(flags & c.VIR_MIGRATE_COMPRESSED)
        if method in ('zlib', 'zstd'):
            self.assertTrue(parallel, 'zlib/zstd without PARALLEL')
        if method in ('xbzrle', 'mt'):
            self.assertFalse(parallel, '%s with PARALLEL' % method)
        if c.PARAM_PARALLEL_CONNECTIONS in params:
            self.assertTrue(parallel)
        for name in (c.PARAM_AUTO_CONVERGE_INITIAL,
                     c.PARAM_AUTO_CONVERGE_INCREMENT):
            if name in params:
                self.assertTrue(flags & c.VIR_MIGRATE_AUTO_CONVERGE, name)
        if parallel:
            self.assertFalse(flags & c.VIR_MIGRATE_TUNNELLED)
        for name in TUNING_PARAMS:
            if name in params:
                owner = name.split('.')[1]
                self.assertEqual(owner, method,
                                 '%s without compression=%s' % (name, owner))
        # What the executed plan says agrees with the call.
        self.assertEqual(parallel, call.plan.parallel_connections > 1)
        self.assertEqual(bool(flags & c.VIR_MIGRATE_POSTCOPY),
                         call.plan.post_copy)
        self.assertEqual(bool(flags & c.VIR_MIGRATE_AUTO_CONVERGE),
                         call.plan.auto_converge)


@ddt.ddt
class TestMethodRules(TranslateTestCase):

    @ddt.data('zlib', 'zstd')
    def test_zlib_zstd_only_with_parallel(self, method):
        # Asked for a single stream: translation must add PARALLEL.
        call = self.call(method=method, level=1, parallel_connections=1)
        self.assertEqual(method, call.params[c.PARAM_COMPRESSION])
        self.assertFlag(c.VIR_MIGRATE_PARALLEL, call)
        self.assertEqual(2, call.params[c.PARAM_PARALLEL_CONNECTIONS])
        self.assertEqual(1, call.params[c.LEVEL_PARAMS[method]])
        self.assertReason('needs multifd', call.degradations)

    @ddt.data('zlib', 'zstd')
    def test_zlib_zstd_keep_requested_channels(self, method):
        call = self.call(method=method, parallel_connections=6)
        self.assertEqual(6, call.params[c.PARAM_PARALLEL_CONNECTIONS])
        self.assertEqual((), call.degradations)

    def test_xbzrle_never_with_parallel(self):
        call = self.call(method='xbzrle', parallel_connections=4,
                         xbzrle_cache_mb=256)
        self.assertEqual('xbzrle', call.params[c.PARAM_COMPRESSION])
        self.assertNoFlag(c.VIR_MIGRATE_PARALLEL, call)
        self.assertNotIn(c.PARAM_PARALLEL_CONNECTIONS, call.params)
        self.assertEqual(1, call.plan.parallel_connections)
        self.assertReason('xbzrle runs on one stream', call.degradations)

    def test_mt_never_with_parallel(self):
        call = self.call(_facts(hypervisor=HV_OLD, destination=DEST_MT),
                         method='mt', level=1, parallel_connections=4)
        self.assertEqual('mt', call.params[c.PARAM_COMPRESSION])
        self.assertNoFlag(c.VIR_MIGRATE_PARALLEL, call)
        self.assertNotIn(c.PARAM_PARALLEL_CONNECTIONS, call.params)

    @ddt.data((9, 1, 0), (10, 0, 0))
    def test_mt_absent_on_qemu_9_1_and_later(self, version):
        hv = datamodel.HypervisorCaps(qemu_version=version)
        call = self.call(_facts(hypervisor=hv, destination=DEST_MT),
                         method='mt', level=1, mt_threads=4)
        self.assertEqual('none', call.plan.method)
        self.assertNotIn(c.PARAM_COMPRESSION, call.params)
        self.assertNotIn(c.PARAM_COMPRESSION_MT_THREADS, call.params)
        self.assertReason('removed compression threads', call.degradations)

    def test_mt_on_qemu_before_9_1(self):
        hv = datamodel.HypervisorCaps(qemu_version=(9, 0, 2))
        call = self.call(_facts(hypervisor=hv, destination=DEST_MT),
                         method='mt', level=3, mt_threads=4, mt_dthreads=2)
        self.assertEqual('mt', call.params[c.PARAM_COMPRESSION])
        self.assertEqual(3, call.params[c.PARAM_COMPRESSION_MT_LEVEL])
        self.assertEqual(4, call.params[c.PARAM_COMPRESSION_MT_THREADS])
        self.assertEqual(2, call.params[c.PARAM_COMPRESSION_MT_DTHREADS])

    def test_mt_needs_destination(self):
        call = self.call(_facts(hypervisor=HV_OLD), method='mt')
        self.assertEqual('none', call.plan.method)
        self.assertReason('destination does not advertise mt',
                          call.degradations)

    @ddt.data('zlib', 'zstd')
    def test_zlib_zstd_need_libvirt_9_4(self, method):
        old = datamodel.HypervisorCaps(libvirt_version=(9, 3, 0))
        call = self.call(_facts(hypervisor=old), method=method, level=1,
                         parallel_connections=4)
        self.assertEqual('none', call.plan.method)
        self.assertNotIn(c.PARAM_COMPRESSION, call.params)
        self.assertNotIn(c.LEVEL_PARAMS[method], call.params)
        self.assertReason('not supported by the source libvirt 9.3.0',
                          call.degradations)
        # The channels the plan asked for survive as plain multifd.
        self.assertEqual(4, call.params[c.PARAM_PARALLEL_CONNECTIONS])
        new = datamodel.HypervisorCaps(libvirt_version=(9, 4, 0))
        call = self.call(_facts(hypervisor=new), method=method, level=1,
                         parallel_connections=4)
        self.assertEqual(method, call.params[c.PARAM_COMPRESSION])

    def test_source_qemu_without_method(self):
        hv = datamodel.HypervisorCaps(
            multifd_methods=frozenset({'none', 'zlib'}))
        call = self.call(_facts(hypervisor=hv), method='zstd',
                         parallel_connections=2)
        self.assertEqual('none', call.plan.method)

    def test_multifd_never_with_tunnelled(self):
        facts = _facts(nova=dict(tunnelled=True))
        call = self.call(facts, method='zstd', level=1,
                         parallel_connections=4)
        self.assertFlag(c.VIR_MIGRATE_TUNNELLED, call)
        self.assertNoFlag(c.VIR_MIGRATE_PARALLEL, call)
        self.assertNotIn(c.PARAM_COMPRESSION, call.params)
        self.assertNotIn(c.PARAM_PARALLEL_CONNECTIONS, call.params)
        self.assertReason('tunnelled', call.degradations)

    def test_plain_multifd_never_with_tunnelled(self):
        facts = _facts(nova=dict(tunnelled=True))
        call = self.call(facts, method='none', parallel_connections=4)
        self.assertNoFlag(c.VIR_MIGRATE_PARALLEL, call)
        self.assertReason('parallel connections dropped: tunnelled',
                          call.degradations)

    def test_destination_unknown_no_multifd_compression(self):
        facts = _facts(destination=datamodel.DestinationCaps())
        call = self.call(facts, method='zstd', level=1,
                         parallel_connections=4,
                         fallbacks=(('zlib', 1),))
        self.assertEqual('none', call.plan.method)
        self.assertNotIn(c.PARAM_COMPRESSION, call.params)
        self.assertReason('zstd: destination capabilities unknown',
                          call.degradations)
        self.assertReason('zlib: destination capabilities unknown',
                          call.degradations)
        # Plain multifd needs nothing from the destination.
        self.assertFlag(c.VIR_MIGRATE_PARALLEL, call)

    def test_destination_unknown_still_xbzrle(self):
        facts = _facts(destination=datamodel.DestinationCaps())
        call = self.call(facts, method='xbzrle', xbzrle_cache_mb=128)
        self.assertEqual('xbzrle', call.params[c.PARAM_COMPRESSION])

    def test_destination_without_method(self):
        dest = datamodel.DestinationCaps(
            known=True, methods=frozenset({'zlib'}), multifd=True)
        call = self.call(_facts(destination=dest), method='zstd',
                         parallel_connections=2)
        self.assertEqual('none', call.plan.method)
        self.assertReason('zstd: the destination does not advertise it',
                          call.degradations)


class TestQatzipPassthrough(TranslateTestCase):

    def facts(self, **kw):
        kw.setdefault('hypervisor', HV_101)
        kw.setdefault('destination', DEST_101)
        kw.setdefault('qat', dict(endpoints=1, free_leases=1))
        return _facts(**kw)

    def test_qatzip_refused_without_passthrough(self):
        call = self.call(self.facts(passthrough_allowed=False),
                         method='qatzip', level=3, parallel_connections=4,
                         qat_lease=True)
        self.assertEqual('none', call.plan.method)
        self.assertEqual(translate.BACKEND_LIBVIRT, call.backend)
        self.assertEqual({}, call.passthrough)
        self.assertNotIn(c.PARAM_COMPRESSION, call.params)
        self.assertFalse(call.plan.qat_lease)
        self.assertReason('qemu_monitor_passthrough is off',
                          call.degradations)

    def test_qatzip_through_passthrough(self):
        call = self.call(self.facts(passthrough_allowed=True),
                         method='qatzip', level=3, parallel_connections=4,
                         qat_lease=True)
        self.assertEqual(translate.BACKEND_PASSTHROUGH, call.backend)
        self.assertEqual({'multifd-compression': 'qatzip',
                          'multifd-qatzip-level': 3}, call.passthrough)
        # libvirt never sees a method it does not know.
        self.assertNotIn(c.PARAM_COMPRESSION, call.params)
        self.assertFlag(c.VIR_MIGRATE_PARALLEL, call)
        self.assertEqual(4, call.params[c.PARAM_PARALLEL_CONNECTIONS])
        self.assertTrue(call.plan.qat_lease)

    def test_qatzip_source_binary_without_it(self):
        hv = datamodel.HypervisorCaps(
            qemu_version=(10, 1, 0),
            multifd_methods=frozenset({'none', 'zlib', 'zstd'}))
        call = self.call(self.facts(hypervisor=hv, passthrough_allowed=True),
                         method='qatzip', parallel_connections=2)
        self.assertEqual('none', call.plan.method)
        self.assertReason('not built with it', call.degradations)

    def test_qatzip_without_free_lease(self):
        call = self.call(self.facts(passthrough_allowed=True,
                                    qat=dict(endpoints=1, free_leases=0)),
                         method='qatzip', parallel_connections=2,
                         qat_lease=True, fallbacks=(('zstd', 2),))
        self.assertEqual('zstd', call.params[c.PARAM_COMPRESSION])
        self.assertEqual(2, call.params[c.PARAM_COMPRESSION_ZSTD_LEVEL])
        self.assertReason('no free QAT lease', call.degradations)
        self.assertFalse(call.plan.qat_lease)

    def test_level_clamped_for_qatzip(self):
        call = self.call(self.facts(passthrough_allowed=True),
                         method='qatzip', level=0, parallel_connections=2)
        self.assertEqual(1, call.passthrough['multifd-qatzip-level'])


@ddt.ddt
class TestTuningParams(TranslateTestCase):

    def test_xbzrle_cache_only_with_xbzrle(self):
        call = self.call(method='zstd', parallel_connections=2,
                         xbzrle_cache_mb=256, xbzrle_cache_max_mb=512)
        self.assertNotIn(c.PARAM_COMPRESSION_XBZRLE_CACHE, call.params)
        self.assertIsNone(call.plan.xbzrle_cache_mb)
        self.assertIsNone(call.plan.xbzrle_cache_max_mb)
        call = self.call(method='xbzrle', xbzrle_cache_mb=256,
                         xbzrle_cache_max_mb=512)
        self.assertEqual(256 * MIB,
                         call.params[c.PARAM_COMPRESSION_XBZRLE_CACHE])
        self.assertEqual(512, call.plan.xbzrle_cache_max_mb)

    def test_xbzrle_cache_not_sent_for_plain(self):
        call = self.call(method='none', xbzrle_cache_mb=256)
        self.assertNotIn(c.PARAM_COMPRESSION_XBZRLE_CACHE, call.params)
        self.assertNotIn(c.PARAM_COMPRESSION, call.params)

    @ddt.data(('zlib', c.PARAM_COMPRESSION_ZLIB_LEVEL),
              ('zstd', c.PARAM_COMPRESSION_ZSTD_LEVEL))
    @ddt.unpack
    def test_level_only_with_its_method(self, method, param):
        # The level belongs to the asked method; the fallback runs with
        # its own level (none given -> no level param at all).
        dest = datamodel.DestinationCaps(
            known=True, methods=frozenset({'zlib', 'zstd'}) - {method},
            multifd=True)
        other = 'zstd' if method == 'zlib' else 'zlib'
        call = self.call(_facts(destination=dest), method=method, level=5,
                         parallel_connections=2, fallbacks=(other,))
        self.assertEqual(other, call.params[c.PARAM_COMPRESSION])
        self.assertNotIn(param, call.params)
        self.assertNotIn(c.LEVEL_PARAMS[other], call.params)
        self.assertIsNone(call.plan.level)

    def test_level_not_sent_for_plain_or_xbzrle(self):
        for method in ('none', 'xbzrle'):
            call = self.call(method=method, level=5)
            for param in c.LEVEL_PARAMS.values():
                self.assertNotIn(param, call.params)
            self.assertIsNone(call.plan.level)

    def test_mt_params_only_with_mt(self):
        # mt asked on QEMU 10: degraded, its thread counts go too.
        call = self.call(_facts(destination=DEST_MT), method='mt', level=1,
                         mt_threads=4, mt_dthreads=2)
        for param in (c.PARAM_COMPRESSION_MT_LEVEL,
                      c.PARAM_COMPRESSION_MT_THREADS,
                      c.PARAM_COMPRESSION_MT_DTHREADS):
            self.assertNotIn(param, call.params)
        self.assertIsNone(call.plan.mt_threads)
        self.assertIsNone(call.plan.mt_dthreads)

    def test_auto_converge_params_only_with_flag(self):
        call = self.call(throttle_initial=None, throttle_increment=15)
        self.assertNoFlag(c.VIR_MIGRATE_AUTO_CONVERGE, call)
        self.assertNotIn(c.PARAM_AUTO_CONVERGE_INCREMENT, call.params)
        self.assertNotIn(c.PARAM_AUTO_CONVERGE_INITIAL, call.params)
        self.assertIsNone(call.plan.throttle_increment)
        self.assertReason('throttle increment ignored', call.degradations)

    def test_auto_converge_params_with_flag(self):
        call = self.call(throttle_initial=40, throttle_increment=15)
        self.assertFlag(c.VIR_MIGRATE_AUTO_CONVERGE, call)
        self.assertEqual(40, call.params[c.PARAM_AUTO_CONVERGE_INITIAL])
        self.assertEqual(15, call.params[c.PARAM_AUTO_CONVERGE_INCREMENT])

    def test_auto_converge_params_bounded(self):
        call = self.call(throttle_initial=150, throttle_increment=0)
        self.assertEqual(100, call.params[c.PARAM_AUTO_CONVERGE_INITIAL])
        self.assertEqual(1, call.params[c.PARAM_AUTO_CONVERGE_INCREMENT])

    def test_parallel_connections_only_with_parallel(self):
        call = self.call(method='none', parallel_connections=1)
        self.assertNoFlag(c.VIR_MIGRATE_PARALLEL, call)
        self.assertNotIn(c.PARAM_PARALLEL_CONNECTIONS, call.params)
        call = self.call(method='none', parallel_connections=3)
        self.assertFlag(c.VIR_MIGRATE_PARALLEL, call)
        self.assertEqual(3, call.params[c.PARAM_PARALLEL_CONNECTIONS])

    def test_zero_channels_means_one(self):
        call = self.call(method='none', parallel_connections=0)
        self.assertNoFlag(c.VIR_MIGRATE_PARALLEL, call)
        self.assertEqual(1, call.plan.parallel_connections)

    @ddt.data(('zlib', 12, 9), ('zstd', 25, 20), ('zlib', -3, 0),
              ('zstd', -1, 0))
    @ddt.unpack
    def test_levels_clamped(self, method, asked, clamped):
        call = self.call(method=method, level=asked, parallel_connections=2)
        self.assertEqual(clamped, call.params[c.LEVEL_PARAMS[method]])
        self.assertEqual(clamped, call.plan.level)
        self.assertReason('%s level %d outside' % (method, asked),
                          call.degradations)

    def test_mt_level_clamped(self):
        call = self.call(_facts(hypervisor=HV_OLD, destination=DEST_MT),
                         method='mt', level=11)
        self.assertEqual(9, call.params[c.PARAM_COMPRESSION_MT_LEVEL])

    @ddt.data((300, 256), (256, 256), (1, 1), (4095, 2048), (3, 2))
    @ddt.unpack
    def test_xbzrle_cache_power_of_two(self, asked, expected):
        call = self.call(method='xbzrle', xbzrle_cache_mb=asked)
        self.assertEqual(expected * MIB,
                         call.params[c.PARAM_COMPRESSION_XBZRLE_CACHE])
        self.assertEqual(expected, call.plan.xbzrle_cache_mb)
        if asked != expected:
            self.assertReason('rounded down to %d MiB' % expected,
                              call.degradations)
        else:
            self.assertEqual((), call.degradations)

    def test_bandwidth_from_plan(self):
        self.assertEqual(0, self.call().params[c.PARAM_BANDWIDTH])
        self.assertEqual(
            750, self.call(bandwidth_mbps=750).params[c.PARAM_BANDWIDTH])


class TestPostCopy(TranslateTestCase):

    def test_post_copy_single_stream(self):
        call = self.call(post_copy=True, post_copy_after_stalled=3)
        self.assertFlag(c.VIR_MIGRATE_POSTCOPY, call)
        self.assertEqual(3, call.plan.post_copy_after_stalled)

    def test_post_copy_with_multifd_refused_before_qemu_10_1(self):
        call = self.call(method='zstd', parallel_connections=4,
                         post_copy=True, post_copy_after_stalled=3)
        self.assertNoFlag(c.VIR_MIGRATE_POSTCOPY, call)
        self.assertFlag(c.VIR_MIGRATE_PARALLEL, call)
        self.assertIsNone(call.plan.post_copy_after_stalled)
        self.assertReason('QEMU >= 10.1 on both ends', call.degradations)

    def test_post_copy_with_multifd_on_qemu_10_1_both_ends(self):
        call = self.call(_facts(hypervisor=HV_101, destination=DEST_101),
                         method='zstd', parallel_connections=4,
                         post_copy=True)
        self.assertFlag(c.VIR_MIGRATE_POSTCOPY, call)
        self.assertFlag(c.VIR_MIGRATE_PARALLEL, call)

    def test_post_copy_with_multifd_needs_destination_10_1(self):
        call = self.call(_facts(hypervisor=HV_101), method='zstd',
                         parallel_connections=4, post_copy=True)
        self.assertNoFlag(c.VIR_MIGRATE_POSTCOPY, call)

    def test_post_copy_with_multifd_needs_source_10_1(self):
        call = self.call(_facts(destination=DEST_101), method='none',
                         parallel_connections=2, post_copy=True)
        self.assertNoFlag(c.VIR_MIGRATE_POSTCOPY, call)

    def test_paused_no_post_copy(self):
        facts = _facts(instance=dict(paused=True))
        call = self.call(facts, post_copy=True)
        self.assertNoFlag(c.VIR_MIGRATE_POSTCOPY, call)
        self.assertReason('paused', call.degradations)

    def test_source_without_post_copy(self):
        facts = _facts(hypervisor=datamodel.HypervisorCaps(postcopy=False))
        call = self.call(facts, post_copy=True)
        self.assertNoFlag(c.VIR_MIGRATE_POSTCOPY, call)

    def test_post_copy_and_auto_converge_together(self):
        call = self.call(post_copy=True, throttle_initial=20,
                         throttle_increment=10)
        self.assertFlag(c.VIR_MIGRATE_POSTCOPY, call)
        self.assertFlag(c.VIR_MIGRATE_AUTO_CONVERGE, call)


class TestFallbacks(TranslateTestCase):

    def test_first_runnable_in_order(self):
        dest = datamodel.DestinationCaps(
            known=True, methods=frozenset({'zlib', 'zstd'}), multifd=True)
        call = self.call(_facts(destination=dest), method='qatzip', level=2,
                         parallel_connections=4,
                         fallbacks=(('zstd', 3), ('zlib', 2)))
        self.assertEqual('zstd', call.params[c.PARAM_COMPRESSION])
        self.assertEqual(3, call.params[c.PARAM_COMPRESSION_ZSTD_LEVEL])
        self.assertEqual(1, len(call.degradations))
        self.assertTrue(call.degradations[0].startswith('qatzip'))

    def test_later_fallback_when_earlier_refused(self):
        dest = datamodel.DestinationCaps(
            known=True, methods=frozenset({'zlib'}), multifd=True)
        call = self.call(_facts(destination=dest), method='qatzip',
                         parallel_connections=4,
                         fallbacks=(('zstd', 3), ('zlib', 2)))
        self.assertEqual('zlib', call.params[c.PARAM_COMPRESSION])
        self.assertEqual(2, call.params[c.PARAM_COMPRESSION_ZLIB_LEVEL])
        self.assertEqual(['qatzip', 'zstd'],
                         [d.split(':')[0] for d in call.degradations])

    def test_fallback_order_respected_not_sorted(self):
        call = self.call(method='qatzip', parallel_connections=2,
                         fallbacks=('zlib', 'zstd'))
        self.assertEqual('zlib', call.params[c.PARAM_COMPRESSION])

    def test_none_is_last_resort(self):
        call = self.call(_facts(destination=datamodel.DestinationCaps()),
                         method='zstd', parallel_connections=1,
                         fallbacks=('zlib',))
        self.assertEqual('none', call.plan.method)
        self.assertNotIn(c.PARAM_COMPRESSION, call.params)
        self.assertEqual(2, len(call.degradations))

    def test_fallback_to_single_stream_method(self):
        call = self.call(_facts(destination=datamodel.DestinationCaps()),
                         method='zstd', parallel_connections=4,
                         fallbacks=('xbzrle',), xbzrle_cache_mb=128)
        self.assertEqual('xbzrle', call.params[c.PARAM_COMPRESSION])
        self.assertNoFlag(c.VIR_MIGRATE_PARALLEL, call)


class TestFlagsAndCall(TranslateTestCase):

    def test_compressed_flag_never_set(self):
        plans = [dict(method='xbzrle', xbzrle_cache_mb=64),
                 dict(method='zstd', parallel_connections=2),
                 dict(method='zlib', level=1, parallel_connections=2),
                 dict(method='none', parallel_connections=4)]
        for plan in plans:
            call = self.call(**plan)
            self.assertNoFlag(c.VIR_MIGRATE_COMPRESSED, call)
        call = self.call(_facts(hypervisor=HV_OLD, destination=DEST_MT),
                         method='mt')
        self.assertNoFlag(c.VIR_MIGRATE_COMPRESSED, call)

    def test_base_flags_from_nova_settings(self):
        facts = _facts(nova=dict(native_tls=True, permit_post_copy=True,
                                 permit_auto_converge=True,
                                 parallel_connections=4),
                       block_migration=True)
        call = self.call(facts)
        for flag in (c.VIR_MIGRATE_LIVE, c.VIR_MIGRATE_PEER2PEER,
                     c.VIR_MIGRATE_UNDEFINE_SOURCE,
                     c.VIR_MIGRATE_PERSIST_DEST, c.VIR_MIGRATE_TLS,
                     c.VIR_MIGRATE_NON_SHARED_INC):
            self.assertFlag(flag, call)
        # The planned flags come from the plan, not from [libvirt].
        for flag in (c.VIR_MIGRATE_POSTCOPY, c.VIR_MIGRATE_AUTO_CONVERGE,
                     c.VIR_MIGRATE_PARALLEL):
            self.assertNoFlag(flag, call)
        self.assertNotIn(c.PARAM_PARALLEL_CONNECTIONS, call.params)

    def test_call_to_dict(self):
        call = self.call(method='zstd', level=2, parallel_connections=2)
        data = call.to_dict()
        self.assertEqual(call.flags, data['flags'])
        self.assertIn('PARALLEL', data['flag_names'])
        self.assertEqual('zstd', data['plan']['method'])
        self.assertEqual(call.params, data['params'])
        self.assertEqual(list(call.plan.reasons) +
                         list(call.degradations), list(call.reasons))

    def test_flag_names(self):
        self.assertEqual(['LIVE', 'TUNNELLED', 'PARALLEL'],
                         c.flag_names(c.VIR_MIGRATE_LIVE |
                                      c.VIR_MIGRATE_TUNNELLED |
                                      c.VIR_MIGRATE_PARALLEL))
        self.assertEqual(['0x80000000'], c.flag_names(1 << 31))


class TestBaseline(TranslateTestCase):
    """``nova_baseline`` plans give exactly Nova's call."""

    def test_baseline_ignores_plan_fields(self):
        facts = _facts(nova=dict(parallel_connections=4, bandwidth_mbps=100,
                                 permit_auto_converge=True))
        call = translate.to_libvirt(
            _plan(method='zstd', parallel_connections=8, nova_baseline=True,
                  xbzrle_cache_mb=64), facts)
        self.assertEqual(translate.nova_flags(facts.nova), call.flags)
        self.assertEqual({c.PARAM_BANDWIDTH: 100,
                          c.PARAM_PARALLEL_CONNECTIONS: 4}, call.params)

    def test_baseline_paused_drops_post_copy(self):
        facts = _facts(nova=dict(permit_post_copy=True),
                       instance=dict(paused=True))
        call = translate.to_libvirt(
            _plan(nova_baseline=True, post_copy=True), facts)
        self.assertNoFlag(c.VIR_MIGRATE_POSTCOPY, call)
        self.assertReason('paused', call.degradations)


class TestMergeParams(base.TestCase):

    def test_drops_nova_parallel_connections_without_parallel(self):
        nova_built = {c.PARAM_BANDWIDTH: 0, c.PARAM_PARALLEL_CONNECTIONS: 4,
                      'destination_xml': '<domain/>'}
        call = translate.to_libvirt(
            _plan(method='xbzrle', xbzrle_cache_mb=64),
            _facts(nova=dict(parallel_connections=4)))
        merged = translate.merge_params(nova_built, call)
        self.assertNotIn(c.PARAM_PARALLEL_CONNECTIONS, merged)
        self.assertEqual('<domain/>', merged['destination_xml'])
        self.assertEqual('xbzrle', merged[c.PARAM_COMPRESSION])

    def test_planned_channels_replace_nova(self):
        nova_built = {c.PARAM_BANDWIDTH: 0, c.PARAM_PARALLEL_CONNECTIONS: 4}
        call = translate.to_libvirt(
            _plan(method='zstd', parallel_connections=2, bandwidth_mbps=9),
            _facts(nova=dict(parallel_connections=4)))
        merged = translate.merge_params(nova_built, call)
        self.assertEqual(2, merged[c.PARAM_PARALLEL_CONNECTIONS])
        self.assertEqual(9, merged[c.PARAM_BANDWIDTH])

    def test_does_not_modify_input(self):
        nova_built = {c.PARAM_PARALLEL_CONNECTIONS: 4}
        call = translate.to_libvirt(_plan(), _facts())
        translate.merge_params(nova_built, call)
        self.assertEqual({c.PARAM_PARALLEL_CONNECTIONS: 4}, nova_built)


class TestPassthroughForOldLibvirt(base.TestCase):
    """zlib/zstd on a libvirt older than 9.4 whose QEMU has them."""

    def test_zstd_goes_through_passthrough_when_allowed(self):
        old = datamodel.HypervisorCaps(libvirt_version=(9, 0, 0))
        facts = _facts(hypervisor=old, passthrough_allowed=True)
        call = translate.to_libvirt(datamodel.Plan(
            policy='t', method='zstd', level=3, parallel_connections=4),
            facts)
        self.assertEqual(translate.BACKEND_PASSTHROUGH, call.backend)
        self.assertEqual({'multifd-compression': 'zstd',
                          'multifd-zstd-level': 3}, call.passthrough)
        self.assertNotIn(c.PARAM_COMPRESSION, call.params)
        self.assertNotIn(c.PARAM_COMPRESSION_ZSTD_LEVEL, call.params)
        self.assertTrue(call.flags & c.VIR_MIGRATE_PARALLEL)
        self.assertEqual(4, call.params[c.PARAM_PARALLEL_CONNECTIONS])

    def test_current_libvirt_keeps_the_libvirt_backend(self):
        facts = _facts(passthrough_allowed=True)
        call = translate.to_libvirt(datamodel.Plan(
            policy='t', method='zstd', level=3, parallel_connections=4),
            facts)
        self.assertEqual(translate.BACKEND_LIBVIRT, call.backend)
        self.assertEqual('zstd', call.params[c.PARAM_COMPRESSION])
