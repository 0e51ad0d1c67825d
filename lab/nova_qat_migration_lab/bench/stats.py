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
"""The benchmark's numbers from its JSON lines: per-cell statistics, the
ratios between plans and the done checks.
"""

from __future__ import annotations

import math
import statistics
from typing import Optional

from nova_qat_migration_lab import measure
from nova_qat_migration_lab import scenarios as sc


BASELINE = 'nova_default'
ADAPTIVE = 'adaptive'
BAD_INTEGRITY = ('FAIL', 'lost')
#: The downtime limit of a plan that does not name one (Nova's default).
DEFAULT_DOWNTIME_MS = 500
#: Done checks: adaptive within this factor of the best fixed plan ...
BEST_FIXED_FACTOR = 1.1
#: ... nova_default/adaptive geometric mean at least this ...
NOVA_SPEEDUP_TARGET = 3.0
#: ... and no throttle or post-copy when a gentle plan is this close.
GENTLE_FACTOR = 1.2


def mb(value: Optional[float]) -> Optional[float]:
    return None if value is None else value / 1e6


def fmt(value: Optional[float], digits: int = 1) -> str:
    if value is None:
        return '-'
    return '%.*f' % (digits, value)


def median(values: list) -> Optional[float]:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def job_s(res: dict) -> Optional[float]:
    """libvirt's duration of the migration job (older records: from the
    report's bytes and rate).
    """
    if res.get('job_s') is not None:
        return res['job_s']
    rep = res.get('report') or {}
    if rep.get('bytes') and rep.get('wire_mbps'):
        return rep['bytes'] / (1024.0 * 1024.0) / rep['wire_mbps']
    return None


def _guest(res: dict, key: str) -> Optional[float]:
    return (res.get('guest') or {}).get(key)


def throttled(res: dict) -> bool:
    """The run's guest was throttled (auto-converge) at some point."""
    value = _guest(res, 'max_throttle_pct')
    if value is None:
        value = (res.get('tracker') or {}).get('max_throttle_pct')
    return bool(value)


def post_copied(res: dict) -> bool:
    """The run switched to post-copy."""
    return bool(_guest(res, 'post_copy') or
                (res.get('tracker') or {}).get('post_copy') or
                any(a.get('kind') == 'post_copy'
                    for a in res.get('actions') or ()))


def downtime_limit_ms(res: dict) -> int:
    """The run's plan's max downtime, Nova's default without one.

    From the report's structured plan: the executed one
    (``effective_plan``), or, in records older than that field, the
    requested one (``requested_plan``).
    """
    report = res.get('report') or {}
    for plan in (report.get('effective_plan'), report.get('requested_plan')):
        if isinstance(plan, dict) and plan.get('max_downtime_ms'):
            return int(plan['max_downtime_ms'])
    return DEFAULT_DOWNTIME_MS


def aggregate(results: list) -> dict:
    """{scenario: {plan: stats}} from JSON-line dicts."""
    table: dict = {}
    for res in results:
        if res['plan'] == '(boot)':
            continue
        cell = table.setdefault(res['scenario'], {}).setdefault(
            res['plan'], {'runs': [], 'plans': set()})
        cell['runs'].append(res)
        if res.get('effective_plan'):
            cell['plans'].add(res['effective_plan'])
    for plans in table.values():
        for cell in plans.values():
            runs = cell['runs']
            done = [r for r in runs if r['converged']]
            times = [r['total_s'] for r in done]
            cell.update({
                'n': len(runs),
                'converged': len(done),
                'median_s': median(times),
                'min_s': min(times) if times else None,
                'max_s': max(times) if times else None,
                'job_s': median([job_s(r) for r in done]),
                'downtime_ms': median([r['downtime_ms'] for r in done]),
                'wire_mb': median([mb(r['wire_bytes']) for r in done]),
                'cpu_s': median([r['src_cpu_s'] for r in done]),
                'integrity_ok': sum(r['integrity'] == 'ok' for r in runs),
                'integrity_bad': sum(r['integrity'] in BAD_INTEGRITY
                                     for r in runs),
                'rejected': sum(r['outcome'] == measure.OUTCOME_REJECTED
                                for r in runs),
                'errors': sum(r['outcome'] == measure.OUTCOME_ERROR
                              for r in runs),
                # guest impact, over the converged runs
                'guest_vs_before': median([_guest(r, 'vs_before')
                                            for r in done]),
                'guest_vs_nominal': median([_guest(r, 'vs_nominal')
                                             for r in done]),
                'guest_lost_s': median([_guest(r, 'lost_s')
                                         for r in done]),
                'guest_worst_rate': median([_guest(r, 'worst_rate')
                                             for r in done]),
                'max_throttle_pct': max(
                    [(r.get('guest') or {}).get('max_throttle_pct') or
                     (r.get('tracker') or {}).get('max_throttle_pct') or 0
                     for r in runs] or [0]),
                'throttled': sum(throttled(r) for r in runs),
                'post_copy': sum(post_copied(r) for r in runs),
                'postcopy_s': median([_guest(r, 'postcopy_s')
                                       for r in runs if post_copied(r)]),
            })
    return table


