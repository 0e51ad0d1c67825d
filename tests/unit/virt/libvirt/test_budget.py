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
"""Shared budgets: concurrent plans on one source never over-commit it.

Each test plans two or four migrations on the *same* host facts, as the
driver does when they start together (the measurement cannot see what a
migration that started a second ago will use), each against the budget's
snapshot, and checks the sums against what the host has.
"""

import dataclasses
import threading
import types
from unittest import mock

import fixtures
from nova import objects

from nova_qat_migration import budget as qat_budget
from nova_qat_migration.conf import CONF
from nova_qat_migration import datamodel
from nova_qat_migration.policy import adaptive
from nova_qat_migration.policy import common
from nova_qat_migration.policy import escalation
from nova_qat_migration.policy import static
from nova_qat_migration.virt.libvirt import session as lm_session
from nova_qat_migration.virt.libvirt import translate
from tests.unit import base as test_base
from tests.unit.virt.libvirt import test_driver

LINK_1G = 1e9 / 8 / datamodel.MIB


def _session(uuid, facts, plan):
    return types.SimpleNamespace(instance_uuid=uuid, facts=facts,
                                 call=types.SimpleNamespace(plan=plan))


class ConcurrentPlansTest(test_base.TestCase):

    def setUp(self):
        super().setUp()
        self.flags(memory_headroom_mb=2048, **test_base.WIDENED)
        self.policy = adaptive.AdaptivePolicy(CONF)

    def _plan_all(self, facts, count):
        """Plan ``count`` migrations on ``facts``, as the driver does."""
        budget = qat_budget.HostBudget(CONF)
        plans = []
        for i in range(count):
            seen = dataclasses.replace(facts, in_flight=budget.snapshot())
            plan = self.policy.plan(seen)
            budget.reserve(_session('uuid-%d' % i, seen, plan))
            plans.append((seen, plan))
        return budget, plans

    def _assert_within(self, facts, budget, count):
        shares = list(budget.shares().values())
        self.assertEqual(count, len(shares))
        idle = facts.host.cpus * facts.host.cpu_idle_pct / 100.0
        spare = facts.host.mem_free_mb - CONF.qat_migration.memory_headroom_mb
        self.assertLessEqual(sum(s.cores for s in shares), idle + 1e-9)
        self.assertLessEqual(sum(s.xbzrle_mb for s in shares), max(0, spare))
        self.assertLessEqual(sum(s.qat_leases for s in shares),
                             min(facts.qat.endpoints, facts.qat.free_leases))
        self.assertEqual(count, budget.snapshot().migrations)

    def _cores_facts(self):
        # Compressible guests, 4 idle cores, no memory to spare, no QAT.
        return test_base.make_facts(
            instance=dict(dirty_rate_mbps=40.0, compress_ratio=0.3),
            host=dict(cpus=4, cpu_idle_pct=100.0, mem_free_mb=0),
            destination=test_base.DEST_SOFTWARE, link_mbps=LINK_1G)

    def _memory_facts(self):
        # Busy guests, a destination that only decodes XBZRLE, 1.5 GiB
        # spare above the headroom.
        return test_base.make_facts(
            instance=dict(dirty_rate_mbps=150.0, xbzrle_friendly=0.95),
            host=dict(cpus=4, cpu_idle_pct=100.0, mem_free_mb=2048 + 1536),
            destination=dict(known=True, methods=frozenset({'xbzrle'})),
            link_mbps=LINK_1G)

    def _qat_facts(self):
        return test_base.make_facts(
            instance=dict(dirty_rate_mbps=40.0, compress_ratio=0.3),
            host=dict(cpus=4, cpu_idle_pct=10.0, mem_free_mb=0),
            qat=dict(endpoints=2, free_leases=2, hardware=True,
                     throughput_mbps=1500.0, ratio=0.3),
            hypervisor=test_base.HV_QATZIP, destination=test_base.DEST_QAT,
            passthrough_allowed=True, link_mbps=LINK_1G)

    def test_two_and_four_plans_never_over_commit(self):
        for name in ('cores', 'memory', 'qat'):
            facts = getattr(self, '_%s_facts' % name)()
            for count in (2, 4):
                budget, plans = self._plan_all(facts, count)
                self._assert_within(facts, budget, count)
                # The later plans were told what the earlier ones hold.
                self.assertReason('sharing the source with 1 migration(s)',
                                  plans[1][1].reasons)

    def test_compressors_take_the_idle_cores_once(self):
        budget, plans = self._plan_all(self._cores_facts(), 4)
        methods = [p.method for _, p in plans]
        self.assertEqual(['zstd', 'zstd'], methods[:2])
        self.assertEqual(4.0, plans[2][0].in_flight.cores_held)
        # The later compressors share busy cores (predicted and capped),
        # holding no idle core another migration counts on.
        self.assertEqual(4.0, sum(s.cores for s in budget.shares().values()))
        self.assertReason("of the busy vCPUs' time", plans[2][1].reasons)

    def test_no_idle_core_left_and_no_impact_allowed(self):
        self.flags(max_guest_cpu_impact_pct=0)
        _, plans = self._plan_all(self._cores_facts(), 4)
        methods = [p.method for _, p in plans]
        self.assertEqual(['zstd', 'zstd'], methods[:2])
        # Nothing idle is left for a third compressor.
        self.assertNotIn('zstd', methods[2:])
        self.assertNotIn('zlib', methods[2:])
        self.assertReason('max_guest_cpu_impact_pct 0%',
                          plans[2][1].reasons)

    def test_a_deprecated_threshold_set_still_gates(self):
        self.flags(cpu_idle_threshold=50)
        _, plans = self._plan_all(self._cores_facts(), 4)
        self.assertNotIn('zstd', [p.method for _, p in plans][2:])
        self.assertReason('zstd: 0% CPU idle < [qat_migration] '
                          'cpu_idle_threshold 50%', plans[2][1].reasons)

    def test_xbzrle_caches_split_the_spare_memory(self):
        budget, plans = self._plan_all(self._memory_facts(), 4)
        caches = [p.xbzrle_cache_max_mb or 0 for _, p in plans]
        self.assertEqual('xbzrle', plans[0][1].method)
        self.assertEqual(1024, caches[0])
        self.assertLessEqual(sum(caches), 1536)
        self.assertEqual(1536, budget.snapshot().xbzrle_mb_held)
        for seen, plan in plans:
            self.assertLessEqual(plan.xbzrle_cache_mb or 0,
                                 plan.xbzrle_cache_max_mb or 0)
        # The last one was told the memory is gone.
        self.assertReason('xbzrle: not enough spare memory',
                          plans[3][1].reasons)

    def test_qat_leases_not_over_committed(self):
        _, plans = self._plan_all(self._qat_facts(), 4)
        leased = [p for _, p in plans if p.qat_lease]
        self.assertEqual(2, len(leased))
        self.assertEqual(['qatzip', 'qatzip'], [p.method for p in leased])
        self.assertFalse(plans[2][1].qat_lease)
        self.assertEqual(2, plans[2][0].in_flight.qat_leases_held)

    def test_each_plan_predicts_with_its_link_share(self):
        facts = self._cores_facts()
        budget, plans = self._plan_all(facts, 4)
        self.assertEqual([1.0, 0.5, 1 / 3.0, 0.25],
                         [seen.in_flight.link_share for seen, _ in plans])
        self.assertReason('25% of the link (30 MiB/s)', plans[3][1].reasons)

    def test_finished_migration_frees_its_share(self):
        facts = self._cores_facts()
        budget, plans = self._plan_all(facts, 2)
        budget.release(_session('uuid-0', None, None))
        snap = budget.snapshot()
        self.assertEqual(1, snap.migrations)
        self.assertEqual(0.5, snap.link_share)
        self.assertEqual(2.0, snap.cores_held)
        again = self.policy.plan(dataclasses.replace(facts, in_flight=snap))
        self.assertIn(again.method, ('zstd', 'zlib'))
        budget.release(_session('uuid-1', None, None))
        self.assertEqual(datamodel.InFlight(), budget.snapshot())
        # Releasing twice (or an unknown migration) is harmless.
        budget.release(_session('uuid-1', None, None))

    def test_freed_cache_memory_goes_to_a_running_cache(self):
        facts = self._memory_facts()
        budget = qat_budget.HostBudget(CONF)
        for i in range(2):
            seen = dataclasses.replace(facts, in_flight=budget.snapshot())
            cache = common.xbzrle_cache_max_mb(CONF, seen)
            plan = datamodel.Plan(policy='static', method='xbzrle',
                                  xbzrle_cache_mb=min(256, cache),
                                  xbzrle_cache_max_mb=cache)
            budget.reserve(_session('uuid-%d' % i, seen, plan))
        shares = budget.shares()
        self.assertEqual(1024, shares['uuid-0'].xbzrle_mb)
        self.assertEqual(512, shares['uuid-1'].xbzrle_mb)
        self.assertEqual(512, budget.xbzrle_ceiling('uuid-1'))
        budget.release(_session('uuid-0', None, None))
        # The second cache may now grow into what the first freed, up to
        # the ceiling it would have had alone; nothing is over-committed.
        self.assertEqual(1024, budget.xbzrle_ceiling('uuid-1'))
        self.assertEqual(1024, budget.snapshot().xbzrle_mb_held)
        self.assertEqual(0, budget.xbzrle_ceiling('uuid-0'))


