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
"""``adaptive``: every decision branch and the reason it gives.

``TestRules*`` classes exercise the rules' ranking of the candidates (the
model off); ``TestWithModel`` checks what the convergence model may and
may not pick among the same candidates.
Expected numbers are worked out in the comments from the facts and the
option values, not taken from the code's output.
"""

from nova.conf import libvirt as nova_libvirt_conf

from nova_qat_migration import datamodel
from nova_qat_migration.policy import adaptive
from nova_qat_migration.policy import loader
from nova_qat_migration.virt.libvirt import translate
from tests.unit import base

#: 1 Gbit/s in MiB/s (below rules.FAST_LINK_MBPS).
LINK_1G = 1e9 / 8 / datamodel.MIB

HV_OLD_MT = datamodel.HypervisorCaps(qemu_version=(9, 0, 0))
DEST_MT = datamodel.DestinationCaps(
    known=True, methods=frozenset({'xbzrle', 'mt', 'zlib', 'zstd'}),
    multifd=True)
DEST_101 = datamodel.DestinationCaps(
    known=True, methods=frozenset({'xbzrle', 'zlib', 'zstd'}),
    multifd=True, postcopy_with_multifd=True)
HV_101 = datamodel.HypervisorCaps(qemu_version=(10, 1, 0))

#: Facts under which the QAT path is open.
QAT_OK = dict(qat=dict(endpoints=2, free_leases=1), hypervisor=base.HV_QATZIP,
              destination=base.DEST_QAT, passthrough_allowed=True)
#: The same without the destination (tests set their own).
QAT_OK_NO_DEST = {k: v for k, v in QAT_OK.items() if k != 'destination'}
#: 8 GiB above the default 2 GiB headroom.
SPARE = dict(mem_free_mb=2048 + 8192)


class AdaptiveTestCase(base.TestCase):

    model = False

    def setUp(self):
        super().setUp()
        self.flags(adaptive_model=self.model, **base.WIDENED)
        self.policy = adaptive.AdaptivePolicy(self.conf)

    def plan(self, **facts):
        plan = self.policy.plan(base.make_facts(**facts))
        self.assertEqual('adaptive', plan.policy)
        self.assertTrue(plan.reasons)
        return plan


class TestRulesQAT(AdaptiveTestCase):

    def test_qat_chosen(self):
        self.flags(qatzip_level=3, max_parallel_connections=8)
        plan = self.plan(**dict(QAT_OK, qat=dict(endpoints=6,
                                                 free_leases=2)))
        self.assertEqual('qatzip', plan.method)
        self.assertEqual(3, plan.level)
        # One channel per endpoint (at least 4), within the maximum.
        self.assertEqual(6, plan.parallel_connections)
        self.assertTrue(plan.qat_lease)
        self.assertReason('QAT: 6 healthy endpoint(s)', plan.reasons)

    def test_qat_channels_capped(self):
        self.flags(max_parallel_connections=3)
        plan = self.plan(**QAT_OK)
        self.assertEqual(3, plan.parallel_connections)

    def test_qat_software_fallbacks_when_cpu_idle(self):
        self.flags(zstd_level=2, zlib_level=4)
        plan = self.plan(**dict(QAT_OK, host=dict(cpu_idle_pct=90.0)))
        self.assertEqual('qatzip', plan.method)
        self.assertEqual((('zstd', 2), ('zlib', 4)), plan.fallbacks)

    def test_qat_no_software_fallbacks_when_cpu_busy(self):
        self.flags(max_guest_cpu_impact_pct=5)
        plan = self.plan(**QAT_OK)
        self.assertEqual((), plan.fallbacks)

    def test_qat_software_fallbacks_sharing_busy_cores(self):
        # 10% idle: zstd on two channels would take a share of the busy
        # cores, within the default max_guest_cpu_impact_pct.
        plan = self.plan(**QAT_OK)
        self.assertEqual((('zstd', 1), ('zlib', 1)), plan.fallbacks)

    def test_qat_plan_runs_through_passthrough(self):
        facts = base.make_facts(**QAT_OK)
        call = translate.to_libvirt(self.policy.plan(facts), facts)
        self.assertEqual(translate.BACKEND_PASSTHROUGH, call.backend)
        self.assertEqual('qatzip', call.passthrough['multifd-compression'])

    def test_not_qat_no_free_lease(self):
        plan = self.plan(**dict(QAT_OK, qat=dict(endpoints=2,
                                                 free_leases=0)))
        self.assertNotEqual('qatzip', plan.method)
        self.assertFalse(plan.qat_lease)
        self.assertReason('QAT: no free lease', plan.reasons)

    def test_not_qat_passthrough_off(self):
        plan = self.plan(**dict(QAT_OK, passthrough_allowed=False))
        self.assertNotEqual('qatzip', plan.method)
        self.assertReason('qemu_monitor_passthrough', plan.reasons)

    def test_not_qat_source_without_qatzip(self):
        plan = self.plan(**dict(QAT_OK,
                                hypervisor=datamodel.HypervisorCaps()))
        self.assertNotEqual('qatzip', plan.method)
        self.assertReason('this QEMU has no qatzip', plan.reasons)

    def test_not_qat_destination_cannot_decode(self):
        for dest in (base.DEST_SOFTWARE, datamodel.DestinationCaps()):
            plan = self.plan(**dict(QAT_OK, destination=dest))
            self.assertNotEqual('qatzip', plan.method)
            self.assertReason('destination cannot decode qatzip',
                              plan.reasons)

    def test_not_qat_incompressible(self):
        plan = self.plan(**dict(QAT_OK, history=dict(
            compression_ratio=0.95, method='qatzip')))
        self.assertNotEqual('qatzip', plan.method)
        self.assertReason('incompressible', plan.reasons)
        # The path is otherwise open: no misleading reason about it.
        self.assertNoReason('destination cannot decode', plan.reasons)

    def test_not_qat_when_not_allowed(self):
        self.flags(allowed_methods=['none', 'xbzrle', 'zstd'])
        plan = self.plan(**QAT_OK)
        self.assertNotEqual('qatzip', plan.method)
        self.assertNoReason('QAT', plan.reasons)

    def test_no_qat_reason_without_endpoints(self):
        plan = self.plan(**dict(QAT_OK, qat=dict(endpoints=0,
                                                 free_leases=0)))
        self.assertNoReason('QAT', plan.reasons)


