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
"""The documentation's timeline, from a real migration.

``nova-qat-migration-lab timeline-doc`` boots one busy guest on the
operator's cloud (:mod:`.services`; one already up is used and left up),
live-migrates it through Nova with a plan, and runs the operator's
command on the source compute's own configuration::

    nova-qat-migration --config-file <source nova.conf> \\
        timeline <server uuid> --output doc/source/_static/timeline-example.svg

and the same without ``--output`` into ``timeline-example.txt`` beside it
(the text table), and what the run was into ``timeline-example.inc``.
``doc/source/admin/timeline.rst`` shows the three.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
from typing import Any

from nova_qat_migration_lab import repo
from nova_qat_migration_lab import scenarios as sc

#: Below the repository root.
OUT = ('doc', 'source', '_static', 'timeline-example.svg')
#: A guest the adaptive plan moves with XBZRLE, cache growth and a
#: throttle: every kind of line and event on one drawing.
SCENARIO = 'small-writes'
PLAN = 'adaptive'
#: ``timeline-example.inc``: what the drawing comes from (reST).
SOURCE = ('From a lab run on %(date)s (``nova-qat-migration-lab '
          'timeline-doc``): the ``%(scenario)s`` guest (%(description)s) '
          'live-migrated by Nova from %(source)s with the ``%(plan)s`` '
          'plan over a %(link)d Mbit/s link, real QEMU and libvirt under '
          'TCG on two shared cores: %(outcome)s.\n')


def timeline_command(conf_file: str, server_id: str, *more: str) -> list:
    """The operator's command for ``server_id`` on a compute whose
    nova.conf is ``conf_file``.
    """
    return [sys.executable, '-m', 'nova_qat_migration.cmd.cli',
            '--config-file', conf_file, 'timeline', server_id] + list(more)


def draw(conf_file: str, server_id: str, svg: str) -> str:
    """Write ``svg`` and the table beside it (``.txt``); the table.

    :raises subprocess.CalledProcessError: the command failed (its
        one-line reason on stderr).
    """
    subprocess.run(timeline_command(conf_file, server_id, '--output', svg),
                   check=True, capture_output=True, text=True, timeout=300)
    table = subprocess.run(timeline_command(conf_file, server_id),
                           check=True, capture_output=True, text=True,
                           timeout=300).stdout
    with open(os.path.splitext(svg)[0] + '.txt', 'w') as f:
        f.write(table)
    return table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--scenario', default=SCENARIO,
                        choices=sorted(sc.SCENARIOS),
                        help='the guest (default %s)' % SCENARIO)
    parser.add_argument('--plan', default=PLAN, choices=sorted(sc.PLANS),
                        help='the plan (default %s)' % PLAN)
    parser.add_argument('--out', help='the SVG to write (default %s below '
                                      'the repository root; the table goes '
                                      'beside it as .txt)' % '/'.join(OUT))
    parser.add_argument('--timeout', type=float, default=120.0,
                        help='completion timeout of the migration (s)')


def run(args: argparse.Namespace, lab_options: dict) -> int:
    """Migrate the guest and write the timeline; 1 if the guest's memory
    check failed or the command did.
    """
    from nova_qat_migration_lab import runner
    from nova_qat_migration_lab import services
    scenario = sc.SCENARIOS[args.scenario]
    svg = args.out or repo.path(*OUT)
    nlab: Any = runner.NovaLab(link_mbit=scenario.link_mbit,
                               qat_options=lab_options, qemu=args.qemu,
                               cloud='services')
    try:
        nlab.__enter__()
    except services.CloudError as exc:
        print('the cloud did not come up: %s' % exc, file=sys.stderr)
        return 1
    try:
        with runner.GuestSession(nlab, scenario) as session:
            print('%s on %s: migrating with %s' % (
                session.server_id, session.host, args.plan), flush=True)
            res = session.migrate(sc.PLANS[args.plan],
                                  timeout_s=args.timeout)
            print('%s in %s s, downtime %s ms, plan %s; memory check %s' % (
                res.outcome, res.total_s, res.downtime_ms,
                res.effective_plan, res.integrity))
            conf_file = nlab.cloud.compute(res.source).conf_file
            try:
                table = draw(conf_file, session.server_id, svg)
            except subprocess.CalledProcessError as exc:
                print('%s failed: %s' % (' '.join(exc.cmd),
                                         exc.stderr.strip()),
                      file=sys.stderr)
                return 1
    finally:
        nlab.__exit__()
    base = os.path.splitext(svg)[0]
    with open(base + '.inc', 'w') as f:
        f.write(SOURCE % {
            'date': datetime.date.today().isoformat(),
            'scenario': scenario.name,
            'description': scenario.description, 'source': res.source,
            'plan': args.plan, 'link': scenario.link_mbit,
            'outcome': res.outcome})
    print(table, end='')
    print('wrote %s, %s.txt and %s.inc' % (svg, base, base))
    return 0 if res.integrity == 'ok' else 1