class SessionCeilingTest(test_base.TestCase):

    def test_escalation_sees_the_granted_ceiling(self):
        facts = test_base.make_facts(
            host=dict(mem_free_mb=4096), destination=test_base.DEST_SOFTWARE)
        plan = datamodel.Plan(policy='static', method='xbzrle',
                              xbzrle_cache_mb=256, xbzrle_cache_max_mb=512)
        instance = mock.Mock(uuid='uuid-1')
        call = translate.to_libvirt(plan, facts)
        session = lm_session.MigrationSession(
            instance, facts, static.StaticPolicy(CONF), plan, call, plan)
        self.assertEqual(512, session.plan.xbzrle_cache_max_mb)
        budget = qat_budget.HostBudget(CONF)
        budget.reserve(session)
        session.budget = budget
        self.assertEqual(512, session.plan.xbzrle_cache_max_mb)
        with mock.patch.object(budget, 'xbzrle_ceiling', return_value=1024):
            self.assertEqual(1024, session.plan.xbzrle_cache_max_mb)

    def test_cache_grows_into_memory_a_finished_migration_freed(self):
        self.flags(memory_headroom_mb=2048)
        facts = test_base.make_facts(
            instance=dict(memory_mb=4096),
            host=dict(mem_free_mb=2048 + 1536))
        budget = qat_budget.HostBudget(CONF)
        sessions = []
        for i in range(2):
            seen = dataclasses.replace(facts, in_flight=budget.snapshot())
            cache = common.xbzrle_cache_max_mb(CONF, seen)
            plan = datamodel.Plan(policy='adaptive', method='xbzrle',
                                  xbzrle_cache_mb=256,
                                  xbzrle_cache_max_mb=cache)
            call = translate.to_libvirt(plan, seen)
            session = lm_session.MigrationSession(
                mock.Mock(uuid='uuid-%d' % i), seen,
                adaptive.AdaptivePolicy(CONF), plan, call, plan)
            budget.reserve(session)
            session.budget = budget
            sessions.append(session)
        first, second = sessions
        self.assertEqual(512, second.plan.xbzrle_cache_max_mb)
        # The second's cache is at its ceiling and misses a lot.
        progress = datamodel.Progress(elapsed_s=20, remaining_mb=600,
                                      iteration=3, xbzrle_cache_mb=512,
                                      xbzrle_cache_miss_rate=0.6)
        kinds = [a.kind for a in escalation.escalate(second.plan, progress)]
        self.assertNotIn(datamodel.ACTION_XBZRLE_CACHE, kinds)
        budget.release(first)
        actions = [a for a in escalation.escalate(second.plan, progress)
                   if a.kind == datamodel.ACTION_XBZRLE_CACHE]
        self.assertEqual([1024], [a.value for a in actions])
        self.assertEqual(1024, budget.snapshot().xbzrle_mb_held)