class TestRulesLegacyMT(AdaptiveTestCase):

    def facts(self, **kw):
        facts = dict(qat=dict(endpoints=3, free_leases=1),
                     hypervisor=HV_OLD_MT, destination=DEST_MT)
        facts.update(kw)
        return facts

    def test_legacy_mt_on_qat(self):
        self.flags(legacy_mt_uses_qat=True, mt_level=2,
                   allowed_methods=['none', 'mt'])
        plan = self.plan(**self.facts())
        self.assertEqual('mt', plan.method)
        self.assertEqual(2, plan.level)
        # Two threads per endpoint, up to 8; half as many decompressors.
        self.assertEqual((6, 3), (plan.mt_threads, plan.mt_dthreads))
        self.assertTrue(plan.qat_lease)
        self.assertReason('legacy_mt_uses_qat', plan.reasons)

    def test_legacy_mt_threads_capped(self):
        self.flags(legacy_mt_uses_qat=True, allowed_methods=['none', 'mt'])
        plan = self.plan(**self.facts(qat=dict(endpoints=16,
                                               free_leases=1)))
        self.assertEqual((8, 4), (plan.mt_threads, plan.mt_dthreads))

    def test_legacy_mt_needs_the_option(self):
        self.flags(allowed_methods=['none', 'mt'])
        self.assertNotEqual('mt', self.plan(**self.facts()).method)

    def test_legacy_mt_needs_qemu_before_9_1(self):
        self.flags(legacy_mt_uses_qat=True, allowed_methods=['none', 'mt'])
        plan = self.plan(**self.facts(
            hypervisor=datamodel.HypervisorCaps(qemu_version=(9, 1, 0))))
        self.assertNotEqual('mt', plan.method)

    def test_legacy_mt_needs_free_lease(self):
        self.flags(legacy_mt_uses_qat=True, allowed_methods=['none', 'mt'])
        plan = self.plan(**self.facts(qat=dict(endpoints=3,
                                               free_leases=0)))
        self.assertNotEqual('mt', plan.method)


