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
"""``nova-qat-migration-lab``: the real-migration lab's command line.

Subcommands: ``bench`` (the benchmark matrix), ``demo`` (one guest,
Nova's plan against the adaptive one), ``timeline-doc`` (the docs'
timeline from a real migration), ``faults`` (the fault matrix),
``drain-bench`` (empty a lab host, see :mod:`.drain_bench`), ``model``
(fit the convergence model to benchmark results, or report its accuracy)
and ``lab`` (housekeeping). The commands that run migrations need root,
QEMU 10 and libvirt 11 (``tools/setup-host.sh``).

Repository files (``benchmarks/``, ``lab-run/``, ...) are found below
``--repo-root``, by default the checkout this package lives in (see
:mod:`nova_qat_migration_lab.repo`); paths given as options are taken as
given.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from typing import Any, Optional, Sequence

from nova_qat_migration_lab import jsonlines
from nova_qat_migration_lab import qemu_build
from nova_qat_migration_lab import repo
from nova_qat_migration_lab import scenarios as sc

#: Below the repository root (:func:`repo.path`).
QUICK_OUT = ('lab-run', 'bench-quick')
FULL_OUT = ('benchmarks',)
#: Output directories and plans of the named scenario sets (``bench
#: --scenario-set``) other than the default.
SET_OUT = {'scale-model': ('benchmarks', 'scale-model'),
           'link-calibration': ('benchmarks', 'link-calibration')}
SET_PLANS = {
    # adaptive, Nova's plan and the fixed plans the oracle picks from
    'scale-model': ('nova_default', 'adaptive', 'plain', 'zstd1x4',
                    'xbzrle512', 'autoconv20+10', 'postcopy2'),
    'link-calibration': sc.LINK_CALIBRATION_PLANS,
}
CALIBRATION = ('benchmarks', 'calibration.json')
RESULTS = ('benchmarks', 'results.jsonl')
FAULTS_OUT = ('benchmarks', 'faults')


def _csv(text: str) -> list:
    return [t.strip() for t in text.split(',') if t.strip()]


def _lab_options() -> dict:
    """``[qat_migration]`` options of the lab's computes beyond the lab's
    defaults: the model's constants fitted on this machine's earlier runs
    (benchmarks/calibration.json), when present.
    """
    calibration = repo.path(*CALIBRATION)
    if os.path.exists(calibration):
        return {'model_calibration': calibration}
    return {}


def _nova_env() -> None:
    """Prepare this process to host the lab's Nova (see :mod:`.cloud`).

    Nova runs with native threads, and its services parse ``CONF`` for
    themselves: the command line's parse is undone first (Nova's modules
    register more command-line options when they are imported).
    """
    os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')
    from nova_qat_migration.conf import CONF
    CONF.clear()


def _unknown(kind: str, names: list, known: list) -> bool:
    """Whether a name is not one of ``known`` (said on stderr)."""
    for name in names:
        if name not in known:
            print('unknown %s %r (known: %s)'
                  % (kind, name, ', '.join(known)), file=sys.stderr)
            return True
    return False


def _start(args: argparse.Namespace, qemu: str = qemu_build.DISTRO) -> bool:
    """Logging and signal handling for a lab command; False (with the
    reason printed) when the lab cannot run here.
    """
    _logging(args.verbose)
    _exit_on_signals()
    why = _check_ready(qemu)
    if why:
        print(why, file=sys.stderr)
    return not why


def _check_ready(qemu: str = qemu_build.DISTRO) -> Optional[str]:
    """Why the lab cannot run here with the ``qemu`` choice, or None."""
    from nova_qat_migration_lab import hosts
    why = hosts.missing_prerequisites()
    if why:
        return ('the lab cannot run here: %s (run tools/setup-host.sh as '
                'root)' % '; '.join(why))
    try:
        qemu_build.emulator(qemu)
    except qemu_build.NotBuilt as exc:
        return '--qemu %s: %s' % (qemu, exc)
    return None


def _add_qemu_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        '--qemu', choices=qemu_build.CHOICES, default=qemu_build.DISTRO,
        help="the QEMU both lab hosts run: distro (Debian's) or qatzip "
             '(built with QATzip by %s, put first on the libvirt daemons\' '
             'PATH; no QAT hardware here: qatzip runs QATzip\'s software '
             'fallback on the CPU)' % qemu_build.BUILD_SCRIPT)


def _exit_on_signals() -> None:
    """Turn SIGTERM/SIGHUP into SystemExit so that the lab's context
    managers tear the hosts down (namespaces, daemons, QEMU) on the way
    out.
    """
    def _raise(signum, frame):
        raise SystemExit(128 + signum)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise)


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format='%(asctime)s %(levelname)s %(name)s %(message)s')


# -- bench -------------------------------------------------------------------

def cmd_bench(args: argparse.Namespace) -> int:
    _nova_env()
    from nova_qat_migration_lab.bench import matrix
    from nova_qat_migration_lab.bench import report
    from nova_qat_migration_lab.bench import scale
    _logging(args.verbose)
    _exit_on_signals()
    if args.scale_link_mbit:
        # The scale model at the link the calibration found.
        sc.SCENARIOS.update({s.name: s for s in sc.scale_model(
            args.scale_link_mbit)})
    named = sc.SCENARIO_SETS[args.scenario_set]
    scenarios = _csv(args.scenarios) if args.scenarios else (
        list(sc.QUICK_SCENARIOS) if args.quick else list(named))
    plans = _csv(args.plans) if args.plans else (
        list(sc.QUICK_PLANS) if args.quick else
        list(SET_PLANS.get(args.scenario_set, sc.PLANS)))
    repeats = args.repeats or (1 if args.quick else 3)
    out_dir = args.out or repo.path(*(
        QUICK_OUT if args.quick else
        SET_OUT.get(args.scenario_set, FULL_OUT)))
    if (_unknown('scenario', scenarios, list(sc.SCENARIOS)) or
            _unknown('plan', plans, list(sc.PLANS))):
        return 2
    os.makedirs(out_dir, exist_ok=True)
    jsonl = os.path.join(out_dir, 'results.jsonl')
    if not args.report_only:
        why = _check_ready(args.qemu)
        if why:
            print(why, file=sys.stderr)
            return 1
        if not args.append and os.path.exists(jsonl):
            os.unlink(jsonl)
        started = time.time()
        print('bench: %d scenario(s) x %d plan(s) x %d repeat(s), '
              'timeout %.0f s, %s QEMU -> %s' % (
                  len(scenarios), len(plans), repeats, args.timeout,
                  args.qemu, jsonl))
        matrix.run_matrix(None, scenarios, plans, repeats, jsonl,
                         args.timeout, prefix=args.prefix,
                         qat_options=_lab_options(), qemu=args.qemu,
                         cloud=args.cloud, first_repeat=args.repeat_from)
        print('bench: done in %.1f min' % ((time.time() - started) / 60))
    results = jsonlines.load(jsonl)
    meta = _meta(args, scenarios, plans, repeats)
    if not args.report_only:
        meta['cloud'] = args.cloud
        meta['qemu'] = ('%s (%s)' % (args.qemu, qemu_build.emulator(
            args.qemu)))
    if args.report_only or args.append:
        meta['matrix'] = ('%d runs read from %s (repeats completed: %d)'
                          % (len(results), jsonl,
                             len({r.get('repeat') for r in results})))
    if args.scenario_set == 'link-calibration':
        text = scale.link_calibration_markdown(results)
        with open(os.path.join(out_dir, 'summary.md'), 'w') as f:
            f.write(text)
        print(text)
        return 0
    written = report.write_reports(results, out_dir, args.timeout,
                                  title='nova-qat-migration lab benchmark'
                                  + (' (quick)' if args.quick else '') +
                                  ('' if args.scenario_set == 'default' else
                                   ' (%s)' % args.scenario_set),
                                  meta=meta)
    print(written['text'])
    print('wrote %s%s' % (written['summary'], ', %s' % written['chart']
                          if written['chart'] else ''))
    bad = report.failures(results)
    if bad:
        print('bench: %d run(s) failed integrity, were rejected by libvirt '
              'or errored:' % len(bad), file=sys.stderr)
        for r in bad:
            print('  %s/%s: %s %s %s' % (r['scenario'], r['plan'],
                                         r['outcome'], r.get('integrity'),
                                         r.get('error') or r.get('verdict')),
                  file=sys.stderr)
        return 1
    return 0


def _timeouts(scenarios: list, default_s: float) -> str:
    """The completion timeouts the runs had: ``--timeout``, or a
    scenario's own (the scale model's: Nova's, per GiB).
    """
    by_value: dict = {}
    for name in scenarios:
        value = sc.SCENARIOS[name].completion_timeout_s(default_s)
        by_value.setdefault(value, []).append(name)
    if len(by_value) == 1:
        return '%.0f s' % next(iter(by_value))
    return '; '.join('%.0f s (%s)' % (value, ', '.join(names))
                     for value, names in sorted(by_value.items()))


def _meta(args: argparse.Namespace, scenarios: list, plans: list,
          repeats: int) -> dict:
    import platform
    meta = {'matrix': '%d scenarios x %d plans x %d repeats'
                      % (len(scenarios), len(plans), repeats),
            'completion timeout': _timeouts(scenarios, args.timeout),
            'machine': '%s, %d CPUs, TCG guests (1 vCPU)'
                       % (platform.node() and 'Linux ' + platform.release(),
                          os.cpu_count() or 0)}
    try:
        import libvirt
        meta['libvirt-python'] = libvirt.getVersion()
    except Exception:  # informational only
        pass
    return meta


# -- demo --------------------------------------------------------------------

def cmd_demo(args: argparse.Namespace) -> int:
    """The README's main job, on the operator's cloud (:mod:`.services`):
    its terminal output is the story, every service logs to its own file.
    """
    from nova_qat_migration_lab import runner
    from nova_qat_migration_lab import services
    if not _start(args, args.qemu):
        return 1
    scenario = sc.SCENARIOS[args.scenario]
    results = []
    print('== The cloud: Keystone, Glance, Placement, Neutron and Nova\'s '
          'API under gunicorn, nova-conductor, nova-scheduler, RabbitMQ, '
          'MariaDB; one nova-compute per lab host (network namespaces, one '
          'libvirt 11 daemon each, QEMU 10 under TCG, local disks, a %d '
          'Mbit/s link). Service logs: %s' % (
              scenario.link_mbit, services.LOG_ROOT), flush=True)
    started = time.monotonic()
    try:
        nlab = runner.NovaLab(link_mbit=scenario.link_mbit,
                              qat_options=_lab_options(), qemu=args.qemu,
                              cloud='services')
        nlab.__enter__()
    except services.CloudError as exc:
        print('the cloud did not come up: %s' % exc, file=sys.stderr)
        return 1
    try:
        cloud, lab = nlab.cloud, nlab.lab
        print('cloud ready in %.0f s%s' % (
            time.monotonic() - started, '' if nlab.started_cloud else
            ' (it was already up: `nova-qat-migration-lab cloud down` '
            'stops it)'))
        for host in lab.hosts:
            print('\n-- %s: %s (its own file; [qat_migration] and the '
                  'libvirt lines)' % (host.name,
                                      cloud.compute(host.name).conf_file))
            print(_conf_excerpt(cloud.nova_conf(host)))
        print('One busy guest (%s: %s) is booted by Nova and live-migrated '
              "with Nova's default plan, then with the adaptive plan."
              % (scenario.name, scenario.description))
        with runner.GuestSession(nlab, scenario) as session:
            for command in cloud.cli_log:
                if command.startswith('openstack server create'):
                    print('$ %s' % command)
            print('server %s ACTIVE on %s, guest ready'
                  % (session.server_id, session.host))
            for name in ('nova_default', 'adaptive'):
                print('\n== [qat_migration] policy = %s (nova.conf '
                      'edited on both computes, nova-compute restarted)'
                      % name)
                res = session.migrate(sc.PLANS[name],
                                      timeout_s=args.timeout)
                results.append(res)
                _print_run(res)
    finally:
        nlab.__exit__()
    nova, ada = results
    print('\n== Comparison')
    if ada.converged and nova.converged:
        print('adaptive %.1f s vs nova_default %.1f s: %.1fx faster'
              % (ada.total_s, nova.total_s, nova.total_s / ada.total_s))
    elif ada.converged:
        print('adaptive completed in %.1f s; nova_default did not converge '
              'within %.0f s (Nova aborted it at its completion timeout; '
              'the guest kept running on the source)'
              % (ada.total_s, args.timeout))
    else:
        print('adaptive: %s; nova_default: %s' % (ada.outcome, nova.outcome))
    bad = [r for r in results if r.integrity != 'ok']
    if bad:
        print('INTEGRITY FAILURE: %s' % ', '.join(
            '%s: %s' % (r.plan, r.verdict or r.integrity) for r in bad))
        return 1
    print('Guest memory verified after both runs: OK')
    if args.json:
        with open(args.json, 'w') as f:
            for r in results:
                jsonlines.write(f, r.to_dict())
    return 0


def _conf_excerpt(text: str) -> str:
    """The lines of a nova.conf that make the host what it is."""
    keep = {'DEFAULT': ('host', 'my_ip', 'compute_driver',
                        'instances_path'),
            'libvirt': None, 'qat_migration': None,
            'qat_migration_static': None}
    out, section = [], None
    for line in text.splitlines():
        if line.startswith('['):
            section = line.strip('[]')
            if section in keep:
                out.append(line)
            continue
        if section not in keep or not line.strip():
            continue
        wanted = keep[section]
        if wanted is None or line.split(' =')[0] in wanted:
            out.append(line)
    return '\n'.join(out)


def _print_run(res: Any) -> None:
    for command in res.commands:
        print('$ %s' % command)
    if res.facts:
        print('facts measured by the driver: dirty rate %s MiB/s (libvirt '
              'calc), host CPU idle %s%%, link %s MiB/s'
              % (res.facts.get('dirty_rate_mbps'),
                 res.facts.get('cpu_idle_pct'), res.facts.get('link_mbps')))
    else:
        print("facts: none measured (Nova's own plan needs none: it costs "
              'what Nova costs)')
    print('plan: %s' % res.effective_plan)
    for reason in res.reasons:
        print('  because: %s' % reason)
    for note in res.notes:
        print('  note: %s' % note)
    print('libvirt flags: %s' % '|'.join(res.flags))
    print('libvirt params: %s' % json.dumps(res.params, sort_keys=True))
    for action in res.actions:
        print('  escalation: %s %s (%s)' % (action.get('kind'),
                                            action.get('value') or '',
                                            action.get('reason', '')))
    if res.converged:
        print('result: migration %s in %.1f s (driver), downtime %s ms, '
              '%.0f MB on the wire, %s iterations, source QEMU CPU %s s' % (
                  res.migration_status, res.total_s, res.downtime_ms,
                  (res.wire_bytes or 0) / 1e6, res.iterations,
                  res.src_cpu_s))
    else:
        print('result: %s (%s) after sending %.0f MB' % (
            res.outcome, res.error, (res.wire_bytes or 0) / 1e6))
    print('guest memory check on %s: %s' % (res.verified_on, res.verdict))


# -- lab ---------------------------------------------------------------------

def cmd_lab(args: argparse.Namespace) -> int:
    from nova_qat_migration_lab import guest
    from nova_qat_migration_lab import hosts
    _logging(args.verbose)
    if args.action == 'down':
        if hosts.in_use(args.prefix) and not args.force:
            print('lab %s is in use by a live process; not removed (use '
                  '--force)' % args.prefix, file=sys.stderr)
            return 1
        for line in hosts.cleanup(args.prefix) or ['nothing to clean']:
            print(line)
        return 0
    if args.action == 'build':
        print(json.dumps(guest.build(force=True)))
        return 0
    if args.action == 'check':
        why = _check_ready()
        print(why or 'ok')
        return 1 if why else 0
    return 2


# -- cloud -------------------------------------------------------------------

def cmd_cloud(args: argparse.Namespace) -> int:
    """``cloud up|status|down``: the operator's cloud (:mod:`.services`)."""
    from nova_qat_migration_lab import services
    _logging(args.verbose)
    if args.action == 'down':
        cloud = (services.ServiceCloud.attach() if services.ServiceCloud
                 .running() else services.ServiceCloud())
        for line in cloud.down():
            print(line)
        left = services.stray_processes()
        for line in left:
            print('still running: %s' % line, file=sys.stderr)
        return 1 if left else 0
    if args.action == 'measure':
        print(json.dumps(services.footprint(args.seconds), indent=1))
        return 0
    if args.action == 'status':
        if not services.ServiceCloud.running():
            print('cloud: down')
            return 3
        bad = 0
        for name, state in services.ServiceCloud.attach().status().items():
            print('%-26s %s' % (name, state))
            bad += state != 'up'
        return 1 if bad else 0
    why = _check_ready(args.qemu)
    if why:
        print(why, file=sys.stderr)
        return 1
    _exit_on_signals()
    from nova_qat_migration_lab import guest
    cloud = services.ServiceCloud(
        link_mbit=args.link_mbit, qemu=args.qemu,
        qat_options=dict(_lab_options(), link_gbps=args.link_mbit / 1000.0),
        qemu_visible={'%s-%s' % (services.PREFIX, h): False
                      for h in _csv(args.hide_qemu or '')})
    try:
        cloud.up()
        cloud.upload_guest_images(guest.build())
    except services.CloudError as exc:
        print('cloud up failed: %s' % exc, file=sys.stderr)
        return 1
    print('cloud up in %.0f s: Keystone %s, clouds.yaml %s (OS_CLOUD=nqm-'
          'admin or nqm-%s), logs in %s' % (
              cloud.up_seconds, cloud.url('keystone', '/v3'),
              cloud.clouds_yaml, services.MEMBER_USER, services.LOG_ROOT))
    return 0