class DriverBudgetTest(test_driver.DriverTestBase):
    """Four migrations started together through the driver."""

    def _instance(self, i):
        flavor = objects.Flavor(memory_mb=4096, vcpus=2, extra_specs={})
        return objects.Instance(
            uuid='11111111-2222-3333-4444-%012d' % i, vm_state='active',
            flavor=flavor, system_metadata={})

    def test_concurrent_migrations_share_the_host(self):
        # Compressors on idle cores only: the first takes them all.
        self.flags(policy='adaptive', memory_headroom_mb=2048,
                   max_guest_cpu_impact_pct=0, group='qat_migration',
                   **test_base.WIDENED)
        self.useFixture(fixtures.MonkeyPatch(
            'nova_qat_migration.virt.libvirt.measure.host_load',
            lambda *a, **k: datamodel.HostLoad(cpus=4, cpu_idle_pct=100.0,
                                               mem_free_mb=2048 + 1536)))
        self.useFixture(fixtures.MonkeyPatch(
            'nova_qat_migration.virt.libvirt.measure.instance_fields',
            lambda *a, **k: {'dirty_rate_mbps': 40.0,
                             'compress_ratio': 0.3}))
        drvr = self.driver()
        drvr.init_host('host')
        drvr._host.get_guest = mock.Mock()
        drvr._qat_manager = None
        self.useFixture(fixtures.MockPatch(
            'nova_qat_migration.virt.libvirt.facts.destination',
            return_value=test_base.DEST_SOFTWARE))
        count = 4
        inside = threading.Barrier(count + 1, timeout=30)
        leave = threading.Event()
        seen = {}

        def nova_live_migration(self_, context, instance, *args):
            session = drvr._qat_session(instance)
            seen[instance.uuid] = session
            inside.wait()
            leave.wait(30)

        with mock.patch('nova.virt.libvirt.driver.LibvirtDriver.'
                        '_live_migration', nova_live_migration):
            threads = [threading.Thread(
                target=drvr._live_migration,
                args=(None, self._instance(i), 'dest', 'post', 'recover',
                      False, objects.LibvirtLiveMigrateData(
                          block_migration=False)))
                for i in range(count)]
            for t in threads:
                t.start()
            inside.wait()
            snap = drvr._qat_budget.snapshot()
            self.assertEqual(count, snap.migrations)
            self.assertLessEqual(snap.cores_held, 4.0)
            self.assertLessEqual(snap.xbzrle_mb_held, 1536)
            compressing = [s for s in seen.values()
                           if s.plan.method in ('zstd', 'zlib')]
            # The first takes every idle core, the next two split the
            # spare memory for XBZRLE caches, the last gets plain copy.
            self.assertEqual(1, len(compressing))
            self.assertEqual(1536, snap.xbzrle_mb_held)
            shares = sorted(s.facts.in_flight.migrations
                            for s in seen.values())
            self.assertEqual([0, 1, 2, 3], shares)
            leave.set()
            for t in threads:
                t.join(30)
        self.assertEqual(datamodel.InFlight(), drvr._qat_budget.snapshot())
        self.assertEqual({}, drvr._qat_sessions)