class TestRulesXBZRLE(AdaptiveTestCase):

    def test_busy_guest_with_spare_memory(self):
        # Dirty 300 MiB/s > 10% of the 1192 MiB/s link: busy. Cache: half
        # of the 4096 MiB RAM = 2048 (within 64..4096 and the 8192 spare).
        plan = self.plan(instance=dict(dirty_rate_mbps=300.0), host=SPARE)
        self.assertEqual('xbzrle', plan.method)
        self.assertEqual(2048, plan.xbzrle_cache_mb)
        # Growth limit: min(4096 max, 4096 RAM, 8192 spare).
        self.assertEqual(4096, plan.xbzrle_cache_max_mb)
        self.assertEqual(1, plan.parallel_connections)
        self.assertReason('XBZRLE cache 2048 MiB', plan.reasons)

    def test_cache_from_working_set_hint(self):
        # 1000 MiB working set x 0.5 = 500 -> 256 (power of two).
        plan = self.plan(instance=dict(dirty_rate_mbps=300.0), host=SPARE,
                         hints=dict(working_set_mb=1000))
        self.assertEqual(256, plan.xbzrle_cache_mb)

    def test_cache_bounded_by_spare_memory(self):
        # 700 MiB spare -> 512.
        plan = self.plan(instance=dict(dirty_rate_mbps=300.0),
                         host=dict(mem_free_mb=2048 + 700))
        self.assertEqual(512, plan.xbzrle_cache_mb)
        self.assertEqual(512, plan.xbzrle_cache_max_mb)

    def test_cache_bounded_by_option(self):
        self.flags(xbzrle_cache_max_mb=1000)
        plan = self.plan(instance=dict(dirty_rate_mbps=300.0), host=SPARE)
        self.assertEqual(512, plan.xbzrle_cache_mb)

    def test_quiet_guest_gets_no_cache(self):
        plan = self.plan(instance=dict(dirty_rate_mbps=50.0), host=SPARE)
        self.assertNotEqual('xbzrle', plan.method)

    def test_no_cache_when_memory_short(self):
        # 32 MiB above the headroom < the 64 MiB minimum cache.
        plan = self.plan(instance=dict(dirty_rate_mbps=300.0),
                         host=dict(mem_free_mb=2048 + 32))
        self.assertNotEqual('xbzrle', plan.method)
        self.assertReason('not enough spare memory for an XBZRLE cache',
                          plan.reasons)

    def test_min_cache_option(self):
        self.flags(xbzrle_cache_min_mb=1024)
        plan = self.plan(instance=dict(dirty_rate_mbps=300.0),
                         host=dict(mem_free_mb=2048 + 700))
        self.assertNotEqual('xbzrle', plan.method)

    def test_poor_xbzrle_history(self):
        plan = self.plan(instance=dict(dirty_rate_mbps=300.0), host=SPARE,
                         history=dict(xbzrle_hit_ratio=0.1))
        self.assertNotEqual('xbzrle', plan.method)
        self.assertReason('XBZRLE hit rate was 10% last time: no cache',
                          plan.reasons)

    def test_good_xbzrle_history(self):
        plan = self.plan(instance=dict(dirty_rate_mbps=300.0), host=SPARE,
                         history=dict(xbzrle_hit_ratio=0.8))
        self.assertEqual('xbzrle', plan.method)

    def test_xbzrle_not_allowed(self):
        self.flags(allowed_methods=['none', 'zstd'])
        plan = self.plan(instance=dict(dirty_rate_mbps=300.0), host=SPARE)
        self.assertNotEqual('xbzrle', plan.method)
        self.assertNoReason('XBZRLE', plan.reasons)

    def test_converged_compression_history_preferred(self):
        # Compression worked last time: no XBZRLE, compress again.
        plan = self.plan(instance=dict(dirty_rate_mbps=300.0),
                         host=dict(SPARE, cpu_idle_pct=90.0),
                         destination=base.DEST_SOFTWARE,
                         history=dict(compression_ratio=0.4, method='zstd',
                                      converged=True))
        self.assertEqual('zstd', plan.method)

    def test_xbzrle_deltas_make_busy_guest_converge(self):
        # 150 MiB/s dirtied over 1 Gbit/s (119 MiB/s): plain pre-copy
        # would not converge (150 > 0.8 x 119). The page sample says 98%
        # of each re-sent page is saved; the 512 MiB cache covers half of
        # the 1024 MiB working set, so XBZRLE sends 0.5 x 0.12 (the
        # model's least residue) + 0.5 = 0.56 of a page per page: 213 MiB/s
        # of pages, and 150 < 0.8 x 213 converges.
        plan = self.plan(instance=dict(dirty_rate_mbps=150.0,
                                       xbzrle_friendly=0.98),
                         hints=dict(working_set_mb=1024), host=SPARE,
                         link_mbps=LINK_1G)
        self.assertEqual(('xbzrle', 512), (plan.method,
                                           plan.xbzrle_cache_mb))
        self.assertFalse(plan.auto_converge)
        self.assertReason('converges: 150 MiB/s dirtied vs 213 MiB/s',
                          plan.reasons)

    def test_xbzrle_without_delta_gain_is_throttled(self):
        # Whole pages rewritten (no delta gain): XBZRLE moves what plain
        # pre-copy moves, so the busy guest still needs throttling.
        plan = self.plan(instance=dict(dirty_rate_mbps=150.0,
                                       xbzrle_friendly=0.0),
                         host=SPARE, link_mbps=LINK_1G)
        self.assertEqual('xbzrle', plan.method)
        self.assertTrue(plan.auto_converge)


