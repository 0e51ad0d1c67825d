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
"""The benchmark: scenarios x plans x repeats of real migrations.

Runs are ordered repeat by repeat (every scenario once, then again), and
within a scenario the plan order rotates between repeats, so slow drift of
the machine (other work on the same cores) spreads over all plans instead of
favouring one. Each run is one JSON line, written as soon as it ends; the
summary and chart are computed from the JSON lines alone, so they can be
rebuilt from a committed ``results.jsonl``.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from typing import Any, Iterable, Optional

from oslo_log import log as logging

from nova_qat_migration_lab import jsonlines
from nova_qat_migration_lab import runner
from nova_qat_migration_lab import scenarios as sc

LOG = logging.getLogger(__name__)

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


def _echo(text: str) -> None:
    print(text, flush=True)


def run_matrix(conf: Any, scenarios: Iterable[str], plans: Iterable[str],
               repeats: int, out_path: str, timeout_s: float,
               prefix: Optional[str] = None, echo=_echo,
               qat_options: Optional[dict] = None,
               qemu: Optional[str] = None,
               cloud: str = 'services') -> list:
    """Run the matrix through Nova, appending one JSON line per migration
    to ``out_path``. Returns the result dicts.

    :param conf: unused (kept for callers); options reach the computes
        as ``qat_options`` and per plan spec.
    :param qemu: the lab's QEMU (``distro`` or ``qatzip``, see
        :class:`~nova_qat_migration_lab.runner.NovaLab`).
    :param cloud: ``services`` (the operator's cloud, every service its
        own process; logs under /var/log/nqm-cloud) or ``inprocess``.
    """
    scenarios = list(scenarios)
    plans = list(plans)
    results = []
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    first = sc.SCENARIOS[scenarios[0]]
    log_path = os.path.join(os.path.dirname(os.path.abspath(out_path)),
                            'nova.log')
    with runner.NovaLab(prefix, link_mbit=first.link_mbit,
                        qat_options=qat_options,
                        log_path=log_path, qemu=qemu, cloud=cloud) as nlab, \
            open(out_path, 'a') as out:
        echo('bench: %s cloud, Nova API at %s; every migration is '
             '"openstack server migrate --live-migration" through '
             'QATLibvirtDriver (logs: %s)' % (
                 cloud, nlab.cloud.api_url,
                 log_path if cloud == 'inprocess' else
                 '/var/log/nqm-cloud'))
        for repeat in range(repeats):
            for name in scenarios:
                scenario = sc.SCENARIOS[name]
                shift = repeat % len(plans)
                order = plans[shift:] + plans[:shift]
                results += _run_scenario(
                    nlab, scenario, order, repeat,
                    scenario.completion_timeout_s(timeout_s), out, echo)
    return results


def _run_scenario(nlab: runner.NovaLab, scenario: sc.Scenario,
                  order: list, repeat: int, timeout_s: float, out,
                  echo) -> list:
    results = []
    session = runner.GuestSession(nlab, scenario, seed=repeat + 1,
                                  name='%s-%d' % (scenario.name, repeat + 1))
    try:
        boot_s = session.boot()
        echo('[%s] %s repeat %d: guest ready in %.1f s' % (
            time.strftime('%H:%M:%S'), scenario.name, repeat + 1, boot_s))
        for name in order:
            try:
                res = session.migrate(sc.PLANS[name], timeout_s=timeout_s,
                                      repeat=repeat).to_dict()
            except Exception as exc:  # noqa: BLE001 - recorded, not hidden
                LOG.exception('run %s/%s failed', scenario.name, name)
                res = runner.RunResult(scenario=scenario.name, plan=name,
                                       repeat=repeat, error=repr(exc),
                                       started_at=time.time()).to_dict()
                # The guest may be in any state: start afresh.
                session.destroy()
                session.boot()
            jsonlines.write(out, res)
            results.append(res)
            echo('[%s]   %-14s %-9s %6s s  downtime %5s ms  wire %6s MB  '
                 'cpu %5s s  integrity %s  %s' % (
                     time.strftime('%H:%M:%S'), name, res['outcome'],
                     _fmt(res['total_s']), _fmt(res['downtime_ms'], 0),
                     _fmt(_mb(res['wire_bytes']), 0),
                     _fmt(res['src_cpu_s']), res['integrity'],
                     res['effective_plan']))
    except Exception as exc:  # noqa: BLE001
        LOG.exception('scenario %s failed', scenario.name)
        res = runner.RunResult(scenario=scenario.name, plan='(boot)',
                               repeat=repeat, error=repr(exc)).to_dict()
        jsonlines.write(out, res)
        results.append(res)
        echo('  scenario failed: %r' % exc)
    finally:
        session.destroy()
    return results


# -- summary -----------------------------------------------------------------

def _mb(value: Optional[float]) -> Optional[float]:
    return None if value is None else value / 1e6


def _fmt(value: Optional[float], digits: int = 1) -> str:
    if value is None:
        return '-'
    return '%.*f' % (digits, value)


def _median(values: list) -> Optional[float]:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _job_s(res: dict) -> Optional[float]:
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
                'median_s': _median(times),
                'min_s': min(times) if times else None,
                'max_s': max(times) if times else None,
                'job_s': _median([_job_s(r) for r in done]),
                'downtime_ms': _median([r['downtime_ms'] for r in done]),
                'wire_mb': _median([_mb(r['wire_bytes']) for r in done]),
                'cpu_s': _median([r['src_cpu_s'] for r in done]),
                'integrity_ok': sum(r['integrity'] == 'ok' for r in runs),
                'integrity_bad': sum(r['integrity'] in BAD_INTEGRITY
                                     for r in runs),
                'rejected': sum(r['outcome'] == runner.OUTCOME_REJECTED
                                for r in runs),
                'errors': sum(r['outcome'] == runner.OUTCOME_ERROR
                              for r in runs),
                # guest impact, over the converged runs
                'guest_vs_before': _median([_guest(r, 'vs_before')
                                            for r in done]),
                'guest_vs_nominal': _median([_guest(r, 'vs_nominal')
                                             for r in done]),
                'guest_lost_s': _median([_guest(r, 'lost_s')
                                         for r in done]),
                'guest_worst_rate': _median([_guest(r, 'worst_rate')
                                             for r in done]),
                'max_throttle_pct': max(
                    [(r.get('guest') or {}).get('max_throttle_pct') or
                     (r.get('tracker') or {}).get('max_throttle_pct') or 0
                     for r in runs] or [0]),
                'throttled': sum(throttled(r) for r in runs),
                'post_copy': sum(post_copied(r) for r in runs),
                'postcopy_s': _median([_guest(r, 'postcopy_s')
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


def _pct(value: Optional[float]) -> str:
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
    for scen in _scenario_order(table):
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


def _scenario_order(table: dict) -> list:
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


def summary_markdown(results: list, title: str = 'Benchmark',
                     meta: Optional[dict] = None) -> str:
    table = aggregate(results)
    rat = ratios(table)
    lines = ['# %s' % title, '']
    for key, value in (meta or {}).items():
        lines.append('- %s: %s' % (key, value))
    if meta:
        lines.append('')
    lines += [
        'Median [min-max] total time of the converged runs (the driver\'s '
        'own time: planning and measuring, the migration, Nova\'s '
        'bookkeeping until its monitor ends); "job s" is libvirt\'s '
        'duration of the migration job alone. Downtime (libvirt\'s, of the '
        'completed job), bytes on the wire (source veth) and source QEMU '
        'CPU seconds are medians over converged runs. "conv" = '
        'converged/runs (a run Nova aborts at its completion timeout counts '
        'as not converged). Integrity = guest memory check after each run '
        '(ok/runs).', '']
    for scen in _scenario_order(table):
        desc = sc.SCENARIOS[scen].description if scen in sc.SCENARIOS else ''
        link = (sc.SCENARIOS[scen].link_mbit if scen in sc.SCENARIOS
                else '?')
        lines += ['## %s' % scen, '', '%s; link %s Mbit/s.' % (desc, link),
                  '',
                  '| plan | total s | job s | downtime ms | wire MB | '
                  'src CPU s | conv | integrity | executed as |',
                  '|---|---|---|---|---|---|---|---|---|']
        plans = table[scen]
        order = [p for p in sc.PLANS if p in plans] + sorted(
            p for p in plans if p not in sc.PLANS)
        for plan in order:
            c = plans[plan]
            total = ('%.1f [%.1f-%.1f]' % (c['median_s'], c['min_s'],
                                           c['max_s'])
                     if c['median_s'] is not None else 'never')
            integ = '%d/%d' % (c['integrity_ok'], c['n'])
            if c['integrity_bad']:
                integ += ' **%d FAILED**' % c['integrity_bad']
            if c['rejected']:
                integ += ' (%d rejected by libvirt)' % c['rejected']
            if c['errors']:
                integ += ' (%d errors)' % c['errors']
            lines.append(
                '| %s | %s | %s | %s | %s | %s | %d/%d | %s | %s |' % (
                    plan, total, _fmt(c['job_s']), _fmt(c['downtime_ms'], 0),
                    _fmt(c['wire_mb'], 0), _fmt(c['cpu_s']), c['converged'],
                    c['n'], integ, '; '.join(sorted(c['plans']))[:120]))
        lines += ['', 'Guest impact (converged runs, medians): the '
                  'dirtier\'s achieved rate during the migration vs. '
                  'its pace just before it (at most the nominal rate) and '
                  'vs. the nominal %d pages/s; "lost s" = work not done, '
                  'in seconds of that pace; "worst" '
                  '= its slowest %d s report; throttle = highest '
                  'auto-converge throttle in any run; post-copy = runs that '
                  'switched / median seconds in post-copy. The dirtier '
                  'is rate-limited: a throttle costs it rate only when it '
                  'leaves the vCPU too little time for the asked rate.' % (
                      sc.SCENARIOS[scen].rate if scen in sc.SCENARIOS
                      else 0, sc.SCENARIOS[scen].stat_s
                      if scen in sc.SCENARIOS else 1), '',
                  '| plan | rate vs before | vs nominal | lost s | '
                  'worst pages/s | max throttle | post-copy |',
                  '|---|---|---|---|---|---|---|']
        for plan in order:
            c = plans[plan]
            post = ('%d/%d (%s s)' % (c['post_copy'], c['n'],
                                      _fmt(c['postcopy_s']))
                    if c['post_copy'] else '-')
            lines.append('| %s | %s | %s | %s | %s | %s | %s |' % (
                plan, _pct(c['guest_vs_before']),
                _pct(c['guest_vs_nominal']), _fmt(c['guest_lost_s']),
                _fmt(c['guest_worst_rate'], 0),
                '%d%%' % c['max_throttle_pct'] if c['max_throttle_pct']
                else '-', post))
        lines.append('')
    lines += ['## Ratios', '',
              '| scenario | adaptive / nova_default | best fixed plan | '
              'adaptive / best fixed |', '|---|---|---|---|']
    geo = []
    for scen, r in rat.items():
        if 'adaptive_vs_nova' in r:
            x = r['adaptive_vs_nova']
            vs_nova = ('%.2f (%.1fx faster)' % (x, 1 / x) if x <= 1 else
                       '%.2f (%.1fx slower)' % (x, x))
            geo.append(r['adaptive_vs_nova'])
        elif r['adaptive_n'] is None:
            vs_nova = 'adaptive not run'
        elif r['adaptive_converged']:
            vs_nova = ('nova_default converged %s/%s, adaptive %s/%s'
                       % (r['nova_converged'], r['nova_n'],
                          r['adaptive_converged'], r['adaptive_n']))
        else:
            vs_nova = 'adaptive never converged'
        vs_best = ('%.2f' % r['adaptive_vs_best']
                   if 'adaptive_vs_best' in r else '-')
        lines.append('| %s | %s | %s | %s |' % (scen, vs_nova,
                                                r['best_fixed'] or '-',
                                                vs_best))
    lines.append('')
    if geo:
        gm = math.exp(sum(math.log(x) for x in geo) / len(geo))
        lines.append('Geometric mean of adaptive/nova_default over the %d '
                     'scenario(s) where both converged: %.2f (%.1fx %s).'
                     % (len(geo), gm, 1 / gm if gm <= 1 else gm,
                        'faster' if gm <= 1 else 'slower'))
    bad = [r for r in results if r.get('integrity') in BAD_INTEGRITY]
    rejected = [r for r in results
                if r.get('outcome') == runner.OUTCOME_REJECTED]
    lines.append('Integrity failures: %d. Plans rejected by libvirt: %d.'
                 % (len(bad), len(rejected)))
    for r in bad + rejected:
        lines.append('- %s/%s repeat %s: %s %s %s' % (
            r['scenario'], r['plan'], r['repeat'], r['outcome'],
            r.get('verdict', ''), r.get('error', '')))
    lines.append('')
    lines += oracle_markdown(results)
    lines += done_markdown(results)
    return '\n'.join(lines)


def chart(results: list, path: str, timeout_s: float) -> Optional[str]:
    """A grouped bar chart of median total time (PNG); None without
    matplotlib.
    """
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        LOG.warning('matplotlib not installed: no chart')
        return None
    table = aggregate(results)
    scens = [s for s in sc.SCENARIOS if s in table] + [
        s for s in table if s not in sc.SCENARIOS]
    plans = [p for p in sc.PLANS if any(p in table[s] for s in scens)]
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(scens) * len(plans)
                                        / 5), 5.5))
    width = 0.8 / max(1, len(plans))
    cmap = plt.get_cmap('tab20')
    for i, plan in enumerate(plans):
        xs, hs, hatch = [], [], []
        for j, scen in enumerate(scens):
            c = table[scen].get(plan)
            if c is None:
                continue
            xs.append(j + (i - len(plans) / 2 + 0.5) * width)
            if c['median_s'] is None:
                hs.append(timeout_s)
                hatch.append(True)
            else:
                hs.append(c['median_s'])
                hatch.append(c['converged'] < c['n'])
        bars = ax.bar(xs, hs, width, label=plan, color=cmap(i % 20),
                      edgecolor='black', linewidth=0.4)
        for bar, h in zip(bars, hatch):
            if h:
                bar.set_hatch('//')
                bar.set_alpha(0.5)
    ax.axhline(timeout_s, color='grey', linestyle=':', linewidth=0.8)
    ax.set_xticks(range(len(scens)))
    ax.set_xticklabels(scens)
    ax.set_ylabel('median total migration time (s)')
    ax.set_title('Real libvirt/QEMU live migrations (TCG, 2 cores)\n'
                 'hatched: did not always converge; at the dotted timeout '
                 'line: never converged', fontsize=10)
    ax.legend(ncol=5, fontsize=8, loc='upper center',
              bbox_to_anchor=(0.5, -0.08))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- the scale model: the physical floor and the oracle ----------------------

#: Plans the oracle summary shows besides the best fixed ones.
ORACLE_POLICIES = (ADAPTIVE, BASELINE)
#: Repeats the oracle summary asks for: one repeat decides no 1.1x
#: comparison (zstd1x4 on big-text took 19.4 s, and 32.9 s an hour later).
MIN_REPEATS = 3


def best_ratio(results: list, scenario: str) -> float:
    """The best compression ratio measured on ``scenario``'s guest pages:
    the page samples of its runs (compressed/original), 1.0 when none.
    """
    ratios = [(r.get('facts') or {}).get('compress_ratio')
              for r in results if r.get('scenario') == scenario]
    ratios = [x for x in ratios if isinstance(x, (int, float)) and x > 0]
    return min([1.0] + ratios)


def physical_floor_s(scenario: sc.Scenario, ratio: float) -> float:
    """Seconds the bytes that must cross take on the scenario's link.

    Every page the guest filled crosses once and the hot set it keeps
    rewriting at least once more, each at the best compression ratio
    measured (``ratio``); zero pages cost next to nothing. No plan on
    this link can be faster; how close a plan gets is its time over this.
    """
    ratio = max(0.0, min(1.0, ratio))
    must_cross_mb = (scenario.touch_mb + scenario.hot_mb) * ratio
    return must_cross_mb / scenario.link_mbps


def oracle(results: list) -> dict:
    """Per scenario: the floor and, for adaptive, nova_default and the two
    best fixed plans that always converged (by median), median, min, max,
    runs and converged, median over the floor; adaptive over the best
    fixed plan (the oracle: the best plan chosen after the fact).
    """
    table = aggregate(results)
    out: dict = {}
    for scen in _scenario_order(table):
        plans = table[scen]
        fixed = sorted((p for p, c in plans.items()
                        if p not in ORACLE_POLICIES and p != 'static' and
                        not p.startswith(ADAPTIVE) and
                        c['median_s'] is not None and
                        c['converged'] == c['n']),
                       key=lambda p: plans[p]['median_s'])
        ratio = best_ratio(results, scen)
        floor = (physical_floor_s(sc.SCENARIOS[scen], ratio)
                 if scen in sc.SCENARIOS else None)
        rows = []
        for plan in [p for p in ORACLE_POLICIES if p in plans] + fixed[:2]:
            c = plans[plan]
            rows.append({
                'plan': plan, 'n': c['n'], 'converged': c['converged'],
                'median_s': c['median_s'], 'min_s': c['min_s'],
                'max_s': c['max_s'],
                'vs_floor': (c['median_s'] / floor
                             if floor and c['median_s'] is not None
                             else None)})
        ada = plans.get(ADAPTIVE)
        best = fixed[0] if fixed else None
        out[scen] = {
            'floor_s': floor, 'ratio': ratio, 'rows': rows,
            'best_fixed': best,
            'adaptive_vs_oracle': (
                ada['median_s'] / plans[best]['median_s']
                if best and ada and ada['median_s'] is not None else None),
            'repeats': min(c['n'] for c in plans.values())}
    return out


def oracle_markdown(results: list) -> list:
    """The "Oracle and physical floor" section's lines."""
    lines = ['## Oracle and physical floor', '',
             'Per scenario: the physical floor (the filled memory and the '
             're-sent hot set at the best compression ratio measured on the '
             "guest's pages, over the link), and median [min-max] of the "
             'converged runs of adaptive, nova_default and the two best '
             'fixed plans that always converged, with the median over the '
             'floor; adaptive over the best fixed plan is adaptive against '
             'the oracle. Fewer than %d repeats decide no 1.1x comparison.'
             % MIN_REPEATS, '']
    for scen, entry in oracle(results).items():
        floor = entry['floor_s']
        lines += ['### %s' % scen, '',
                  'floor %s (pages compress to %.2f); adaptive / oracle '
                  '(%s): %s%s' % (
                      '%.1f s' % floor if floor is not None else '-',
                      entry['ratio'], entry['best_fixed'] or '-',
                      _fmt(entry['adaptive_vs_oracle'], 2),
                      '' if entry['repeats'] >= MIN_REPEATS else
                      ' (**only %d repeat(s)**)' % entry['repeats']), '',
                  '| plan | median s | min-max s | conv | x floor |',
                  '|---|---|---|---|---|']
        for row in entry['rows']:
            lines.append('| %s | %s | %s-%s | %d/%d | %s |' % (
                row['plan'], _fmt(row['median_s']), _fmt(row['min_s']),
                _fmt(row['max_s']), row['converged'], row['n'],
                _fmt(row['vs_floor'], 2)))
        lines.append('')
    return lines