class RecordAndCliTest(test_base.TestCase):

    def test_report_records_what_was_held(self):
        from nova_qat_migration.virt.libvirt import report_facts
        held = datamodel.InFlight(migrations=2, link_share=1 / 3.0,
                                  cores_held=2.0, xbzrle_mb_held=512,
                                  qat_leases_held=1)
        summary = report_facts.summary(
            test_base.make_facts(in_flight=held))
        self.assertEqual(
            {'in_flight_migrations': 2, 'link_share': 0.333,
             'cores_held': 2.0, 'xbzrle_mb_held': 512, 'qat_leases_held': 1},
            {k: summary[k] for k in ('in_flight_migrations', 'link_share',
                                     'cores_held', 'xbzrle_mb_held',
                                     'qat_leases_held')})

    def test_plan_facts_file_reads_in_flight(self):
        from nova_qat_migration.cmd import cli
        facts = cli.facts_from_json(
            '{"in_flight": {"migrations": 1, "link_share": 0.5, '
            '"cores_held": 2}}')
        self.assertEqual(datamodel.InFlight(migrations=1, link_share=0.5,
                                            cores_held=2.0), facts.in_flight)
        for bad in ('{"in_flight": {"link_share": 0}}',
                    '{"in_flight": {"cores": 1}}',
                    '{"in_flight": {"migrations": -1}}'):
            self.assertRaises(cli.UsageError, cli.facts_from_json, bad)
