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
"""The scale model: the physical floor of each scenario, the oracle (the
best fixed plan per scenario) and the link calibration.
"""

from __future__ import annotations

from typing import Optional

from nova_qat_migration_lab.bench import stats
from nova_qat_migration_lab import scenarios as sc


# -- the scale model: the physical floor and the oracle ----------------------

#: Plans the oracle summary shows besides the best fixed ones.
ORACLE_POLICIES = (stats.ADAPTIVE, stats.BASELINE)
#: Repeats the oracle summary asks for: one repeat decides no 1.1x
#: comparison (zstd1x4 on big-text took 19.4 s, and 32.9 s an hour later).
MIN_REPEATS = 3


def best_ratio(results: list, scenario: str) -> float:
    """The best compression ratio measured on ``scenario``'s guest pages:
    the page samples of its runs (compressed/original), 1.0 when none.
    """
    measured = [(r.get('facts') or {}).get('compress_ratio')
                for r in results if r.get('scenario') == scenario]
    measured = [x for x in measured if isinstance(x, (int, float)) and x > 0]
    return min([1.0] + measured)


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
    table = stats.aggregate(results)
    out: dict = {}
    for scen in stats.scenario_order(table):
        plans = table[scen]
        fixed = sorted((p for p, c in plans.items()
                        if p not in ORACLE_POLICIES and p != 'static' and
                        not p.startswith(stats.ADAPTIVE) and
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
        ada = plans.get(stats.ADAPTIVE)
        best = fixed[0] if fixed else None
        out[scen] = {
            'floor_s': floor, 'ratio': ratio, 'rows': rows,
            'best_fixed': best,
            'adaptive_vs_oracle': (
                ada['median_s'] / plans[best]['median_s']
                if best and ada and ada['median_s'] is not None else None),
            # The plans the oracle compares (later repeats may run only
            # these), not every plan of the first repeat.
            'repeats': min(row['n'] for row in rows)}
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
                      stats.fmt(entry['adaptive_vs_oracle'], 2),
                      '' if entry['repeats'] >= MIN_REPEATS else
                      ' (**only %d repeat(s)**)' % entry['repeats']), '',
                  '| plan | median s | min-max s | conv | x floor |',
                  '|---|---|---|---|---|']
        for row in entry['rows']:
            lines.append('| %s | %s | %s-%s | %d/%d | %s |' % (
                row['plan'], stats.fmt(row['median_s']),
                stats.fmt(row['min_s']),
                stats.fmt(row['max_s']), row['converged'], row['n'],
                stats.fmt(row['vs_floor'], 2)))
        lines.append('')
    return lines


#: A plan whose wire rate reaches this share of the link is link-bound.
LINK_BOUND_SHARE = 0.9


def link_calibration(results: list) -> list:
    """Per link rate and plan: the median wire rate (Mbit/s: bytes on the
    source veth over libvirt's job time) and its share of the link.
    """
    rows = []
    table = stats.aggregate(results)
    for scen in stats.scenario_order(table):
        if scen not in sc.SCENARIOS:
            continue
        link = sc.SCENARIOS[scen].link_mbit
        for plan, cell in sorted(table[scen].items()):
            rates = [r['wire_bytes'] * 8 / 1e6 / stats.job_s(r)
                     for r in cell['runs']
                     if r.get('converged') and r.get('wire_bytes') and
                     stats.job_s(r)]
            wire = stats.median(rates)
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
            row['link_mbit'], row['plan'], stats.fmt(row['wire_mbit'], 0),
            stats.pct(row['share'])))
    knee = cores_not_bottleneck_below(rows)
    lines += ['', 'zstd1x4 keeps the link at least %d%% full up to: %s.'
              % (100 * LINK_BOUND_SHARE,
                 '%d Mbit/s' % knee if knee else 'no rate measured'), '']
    return '\n'.join(lines)