class TestRulesSoftwareCompression(AdaptiveTestCase):

    def idle_facts(self, **kw):
        facts = dict(host=dict(cpu_idle_pct=90.0),
                     destination=base.DEST_SOFTWARE, link_mbps=LINK_1G)
        facts.update(kw)
        return facts

    def test_zstd_on_idle_cpu(self):
        self.flags(zstd_level=3, zlib_level=5)
        plan = self.plan(**self.idle_facts())
        # 4 CPUs x 90% idle = 3 idle cores -> 3 channels (<= 4).
        self.assertEqual(('zstd', 3, 3), (plan.method, plan.level,
                                          plan.parallel_connections))
        self.assertEqual((('zlib', 5),), plan.fallbacks)
        self.assertReason('90% CPU idle: zstd multifd x3', plan.reasons)

    def test_zlib_when_zstd_not_allowed(self):
        self.flags(allowed_methods=['none', 'zlib'])
        plan = self.plan(**self.idle_facts())
        self.assertEqual('zlib', plan.method)

    def test_zlib_when_destination_lacks_zstd(self):
        dest = datamodel.DestinationCaps(
            known=True, methods=frozenset({'zlib'}), multifd=True)
        plan = self.plan(**self.idle_facts(destination=dest))
        self.assertEqual('zlib', plan.method)

    def test_at_least_two_channels(self):
        plan = self.plan(**self.idle_facts(host=dict(cpus=1,
                                                     cpu_idle_pct=90.0)))
        self.assertEqual('zstd', plan.method)
        self.assertEqual(2, plan.parallel_connections)

    def test_channels_capped(self):
        self.flags(max_parallel_connections=2)
        plan = self.plan(**self.idle_facts(host=dict(cpus=16,
                                                     cpu_idle_pct=90.0)))
        self.assertEqual(2, plan.parallel_connections)

    def test_cpu_too_busy(self):
        self.flags(max_guest_cpu_impact_pct=0)
        plan = self.plan(**self.idle_facts(host=dict(cpu_idle_pct=10.0)))
        self.assertNotIn(plan.method, ('zlib', 'zstd'))
        self.assertReason('software compression would cost the busy vCPUs '
                          'more than [qat_migration] '
                          'max_guest_cpu_impact_pct 0%', plan.reasons)

    def test_busy_cpu_shared_within_the_cap(self):
        plan = self.plan(**self.idle_facts(host=dict(cpu_idle_pct=10.0)))
        self.assertEqual('zstd', plan.method)
        self.assertReason("10% CPU idle (the compressors share busy cores, "
                          "about", plan.reasons)

    def test_deprecated_threshold_still_gates_when_set(self):
        self.flags(cpu_idle_threshold=50)
        plan = self.plan(**self.idle_facts(host=dict(cpu_idle_pct=40.0)))
        self.assertNotIn(plan.method, ('zlib', 'zstd'))
        self.assertReason('40% CPU idle < 50%: no software compression',
                          plan.reasons)

    def test_threshold_option(self):
        self.flags(cpu_idle_threshold=30)
        plan = self.plan(**self.idle_facts(host=dict(cpu_idle_pct=40.0)))
        self.assertEqual('zstd', plan.method)

    def test_destination_unknown(self):
        plan = self.plan(**self.idle_facts(
            destination=datamodel.DestinationCaps()))
        self.assertEqual('none', plan.method)
        self.assertReason('no software compression method both ends run',
                          plan.reasons)

    def test_incompressible_history(self):
        plan = self.plan(**self.idle_facts(history=dict(
            compression_ratio=0.9, method='zstd')))
        self.assertEqual('none', plan.method)
        self.assertReason('pages compress to 0.90: incompressible',
                          plan.reasons)

    def test_ratio_of_uncompressed_migration_is_not_history(self):
        # wire/RAM of a plain migration says nothing about compression.
        plan = self.plan(**self.idle_facts(history=dict(
            compression_ratio=0.9, method='none')))
        self.assertEqual('zstd', plan.method)

    def test_compression_does_not_beat_fast_link(self):
        # 2 CPUs x 90% -> 1 idle core -> 2 channels x 350 = 700 MiB/s of
        # pages, less than 1.1 x the 1192 MiB/s link.
        plan = self.plan(**self.idle_facts(
            host=dict(cpus=2, cpu_idle_pct=90.0), link_mbps=base.LINK_10G))
        self.assertNotIn(plan.method, ('zlib', 'zstd'))
        self.assertReason('compression would not beat the 1192 MiB/s link',
                          plan.reasons)

    def test_compression_for_busy_guest_even_on_fast_link(self):
        plan = self.plan(**self.idle_facts(
            host=dict(cpus=2, cpu_idle_pct=90.0), link_mbps=base.LINK_10G,
            instance=dict(dirty_rate_mbps=400.0)))
        self.assertEqual('zstd', plan.method)


class TestRulesPlain(AdaptiveTestCase):

    def test_plain_multifd_on_fast_link(self):
        plan = self.plan()
        self.assertEqual('none', plan.method)
        # No idle core: the minimum of 2 channels.
        self.assertEqual(2, plan.parallel_connections)
        self.assertReason('fast link (1192 MiB/s): plain multifd x2',
                          plan.reasons)

    def test_plain_multifd_channels_from_idle_cores(self):
        self.flags(max_parallel_connections=8)
        plan = self.plan(host=dict(cpus=16, cpu_idle_pct=40.0))
        # 6 idle cores, but plain multifd uses at most 4.
        self.assertEqual(4, plan.parallel_connections)

    def test_plain_precopy_on_slow_link(self):
        plan = self.plan(link_mbps=LINK_1G)
        self.assertEqual(('none', 1), (plan.method,
                                       plan.parallel_connections))
        self.assertReason('plain pre-copy', plan.reasons)

    def test_plain_precopy_when_tunnelled(self):
        plan = self.plan(nova=dict(tunnelled=True))
        self.assertEqual(1, plan.parallel_connections)
        self.assertReason('plain pre-copy', plan.reasons)

    def test_plain_precopy_on_single_cpu(self):
        plan = self.plan(host=dict(cpus=1, cpu_idle_pct=10.0))
        self.assertEqual(1, plan.parallel_connections)

    def test_options_and_hints_carried(self):
        self.flags(downtime_ms=700, progress_timeout=99,
                   post_copy_after_stalled=5)
        plan = self.plan(nova=dict(bandwidth_mbps=321))
        self.assertEqual((700, 99, 5, 321), (
            plan.max_downtime_ms, plan.progress_timeout_s,
            plan.post_copy_after_stalled, plan.bandwidth_mbps))
        plan = self.plan(hints=dict(max_downtime_ms=150))
        self.assertEqual(150, plan.max_downtime_ms)