def ratios(table: dict) -> dict:
    """Per scenario: adaptive vs nova_default and vs the best fixed plan.

    The best fixed plan is the fastest (median) among the fixed plans that
    converged in every run of the scenario; if none did, among those that
    converged at least once.
    """
    out: dict = {}
    for scen, plans in table.items():
        ada = plans.get(ADAPTIVE)
        nova = plans.get(BASELINE)
        fixed = {p: c for p, c in plans.items()
                 if p not in (BASELINE, 'static') and
                 not p.startswith(ADAPTIVE)}
        always = {p: c for p, c in fixed.items()
                  if c['converged'] == c['n'] and c['median_s']}
        pool = always or {p: c for p, c in fixed.items() if c['median_s']}
        best = min(pool, key=lambda p: pool[p]['median_s']) if pool else None
        entry = {'best_fixed': best,
                 'adaptive_converged': ada and ada['converged'],
                 'adaptive_n': ada and ada['n'],
                 'nova_converged': nova and nova['converged'],
                 'nova_n': nova and nova['n'],
                 'any_fixed_converged': any(c['converged']
                                            for c in fixed.values())}
        if ada and ada['median_s']:
            if nova and nova['median_s']:
                entry['adaptive_vs_nova'] = ada['median_s'] / nova['median_s']
            if best:
                entry['adaptive_vs_best'] = (ada['median_s'] /
                                             pool[best]['median_s'])
        out[scen] = entry
    return out


def pct(value: Optional[float]) -> str:
    return '-' if value is None else '%.0f%%' % (100 * value)


def _check(scope: str, number: int, passed: Optional[bool],
           detail: str) -> dict:
    return {'scope': scope, 'check': number, 'passed': passed,
            'detail': detail}


