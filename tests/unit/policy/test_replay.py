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
"""The adaptive policy replayed on the facts of committed lab runs.

Every ``adaptive`` record the benchmark and the fault matrix committed
carries the facts the driver gathered (as the report summarises them) and
the plan the policy asked for. Rebuilding the facts from that summary and
planning again must give the same plan: a refactoring of the planner that
changes a decision on real facts shows up here, with the scenario named.

The summary leaves out what the report does not record (the history's
rates, the QAT state, Nova's settings other than the defaults): those take
the values the lab ran with (no QAT, Nova's defaults, the completion
timeout the lab set).
"""

import dataclasses
import json
import os

import ddt

from nova_qat_migration import datamodel
from nova_qat_migration.policy import adaptive
from nova_qat_migration import replay
from tests.unit import base

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))))
SOURCES = ('benchmarks/results.jsonl',)
#: ``[qat_migration]`` options of the lab's computes (lab runner defaults,
#: ``runner.LAB_QAT_OPTIONS``: throttling and four channels, which were
#: the product's defaults when the records were made); the committed
#: records were planned with the deprecated ``cpu_idle_threshold = 25``
#: (:data:`CHANGED`).
LAB_OPTIONS = dict(base.WIDENED)


def _records():
    out = []
    for rel in SOURCES:
        path = os.path.join(ROOT, rel)
        if not os.path.exists(path):
            continue
        with open(path) as f:
            for n, line in enumerate(f):
                row = json.loads(line)
                report = row.get('report') or {}
                facts = row.get('facts') or report.get('facts')
                requested = _described(row.get('requested_plan') or
                                       report.get('requested'))
                policy = (row.get('plan') if 'scenario' in row
                          else (report.get('policy')))
                if policy != 'adaptive' or not facts or not requested:
                    continue
                name = '%s:%d:%s' % (os.path.basename(os.path.dirname(
                    path)) or 'benchmarks', n, row.get('scenario') or
                    row.get('fault'))
                out.append((name, facts, requested,
                            row.get('link_mbit') or 0))
    return out


def _described(requested) -> str:
    """The requested plan's one-line description, from any record format
    (the description itself, or the plan in full as the lab records it).
    """
    if isinstance(requested, dict):
        return replay.plan_from_dict(requested).describe()
    return requested or ''


#: Facts from the report's summary of them (what ``plan --from-report``
#: replays from).
rebuild = replay.facts_from_summary


RECORDS = _records()


@ddt.ddt
class TestReplay(base.TestCase):

    def setUp(self):
        super().setUp()
        self.flags(model_calibration=os.path.join(
            ROOT, 'benchmarks', 'calibration.json'), **LAB_OPTIONS)

    def test_records_found(self):
        self.assertGreaterEqual(len(RECORDS), 5)

    @ddt.data(*RECORDS)
    @ddt.unpack
    def test_same_plan(self, name, summary, requested, link_mbit):
        policy = adaptive.AdaptivePolicy(self.conf)
        policy.load()
        plan = policy.plan(rebuild(summary))
        if name in CHANGED:
            # A decision changed on purpose: the new one, never the old.
            now, _why = CHANGED[name]
            self.assertNotEqual(requested, now)
            requested = now
        self.assertEqual(requested, plan.describe(),
                         '%s: %s' % (name, plan.reasons))

    def test_changed_records_exist(self):
        self.assertEqual(sorted(CHANGED),
                         sorted(n for n, *_ in RECORDS if n in CHANGED))