#: A plan whose wire rate reaches this share of the link is link-bound.
LINK_BOUND_SHARE = 0.9


def link_calibration(results: list) -> list:
    """Per link rate and plan: the median wire rate (Mbit/s: bytes on the
    source veth over libvirt's job time) and its share of the link.
    """
    rows = []
    table = aggregate(results)
    for scen in _scenario_order(table):
        if scen not in sc.SCENARIOS:
            continue
        link = sc.SCENARIOS[scen].link_mbit
        for plan, cell in sorted(table[scen].items()):
            rates = [r['wire_bytes'] * 8 / 1e6 / _job_s(r)
                     for r in cell['runs']
                     if r.get('converged') and r.get('wire_bytes') and
                     _job_s(r)]
            wire = _median(rates)
            rows.append({'link_mbit': link, 'plan': plan,
                         'wire_mbit': wire,
                         'share': wire / link if wire else None})
    return sorted(rows, key=lambda r: (r['link_mbit'], r['plan']))


def cores_not_bottleneck_below(rows: list,
                               plan: str = 'zstd1x4') -> Optional[int]:
    """The fastest link (Mbit/s) up to which ``plan`` keeps the link full
    (:data:`LINK_BOUND_SHARE`) at every rate measured: below it the cores
    are not the bottleneck. None when even the slowest rate is CPU-bound.
    """
    found = None
    for row in sorted((r for r in rows if r['plan'] == plan),
                      key=lambda r: r['link_mbit']):
        if row['share'] is None or row['share'] < LINK_BOUND_SHARE:
            break
        found = row['link_mbit']
    return found


