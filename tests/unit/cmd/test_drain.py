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
"""``nova-qat-migration drain`` against a fake openstacksdk connection.

The fake answers the calls the drain makes the way Nova's API does: a
live migration takes a few polls, then the server is ACTIVE on another
host, or back on the source with a failed instance action (a conductor
event when the scheduler refused, a compute event when the migration
itself failed), or the API refuses it at once (400/409).
"""

import io
import types

import fixtures
from openstack import exceptions as sdk_exc

from nova_qat_migration.cmd import cli
from nova_qat_migration.cmd import drain
from nova_qat_migration import datamodel
from tests.unit import base as test_base

HOST = 'cmp1'


class FakeCompute:

    def __init__(self, servers, polls=2):
        self.servers_ = {s.id: s for s in servers}
        self.polls = polls
        self.poll_for = {}          # id -> polls that migration takes
        self.started = []
        self.running_with = {}      # name -> names running when it started
        self.migrating = {}
        self.max_running = 0
        self.fail = set()           # the migration fails on the compute
        self.no_host = set()        # the scheduler finds no host
        self.api_refuse = {}        # id -> (status code, message)
        self.actions = {}
        self.disabled = []

    # -- listing -----------------------------------------------------------

    def servers(self, details=True, all_projects=False, compute_host=None):
        assert details and all_projects
        return [types.SimpleNamespace(**vars(s))
                for s in self.servers_.values()
                if s.compute_host == compute_host]

    def get_server(self, server_id):
        server = self.servers_[server_id]
        if server_id in self.migrating:
            self.migrating[server_id] -= 1
            if self.migrating[server_id] <= 0:
                self._finish(server)
        return types.SimpleNamespace(**vars(server))

    def _finish(self, server):
        del self.migrating[server.id]
        server.status, server.task_state = 'ACTIVE', None
        if server.id in self.no_host:
            self._action(server.id, 'conductor_live_migrate_instance',
                         'No valid host was found. There are not enough '
                         'hosts available.')
        elif server.id in self.fail:
            self._action(server.id, 'compute_live_migration',
                         'Live migration failed.')
        else:
            server.compute_host = server.target or 'cmp2'

    def _action(self, server_id, event, details):
        self.actions[server_id] = {
            'action': 'live-migration', 'request_id': 'req-%s' % server_id,
            'start_time': '2026-11-30T15:00:00',
            'events': [{'event': event, 'result': 'Error',
                        'details': details}]}

    # -- acting ------------------------------------------------------------

    def live_migrate_server(self, server_id, host=None,
                            block_migration=None):
        assert block_migration == 'auto'
        if server_id in self.api_refuse:
            code, message = self.api_refuse[server_id]
            cls = {400: sdk_exc.BadRequestException,
                   409: sdk_exc.ConflictException}[code]
            exc = cls(message='Error', details=message)
            exc.status_code = code
            raise exc
        server = self.servers_[server_id]
        server.status, server.task_state = 'MIGRATING', 'migrating'
        server.target = host
        self.started.append(server.name)
        self.running_with[server.name] = sorted(
            self.servers_[i].name for i in self.migrating)
        self.migrating[server_id] = self.poll_for.get(server_id, self.polls)
        self.max_running = max(self.max_running, len(self.migrating))

    def server_migrations(self, server_id):
        return [{'status': 'running', 'memory_total_bytes': 1024 ** 3,
                 'memory_remaining_bytes': 256 * 1024 ** 2}]

    def server_actions(self, server_id):
        action = self.actions.get(server_id)
        return [action] if action else []

    def get_server_action(self, request_id, server_id):
        return self.actions[server_id]

    def services(self, binary=None, host=None):
        return [{'host': host, 'binary': binary, 'id': 'svc-%s' % host}]

    def disable_service(self, service, host=None, binary=None,
                        disabled_reason=None):
        self.disabled.append((host, binary, disabled_reason))

    def get_flavor(self, flavor_id):
        raise AssertionError('the flavor is embedded')


def _server(name, ram, vcpus=1, status='ACTIVE', task_state=None,
            host=HOST):
    return types.SimpleNamespace(
        id='id-%s' % name, name=name, status=status, task_state=task_state,
        compute_host=host, target=None,
        flavor={'ram': ram, 'vcpus': vcpus, 'extra_specs': {}})


class FakeHistory:

    def __init__(self, entries):
        self.entries = entries

    def get(self, uuid):
        return self.entries.get(uuid, datamodel.History())


