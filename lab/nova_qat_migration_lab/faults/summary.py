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
"""The fault matrix's ``summary.md``, from its ``results.jsonl`` rows.
"""

from __future__ import annotations

import os
from typing import Optional

from nova_qat_migration_lab.faults import context
from nova_qat_migration_lab.faults import injectors


def write_summary(rows: list, out_dir: str) -> str:
    """``summary.md``: the matrix (the last row of each cell wins), then
    every failed check with the same fault under plain Nova.
    """
    path = os.path.join(out_dir, 'summary.md')
    with open(path, 'w') as f:
        f.write(summary_markdown(rows))
    return path


def _cell(row: Optional[dict]) -> str:
    if row is None:
        return 'not run'
    if row.get('skipped'):
        return 'n/a'
    mark = 'PASS' if row.get('passed') else 'FAIL'
    status = row.get('migration_status') or row.get('outcome') or '-'
    if not row.get('fired'):
        status += ', fault not reached'
    return '%s (%s)' % (mark, status)


def summary_markdown(rows: list) -> str:
    cells: dict = {}
    for row in rows:
        cells[(row['fault'], row['plan'], row.get('driver', 'qat'))] = row
    faults = [f for f in injectors.FAULTS if any(k[0] == f for k in cells)]
    plans = [p for p in list(context.MATRIX_PLANS) + ['qatzip']
             if any(k[1] == p and k[2] == 'qat' for k in cells)]
    has_nova = any(k[2] == 'nova' for k in cells)
    head = ['fault'] + plans + (['plain Nova (LibvirtDriver)']
                                if has_nova else [])
    out = ['# Fault matrix', '',
           'Each cell: a guest (%s) booted by Nova, live-migrated with '
           '`openstack server migrate --live-migration` while the fault '
           'happens, then checked (guest on exactly one host, memory '
           'check, Nova\'s server and migration records, definitions, '
           'QEMU parameters, QAT leases, the driver\'s report and history, '
           'post-copy only where permitted). PASS: every check held. The '
           'status is Nova\'s migration record.'
           % context.FAULT_SCENARIO.description, '',
           '| ' + ' | '.join(head) + ' |',
           '|' + '---|' * len(head)]
    for fault in faults:
        line = [fault] + [_cell(cells.get((fault, p, 'qat')))
                          for p in plans]
        if has_nova:
            line.append(_cell(cells.get((fault, 'nova_default', 'nova'))))
        out.append('| ' + ' | '.join(line) + ' |')
    out += ['', '## Faults', '']
    for fault in faults:
        f = injectors.FAULTS[fault]
        out.append('* **%s**: %s. Expected: %s.' % (fault, f.title,
                                                    f.expect))
    failed = [r for r in cells.values()
              if not r.get('skipped') and not r.get('passed')]
    if failed:
        out += ['', '## Failed checks, and plain Nova in the same fault',
                '']
        for row in failed:
            nova = cells.get((row['fault'], 'nova_default', 'nova'))
            out.append('### %s / %s (%s)' % (row['fault'], row['plan'],
                                             row.get('driver', 'qat')))
            for c in row['checks']:
                if c['ok'] is False:
                    out.append('* `%s`: %s' % (c['name'], c['detail']))
            if row.get('error'):
                out.append('* run: %s' % row['error'])
            out.append('* events: %s' % '; '.join(
                '%.1f s %s' % (t, e) for t, e in row.get('events') or ()))
            if nova is not None and row.get('driver') != 'nova':
                out.append('* plain Nova, same fault: %s%s' % (
                    _cell(nova), '' if nova.get('passed') else ' - ' + '; '
                    .join('%s: %s' % (c['name'], c['detail'])
                          for c in nova['checks'] if c['ok'] is False)))
            out.append('')
    return '\n'.join(out) + '\n'
