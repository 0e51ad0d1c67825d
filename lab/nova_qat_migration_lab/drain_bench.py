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
"""Lab scenario ``drain``: empty a lab host of guests through the real Nova.

Four guests of different workloads are booted on one lab host; the
``drain`` command's :class:`~nova_qat_migration.cmd.drain.Drainer` empties
that host through Nova's API (openstacksdk), three ways, each from the
host the previous run filled:

a. ``nova_default``, one migration at a time, in the order Nova lists
   the servers;
b. ``nova_default``, every migration requested at once, as
   ``nova host-evacuate-live`` does: the computes'
   ``max_concurrent_live_migrations = 3`` runs three and queues the rest,
   each starting when a slot frees;
c. ``adaptive`` with the shared budgets, in the drain command's order
   (learnt from the history runs a and b left), rolling within a
   concurrency of three.

Per run: time to empty the host, each guest's time, downtime and plan (from
the driver's report) and the guest's memory check after it moved. Run as
root, when no other lab or benchmark runs on the machine::

    nova-qat-migration-lab drain-bench --prefix dr1

or ``python -m nova_qat_migration_lab.drain_bench --prefix dr1``; the
output goes to ``benchmarks/drain`` of the repository root (``--out``
to change it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Any, Optional, TYPE_CHECKING

from nova_qat_migration.cmd import drain
from nova_qat_migration_lab import repo
from nova_qat_migration_lab import scenarios as sc

if TYPE_CHECKING:
    # Imported where used: importing them starts Nova's test harness, which
    # the command line's parser (``drain-bench --help``) does without.
    from nova_qat_migration_lab import runner

#: (server name, workload): two quiet guests, a busy compressible one and
#: a large mostly-zero one; every one converges with Nova's own plan when
#: it has the 1 Gbit/s link to itself.
GUESTS = (
    ('quiet-1', sc.Scenario('drain-quiet', 1024, 512, 4, 50, 'text')),
    ('quiet-2', sc.Scenario('drain-quiet', 1024, 512, 4, 50, 'text')),
    ('busy-text', sc.Scenario('drain-text', 1024, 768, 384, 8000, 'text')),
    ('mostly-zero', sc.SCENARIOS['mostly-zero']),
)
#: The scale model's drain: four guests of compressible (text) memory
#: sharing a link at the scale model's speed, dirtying 0.15 of it each
#: (0.6 together), where compression and the drain order pay (issue 25).
SCALE_GUESTS = tuple(
    (name, sc.Scenario('drain-scale-text', 1024, 768, 128,
                       int(round(0.15 * sc.SCALE_MODEL_LINK_MBIT * 1e6 / 8 /
                                 4096)), 'text',
                       link_mbit=sc.SCALE_MODEL_LINK_MBIT,
                       timeout_s_per_gib=sc.NOVA_TIMEOUT_S_PER_GIB))
    for name in ('text-1', 'text-2', 'text-3', 'text-4'))
#: (name, policy, concurrency, drain order)
RUNS = (
    ('a-nova_default-c1', 'nova_default', 1, False),
    ('b-nova_default-c3', 'nova_default', 3, False),
    ('c-adaptive-drain-c3', 'adaptive', 3, True),
)
MAX_CONCURRENT = 3


def connect(cloud: Any) -> Any:
    """openstacksdk against the lab's API, as an operator's client."""
    from nova_qat_migration_lab import cloud as cloud_mod
    import openstack
    return openstack.connect(
        auth_type='admin_token',
        auth={'endpoint': cloud.api_url,
              'token': 'admin:%s' % cloud_mod.PROJECT},
        compute_api_version='2', load_envvars=False,
        load_yaml_config=False)


def _report(cloud: Any, server_id: str, after: int) -> dict:
    record = cloud.reports.wait_for(server_id, after, 60) or {}
    return {k: record.get(k) for k in ('plan', 'outcome', 'total_s',
                                       'downtime_ms', 'wire_ratio')}


def run_once(nlab: runner.NovaLab, conn: Any, sessions: list, name: str,
             policy: str, concurrency: int, ordered: bool,
             log: Any) -> dict:
    cloud = nlab.cloud
    source = sessions[0].host
    target = next(h.name for h in nlab.lab.hosts if h.name != source)
    cloud.flags(policy=policy, group='qat_migration')
    drainer = drain.Drainer(conn, source, concurrency=concurrency,
                            target=target, out=log, poll_s=1.0)
    guests = drainer.guests()
    if ordered:
        groups, resume, stuck = drainer.plan(guests)
    elif concurrency == 1:
        # One after the other, in Nova's order.
        groups = [drain.Group([g], None) for g in guests]
        resume, stuck = [], []
    else:
        # All at once: Nova's own executor queues beyond its limit.
        groups, resume, stuck = [drain.Group(guests, None)], [], []
    drainer.print_plan(groups, resume, stuck)
    after = len(cloud.reports.records)
    started = time.monotonic()
    code = drainer.run(groups, resume, stuck, rolling=ordered)
    empty_s = time.monotonic() - started
    result = {'run': name, 'policy': policy, 'concurrency': concurrency,
              'drain_order': ordered, 'source': source, 'target': target,
              'exit_code': code, 'time_to_empty_s': round(empty_s, 1),
              'groups': [[g.name for g in grp.members] for grp in groups],
              'guests': []}
    for session in sessions:
        entry = {'name': session.name,
                 'scenario': session.scenario.name}
        entry.update(_report(cloud, session.server_id, after))
        try:
            session.reattach()
            ok, verdict = session.verify()
            entry['memory_check'] = 'ok' if ok else 'FAIL: %s' % verdict
            entry['host'] = session.host
        except Exception as exc:  # recorded, never hidden
            entry['memory_check'] = 'not verified: %s' % exc
        result['guests'].append(entry)
    return result


def speedup(results: list) -> Optional[float]:
    """The better of Nova's two ways (one at a time, all at once) over the
    adaptive drain, by time to empty; None unless all three emptied the
    host (exit 0) with every guest's memory intact.
    """
    def ok(run: dict) -> bool:
        return run.get('exit_code') == 0 and all(
            g.get('memory_check') == 'ok' for g in run.get('guests') or ())

    nova = [r['time_to_empty_s'] for r in results
            if r.get('policy') == 'nova_default' and ok(r)]
    ours = [r['time_to_empty_s'] for r in results
            if r.get('policy') == 'adaptive' and ok(r)]
    if len(nova) < 2 or not ours or min(ours) <= 0:
        return None
    return min(nova) / min(ours)


def summary(results: list) -> str:
    lines = ['| run | time to empty | exit | guests (plan, s, downtime ms, '
             'memory) |', '|---|---|---|---|']
    for r in results:
        guests = '; '.join(
            '%s %s %s s %s ms %s' % (g['name'], g.get('plan'),
                                     g.get('total_s'), g.get('downtime_ms'),
                                     g.get('memory_check'))
            for g in r['guests'])
        lines.append('| %s | %.1f s | %d | %s |'
                     % (r['run'], r['time_to_empty_s'], r['exit_code'],
                        guests))
    x = speedup(results)
    lines += ['', 'Adaptive drain against the better of Nova\'s two ways '
              '(time to empty, every guest intact): %s.'
              % ('%.2fx faster' % x if x is not None else
                 'not comparable (a run failed or a guest did not check)')]
    return '\n'.join(lines) + '\n'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The scenario's options (``drain-bench`` and :func:`main`)."""
    parser.add_argument('--prefix', default='dr1',
                        help='lab prefix (at most 8 characters)')
    parser.add_argument('--out', help='output directory (default '
                                      'benchmarks/drain in the repository '
                                      'root)')
    parser.add_argument('--link-mbit', type=int, default=None,
                        help='the link (default 1000, %d with '
                             '--scale-model)' % sc.SCALE_MODEL_LINK_MBIT)
    parser.add_argument('--scale-model', action='store_true',
                        help='four guests of compressible memory sharing '
                             'a %d Mbit/s link (output: '
                             'benchmarks/drain-scale-model)'
                             % sc.SCALE_MODEL_LINK_MBIT)