class DrainTestBase(test_base.TestCase):

    def setUp(self):
        super().setUp()
        self.flags(link_gbps=1.0)       # ~119 MiB/s
        self.history = FakeHistory({})
        self.useFixture(fixtures.MonkeyPatch(
            'nova_qat_migration.cmd.drainer._history_store',
            lambda conf: self.history))

    def quiet(self, name, ram):
        self.history.entries['id-%s' % name] = datamodel.History(
            migrations=1, dirty_rate_mbps=2.0, converged=True)
        return _server(name, ram)

    def busy(self, name, ram):
        self.history.entries['id-%s' % name] = datamodel.History(
            migrations=1, dirty_rate_mbps=40.0, converged=True)
        return _server(name, ram)

    def hard(self, name, ram):
        self.history.entries['id-%s' % name] = datamodel.History(
            migrations=1, dirty_rate_mbps=200.0, converged=False)
        return _server(name, ram)

    def drainer(self, compute, concurrency=3, target=None):
        self.out = io.StringIO()
        conn = types.SimpleNamespace(compute=compute)
        return drain.Drainer(conn, HOST, concurrency=concurrency,
                             target=target, out=self.out, poll_s=0,
                             sleep=lambda s: None)

    def run_drain(self, compute, **kw):
        d = self.drainer(compute, **kw)
        groups, resume, stuck = d.plan(d.guests())
        d.print_plan(groups, resume, stuck)
        return d.run(groups, resume, stuck), d


class ScheduleTest(DrainTestBase):

    def test_quiet_together_busy_alone_hard_last(self):
        compute = FakeCompute([
            self.hard('h', 2048), self.busy('b2', 4096),
            self.quiet('q3', 2048), self.busy('b1', 1024),
            self.quiet('q1', 512), self.quiet('q2', 1024)])
        d = self.drainer(compute, concurrency=3)
        groups, resume, stuck = d.plan(d.guests())
        self.assertEqual([['q1', 'q2', 'q3'], ['b1'], ['b2'], ['h']],
                         [[g.name for g in grp.members] for grp in groups])
        self.assertEqual(['quiet', 'busy', 'busy', 'hard'],
                         [grp.members[0].kind for grp in groups])
        # Shortest busy guest first; a busy group has a predicted time;
        # the hard one did not converge last time.
        self.assertLess(groups[1].predicted_s, groups[2].predicted_s)
        self.assertIn('did not converge last time',
                      groups[3].members[0].why)

    def test_groups_never_exceed_the_concurrency(self):
        compute = FakeCompute([self.quiet('q%d' % i, 512 * (i + 1))
                               for i in range(5)])
        code, _ = self.run_drain(compute, concurrency=2)
        self.assertEqual(0, code)
        self.assertEqual(2, compute.max_running)
        self.assertEqual(['q0', 'q1', 'q2', 'q3', 'q4'], compute.started)

    def test_unknown_guests_count_as_quiet(self):
        compute = FakeCompute([_server('new', 1024)])
        d = self.drainer(compute)
        groups, _, _ = d.plan(d.guests())
        self.assertEqual('quiet: no history', groups[0].members[0].why)

    def test_a_group_only_as_large_as_its_members_converge(self):
        # Quiet guests dirtying 9% of the link each: twelve at once would
        # each get 1/12 of it and never converge.
        servers = []
        for i in range(12):
            self.history.entries['id-g%d' % i] = datamodel.History(
                migrations=1, dirty_rate_mbps=10.7, converged=True)
            servers.append(_server('g%d' % i, 1024))
        d = self.drainer(FakeCompute(servers), concurrency=12)
        groups, _, _ = d.plan(d.guests())
        sizes = [len(g.members) for g in groups]
        self.assertEqual(12, sum(sizes))
        self.assertGreater(len(groups), 1)
        self.assertGreater(max(sizes), 1)
        self.assertTrue(all(g.predicted_s for g in groups))