class TestRulesForced(AdaptiveTestCase):

    def test_forced_method(self):
        self.flags(zstd_level=4)
        plan = self.plan(hints=dict(method='zstd'))
        self.assertEqual(('zstd', 4, 4), (plan.method, plan.level,
                                          plan.parallel_connections))
        self.assertReason('method zstd forced by qat_migration:method',
                          plan.reasons)

    def test_forced_level_and_channels(self):
        plan = self.plan(hints=dict(method='zlib', level=7,
                                    parallel_connections=3))
        self.assertEqual(('zlib', 7, 3), (plan.method, plan.level,
                                          plan.parallel_connections))

    def test_forced_channels_capped_by_operator(self):
        self.flags(max_parallel_connections=4)
        plan = self.plan(hints=dict(method='zstd', parallel_connections=16))
        self.assertEqual(4, plan.parallel_connections)

    def test_forced_method_not_allowed(self):
        plan = self.plan(hints=dict(method='mt'))
        self.assertEqual(('none', 1), (plan.method,
                                       plan.parallel_connections))
        self.assertIsNone(plan.level)
        self.assertReason('mt is not in [qat_migration] allowed_methods: '
                          'using none', plan.reasons)

    def test_forced_single_stream_method(self):
        plan = self.plan(hints=dict(method='xbzrle'))
        self.assertEqual(1, plan.parallel_connections)
        # No spare memory: the minimum cache.
        self.assertEqual(64, plan.xbzrle_cache_mb)

    def test_forced_xbzrle_sized_when_memory_spare(self):
        plan = self.plan(hints=dict(method='xbzrle'), host=SPARE)
        self.assertEqual(2048, plan.xbzrle_cache_mb)

    def test_forced_overrides_the_rules(self):
        # The rules would pick XBZRLE here; the hint wins.
        plan = self.plan(hints=dict(method='zlib'), host=SPARE,
                         instance=dict(dirty_rate_mbps=300.0))
        self.assertEqual('zlib', plan.method)

    def test_forced_qatzip_takes_lease(self):
        plan = self.plan(hints=dict(method='qatzip'), **QAT_OK)
        self.assertTrue(plan.qat_lease)
        plan = self.plan(hints=dict(method='qatzip'))
        self.assertFalse(plan.qat_lease)

    def test_forced_qatzip_without_usable_qat_runs_software(self):
        # A QAT device whose QATzip ran in software gives no endpoint: the
        # hint's qatzip would run in software at several times zstd's CPU.
        self.flags(allowed_methods=['none', 'zstd', 'qatzip'])
        unusable = dict(QAT_OK, qat=dict(
            endpoints=0, free_leases=0,
            unusable='QAT device present but QATzip ran in software'))
        plan = self.plan(hints=dict(method='qatzip', level=5),
                         host=dict(cpu_idle_pct=100.0, cpus=8), **unusable)
        self.assertEqual('zstd', plan.method)
        self.assertEqual(self.conf.qat_migration.zstd_level, plan.level)
        self.assertFalse(plan.qat_lease)
        self.assertReason('QATzip ran in software: using zstd',
                          plan.reasons)
        self.flags(max_guest_cpu_impact_pct=0)
        busy = self.plan(hints=dict(method='qatzip'),
                         host=dict(cpu_idle_pct=0.0, cpus=8), **unusable)
        self.assertEqual('none', busy.method)

    def test_forced_mt_takes_lease_only_on_qat_build(self):
        self.flags(allowed_methods=['none', 'mt'])
        facts = dict(qat=dict(endpoints=1, free_leases=1),
                     hypervisor=HV_OLD_MT, destination=DEST_MT)
        self.assertFalse(self.plan(hints=dict(method='mt'),
                                   **facts).qat_lease)
        self.flags(legacy_mt_uses_qat=True)
        self.assertTrue(self.plan(hints=dict(method='mt'),
                                  **facts).qat_lease)

    def test_forced_with_model_on(self):
        # The hint fixes the method; the model still ranks its variants.
        self.flags(adaptive_model=True)
        plan = self.plan(hints=dict(method='zstd'),
                         instance=dict(dirty_rate_mbps=0.0))
        self.assertEqual('zstd', plan.method)
        self.assertFalse(plan.auto_converge)
        self.assertReason('method zstd forced by qat_migration:method',
                          plan.reasons)
        self.assertReason('predicted', plan.reasons)