def link_calibration_markdown(results: list) -> str:
    """The link calibration's summary."""
    rows = link_calibration(results)
    lines = ['# Link calibration', '',
             "Wire rate (bytes on the source veth over libvirt's job time) "
             'against the shaped link; an idle guest of text pages.', '',
             '| link Mbit/s | plan | wire Mbit/s | share of link |',
             '|---|---|---|---|']
    for row in rows:
        lines.append('| %d | %s | %s | %s |' % (
            row['link_mbit'], row['plan'], _fmt(row['wire_mbit'], 0),
            _pct(row['share'])))
    knee = cores_not_bottleneck_below(rows)
    lines += ['', 'zstd1x4 keeps the link at least %d%% full up to: %s.'
              % (100 * LINK_BOUND_SHARE,
                 '%d Mbit/s' % knee if knee else 'no rate measured'), '']
    return '\n'.join(lines)


def write_reports(results: list, out_dir: str, timeout_s: float,
                  title: str, meta: Optional[dict] = None) -> dict:
    md = summary_markdown(results, title=title, meta=meta)
    md_path = os.path.join(out_dir, 'summary.md')
    with open(md_path, 'w') as f:
        f.write(md)
    png = chart(results, os.path.join(out_dir, 'chart.png'), timeout_s)
    return {'summary': md_path, 'chart': png, 'text': md}


def failures(results: list) -> list:
    """Runs that must fail CI: integrity errors and libvirt refusals."""
    return [r for r in results
            if r.get('integrity') in BAD_INTEGRITY or
            r.get('outcome') in (runner.OUTCOME_REJECTED,
                                 runner.OUTCOME_ERROR) or
            r.get('plan') == '(boot)']