class DryRunTest(DrainTestBase):

    def test_dry_run_prints_order_groups_times_and_moves_nothing(self):
        compute = FakeCompute([self.quiet('q1', 512), self.quiet('q2', 1024),
                               self.busy('b1', 4096),
                               _server('off', 1024, status='SHUTOFF')])
        out = io.StringIO()
        self.useFixture(fixtures.MonkeyPatch(
            'nova_qat_migration.cmd.drain.connect',
            lambda: types.SimpleNamespace(compute=compute)))
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', out))
        import nova.conf  # noqa: F401 - registers the option
        self.flags(group=None, max_concurrent_live_migrations=3)
        code = cli.main(['drain', HOST, '--dry-run', '--concurrency', '2',
                         '--disable-reason', 'maintenance'])
        self.assertEqual(0, code)
        text = out.getvalue()
        self.assertEqual([], compute.started)
        self.assertEqual([], compute.disabled)
        self.assertIn('drain cmp1: 4 server(s), concurrency 2', text)
        self.assertRegex(text, r'group 1 \(quiet, about \d+ s\):\n'
                               r'  q1 id-q1 +512 MiB')
        self.assertRegex(text, r'group 2 \(busy, about \d+ s\):\n  b1 ')
        self.assertIn('cannot move off id-off: status SHUTOFF', text)
        self.assertRegex(text, r'predicted time to empty: \d+ s')

    def test_no_cloud_is_a_message_and_exit_2(self):
        def connect():
            raise sdk_exc.ConfigException('no auth_url')

        self.useFixture(fixtures.MonkeyPatch(
            'nova_qat_migration.cmd.drain.connect', connect))
        err = io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', err))
        self.assertEqual(2, cli.main(['drain', HOST, '--dry-run']))
        self.assertIn("cannot list the servers of cmp1 through Nova's API: "
                      "no auth_url", err.getvalue())

    def test_keystoneauth_error_is_a_message(self):
        from keystoneauth1 import exceptions as ksa_exc

        def connect():
            raise ksa_exc.ConnectFailure('keystone unreachable')

        self.useFixture(fixtures.MonkeyPatch(
            'nova_qat_migration.cmd.drain.connect', connect))
        err = io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', err))
        self.assertEqual(2, cli.main(['drain', HOST, '--dry-run']))
        self.assertIn('keystone unreachable', err.getvalue())

    def test_a_bug_is_not_a_cloud_error(self):
        # Caught by class, not by where it was raised: a bug is a
        # traceback, not "cannot list the servers".
        def connect():
            raise KeyError('bug')

        self.useFixture(fixtures.MonkeyPatch(
            'nova_qat_migration.cmd.drain.connect', connect))
        self.assertRaises(KeyError, cli.main, ['drain', HOST, '--dry-run'])

    def test_concurrency_defaults_to_novas_option(self):
        import nova.conf  # noqa: F401 - registers the option
        self.flags(group=None, max_concurrent_live_migrations=3)
        self.assertEqual(3, drain.default_concurrency())
        self.flags(group=None, max_concurrent_live_migrations=0)
        self.assertEqual(0, drain.default_concurrency())

    def test_concurrency_bounded_by_nova_unless_less_asked(self):
        import nova.conf  # noqa: F401 - registers the option
        # Nova's default: one at a time, even when more is asked.
        self.assertEqual(1, drain.concurrency(None)[0])
        count, why = drain.concurrency(4)
        self.assertEqual(1, count)
        self.assertIn('4 asked, bounded by [DEFAULT] '
                      'max_concurrent_live_migrations = 1', why)
        self.flags(group=None, max_concurrent_live_migrations=3)
        self.assertEqual((3, 'from [DEFAULT] max_concurrent_live_migrations '
                          '= 3'), drain.concurrency(None))
        self.assertEqual((2, 'as asked'), drain.concurrency(2))
        self.assertEqual(3, drain.concurrency(8)[0])

    def test_concurrency_zero_no_longer_unlimited(self):
        err = io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', err))
        self.assertEqual(2, cli.main(['drain', HOST, '--concurrency', '0']))
        self.assertIn('0 is not between 1 and 1000', err.getvalue())