class TestRulesConvergence(AdaptiveTestCase):

    def stalling(self, **kw):
        # 2000 MiB/s dirtied over a 1000 MiB/s link, nothing else to help:
        # plain multifd moves 1000 MiB/s.
        facts = dict(instance=dict(dirty_rate_mbps=2000.0), link_mbps=1000.0)
        facts.update(kw)
        return facts

    def test_dirty_rate_unknown(self):
        plan = self.plan()
        self.assertFalse(plan.auto_converge)
        self.assertFalse(plan.post_copy)
        self.assertReason('dirty rate unknown: no throttling planned',
                          plan.reasons)

    def test_dirty_rate_from_history(self):
        plan = self.plan(**self.stalling(
            instance=dict(dirty_rate_mbps=None),
            history=dict(dirty_rate_mbps=2000.0)))
        self.assertTrue(plan.auto_converge)

    def test_measured_dirty_rate_wins_over_history(self):
        plan = self.plan(**self.stalling(
            instance=dict(dirty_rate_mbps=10.0),
            history=dict(dirty_rate_mbps=2000.0)))
        self.assertFalse(plan.auto_converge)

    def test_converges(self):
        plan = self.plan(instance=dict(dirty_rate_mbps=50.0))
        self.assertFalse(plan.auto_converge)
        self.assertFalse(plan.post_copy)
        self.assertReason('converges: 50 MiB/s dirtied', plan.reasons)

    def test_throttle_from_schedule(self):
        # Needed: 1 - 0.8 x 1000 / 2000 = 60% -> first step >= 60 is 70,
        # the increment is the gap to the next step.
        self.flags(throttle_schedule=[10, 30, 50, 70, 90])
        plan = self.plan(**self.stalling())
        self.assertEqual((70, 20), (plan.throttle_initial,
                                    plan.throttle_increment))
        self.assertFalse(plan.post_copy)
        self.assertReason('will not converge: 2000 MiB/s dirtied vs 1000',
                          plan.reasons)
        self.assertReason('stepped auto-converge from 70% (+20%), about '
                          '60% needed', plan.reasons)

    def test_throttle_low_need_starts_at_first_step(self):
        # Needed: 1 - 0.8 x 1000 / 1300 = 38.5% -> 50, +20.
        self.flags(throttle_schedule=[50, 70, 90])
        plan = self.plan(**self.stalling(
            instance=dict(dirty_rate_mbps=1300.0)))
        self.assertEqual((50, 20), (plan.throttle_initial,
                                    plan.throttle_increment))

    def test_throttle_beyond_schedule_starts_at_last_start(self):
        # The last step is where throttling climbs to, never where it
        # starts: the highest start is 70, climbing to 90.
        self.flags(throttle_schedule=[10, 30, 50, 70, 90])
        plan = self.plan(**self.stalling(
            instance=dict(dirty_rate_mbps=100000.0)))
        self.assertEqual((70, 20), (plan.throttle_initial,
                                    plan.throttle_increment))

    def test_throttle_single_step_schedule(self):
        self.flags(throttle_schedule=[50])
        plan = self.plan(**self.stalling())
        self.assertEqual(50, plan.throttle_initial)
        self.assertGreaterEqual(plan.throttle_increment, 1)

    def test_throttle_refused_by_option(self):
        self.flags(permit_auto_converge=False)
        plan = self.plan(**self.stalling())
        self.assertFalse(plan.auto_converge)
        self.assertReason('neither throttling nor post-copy permitted',
                          plan.reasons)

    def test_throttle_refused_by_hint(self):
        plan = self.plan(hints=dict(allow_throttle=False),
                         **self.stalling())
        self.assertFalse(plan.auto_converge)
        self.assertReason('neither throttling nor post-copy permitted',
                          plan.reasons)

    def test_post_copy_permitted(self):
        # Single stream (a slow link): throttling with post-copy as the
        # backstop.
        self.flags(permit_post_copy=True, post_copy_after_stalled=4)
        plan = self.plan(**self.stalling(
            link_mbps=LINK_1G, instance=dict(dirty_rate_mbps=500.0)))
        self.assertEqual(1, plan.parallel_connections)
        self.assertTrue(plan.post_copy)
        self.assertTrue(plan.auto_converge)
        self.assertReason('post-copy permitted after 4 stalled iterations',
                          plan.reasons)

    def test_post_copy_not_planned_on_multifd_before_qemu_10_1(self):
        # Throttling is allowed, so multifd stays; QEMU 10.0 cannot switch
        # a multifd migration to post-copy, so none is planned.
        self.flags(permit_post_copy=True)
        plan = self.plan(**self.stalling())
        self.assertEqual(2, plan.parallel_connections)
        self.assertTrue(plan.auto_converge)
        self.assertFalse(plan.post_copy)
        self.assertReason('post-copy cannot run with multifd on these '
                          'QEMUs', plan.reasons)

    def test_post_copy_multifd_old_qemu_no_throttle_single_stream(self):
        self.flags(permit_post_copy=True, permit_auto_converge=False)
        plan = self.plan(**self.stalling())
        self.assertTrue(plan.post_copy)
        self.assertFalse(plan.auto_converge)
        self.assertEqual(('none', 1), (plan.method,
                                       plan.parallel_connections))
        self.assertEqual((), plan.fallbacks)
        self.assertReason('cannot run with multifd here: single stream',
                          plan.reasons)
        facts = base.make_facts(**self.stalling())
        call = translate.to_libvirt(plan, facts)
        self.assertTrue(call.plan.post_copy)

    def test_post_copy_multifd_on_qemu_10_1_keeps_multifd(self):
        self.flags(permit_post_copy=True, permit_auto_converge=False)
        plan = self.plan(**self.stalling(hypervisor=HV_101,
                                         destination=DEST_101))
        self.assertTrue(plan.post_copy)
        self.assertEqual(2, plan.parallel_connections)

    def test_post_copy_refused_by_hint(self):
        self.flags(permit_post_copy=True)
        plan = self.plan(hints=dict(allow_post_copy=False),
                         **self.stalling())
        self.assertFalse(plan.post_copy)

    def test_hint_cannot_permit_post_copy(self):
        plan = self.plan(hints=dict(allow_post_copy=True),
                         **self.stalling())
        self.assertFalse(plan.post_copy)

    def test_neither_permitted(self):
        self.flags(permit_auto_converge=False, permit_post_copy=False)
        plan = self.plan(**self.stalling())
        self.assertFalse(plan.auto_converge)
        self.assertFalse(plan.post_copy)
        self.assertReason('the progress timeout will abort if it stalls',
                          plan.reasons)

    def test_did_not_converge_last_time(self):
        plan = self.plan(history=dict(converged=False))
        self.assertEqual(self.conf.qat_migration.throttle_schedule[0],
                         plan.throttle_initial)
        self.assertReason('did not converge last time', plan.reasons)

    def test_paused_instance(self):
        # A paused guest dirties nothing, whatever was measured before.
        plan = self.plan(instance=dict(paused=True, dirty_rate_mbps=5000.0),
                         host=SPARE)
        self.assertNotEqual('xbzrle', plan.method)
        self.assertFalse(plan.auto_converge)
        self.assertReason('converges: 0 MiB/s dirtied', plan.reasons)


