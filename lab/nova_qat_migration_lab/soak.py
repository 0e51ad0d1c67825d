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
"""The driver under load: many live migrations in a row, back and forth.

``nova-qat-migration-lab soak`` boots a few guests on the operator's cloud
(:mod:`.services`), one per policy, chosen per instance by the flavor's
``qat_migration:policy`` (and ``method``) as an operator would, so the
computes run one configuration the whole time (no restart resets what is
measured), and moves them between the two hosts round after round. After
each migration it records, from the outside:

* the outcome (Nova's migration record, the driver's report) and the
  guest's memory check at the destination;
* what the next plan found held on the source (the report's
  ``facts.in_flight_*``: migrations, link share, cores, XBZRLE memory,
  QAT leases): with one migration at a time, anything held is a leak;
* the ``-global`` entries of the destination's live and persistent
  definitions (persistent: none ever; live: only after a passthrough
  hop);
* each nova-compute's RSS, open file descriptors and threads (``/proc``).

:func:`summarize` judges the run against the issue's bar: no failed or lost
guest, no leaked lease, share or ``-global``, nova-compute RSS growth under
10% and no growth in descriptors from the 10th migration to the last.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Optional

from nova_qat_migration_lab import jsonlines
from nova_qat_migration_lab import measure
from nova_qat_migration_lab import qemu_build
from nova_qat_migration_lab import runner
from nova_qat_migration_lab import scenarios as sc
from nova_qat_migration_lab import services

#: A quiet-ish guest: several of them share the machine's two cores.
SCENARIO = sc.Scenario('soak', memory_mb=384, touch_mb=96, hot_mb=32,
                       rate=1500, pattern='text', link_mbit=1000)
#: guest name -> flavor extra specs (the operator's per-instance choice)
GUESTS = {
    'adaptive': {'qat_migration:policy': 'adaptive'},
    'static-zstd': {'qat_migration:policy': 'static',
                    'qat_migration:method': 'zstd'},
    'nova': {'qat_migration:policy': 'nova_default'},
}
QATZIP_GUEST = ('qatzip', {'qat_migration:policy': 'static',
                           'qat_migration:method': 'qatzip'})
#: One configuration for the whole run: the static policy's channels and
#: the passthrough the qatzip hop needs.
OPTIONS = {'qat_migration_static.parallel_connections': 2,
           'qemu_monitor_passthrough': True, 'policy': 'adaptive'}
HELD = ('in_flight_migrations', 'cores_held', 'xbzrle_mb_held',
        'qat_leases_held')


def _proc(pid: Optional[int]) -> dict:
    if not pid:
        return {}
    out = {'rss_kib': services._rss_kib(str(pid))}
    try:
        out['fds'] = len(os.listdir('/proc/%d/fd' % pid))
    except OSError:
        out['fds'] = None
    # Nova's and oslo.messaging's thread pools start a worker per task
    # until they are full and keep it: each thread adds a stack and its
    # allocator cache to the RSS, so growth is read against this count.
    try:
        out['threads'] = len(os.listdir('/proc/%d/task' % pid))
    except OSError:
        out['threads'] = None
    return out


def _globals(cloud: services.ServiceCloud, server_id: str) -> dict:
    import libvirt
    from nova_qat_migration.virt.libvirt import passthrough
    dom = cloud.domain(server_id)
    return {'live': passthrough.globals_of(dom.XMLDesc(0)),
            'persistent': passthrough.globals_of(
                dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))}


#: Nova's own libvirt driver, for the baseline (``--driver``).
NOVA_DRIVER = 'libvirt.LibvirtDriver'


def run(migrations: int, out_path: str, echo: Any = print,
        driver: Optional[str] = None) -> list:
    """Run the soak on the cloud that is up (or one started here).

    :param driver: both computes' ``compute_driver`` for this run
        (default: the cloud's, this project's driver). With Nova's own
        driver (:data:`NOVA_DRIVER`), the same guests and migrations
        measure what nova-compute's memory does without this project:
        the flavors' ``qat_migration:`` specs are then ignored, no guest
        takes the qatzip hop, and nothing reports a plan.
    """
    nlab = runner.NovaLab(link_mbit=SCENARIO.link_mbit, cloud='services',
                          qat_options=dict(runner.LAB_QAT_OPTIONS))
    nlab.__enter__()
    rows: list = []
    sessions: dict = {}
    tree = None
    cloud = nlab.cloud
    saved_extra = json.loads(json.dumps(cloud.compute_extra))
    try:
        guests = dict(GUESTS)
        if driver:
            for host in cloud.lab.hosts:
                cloud.compute_extra.setdefault(host.name, {}).setdefault(
                    'DEFAULT', {})['compute_driver'] = driver
            cloud.apply()
        if cloud.lab.qemu == qemu_build.QATZIP and not driver:
            # The first host lends QAT (the sysfs fixture; QATzip runs in
            # software: no QAT hardware here).
            from nova_qat_migration_lab import repo
            tree = repo.load_fixture('qat_sysfs').QATSysfs()
            tree.setUp()
            tree.add_pf('0000:6b:00.0', '4xxx', numvfs=4, services='dc')
            cloud.compute_extra.setdefault(cloud.lab.hosts[0].name, {})[
                'qat_migration'] = {
                'sysfs_root': tree.sysfs, 'debugfs_root': tree.debugfs,
                'qat_endpoints_for_migration': 1,
                'qatzip_software_allowed': True}
            guests[QATZIP_GUEST[0]] = QATZIP_GUEST[1]
        spec = sc.PlanSpec('soak', policy='adaptive', options=tuple(
            sorted((k, v) for k, v in OPTIONS.items() if k != 'policy')))
        for name, extra_specs in guests.items():
            session = runner.GuestSession(nlab, SCENARIO, name='soak-' + name,
                                          extra_specs=extra_specs)
            if driver == NOVA_DRIVER:
                session.report_wait_s = 0
            session.boot()
            sessions[name] = session
        echo('soak: %d guests (%s) on %s; %d migrations' % (
            len(sessions), ', '.join(sessions), cloud.api_url, migrations))
        with open(out_path, 'w') as out:
            n = 0
            while n < migrations:
                for name, session in sessions.items():
                    if n >= migrations:
                        break
                    n += 1
                    row = _one(cloud, session, name, spec, n)
                    rows.append(row)
                    jsonlines.write(out, row)
                    echo('soak %3d %-12s %s -> %s %s %.1f s verify=%s '
                         'held=%s rss=%s' % (
                             n, name, row['source'], row['dest'],
                             row['outcome'], row['api_s'] or 0,
                             row['integrity'], row['held'],
                             [c.get('rss_kib') for c in
                              row['computes'].values()]))
    finally:
        for session in sessions.values():
            try:
                session.destroy()
            except Exception:  # tear-down
                pass
        if tree is not None or driver:
            cloud.compute_extra = saved_extra
            cloud.apply()
        if tree is not None:
            tree.cleanUp()
        nlab.__exit__()
    return rows


def _one(cloud: services.ServiceCloud, session: runner.GuestSession,
         name: str, spec: sc.PlanSpec, n: int) -> dict:
    res = session.migrate(spec, timeout_s=120)
    facts = res.report.get('facts') or {}
    row = {
        'n': n, 'guest': name, 'source': res.source, 'dest': res.dest,
        'outcome': res.outcome, 'migration_status': res.migration_status,
        'report_outcome': res.report.get('outcome'),
        'plan': res.effective_plan, 'backend': res.backend,
        'api_s': res.api_s, 'integrity': res.integrity,
        'verdict': res.verdict,
        'held': {k: facts.get(k) for k in HELD if k in facts},
        'link_share': facts.get('link_share'),
        'computes': {h.name: _proc(cloud.compute_pid(h.name))
                     for h in cloud.lab.hosts},
    }
    try:
        row['globals'] = _globals(cloud, session.server_id)
    except Exception as exc:  # recorded
        row['globals'] = {'error': repr(exc)}
    return row


def summarize(rows: list) -> dict:
    """The run against the issue's bar."""
    failed = [r['n'] for r in rows
              if r['outcome'] != measure.OUTCOME_COMPLETED]
    lost = [r['n'] for r in rows if r['integrity'] != 'ok']
    leaked = [r['n'] for r in rows
              if any(v for v in (r.get('held') or {}).values())
              or (r.get('link_share') not in (None, 1, 1.0))]
    persistent = [r['n'] for r in rows
                  if (r.get('globals') or {}).get('persistent')]
    stray_live = [r['n'] for r in rows
                  if (r.get('globals') or {}).get('live') and
                  r.get('backend') != 'qemu-passthrough']
    out = {'migrations': len(rows), 'failed': failed, 'lost': lost,
           'leaked_shares': leaked, 'persistent_globals': persistent,
           'stray_live_globals': stray_live, 'computes': {}}
    start = min(10, len(rows)) - 1
    for host in (rows[0]['computes'] if rows else {}):
        first, last = rows[start]['computes'][host], rows[-1]['computes'][
            host]
        growth = ((last['rss_kib'] - first['rss_kib']) / first['rss_kib']
                  if first.get('rss_kib') else None)
        out['computes'][host] = {
            'rss_kib_at_10': first.get('rss_kib'),
            'rss_kib_last': last.get('rss_kib'),
            'rss_growth': round(growth, 4) if growth is not None else None,
            'fds_at_10': first.get('fds'), 'fds_last': last.get('fds'),
            'threads_at_10': first.get('threads'),
            'threads_last': last.get('threads'),
            'fds_max': max(r['computes'][host].get('fds') or 0
                           for r in rows[start:])}
    out['passed'] = (not failed and not lost and not leaked and
                     not persistent and not stray_live and all(
                         c['rss_growth'] is not None and
                         c['rss_growth'] < 0.10 and
                         (c['fds_last'] or 0) <= (c['fds_at_10'] or 0)
                         for c in out['computes'].values()))
    return out


def add_arguments(parser: Any) -> None:
    parser.add_argument('--migrations', type=int, default=52,
                        help='live migrations to run back and forth '
                             '(default 52; the bar is measured from the '
                             '10th to the last)')
    parser.add_argument('--out', help='output directory (default '
                                      'benchmarks/soak below the '
                                      'repository root)')
    parser.add_argument('--driver', help='both computes\' compute_driver '
                        'for this run (default: the cloud\'s); %s is '
                        'Nova\'s own driver, the baseline of nova-compute\'s '
                        'memory' % NOVA_DRIVER)


def main(args: Any) -> int:
    from nova_qat_migration_lab import repo
    out_dir = args.out or repo.path('benchmarks', 'soak')
    os.makedirs(out_dir, exist_ok=True)
    jsonl = os.path.join(out_dir, 'results.jsonl')
    started = time.time()
    rows = run(args.migrations, jsonl, driver=args.driver)
    summary = summarize(rows)
    summary['driver'] = args.driver or services.DRIVER
    summary['minutes'] = round((time.time() - started) / 60, 1)
    with open(os.path.join(out_dir, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary, indent=1))
    return 0 if summary['passed'] else 1
