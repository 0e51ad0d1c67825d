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
"""One fault on one migration (:func:`run_fault`), and the matrix.

:func:`run_matrix` runs fault x plan cells, each on a freshly booted
guest, and appends one JSON row per cell to ``results.jsonl``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from typing import Callable, Iterator, Optional

from oslo_log import log as logging

from nova_qat_migration_lab import cloud as cloud_mod
from nova_qat_migration_lab.faults import checks
from nova_qat_migration_lab.faults import context
from nova_qat_migration_lab.faults.context import Check
from nova_qat_migration_lab.faults.context import FaultContext
from nova_qat_migration_lab.faults import injectors
from nova_qat_migration_lab import introspect
from nova_qat_migration_lab import jsonlines
from nova_qat_migration_lab import measure
from nova_qat_migration_lab import runner
from nova_qat_migration_lab import scenarios as sc

LOG = logging.getLogger(__name__)


@contextlib.contextmanager
def plan_setup(nlab: runner.NovaLab, spec: sc.PlanSpec) -> Iterator[None]:
    """What a plan needs from the lab's computes for the run.

    ``passthrough-zstd``: libvirt declared 9.3 (it cannot send zstd
    itself), so that zstd goes through the QEMU monitor passthrough, as
    qatzip would (Debian's QEMU has no qatzip).
    """
    with contextlib.ExitStack() as stack:
        if spec.name == context.PASSTHROUGH_ZSTD.name:
            stack.enter_context(introspect.pretend(
                nlab.cloud.computes, libvirt_version=(9, 3, 0)))
        yield


def run_fault(nlab: runner.NovaLab, session: runner.GuestSession,
              fault: injectors.Fault, spec: sc.PlanSpec,
              timeout_s: float = context.TIMEOUT_S) -> dict:
    """Migrate ``session``'s guest with ``spec`` while ``fault`` happens;
    check everything after. Returns the row (``passed``: every check).
    """
    options = dict(spec.options)
    options.update(fault.options)
    options['policy'] = spec.policy
    started = time.time()
    with plan_setup(nlab, spec):
        ctx = FaultContext(nlab, session, spec, options)
        res = None
        try:
            fault.prepare(ctx)
            run_spec = dataclasses.replace(spec, options=tuple(sorted(
                (k, v) for k, v in options.items() if k != 'policy')))

            def during(elapsed: float) -> None:
                if (elapsed > context.GIVE_UP_S and
                        not ctx.state.get('gave_up')):
                    # Once: the runner samples once more after the wait.
                    ctx.state['gave_up'] = True
                    ctx.event('gave up waiting for the migration record')
                    raise cloud_mod.CloudError(
                        'gave up: migration still open after %.0f s'
                        % context.GIVE_UP_S)
                if ctx.state.get('fault_error'):
                    return
                try:
                    fault.inject(ctx, elapsed)
                except Exception as exc:  # recorded
                    # Not a fault that happened: the row says fired False.
                    LOG.exception('fault %s failed', fault.name)
                    ctx.state['fault_error'] = str(exc)
                    ctx.event('fault action failed: %s' % exc)

            res = session.migrate(run_spec, timeout_s=timeout_s,
                                  during=during)
        except Exception as exc:  # the checks say what
            LOG.exception('fault run %s/%s', fault.name, spec.name)
            ctx.error = '%s: %s' % (type(exc).__name__, exc)
            ctx.event('run raised %s' % ctx.error)
        finally:
            try:
                fault.restore(ctx)
            except Exception as exc:
                LOG.exception('restore of %s failed', fault.name)
                ctx.event('restore failed: %s' % exc)
            ctx.close()
        if res is None:
            try:
                session.reattach()
            except Exception:  # the guest may be gone
                pass
        try:
            found = checks.check(ctx, res)
        except Exception as exc:  # e.g. a domain vanished
            LOG.exception('checks after %s/%s', fault.name, spec.name)
            found = [Check('checks', False, 'the checks raised %s: %s'
                            % (type(exc).__name__, exc))]
        try:
            found += fault.checks(ctx)
        except Exception as exc:  # a check that broke
            found.append(Check('%s_checks' % fault.name, False, str(exc)))
    return make_row(fault, spec, nlab.driver, ctx, res, found, started)


def make_row(fault: injectors.Fault, spec: sc.PlanSpec, driver: str,
             ctx: Optional[FaultContext], res: Optional[measure.RunResult],
             found: list, started: float, skipped: str = '') -> dict:
    run = res.to_dict() if res is not None else {}
    record = run.pop('report', None) or {}
    judged = [c for c in found if c.ok is not None]
    return {
        'fault': fault.name, 'plan': spec.name,
        'driver': 'nova' if driver == context.DRIVER_NOVA else 'qat',
        'skipped': skipped,
        'passed': (not skipped and bool(judged) and
                   all(c.ok for c in judged)),
        'fired': bool(ctx and 'fired_at' in ctx.state),
        'events': ctx.events if ctx else [],
        'error': ctx.error if ctx else '',
        'fault_error': ctx.state.get('fault_error', '') if ctx else '',
        'checks': [dataclasses.asdict(c) for c in found],
        'outcome': run.get('outcome'),
        'migration_status': run.get('migration_status'),
        'effective_plan': run.get('effective_plan'),
        'report': {k: record.get(k) for k in (
            'outcome', 'plan', 'backend', 'flags', 'actions', 'notes',
            'total_s', 'monitor')} if record else {},
        'qat': ctx.state.get('qat_after') if ctx else None,
        # what this plan knew of the guest's earlier migrations
        'history_facts': {k: (run.get('facts') or {}).get(k) for k in (
            'history_migrations', 'history_method', 'history_converged')},
        'run': {k: v for k, v in run.items() if k not in (
            'facts', 'prediction', 'reasons', 'params', 'tracker',
            'compression', 'actions', 'notes', 'flags')},
        'started_at': started,
        'duration_s': round(time.time() - started, 1),
    }


def force_cleanup(nlab: runner.NovaLab, server_id: str) -> None:
    """Delete the server through Nova, then whatever libvirt still holds
    of it on either host (a guest a fault left half-migrated).
    """
    try:
        nlab.cloud.delete(server_id)
    except Exception as exc:
        LOG.warning('delete %s: %s', server_id, exc)
    for host in nlab.lab.hosts:
        try:
            conn = nlab.lab.connect(host)
            dom = conn.lookupByUUIDString(server_id)
        except Exception:  # gone: good
            continue
        try:
            if dom.isActive():
                dom.destroy()
            if dom.isPersistent():
                dom.undefine()
        except Exception as exc:
            LOG.warning('cleanup of %s on %s: %s', server_id, host.name, exc)
        finally:
            conn.close()


def run_matrix(faults: list, plans: list, out_dir: str,
               driver: str = cloud_mod.DRIVER, prefix: Optional[str] = None,
               timeout_s: float = context.TIMEOUT_S, append: bool = True,
               qat_options: Optional[dict] = None,
               say: Callable[[str], None] = print) -> list:
    """Every fault x plan cell, each on a freshly booted guest, appended
    to ``out_dir/results.jsonl`` as it finishes.
    """
    os.makedirs(out_dir, exist_ok=True)
    jsonl = os.path.join(out_dir, 'results.jsonl')
    if not append and os.path.exists(jsonl):
        os.unlink(jsonl)
    rows = []
    options = dict(qat_options or {})
    with runner.NovaLab(prefix, link_mbit=context.FAULT_SCENARIO.link_mbit,
                        qat_options=options, driver=driver,
                        log_path=os.path.abspath(os.path.join(
                            out_dir, 'nova-%s.log' % (
                                'nova' if driver == context.DRIVER_NOVA
                                else 'qat')))) as nlab:
        for fault_name in faults:
            fault = injectors.FAULTS[fault_name]
            for plan_name in plans:
                spec = context.QATZIP if plan_name == 'qatzip' else \
                    context.MATRIX_PLANS[plan_name]
                why = fault.skip(spec, driver)
                if why:
                    row = make_row(fault, spec, driver, None, None, [],
                                   time.time(), skipped=why)
                else:
                    row = _run_cell(nlab, fault, spec, timeout_s)
                rows.append(row)
                with open(jsonl, 'a') as f:
                    jsonlines.write(f, row, sort_keys=True)
                say('%-26s %-17s %-5s %s' % (
                    fault.name, spec.name, row['driver'],
                    'skipped: %s' % row['skipped'] if row['skipped'] else
                    ('PASS' if row['passed'] else 'FAIL: ' + ', '.join(
                        c['name'] for c in row['checks']
                        if c['ok'] is False))))
    return rows


def _run_cell(nlab: runner.NovaLab, fault: injectors.Fault, spec: sc.PlanSpec,
              timeout_s: float) -> dict:
    session = runner.GuestSession(
        nlab, context.FAULT_SCENARIO,
        name='fault-%s-%s' % (fault.name, spec.name))
    try:
        session.boot()
    except Exception as exc:  # recorded as the cell's
        row = make_row(fault, spec, nlab.driver, None, None,
                       [Check('boot', False, str(exc))], time.time())
        if session.server_id:
            force_cleanup(nlab, session.server_id)
        return row
    try:
        return run_fault(nlab, session, fault, spec, timeout_s)
    except Exception as exc:  # the next cell still runs
        LOG.exception('cell %s/%s', fault.name, spec.name)
        return make_row(fault, spec, nlab.driver, None, None,
                        [Check('run', False, '%s: %s' % (
                            type(exc).__name__, exc))], time.time())
    finally:
        if session.console is not None:
            session.console.close()
            session.console = None
        force_cleanup(nlab, session.server_id)