class TestWithModel(AdaptiveTestCase):
    """The convergence model picks among candidates the rules allow."""

    model = True

    def test_idle_guest_predicted(self):
        plan = self.plan(instance=dict(dirty_rate_mbps=0.0))
        self.assertReason('predicted', plan.reasons)
        self.assertFalse(plan.auto_converge)
        self.assertFalse(plan.post_copy)

    def test_dirty_rate_unknown_noted(self):
        plan = self.plan()
        self.assertReason('dirty rate unknown: predicted as an idle guest',
                          plan.reasons)

    def test_never_forbidden_levers(self):
        self.flags(permit_auto_converge=False, permit_post_copy=False,
                   allowed_methods=['none', 'zlib'])
        for dirty in (0.0, 300.0, 900.0, 3000.0):
            plan = self.plan(instance=dict(dirty_rate_mbps=dirty),
                             host=dict(SPARE, cpu_idle_pct=100.0, cpus=8),
                             destination=base.DEST_SOFTWARE, **QAT_OK_NO_DEST)
            self.assertFalse(plan.auto_converge, dirty)
            self.assertFalse(plan.post_copy, dirty)
            self.assertIn(plan.method, ('none', 'zlib'), dirty)

    def test_no_multifd_when_tunnelled(self):
        for dirty in (0.0, 500.0):
            plan = self.plan(instance=dict(dirty_rate_mbps=dirty),
                             host=dict(cpu_idle_pct=100.0, cpus=8),
                             destination=base.DEST_SOFTWARE,
                             nova=dict(tunnelled=True))
            self.assertEqual(1, plan.parallel_connections)
            self.assertNotIn(plan.method, ('zlib', 'zstd', 'qatzip'))

    def test_no_software_compression_on_busy_cpu(self):
        self.flags(max_guest_cpu_impact_pct=5)
        plan = self.plan(instance=dict(dirty_rate_mbps=500.0),
                         host=dict(cpu_idle_pct=10.0),
                         destination=base.DEST_SOFTWARE, link_mbps=LINK_1G)
        self.assertNotIn(plan.method, ('zlib', 'zstd'))
        self.assertReason('zstd x2: 10% CPU idle, the compressors would '
                          "take 7% of the busy vCPUs' time > "
                          '[qat_migration] max_guest_cpu_impact_pct 5%',
                          plan.reasons)

    def test_no_qatzip_without_passthrough(self):
        plan = self.plan(instance=dict(dirty_rate_mbps=500.0),
                         link_mbps=LINK_1G,
                         **dict(QAT_OK, passthrough_allowed=False))
        self.assertNotEqual('qatzip', plan.method)
        self.assertReason('qemu_monitor_passthrough', plan.reasons)

    def test_incompressible_qat_reason(self):
        plan = self.plan(instance=dict(dirty_rate_mbps=500.0),
                         history=dict(compression_ratio=0.95,
                                      method='qatzip'), **QAT_OK)
        self.assertNotEqual('qatzip', plan.method)
        self.assertReason('incompressible', plan.reasons)
        self.assertNoReason('destination cannot decode', plan.reasons)

    def test_no_post_copy_with_multifd_before_10_1(self):
        self.flags(permit_post_copy=True)
        for dirty in (500.0, 3000.0, 20000.0):
            plan = self.plan(instance=dict(dirty_rate_mbps=dirty),
                             host=dict(cpu_idle_pct=100.0, cpus=8),
                             destination=base.DEST_SOFTWARE)
            if plan.post_copy:
                self.assertEqual(1, plan.parallel_connections, dirty)

    def test_nothing_converges_keeps_rule_plan(self):
        self.flags(permit_auto_converge=False, permit_post_copy=False)
        plan = self.plan(instance=dict(dirty_rate_mbps=50000.0),
                         link_mbps=LINK_1G)
        self.assertReason('model: no candidate converges within 500 ms; '
                          'rule-based plan kept', plan.reasons)
        self.assertReason('neither throttling nor post-copy permitted',
                          plan.reasons)

    def test_model_result_translates_cleanly(self):
        facts = base.make_facts(instance=dict(dirty_rate_mbps=800.0),
                                host=dict(SPARE, cpu_idle_pct=100.0,
                                          cpus=8),
                                destination=base.DEST_SOFTWARE)
        plan = self.policy.plan(facts)
        call = translate.to_libvirt(plan, facts)
        self.assertEqual((), call.degradations)

    def test_gentlest_tier_wins(self):
        # A guest that converges without throttling nearly as fast as with
        # it is not throttled (gentle_tolerance).
        self.flags(permit_post_copy=True)
        plan = self.plan(instance=dict(dirty_rate_mbps=30.0),
                         host=dict(SPARE, cpu_idle_pct=100.0, cpus=8),
                         destination=base.DEST_SOFTWARE, link_mbps=LINK_1G)
        self.assertFalse(plan.auto_converge)
        self.assertFalse(plan.post_copy)

    def test_throttle_before_post_copy(self):
        self.flags(permit_post_copy=True)
        plan = self.plan(instance=dict(dirty_rate_mbps=400.0,
                                       compress_ratio=0.95,
                                       xbzrle_friendly=0.0),
                         host=dict(SPARE, cpu_idle_pct=100.0, cpus=8),
                         destination=base.DEST_SOFTWARE, link_mbps=LINK_1G)
        self.assertTrue(plan.auto_converge)
        self.assertFalse(plan.post_copy)

    def test_page_sample_drives_the_method(self):
        common = dict(host=dict(SPARE, cpu_idle_pct=100.0, cpus=8),
                      destination=base.DEST_SOFTWARE, link_mbps=LINK_1G)
        text = self.plan(instance=dict(dirty_rate_mbps=100.0,
                                       compress_ratio=0.4,
                                       xbzrle_friendly=0.0), **common)
        self.assertIn(text.method, ('zstd', 'zlib'))
        small = self.plan(instance=dict(dirty_rate_mbps=100.0,
                                        compress_ratio=0.97,
                                        xbzrle_friendly=0.98), **common)
        self.assertEqual('xbzrle', small.method)

    def test_completion_timeout_is_a_limit(self):
        # Plain pre-copy of 4 GiB over 1 Gbit/s takes ~35 s: fine with
        # Nova's 800 s/GiB, not with 5 s/GiB (10 s for 2 GiB of data).
        self.flags(allowed_methods=['none'], permit_auto_converge=False)
        facts = dict(instance=dict(dirty_rate_mbps=0.0),
                     host=dict(cpu_idle_pct=0.0, cpus=1),
                     destination=base.DEST_SOFTWARE, link_mbps=LINK_1G)
        self.assertReason('predicted', self.plan(**facts).reasons)
        slow = self.plan(nova=dict(completion_timeout_s_per_gib=5), **facts)
        self.assertReason('no candidate converges', slow.reasons)

    def test_channel_hint_fixes_multifd_channels(self):
        plan = self.plan(instance=dict(dirty_rate_mbps=100.0,
                                       compress_ratio=0.4,
                                       xbzrle_friendly=0.0),
                         hints=dict(parallel_connections=3),
                         host=dict(SPARE, cpu_idle_pct=100.0, cpus=8),
                         destination=base.DEST_SOFTWARE, link_mbps=LINK_1G)
        self.assertIn(plan.parallel_connections, (1, 3))

    def test_second_migration_learns_from_history(self):
        # The guest rewrites whole pages of text (deflates to 0.45, no
        # XBZRLE gain) at 150 MiB/s over 1 Gbit/s; the first plan is made
        # without a page sample, the second with what the first showed.
        from nova_qat_migration.policy import model
        truth = model.Workload(ram_mb=4096, dirty_mbps=150.0,
                               compress_ratio=0.45, xbzrle_friendly=0.0)
        # A busy host CPU rules software compression out; spare memory
        # makes XBZRLE the first guess.
        self.flags(cpu_idle_threshold=50)
        common = dict(host=dict(SPARE, cpu_idle_pct=10.0, cpus=8),
                      destination=base.DEST_SOFTWARE, link_mbps=LINK_1G)
        first = self.plan(instance=dict(dirty_rate_mbps=150.0), **common)
        self.assertEqual('xbzrle', first.method)
        observed = dict(migrations=1, dirty_rate_mbps=150.0,
                        method=first.method,
                        xbzrle_hit_ratio=(0.0 if first.method == 'xbzrle'
                                          else None),
                        compression_ratio=(
                            0.45 if first.method in ('zstd', 'zlib')
                            else 1.0))
        second = self.plan(instance=dict(dirty_rate_mbps=150.0),
                           history=observed, **common)

        def cost(plan):
            pred = model.predict(plan, truth, LINK_1G, idle_cores=0.8)
            return pred.total_s if pred.converges else float('inf')

        self.assertLess(cost(second), cost(first))
        self.assertNotEqual('xbzrle', second.method)