class RunTest(DrainTestBase):

    def test_empties_the_host(self):
        compute = FakeCompute([self.quiet('q1', 512), self.busy('b1', 2048)])
        code, d = self.run_drain(compute, target='cmp9')
        self.assertEqual(0, code)
        self.assertEqual({'cmp9'}, {s.compute_host
                                    for s in compute.servers_.values()})
        text = self.out.getvalue()
        self.assertIn('q1: running, 75% of memory sent, 256 MiB left', text)
        # b1 converges with half the link: it started beside q1.
        self.assertIn('cmp1: 1/2 moved, 1 running', text)
        self.assertIn('cmp1: 2 moved, 0 left', text)

    def test_disable_reason_disables_the_service_first(self):
        compute = FakeCompute([self.quiet('q1', 512)])
        d = self.drainer(compute)
        d.disable('maintenance 42')
        self.assertEqual([(HOST, 'nova-compute', 'maintenance 42')],
                         compute.disabled)

    def test_stops_starting_on_the_first_error_and_rerun_finishes(self):
        compute = FakeCompute([self.quiet('q1', 512), self.quiet('q2', 1024),
                               self.busy('b1', 2048), self.hard('h1', 2048)])
        compute.fail.add('id-q1')
        code, d = self.run_drain(compute, concurrency=2)
        self.assertEqual(1, code)
        # q2 was in flight with q1: it finished; nothing else started.
        self.assertEqual(['q1', 'q2'], compute.started)
        self.assertEqual('cmp2', compute.servers_['id-q2'].compute_host)
        self.assertEqual(HOST, compute.servers_['id-q1'].compute_host)
        self.assertEqual('ACTIVE', compute.servers_['id-q1'].status)
        text = self.out.getvalue()
        self.assertIn('q1: FAILED: compute_live_migration: Live migration '
                      'failed.', text)
        self.assertIn('stopped after the first failure', text)
        # The operator fixes the cause and runs it again.
        compute.fail.clear()
        code, d = self.run_drain(compute, concurrency=2)
        self.assertEqual(0, code)
        self.assertEqual(['q1', 'q2', 'q1', 'b1', 'h1'], compute.started)
        self.assertEqual([], [s.name for s in compute.servers_.values()
                              if s.compute_host == HOST])

    def test_refused_servers_listed_with_novas_reason(self):
        compute = FakeCompute([self.quiet('q1', 512), self.quiet('q2', 1024),
                               self.quiet('q3', 2048)])
        compute.api_refuse['id-q1'] = (
            409, "Cannot 'os-migrateLive' instance id-q1 while it is in "
                 "task_state rebuilding")
        compute.no_host.add('id-q2')
        code, d = self.run_drain(compute, concurrency=3)
        self.assertEqual(1, code)
        self.assertEqual('cmp2', compute.servers_['id-q3'].compute_host)
        text = self.out.getvalue()
        self.assertIn("cannot move q1: Cannot 'os-migrateLive' instance "
                      "id-q1 while it is in task_state rebuilding (HTTP 409)",
                      text)
        self.assertIn('cannot move q2: conductor_live_migrate_instance: No '
                      'valid host was found.', text)
        # A refusal is no failure: nothing was stopped.
        self.assertNotIn('stopped after the first failure', text)

    def test_next_starts_when_a_slot_frees_not_when_the_group_ends(self):
        compute = FakeCompute([self.quiet('q1', 512), self.quiet('q2', 512),
                               self.quiet('q3', 1024)])
        compute.poll_for['id-q1'] = 6
        code, d = self.run_drain(compute, concurrency=2)
        self.assertEqual(0, code)
        # q3 took q2's slot while the slow q1 was still migrating.
        self.assertEqual(['q1'], compute.running_with['q3'])
        self.assertEqual(2, compute.max_running)

    def test_a_guest_needing_the_link_runs_alone(self):
        compute = FakeCompute([self.quiet('q1', 512), self.quiet('q2', 512),
                               self.hard('h1', 2048)])
        code, d = self.run_drain(compute, concurrency=3)
        self.assertEqual(0, code)
        self.assertEqual([], compute.running_with['h1'])
        self.assertEqual(['q1', 'q2', 'h1'], compute.started)

    def test_group_at_a_time_without_rolling(self):
        compute = FakeCompute([self.quiet('q1', 512), self.quiet('q2', 512),
                               self.quiet('q3', 1024)])
        compute.poll_for['id-q1'] = 6
        d = self.drainer(compute, concurrency=2)
        groups, resume, stuck = d.plan(d.guests())
        self.assertEqual(0, d.run(groups, resume, stuck, rolling=False))
        # q3's group waited for the slow q1.
        self.assertEqual([], compute.running_with['q3'])

    def test_rerun_waits_for_migrations_already_running(self):
        compute = FakeCompute([self.quiet('q1', 512), self.quiet('q2', 512)])
        compute.live_migrate_server('id-q1', block_migration='auto')
        compute.started.clear()
        code, d = self.run_drain(compute)
        self.assertEqual(0, code)
        self.assertEqual(['q2'], compute.started)
        self.assertIn('already migrating (waited for first): q1',
                      self.out.getvalue())