# -- faults ------------------------------------------------------------------

def cmd_faults(args: argparse.Namespace) -> int:
    _nova_env()
    from nova_qat_migration_lab import cloud
    from nova_qat_migration_lab.faults import context
    from nova_qat_migration_lab.faults import injectors
    from nova_qat_migration_lab.faults import matrix
    from nova_qat_migration_lab.faults import summary
    _logging(args.verbose)
    _exit_on_signals()
    names = _csv(args.faults) if args.faults else list(injectors.FAULTS)
    plans = _csv(args.plans) if args.plans else list(context.MATRIX_PLANS)
    if (_unknown('fault', names, list(injectors.FAULTS)) or
            _unknown('plan', plans, list(context.MATRIX_PLANS) + ['qatzip'])):
        return 2
    out_dir = args.out or repo.path(*FAULTS_OUT)
    jsonl = os.path.join(out_dir, 'results.jsonl')
    if not args.report_only:
        why = _check_ready(args.qemu)
        if why:
            print(why, file=sys.stderr)
            return 1
        from nova_qat_migration_lab import hosts
        # The fault matrix builds its own lab: the choice is this
        # process's default.
        hosts.default_qemu = args.qemu
        prefix = args.prefix or hosts.free_prefix('nqf')
        runs = []
        if not args.nova_only:
            runs.append((cloud.DRIVER, plans))
        if args.nova or args.nova_only:
            runs.append((context.DRIVER_NOVA, ['nova_default']))
        started = time.time()
        for i, (driver, driver_plans) in enumerate(runs):
            print('faults: %s x %s with %s -> %s' % (
                ','.join(names), ','.join(driver_plans), driver, jsonl))
            matrix.run_matrix(names, driver_plans, out_dir, driver=driver,
                              prefix=prefix, timeout_s=args.timeout,
                              append=args.append or i > 0,
                              qat_options=_lab_options())
        print('faults: done in %.1f min' % ((time.time() - started) / 60))
    rows = jsonlines.load(jsonl)
    path = summary.write_summary(rows, out_dir)
    print('wrote %s' % path)
    bad = [r for r in rows if not r.get('skipped') and not r.get('passed')]
    return 1 if bad else 0