def done_checks(results: list) -> list:
    """The benchmark's done criteria, per scenario and overall.

    Each is ``{'scope': scenario | 'overall', 'check': 1..5, 'passed':
    True | False | None (not applicable), 'detail': str}``:

    1. adaptive converges (every run) wherever a fixed plan converges
       (every run);
    2. adaptive's median time within :data:`BEST_FIXED_FACTOR` of the
       best fixed plan's;
    3. geometric mean of nova_default/adaptive median times over the
       scenarios where both converge, at least
       :data:`NOVA_SPEEDUP_TARGET` (overall only);
    4. every adaptive run within its plan's downtime limit;
    5. adaptive neither throttled nor post-copied where a gentle plan
       (no throttle, no post-copy in any run, nova_default included)
       always converged within :data:`GENTLE_FACTOR` of adaptive's
       median time.
    """
    table = aggregate(results)
    rat = ratios(table)
    out: list = []
    speedups = []
    overall = {n: [] for n in (1, 2, 4, 5)}
    for scen in scenario_order(table):
        plans = table[scen]
        ada = plans.get(ADAPTIVE)
        if ada is None:
            continue
        fixed = {p: c for p, c in plans.items()
                 if p not in (BASELINE, 'static') and
                 not p.startswith(ADAPTIVE)}
        always = sorted(p for p, c in fixed.items()
                        if c['n'] and c['converged'] == c['n'])
        ada_always = ada['n'] > 0 and ada['converged'] == ada['n']
        # 1
        if always:
            ok = ada_always
            out.append(_check(scen, 1, ok, 'adaptive %d/%d; always '
                              'converged: %s' % (ada['converged'], ada['n'],
                                                 ', '.join(always))))
        else:
            out.append(_check(scen, 1, None, 'no fixed plan always '
                              'converged (adaptive %d/%d)'
                              % (ada['converged'], ada['n'])))
        # 2
        best = rat[scen]['best_fixed']
        if best is None:
            out.append(_check(scen, 2, None, 'no fixed plan converged'))
        elif 'adaptive_vs_best' in rat[scen]:
            x = rat[scen]['adaptive_vs_best']
            out.append(_check(scen, 2, x <= BEST_FIXED_FACTOR,
                              'adaptive %.1f s / %s %.1f s = %.2f '
                              '(target <= %.1f)' % (
                                  ada['median_s'], best,
                                  plans[best]['median_s'], x,
                                  BEST_FIXED_FACTOR)))
        else:
            out.append(_check(scen, 2, False, 'adaptive never converged; '
                              '%s %.1f s' % (best, plans[best]['median_s'])))
        # 3 (per scenario: the ratio only)
        nova = plans.get(BASELINE)
        if nova and nova['median_s'] and ada['median_s']:
            x = nova['median_s'] / ada['median_s']
            speedups.append((scen, x))
            out.append(_check(scen, 3, None, 'nova_default %.1f s / '
                              'adaptive %.1f s = %.2fx' % (
                                  nova['median_s'], ada['median_s'], x)))
        # 4
        runs = [r for r in ada['runs'] if r['converged']]
        over = ['%s ms > %d ms (repeat %s)' % (r['downtime_ms'],
                                               downtime_limit_ms(r),
                                               r['repeat'])
                for r in runs if r.get('downtime_ms') is None or
                r['downtime_ms'] > downtime_limit_ms(r)]
        if runs:
            out.append(_check(scen, 4, not over, '; '.join(over) or
                              'max %s ms over %d run(s)' % (
                                  max(r['downtime_ms'] for r in runs),
                                  len(runs))))
        else:
            out.append(_check(scen, 4, None, 'no converged adaptive run'))
        # 5
        harsh = [r for r in ada['runs'] if throttled(r) or post_copied(r)]
        gentle = sorted(
            p for p, c in plans.items()
            if not p.startswith(ADAPTIVE) and c['n'] and
            c['converged'] == c['n'] and c['median_s'] is not None and
            not any(throttled(r) or post_copied(r) for r in c['runs']))
        close = [p for p in gentle if ada['median_s'] is not None and
                 plans[p]['median_s'] <= GENTLE_FACTOR * ada['median_s']]
        if not harsh:
            out.append(_check(scen, 5, True, 'adaptive neither throttled '
                              'nor post-copied'))
        elif close:
            out.append(_check(scen, 5, False, 'adaptive throttled (max '
                              '%d%%) or post-copied in %d/%d run(s) but '
                              '%s converged gently within %.1fx (%s)' % (
                                  ada['max_throttle_pct'], len(harsh),
                                  ada['n'], ', '.join(close), GENTLE_FACTOR,
                                  ', '.join('%s %.1f s' % (
                                      p, plans[p]['median_s'])
                                      for p in close))))
        else:
            out.append(_check(scen, 5, True, 'adaptive throttled or '
                              'post-copied in %d/%d run(s); no gentle plan '
                              'within %.1fx' % (len(harsh), ada['n'],
                                                GENTLE_FACTOR)))
        for item in out:
            if item['scope'] == scen and item['check'] in overall and \
                    item['passed'] is not None:
                overall[item['check']].append(item['passed'])
    for number in (1, 2):
        values = overall[number]
        out.append(_check('overall', number, all(values) if values else
                          None, '%d/%d scenario(s) pass' % (
                              sum(values), len(values))))
    if speedups:
        gm = math.exp(sum(math.log(x) for _s, x in speedups) /
                      len(speedups))
        out.append(_check('overall', 3, gm >= NOVA_SPEEDUP_TARGET,
                          'geomean %.2fx over %d scenario(s) where both '
                          'converge (%s); target >= %.0fx' % (
                              gm, len(speedups), ', '.join(
                                  '%s %.2fx' % sx for sx in speedups),
                              NOVA_SPEEDUP_TARGET)))
    else:
        out.append(_check('overall', 3, None, 'no scenario where both '
                          'nova_default and adaptive converge'))
    for number in (4, 5):
        values = overall[number]
        out.append(_check('overall', number, all(values) if values else
                          None, '%d/%d scenario(s) pass' % (
                              sum(values), len(values))))
    return out


DONE_CHECKS = {
    1: 'adaptive converges wherever a fixed plan converges',
    2: 'adaptive within %.1fx of the best fixed plan' % BEST_FIXED_FACTOR,
    3: 'nova_default/adaptive geomean >= %.0fx' % NOVA_SPEEDUP_TARGET,
    4: 'adaptive within its downtime limit',
    5: 'no throttle/post-copy in adaptive when a gentle plan is within '
       '%.1fx' % GENTLE_FACTOR,
}


def scenario_order(table: dict) -> list:
    return sorted(table, key=lambda s: list(sc.SCENARIOS).index(s)
                  if s in sc.SCENARIOS else 99)


def done_markdown(results: list) -> list:
    """The "Done checks" section's lines."""
    lines = ['## Done checks', '',
             'Computed from the records above (medians over converged '
             'runs; "always" = converged in every run).', '',
             '| scope | check | result | numbers |', '|---|---|---|---|']
    for item in done_checks(results):
        verdict = {True: 'pass', False: '**FAIL**', None: 'n/a'}[
            item['passed']]
        lines.append('| %s | %d. %s | %s | %s |' % (
            item['scope'], item['check'], DONE_CHECKS[item['check']],
            verdict, item['detail']))
    lines.append('')
    return lines