#: Committed records the planner now decides differently: record ->
#: (the plan now, why). They were planned with the deprecated
#: ``cpu_idle_threshold = 25`` as a hard gate; compression is now judged
#: by its predicted time with the compressors sharing busy cores
#: (``model.compressor_cores``) and capped by ``max_guest_cpu_impact_pct``.
CHANGED = {
    'benchmarks:15:text-rewrite': (
        'adaptive[zstd-1 x2] downtime<=500ms',
        '0% CPU idle closed zstd (adaptive ran plain +throttle 40%: 24.2 s); '
        'zstd now predicted 10.3 s sharing the busy cores (39% of their '
        'time, within the 50% cap) -- the committed zstd1x4 run converged '
        'in 12.3 s unthrottled, the best fixed plan'),
    'benchmarks:29:mostly-zero': (
        'adaptive[zstd-1 x2] downtime<=500ms',
        '15% CPU idle closed zstd (adaptive ran plain: 6.9 s); zstd now '
        'predicted 4.5 s vs 6.0 s plain -- the committed zstd1x4 run took '
        '5.7 s, the best fixed plan'),
    'benchmarks:36:big-random': (
        'adaptive[none] downtime<=500ms',
        'plain +throttle 20% (36.9 s) was chosen over plain predicted 40% '
        'slower; with the working set assumed a throttle must now clear '
        'the gentle tolerance plus ASSUMED_WORKING_SET_SLACK -- the '
        'committed plain run took 36.5 s'),
    'benchmarks:43:big-text': (
        'adaptive[zstd-1 x2] downtime<=500ms',
        '0% CPU idle closed zstd (adaptive ran plain +throttle 20%: '
        '35.6 s); zstd now predicted 21.1 s -- the committed zstd1x4 run '
        'took 32.9 s unthrottled, the best fixed plan'),
}


# -- the same decisions on a grid of facts around the committed ones --------

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, 'adaptive_golden.json')
#: The facts the grid varies: those of the adaptive runs of the lab
#: benchmark of 2026-11-26, frozen here so that a new benchmark run does
#: not move the grid (``TestReplay`` replays whatever is committed).
GRID_FACTS = os.path.join(HERE, 'replay_facts.json')

#: Variations applied to each committed record's facts.
GRID = {
    'cpu_idle_pct': (0.0, 60.0, 100.0),
    'mem_free_mb': (0, 20000),
    'qat': (False, True),
    'link_mbps': (119.2, 1192.1),
    'hint': ('', 'no_throttle', 'zstd'),
    'adaptive_model': (True, False),
    'permit_post_copy': (False, True),
}

QAT_HV = frozenset({'none', 'zlib', 'zstd', 'qatzip'})
QAT_DEST = frozenset({'xbzrle', 'zlib', 'zstd', 'qatzip'})


def grid_cases():
    """(case name, facts, options) for every grid point."""
    import itertools
    keys = sorted(GRID)
    with open(GRID_FACTS) as f:
        seeds = json.load(f)
    for seed in seeds:
        name, summary = seed['name'], seed['facts']
        facts0 = rebuild(summary)
        for values in itertools.product(*(GRID[k] for k in keys)):
            v = dict(zip(keys, values))
            facts = dataclasses.replace(
                facts0, link_mbps=v['link_mbps'],
                host=dataclasses.replace(facts0.host,
                                         cpu_idle_pct=v['cpu_idle_pct'],
                                         mem_free_mb=v['mem_free_mb']))
            if v['qat']:
                facts = dataclasses.replace(
                    facts, passthrough_allowed=True,
                    qat=datamodel.QATState(endpoints=2, free_leases=2),
                    hypervisor=dataclasses.replace(
                        facts.hypervisor, multifd_methods=QAT_HV),
                    destination=datamodel.DestinationCaps(
                        known=True, methods=QAT_DEST, multifd=True,
                        qat=True))
            hints = {'': datamodel.Hints(),
                     'no_throttle': datamodel.Hints(allow_throttle=False),
                     'zstd': datamodel.Hints(method='zstd')}[v['hint']]
            facts = dataclasses.replace(facts, instance=dataclasses.replace(
                facts.instance, hints=hints))
            case = '%s|%s' % (name.split(':')[-1], ','.join(
                '%s=%s' % (k, v[k]) for k in keys))
            options = {'adaptive_model': v['adaptive_model'],
                       'permit_post_copy': v['permit_post_copy']}
            yield case, facts, options


