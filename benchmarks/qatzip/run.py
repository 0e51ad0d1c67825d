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
"""qatzip against zstd on the lab's real path (see README.md here).

Both lab hosts run the QEMU built with QATzip; Nova boots one guest and
``openstack server migrate --live-migration`` moves it back and forth with
the ``static`` policy: ``qatzip`` level 1 over 4 channels (monitor
passthrough), ``zstd`` level 1 over 4 channels (libvirt's own
parameters) and, as the reference, plain multifd over 4 channels, the
plans in rotated order in each repeat. Per migration it records the
source QEMU's CPU seconds, the bytes on the source's veth and the lines
each QEMU wrote to its domain log (``runner.GuestSession.migrate``).

No QAT hardware exists where this runs: ``qatzip`` is QATzip's software
fallback on the CPU. The static policy takes a QAT lease for ``qatzip``,
so the computes see one fixture QAT PF (``tests/fixtures/qat_sysfs.py``);
no device compresses anything.

Run as root, nothing else using the lab, from the checkout::

    . tools/env.sh
    .venv/bin/python benchmarks/qatzip/run.py --prefix qz1

``--daemon-env LD_PRELOAD=/tmp/qz_quiet.so`` (``qz_quiet.c`` here) runs
the libvirt daemons with that environment, for the log-noise measurement.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import time

os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'lab'))   # the lab's distribution

from nova_qat_migration import datamodel  # noqa: E402
from nova_qat_migration_lab import qemu_build  # noqa: E402
from nova_qat_migration_lab import repo  # noqa: E402
from nova_qat_migration_lab import scenarios as sc  # noqa: E402

GIB = 1024 ** 3
QAT_PF = '0000:6b:00.0'


def _static(name, method, level=None):
    # The monitor passthrough on for every plan, as on a host that allows
    # qatzip: a QEMU that arrived with qatzip (its -global default) is set
    # back to none before a plan without a method of its own. Without it
    # the driver keeps qatzip on both ends for that migration.
    opts = dict(sc.static_options(datamodel.Plan(
        policy='static', method=method, level=level,
        parallel_connections=4)))
    opts['qemu_monitor_passthrough'] = True
    return sc.PlanSpec(name, policy='static',
                       options=tuple(sorted(opts.items())))


PLANS = {
    'qatzip': _static('qatzip1x4', 'qatzip', 1),
    'zstd': _static('zstd1x4', 'zstd', 1),
    'none': _static('parallel4', 'none'),
}


def row(res, memory_mb, qemu_choice, daemon_env):
    data = res.to_dict()
    data.pop('report', None)
    gib = memory_mb / 1024.0
    data.update(
        qemu=qemu_choice, daemon_env=daemon_env,
        method=(res.report or {}).get('method'),
        cpu_s_per_gib=(round(res.src_cpu_s / gib, 2)
                       if res.src_cpu_s is not None else None),
        wire_per_gib=(round(res.wire_bytes / (memory_mb * 2 ** 20), 4)
                      if res.wire_bytes is not None else None))
    return data


def summarize(rows):
    """Markdown table: per plan, mean (min-max) over the repeats."""
    def cell(values, fmt):
        values = [v for v in values if v is not None]
        if not values:
            return '-'
        text = fmt % statistics.mean(values)
        if len(values) > 1:
            text += (' (' + fmt + '-' + fmt + ')') % (min(values),
                                                      max(values))
        return text

    plain = [r['wire_bytes'] for r in rows if r['plan'] == 'parallel4'
             and r['wire_bytes']]
    plain_mean = statistics.mean(plain) if plain else None
    lines = ['| plan | runs | method (report) | source QEMU CPU s per GiB '
             'of guest RAM | wire bytes per byte of guest RAM | wire vs '
             'plain multifd | job s | QEMU log lines src / dest '
             '(of them QATzip/qatlib lines) |',
             '|---|---|---|---|---|---|---|---|']
    for name in ('qatzip1x4', 'zstd1x4', 'parallel4'):
        runs = [r for r in rows if r['plan'] == name]
        if not runs:
            continue
        ok = [r for r in runs if r['outcome'] == 'completed'
              and r['integrity'] == 'ok']
        methods = sorted({str(r['method']) for r in runs})
        ratio = ('-' if not plain_mean else cell(
            [r['wire_bytes'] / plain_mean for r in ok], '%.2f'))
        logs = ' / '.join(
            '%s (%s)' % (cell([r['qemu_log'].get(end, {}).get('lines')
                               for r in ok], '%.0f'),
                         cell([r['qemu_log'].get(end, {}).get(
                             'qatzip_fallback_lines') for r in ok], '%.0f'))
            for end in ('source', 'dest'))
        lines.append('| %s | %d/%d ok | %s | %s | %s | %s | %s | %s |' % (
            name, len(ok), len(runs), ','.join(methods),
            cell([r['cpu_s_per_gib'] for r in ok], '%.2f'),
            cell([r['wire_per_gib'] for r in ok], '%.3f'), ratio,
            cell([r['job_s'] for r in ok], '%.1f'), logs))
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--prefix', default='qz1')
    parser.add_argument('--scenario', default='idle-10g',
                        choices=sorted(sc.SCENARIOS))
    parser.add_argument('--plans', default='qatzip,zstd,none')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--timeout', type=float, default=120.0)
    parser.add_argument('--qemu', default=qemu_build.QATZIP,
                        choices=qemu_build.CHOICES)
    parser.add_argument('--daemon-env', action='append', default=[],
                        metavar='NAME=VALUE')
    parser.add_argument('--out', default=os.path.join(HERE,
                                                      'results.jsonl'))
    parser.add_argument('--append', action='store_true')
    parser.add_argument('--keep-logs', metavar='DIR',
                        help='copy both hosts\' QEMU domain logs here')
    parser.add_argument('--summary-only', action='store_true')
    args = parser.parse_args(argv)
    if args.summary_only:
        with open(args.out) as f:
            print(summarize([json.loads(line) for line in f
                             if line.strip()]))
        return 0
    repo.set_root(ROOT)
    daemon_env = dict(kv.split('=', 1) for kv in args.daemon_env)
    plans = [PLANS[p] for p in args.plans.split(',')]
    scenario = sc.SCENARIOS[args.scenario]
    from nova_qat_migration_lab import runner
    tree = repo.load_fixture('qat_sysfs').QATSysfs()
    tree.setUp()
    rows = []
    mode = 'a' if args.append else 'w'
    try:
        tree.add_pf(QAT_PF, '4xxx', numvfs=4, services='dc')
        options = {'sysfs_root': tree.sysfs, 'debugfs_root': tree.debugfs,
                   'qat_endpoints_for_migration': 1}
        started = time.time()
        with runner.NovaLab(args.prefix, link_mbit=scenario.link_mbit,
                            qat_options=options, qemu=args.qemu,
                            daemon_env=daemon_env,
                            log_path=os.path.join(
                                '/tmp', 'nqm-qatzip-%s-nova.log'
                                % args.prefix)) as nlab, \
                open(args.out, mode) as out:
            print('qatzip bench: %s QEMU %s, scenario %s, plans %s x %d, '
                  'daemon env %s' % (args.qemu, nlab.lab.emulator,
                                     scenario.name, args.plans,
                                     args.repeats, daemon_env), flush=True)
            with runner.GuestSession(nlab, scenario) as session:
                for repeat in range(args.repeats):
                    shift = repeat % len(plans)
                    for spec in plans[shift:] + plans[:shift]:
                        res = session.migrate(spec, timeout_s=args.timeout,
                                              repeat=repeat)
                        data = row(res, scenario.memory_mb, args.qemu,
                                   daemon_env)
                        rows.append(data)
                        out.write(json.dumps(data, default=str,
                                             sort_keys=True) + '\n')
                        out.flush()
                        print('%d %-10s %-9s %s %s cpu %s s, wire %.0f MB, '
                              'job %s s, log src %s dest %s' % (
                                  repeat, spec.name, data['method'],
                                  res.outcome, res.integrity,
                                  res.src_cpu_s, (res.wire_bytes or 0) / 1e6,
                                  res.job_s, res.qemu_log.get('source'),
                                  res.qemu_log.get('dest')), flush=True)
            if args.keep_logs:
                for host in nlab.lab.hosts:
                    shutil.copytree(
                        os.path.join(host.path('log'), 'qemu'),
                        os.path.join(args.keep_logs, host.name),
                        dirs_exist_ok=True)
        print('done in %.1f min' % ((time.time() - started) / 60))
    finally:
        tree.cleanUp()
    print(summarize(rows))
    bad = [r for r in rows if r['outcome'] != 'completed'
           or r['integrity'] != 'ok']
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