def cmd_soak(args: argparse.Namespace) -> int:
    from nova_qat_migration_lab import soak
    if not _start(args):
        return 1
    return soak.main(args)


def cmd_drain_bench(args: argparse.Namespace) -> int:
    _nova_env()
    from nova_qat_migration_lab import drain_bench
    _logging(args.verbose)
    _exit_on_signals()
    return drain_bench.run(args)


def cmd_timeline_doc(args: argparse.Namespace) -> int:
    from nova_qat_migration_lab import timeline_doc
    if not _start(args, args.qemu):
        return 1
    return timeline_doc.run(args, _lab_options())


def add_parsers(subparsers: Any) -> None:
    """Register the lab's subcommands."""
    p = subparsers.add_parser(
        'bench', help='benchmark plans with real libvirt/QEMU migrations')
    p.add_argument('--quick', action='store_true',
                   help='small matrix for CI: %s x %s, 1 repeat'
                        % (','.join(sc.QUICK_SCENARIOS),
                           ','.join(sc.QUICK_PLANS)))
    p.add_argument('--scenario-set', choices=sorted(sc.SCENARIO_SETS),
                   default='default',
                   help='default: the CPU-bound matrix (1 Gbit/s); '
                        'scale-model: four guests on a %d Mbit/s link '
                        'dirtying %.1f-%.1f of it, Nova\'s %d s/GiB '
                        'completion timeout, the oracle and the physical '
                        'floor in the summary (benchmarks/scale-model); '
                        'link-calibration: an idle guest over %s Mbit/s '
                        'with %s, wire rate against link rate '
                        '(benchmarks/link-calibration)'
                        % (sc.SCALE_MODEL_LINK_MBIT,
                           sc.SCALE_DIRTY_SHARE[0], sc.SCALE_DIRTY_SHARE[1],
                           sc.NOVA_TIMEOUT_S_PER_GIB,
                           ','.join(str(r) for r in
                                    sc.LINK_CALIBRATION_MBIT),
                           ' and '.join(sc.LINK_CALIBRATION_PLANS)))
    p.add_argument('--scale-model', dest='scenario_set',
                   action='store_const', const='scale-model',
                   help='same as --scenario-set scale-model')
    p.add_argument('--scale-link-mbit', type=int, default=0,
                   help='the scale model\'s link (default %d Mbit/s); its '
                        'guests\' dirty rates follow it'
                        % sc.SCALE_MODEL_LINK_MBIT)
    p.add_argument('--scenarios', help='comma-separated: %s'
                   % ','.join(sc.SCENARIOS))
    p.add_argument('--plans', help='comma-separated: %s'
                   % ','.join(sc.PLANS))
    p.add_argument('--repeats', type=int, default=0)
    p.add_argument('--repeat-from', type=int, default=0,
                   help='index of the first repeat (with --append: later '
                        'repeats, e.g. of only the best plans, get their '
                        'own guest seeds and plan order)')
    p.add_argument('--timeout', type=float,
                   default=runner_timeout(),
                   help='completion timeout per migration (s); a '
                        'scenario with its own (the scale model\'s: '
                        'Nova\'s 800 s per GiB) keeps it')
    p.add_argument('--out', help='output directory (default benchmarks/, '
                                 'lab-run/bench-quick with --quick, below '
                                 'the repository root)')
    p.add_argument('--append', action='store_true',
                   help='append to an existing results.jsonl')
    p.add_argument('--report-only', action='store_true',
                   help='rebuild summary and chart from results.jsonl')
    p.add_argument('--prefix', default=None,
                   help='in-process cloud: lab name (namespaces PREFIX-a, '
                        'PREFIX-b; default: the first free of nqm, nqm1, '
                        '...)')
    p.add_argument('--cloud', choices=('services', 'inprocess'),
                   default='services',
                   help="services: the operator's cloud (cloud up; one "
                        'already up is used and left up); inprocess: '
                        "Nova's functional-test stack in this process")
    _add_qemu_argument(p)
    p.add_argument('-v', '--verbose', action='store_true')
    p.set_defaults(func=cmd_bench)

    p = subparsers.add_parser(
        'demo', help="migrate one busy guest with Nova's default plan and "
                     'with the adaptive plan, and compare')
    p.add_argument('--scenario', default='small-writes',
                   choices=sorted(sc.SCENARIOS))
    p.add_argument('--timeout', type=float, default=runner_timeout())
    p.add_argument('--json', help='also write both runs as JSON lines')
    _add_qemu_argument(p)
    p.add_argument('-v', '--verbose', action='store_true')
    p.set_defaults(func=cmd_demo)

    p = subparsers.add_parser(
        'model', help='fit the convergence model to benchmark results, '
                      'report its accuracy on them, or judge it leave-one-'
                      'scenario-out (loso)')
    p.add_argument('action', choices=('calibrate', 'accuracy', 'loso'))
    p.add_argument('--results', help='benchmark results (default '
                                     'benchmarks/results.jsonl in the '
                                     'repository root)')
    p.add_argument('--samples', help='JSON: scenario -> page sample, for '
                   'records made before the sample was recorded')
    p.add_argument('--calibration',
                   help='calibrate: where to write; accuracy: what to use '
                        '(default benchmarks/calibration.json in the '
                        'repository root)')
    p.add_argument('--timeout', type=float, default=runner_timeout())
    p.add_argument('--out', help='accuracy, loso: markdown table file')
    p.set_defaults(func=cmd_model)

    p = subparsers.add_parser(
        'faults', help='inject faults into real migrations (fault x plan) '
                       'and check that nothing is lost')
    p.add_argument('--faults', help='comma-separated (default: all)')
    p.add_argument('--plans', help='comma-separated (default: all of the '
                                   'matrix; qatzip for the QAT fault)')
    p.add_argument('--nova', action='store_true',
                   help="also run every fault with plain Nova "
                        "(compute_driver = libvirt.LibvirtDriver)")
    p.add_argument('--nova-only', action='store_true',
                   help='only the plain Nova runs')
    p.add_argument('--timeout', type=float, default=60.0,
                   help='completion timeout per migration (s)')
    p.add_argument('--out', help='output directory (default '
                                 'benchmarks/faults in the repository '
                                 'root)')
    p.add_argument('--append', action='store_true',
                   help='append to an existing results.jsonl (the summary '
                        'keeps the last row of each cell)')
    p.add_argument('--report-only', action='store_true',
                   help='rebuild summary.md from results.jsonl')
    p.add_argument('--prefix', default=None,
                   help='lab name (default: the first free of nqf, nqf1...)')
    _add_qemu_argument(p)
    p.add_argument('-v', '--verbose', action='store_true')
    p.set_defaults(func=cmd_faults)

    p = subparsers.add_parser(
        'cloud', help="an operator's cloud: Keystone, Glance, Placement, "
                      "Nova's API (gunicorn), conductor, scheduler and one "
                      'nova-compute per lab host, each its own process, '
                      'over RabbitMQ and MariaDB')
    p.add_argument('action', choices=('up', 'status', 'measure', 'down'),
                   help='up: install what is missing and start everything '
                        '(databases are kept between runs); status: each '
                        "service's state; measure: the idle RSS and CPU of "
                        'the control plane and of the computes; down: stop '
                        'everything (no lab process or namespace is left)')
    p.add_argument('--seconds', type=float, default=60.0,
                   help='measure: how long to watch the CPU')
    p.add_argument('--link-mbit', type=int, default=1000)
    p.add_argument('--hide-qemu', metavar='a,b',
                   help='lab hosts (a, b) whose nova-compute cannot see '
                        'the QEMU binary (as with kolla\'s separate '
                        'nova_libvirt container)')
    _add_qemu_argument(p)
    p.add_argument('-v', '--verbose', action='store_true')
    p.set_defaults(func=cmd_cloud)

    p = subparsers.add_parser('lab', help='lab housekeeping')
    p.add_argument('action', choices=('down', 'build', 'check'),
                   help='down: remove a lab left by a crash; build: the '
                        'guest initramfs; check: prerequisites')
    p.add_argument('--prefix', default='nqm')
    p.add_argument('--force', action='store_true',
                   help='down: also when a live process holds the lab')
    p.add_argument('-v', '--verbose', action='store_true')
    p.set_defaults(func=cmd_lab)

    from nova_qat_migration_lab import soak
    p = subparsers.add_parser(
        'soak', help='many live migrations in a row on the operator\'s '
                     'cloud (a guest per policy, back and forth): outcomes, '
                     'leaked shares and -global entries, nova-compute RSS '
                     'and descriptors (benchmarks/soak)')
    soak.add_arguments(p)
    p.add_argument('-v', '--verbose', action='store_true')
    p.set_defaults(func=cmd_soak)

    from nova_qat_migration_lab import drain_bench
    p = subparsers.add_parser(
        'drain-bench', help='empty a lab host of four guests through Nova '
                            "(the drain command's scenario)")
    drain_bench.add_arguments(p)
    p.add_argument('-v', '--verbose', action='store_true')
    p.set_defaults(func=cmd_drain_bench)

    from nova_qat_migration_lab import timeline_doc
    p = subparsers.add_parser(
        'timeline-doc', help="migrate a busy guest on the operator's cloud "
                             'and write its timeline into the docs (%s and '
                             'the table as .txt)' % '/'.join(timeline_doc.OUT))
    timeline_doc.add_arguments(p)
    _add_qemu_argument(p)
    p.add_argument('-v', '--verbose', action='store_true')
    p.set_defaults(func=cmd_timeline_doc)