class TestAdaptiveOptions(base.TestCase):
    """``[qat_migration_adaptive]``, declared by the policy, old names read
    (existing nova.conf files keep working).
    """

    def _policy(self, text):
        conf = base.conf_from_text(self, text)
        # The [libvirt] options the shared limits follow while unset.
        nova_libvirt_conf.register_opts(conf)
        for name, value in base.WIDENED.items():
            conf.set_override(name, value, group='qat_migration')
        return loader.load_policy('adaptive', conf)

    def test_declared_by_the_policy(self):
        self.assertEqual('qat_migration_adaptive',
                         adaptive.AdaptivePolicy.CONFIG_GROUP.name)
        self.assertEqual(['adaptive_model', 'gentle_tolerance'],
                         sorted(o.name
                                for o in adaptive.AdaptivePolicy.CONFIG_OPTS))

    def test_former_names_take_effect(self):
        facts = base.make_facts(instance=dict(dirty_rate_mbps=0.0))
        new = self._policy('[qat_migration]\n')
        old = self._policy('[qat_migration]\nadaptive_model = false\n'
                           'gentle_tolerance = 0.5\n')
        self.assertEqual((True, 0.2), (new.options.adaptive_model,
                                       new.options.gentle_tolerance))
        self.assertEqual((False, 0.5), (old.options.adaptive_model,
                                        old.options.gentle_tolerance))
        # The old name changes the plan: the rules choose, not the model.
        self.assertReason('predicted', new.plan(facts).reasons)
        self.assertNoReason('predicted', old.plan(facts).reasons)

    def test_new_name_wins_over_former(self):
        policy = self._policy('[qat_migration]\nadaptive_model = false\n'
                              '[qat_migration_adaptive]\n'
                              'adaptive_model = true\n')
        self.assertTrue(policy.options.adaptive_model)
