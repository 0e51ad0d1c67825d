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
"""The benchmark's ``summary.md`` and chart, rebuilt from the JSON lines
alone (so from a committed ``results.jsonl`` too).
"""

from __future__ import annotations

import math
import os
from typing import Optional

from oslo_log import log as logging

from nova_qat_migration_lab.bench import scale
from nova_qat_migration_lab.bench import stats
from nova_qat_migration_lab import measure
from nova_qat_migration_lab import scenarios as sc

LOG = logging.getLogger(__name__)


def summary_markdown(results: list, title: str = 'Benchmark',
                     meta: Optional[dict] = None) -> str:
    table = stats.aggregate(results)
    rat = stats.ratios(table)
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
    for scen in stats.scenario_order(table):
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
                    plan, total, stats.fmt(c['job_s']),
                    stats.fmt(c['downtime_ms'], 0), stats.fmt(c['wire_mb'], 0),
                    stats.fmt(c['cpu_s']), c['converged'], c['n'], integ,
                    '; '.join(sorted(c['plans']))[:120]))
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
                                      stats.fmt(c['postcopy_s']))
                    if c['post_copy'] else '-')
            lines.append('| %s | %s | %s | %s | %s | %s | %s |' % (
                plan, stats.pct(c['guest_vs_before']),
                stats.pct(c['guest_vs_nominal']), stats.fmt(c['guest_lost_s']),
                stats.fmt(c['guest_worst_rate'], 0),
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
    bad = [r for r in results if r.get('integrity') in stats.BAD_INTEGRITY]
    rejected = [r for r in results
                if r.get('outcome') == measure.OUTCOME_REJECTED]
    lines.append('Integrity failures: %d. Plans rejected by libvirt: %d.'
                 % (len(bad), len(rejected)))
    for r in bad + rejected:
        lines.append('- %s/%s repeat %s: %s %s %s' % (
            r['scenario'], r['plan'], r['repeat'], r['outcome'],
            r.get('verdict', ''), r.get('error', '')))
    lines.append('')
    lines += scale.oracle_markdown(results)
    lines += stats.done_markdown(results)
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
    table = stats.aggregate(results)
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
            if r.get('integrity') in stats.BAD_INTEGRITY or
            r.get('outcome') in (measure.OUTCOME_REJECTED,
                                 measure.OUTCOME_ERROR) or
            r.get('plan') == '(boot)']