class TestGrid(base.TestCase):
    """Decisions on the grid equal the recorded ones (``adaptive_golden``).

    The golden file holds the planner's decisions on the grid; a change
    that moves any of them must mean to: re-record it (``python -m
    tests.unit.policy.test_replay``) and say in the commit what moved and
    why. Last re-recorded when the ranking started trading speed for
    gentleness within ``gentle_tolerance``, the model's terms followed
    QEMU's loop more closely and QEMU's downtime limit got its headroom
    (236 of 1440 decisions moved, most of them a throttle added where it
    is predicted more than 20% faster or dropped where it is not).
    Decisions moved since are explained by :func:`why_changed` (108 of
    1440 when compression was first judged by its predicted time on busy
    cores instead of the ``cpu_idle_threshold`` gate, 16 more when
    multifd plans got their larger downtime headroom, 24 more when a
    throttle had to clear ``ASSUMED_WORKING_SET_SLACK`` over an unthrottled
    plan while the working set is assumed).
    """

    def _plans(self):
        out = {}
        for case, facts, options in grid_cases():
            self.flags(model_calibration=os.path.join(
                ROOT, 'benchmarks', 'calibration.json'),
                **dict(LAB_OPTIONS, **options))
            policy = adaptive.AdaptivePolicy(self.conf)
            policy.load()
            out[case] = policy.plan(facts).describe()
        return out

    def test_grid_matches_golden(self):
        with open(GOLDEN) as f:
            golden = json.load(f)
        plans = self._plans()
        self.assertEqual(sorted(golden), sorted(plans))
        changed = {case: (golden[case], plans[case]) for case in golden
                   if golden[case] != plans[case]}
        unexplained = {case: change for case, change in changed.items()
                       if why_changed(case, *change) is None}
        self.assertEqual({}, unexplained)
        # The changes stay where the reasons say: a change that moves
        # decisions elsewhere is not the one they describe.
        self.assertLess(len(changed), len(golden) // 10)


def _unthrottled(plan: str) -> str:
    """``plan``'s description without its throttle."""
    return ' '.join(w for w in plan.replace(']', ' ] ').split()
                    if not w.startswith('throttle='))


def _headroom(old: str, new: str):
    """Why a multifd plan's throttle moved, or None."""
    multifd = ' x' in old.split(']')[0]
    if multifd and old != new and _unthrottled(old) == _unthrottled(new):
        return ('multifd plans give QEMU 60% of the downtime target, not '
                '75% (MULTIFD_DOWNTIME_HEADROOM): more passes before the '
                'switch-over, so the throttle step (or whether one is '
                'needed) moves')
    return None


def _method(plan: str) -> str:
    """The method of a plan's description (``adaptive[zstd-1 x2 ...]``)."""
    return plan.split('[', 1)[1].split(']')[0].split()[0].split('-')[0]


def why_changed(case: str, old: str, new: str):
    """Why the planner decides ``case`` differently from the golden file
    (recorded with the hard ``cpu_idle_threshold = 25`` gate), or None if
    no known reason explains it.

    At 0% CPU idle the gate closed software compression and the model
    gave zstd a floor of half a core; elsewhere only a multifd plan's
    throttle moves, with its tighter downtime limit.
    """
    if ('throttle=' in old and 'throttle=' not in new and
            _unthrottled(old) == _unthrottled(new)):
        return ('the throttle dropped: with the working set assumed, the '
                'unthrottled plan is kept within the gentle tolerance plus '
                'ASSUMED_WORKING_SET_SLACK of the fastest')
    if 'cpu_idle_pct=0.0' not in case or _method(new) != 'zstd':
        return _headroom(old, new)
    if _method(old) != 'zstd':
        return ('0% CPU idle no longer closes zstd: with its compressors '
                'sharing the busy cores (and slowing the guest that '
                'dirties the pages) zstd is predicted faster, within '
                'max_guest_cpu_impact_pct')
    if 'hint=zstd' in case:
        return ('zstd fixed by a hint now gets its share of the busy '
                'cores (and slows the dirtying guest) instead of half a '
                'core: the throttle step, or whether one is needed, moves')
    return _headroom(old, new)


def write_golden() -> None:
    """Record the current planner's decisions (run by hand, see README)."""
    from nova_qat_migration.conf import CONF
    from oslo_config import fixture as config_fixture
    fixture = config_fixture.Config(CONF)
    fixture.setUp()
    out = {}
    try:
        for case, facts, options in grid_cases():
            fixture.config(model_calibration=os.path.join(
                ROOT, 'benchmarks', 'calibration.json'),
                group='qat_migration', **dict(LAB_OPTIONS, **options))
            policy = adaptive.AdaptivePolicy(CONF)
            policy.load()
            out[case] = policy.plan(facts).describe()
    finally:
        fixture.cleanUp()
    with open(GOLDEN, 'w') as f:
        json.dump(out, f, indent=0, sort_keys=True)


if __name__ == '__main__':
    write_golden()