def guests_and_link(args: argparse.Namespace) -> tuple:
    """(guests, link Mbit/s, output directory parts) of the drain asked
    for.
    """
    if getattr(args, 'scale_model', False):
        return (SCALE_GUESTS, args.link_mbit or sc.SCALE_MODEL_LINK_MBIT,
                ('benchmarks', 'drain-scale-model'))
    return GUESTS, args.link_mbit or 1000, ('benchmarks', 'drain')


def run(args: argparse.Namespace) -> int:
    """Run the three drains and write their results under ``args.out``."""
    from nova_qat_migration_lab import runner
    guests, link_mbit, default_out = guests_and_link(args)
    out = args.out or repo.path(*default_out)
    # Nova's options (registered when nova.conf is imported): the
    # computes size their live-migration executor when they start.
    import nova.conf
    nova.conf.CONF.set_override('max_concurrent_live_migrations',
                                MAX_CONCURRENT)
    os.makedirs(out, exist_ok=True)
    results = []
    with open(os.path.join(out, 'drain.log'), 'w') as log, \
            runner.NovaLab(args.prefix, link_mbit,
                           log_path=os.path.join(out, 'nova.log')) as nlab:
        conn = connect(nlab.cloud)
        sessions = []
        try:
            for i, (name, scenario) in enumerate(guests):
                scenario = dataclasses.replace(scenario,
                                               link_mbit=link_mbit)
                session = runner.GuestSession(nlab, scenario, name=name,
                                              seed=i + 1)
                session.boot()
                sessions.append(session)
            for run in RUNS:
                result = run_once(nlab, conn, sessions, *run, log=log)
                results.append(result)
                print(json.dumps(result), flush=True)
        finally:
            for session in sessions:
                session.destroy()
    with open(os.path.join(out, 'results.json'), 'w') as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(out, 'summary.md'), 'w') as f:
        f.write(summary(results))
    sys.stdout.write(summary(results))
    return 0


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m nova_qat_migration_lab.drain_bench')
    parser.add_argument('--repo-root', metavar='DIR',
                        help='the repository whose benchmarks/drain is '
                             'the default output (default: the checkout '
                             'this package is in)')
    add_arguments(parser)
    args = parser.parse_args(argv)
    repo.set_root(args.repo_root)
    try:
        return run(args)
    except repo.NoRepository as exc:
        print('%s: %s' % (parser.prog, exc), file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