def cmd_model(args: argparse.Namespace) -> int:
    from nova_qat_migration.policy import predictive
    from nova_qat_migration_lab import accuracy
    results = args.results or repo.path(*RESULTS)
    calibration = args.calibration or repo.path(*CALIBRATION)
    try:
        with open(results) as f:
            records = [json.loads(line) for line in f if line.strip()]
        samples = accuracy.load_samples(args.samples)
    except (OSError, ValueError) as exc:
        print('cannot read results: %s' % exc, file=sys.stderr)
        return 2
    if args.action == 'loso':
        text = accuracy.loso_markdown(accuracy.leave_one_scenario_out(
            records, args.timeout, samples))
        if args.out:
            with open(args.out, 'w') as f:
                f.write(text)
        print(text, end='')
        return 0
    if args.action == 'calibrate':
        cal, stats = accuracy.calibrate(records, args.timeout, samples)
        with open(calibration, 'w') as f:
            f.write(accuracy.calibration_to_json(cal))
        print('calibration written to %s: %s' % (calibration,
                                                 json.dumps(stats)))
        return 0
    cal = predictive.load_calibration(
        os.path.abspath(calibration)
        if os.path.exists(calibration) else '')
    text = accuracy.table_markdown(
        accuracy.predictions(records, cal, samples), args.timeout)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(text)
    print(text.splitlines()[-1])
    return 0


def runner_timeout() -> float:
    return 60.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='nova-qat-migration-lab',
        description='Real libvirt/QEMU live migrations through an '
                    'in-process Nova: benchmark, demo, fault injection.')
    parser.add_argument('--repo-root', metavar='DIR',
                        help='the repository whose benchmarks/, lab-run/, '
                             'tests/fixtures/ and tools/ the lab uses '
                             '(default: the checkout this package is in; '
                             'give it when running an installed copy)')
    subparsers = parser.add_subparsers(dest='command', metavar='COMMAND')
    add_parsers(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``nova-qat-migration-lab``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, 'func', None):
        parser.print_help()
        return 2
    repo.set_root(args.repo_root)
    from nova_qat_migration.conf import CONF
    try:
        # The options' defaults, validated, as the operator's command
        # line reads them (the commands hosting Nova clear this again).
        CONF(args=[], project='nova', default_config_files=[],
             validate_default_values=True)
    except Exception as exc:
        if type(exc).__module__.startswith('oslo_config'):
            print('nova-qat-migration-lab: configuration error: %s' % exc,
                  file=sys.stderr)
            return 2
        raise
    try:
        return args.func(args)
    except repo.NoRepository as exc:
        print('nova-qat-migration-lab: %s' % exc, file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
