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
"""What must hold after every fault (:func:`check`).

The guest runs on exactly one host with its memory intact, Nova's server
and migration records agree, no stray ``-global`` is left in a
definition, the source QEMU's multifd parameters are back, no QAT lease,
migration session or budget share is held, the driver's report says what
Nova says, and post-copy ran only where permitted.
"""

from __future__ import annotations

import json
import time
from typing import Any, Optional

from nova_qat_migration import outcomes
from nova_qat_migration.virt.libvirt import passthrough
from nova_qat_migration_lab.faults import context
from nova_qat_migration_lab.faults.context import Check
from nova_qat_migration_lab.faults.context import FaultContext
from nova_qat_migration_lab.faults import injectors
from nova_qat_migration_lab import introspect
from nova_qat_migration_lab import measure


def check(ctx: FaultContext, res: Optional[measure.RunResult]) -> list:
    """Everything that must hold after a fault, whatever it was.

    * ``one_host``: the guest runs (not paused) on exactly one host and is
      defined nowhere else;
    * ``memory``: its memory check passes (the runner asks the dirtier on
      the host Nova says runs it);
    * ``nova_record``: Nova's server record says that host, ACTIVE, no task
      (and Nova did not put it in ERROR on the way);
    * ``migration_terminal``: Nova's migration record ended (completed,
      error, failed, cancelled);
    * ``clean_definitions``: no ``-global migration.multifd-*`` the current
      plan did not set, in any live or persistent definition;
    * ``source_params``: the QEMU the guest runs in has the multifd method
      the next migration expects (before's values if it stayed, the plan's
      if it moved); other parameter changes are listed (``params_other``);
    * ``leases_released``: no QAT lease held, no migration session left;
    * ``report``: the driver's ``qat_migration report:`` record exists and
      its outcome matches Nova's migration status; ``history`` counts it;
    * ``post_copy_permitted``: post-copy only where the operator allowed it.
    """
    checks: list = []
    # libvirt and Nova clean the other end up asynchronously (a cancelled
    # incoming domain, Nova's rollback at the destination): give them a
    # moment before calling a leftover a leftover.
    deadline = time.monotonic() + context.SETTLE_S
    while True:
        where = _where(ctx)
        running = [h for h, info in where.items() if info.get('running')]
        defined = [h for h, info in where.items() if info.get('defined')]
        if (len(running) == 1 and len(defined) <= 1) or \
                time.monotonic() > deadline:
            break
        time.sleep(1)
    checks.append(Check(
        'one_host', len(running) == 1 and len(defined) <= 1,
        json.dumps(where, sort_keys=True)))
    here = running[0] if len(running) == 1 else None

    if res is None:
        checks.append(Check('memory', False, 'no result: %s' % ctx.error))
    else:
        checks.append(Check('memory', res.integrity == 'ok' and
                            (not here or res.verified_on == here),
                            '%s on %s: %s' % (res.integrity, res.verified_on,
                                              res.verdict or res.error)))

    server = ctx.cloud.api.get_server(ctx.server_id)
    nova_host = server['OS-EXT-SRV-ATTR:host']
    went_error = bool(res and any('left the server in ERROR' in n
                                  for n in res.notes))
    checks.append(Check(
        'nova_record',
        nova_host == here and server['status'] == 'ACTIVE' and
        not server.get('OS-EXT-STS:task_state') and not went_error,
        'host %s, status %s, task %s%s' % (
            nova_host, server['status'], server.get('OS-EXT-STS:task_state'),
            '; Nova had put it in ERROR (reset by the lab)'
            if went_error else '')))

    migration = _last_migration(ctx)
    status = migration.get('status') if migration else None
    checks.append(Check('migration_terminal', status in context.TERMINAL,
                        'migration %s: %s' % (
                            migration.get('id') if migration else '-',
                            status)))

    record = _report(ctx, res)
    expected = expected_globals(ctx.globals_before, record,
                                moved=here is not None and
                                here != ctx.source.name)
    checks.append(_check_definitions(ctx, where, expected))
    checks.extend(_check_params(ctx, here, expected))

    if ctx.our_driver:
        checks.append(_check_released(ctx))
        ok, detail = judge_report(status, record)
        checks.append(Check('report', ok, detail))
        after = context._history(ctx.cloud, ctx.server_id) or {}
        before = ctx.history_before or {}
        checks.append(Check(
            'history',
            after.get('migrations', 0) == before.get('migrations', 0) + 1
            and after.get('converged') == (status == 'completed'),
            'migrations %s -> %s, converged %s'
            % (before.get('migrations'), after.get('migrations'),
               after.get('converged'))))
    ok, detail = post_copy_permitted(record, res, ctx.options)
    checks.append(Check('post_copy_permitted', ok, detail))
    return checks


def _where(ctx: FaultContext) -> dict:
    """{host: {defined, active, running, state}} from fresh connections."""
    out = {}
    for host in ctx.lab.hosts:
        info: dict = {'defined': False, 'running': False}
        try:
            conn = ctx.lab.connect(host)
        except Exception as exc:  # a daemon down
            out[host.name] = {'error': str(exc)}
            continue
        try:
            dom = conn.lookupByUUIDString(ctx.server_id)
        except Exception:  # not there
            dom = None
        if dom is not None:
            state = tuple(dom.state())
            info.update(defined=True, active=bool(dom.isActive()),
                        persistent=bool(dom.isPersistent()),
                        state=list(state), running=state[0] == 1)
        conn.close()
        out[host.name] = info
    return out


def _last_migration(ctx: FaultContext) -> Optional[dict]:
    new = [m for m in ctx.cloud.migrations(ctx.server_id)
           if m['id'] not in ctx.migrations_before]
    return max(new, key=lambda m: m['id']) if new else None


def _report(ctx: FaultContext, res: Optional[measure.RunResult],
            ) -> Optional[dict]:
    if res is not None and res.report:
        return res.report
    for rec in ctx.cloud.reports.records[ctx.n_reports:]:
        if rec.get('instance') == ctx.server_id:
            return rec
    return None


def expected_globals(before: dict, record: Optional[dict],
                     moved: bool) -> dict:
    """The ``-global`` multifd pairs the running definition may carry.

    A guest that stayed keeps what its QEMU was started with; one that
    moved was started by this migration: the plan's passthrough pairs
    (the report's ``passthrough`` field), or none.
    """
    if not moved:
        return dict(before)
    done = (record or {}).get('passthrough') or {}
    return dict(done.get('globals') or {})


def _check_definitions(ctx: FaultContext, where: dict,
                       expected: dict) -> Check:
    import libvirt
    bad = []
    for host in ctx.lab.hosts:
        if not where.get(host.name, {}).get('defined'):
            continue
        conn = ctx.lab.connect(host)
        try:
            dom = conn.lookupByUUIDString(ctx.server_id)
            if dom.isActive():
                live = passthrough.globals_of(dom.XMLDesc(0))
                if live != expected:
                    bad.append('%s live %s (expected %s)'
                               % (host.name, live, expected))
            if dom.isPersistent():
                inactive = passthrough.globals_of(
                    dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
                if inactive:
                    bad.append('%s persistent %s' % (host.name, inactive))
        finally:
            conn.close()
    return Check('clean_definitions', not bad,
                 '; '.join(bad) or 'expected live %s, persistent {}'
                 % (expected,))


def param_diff(before: dict, after: dict) -> dict:
    """{key: [before, after]} for every parameter that changed."""
    keys = (set(before) | set(after)) - set(context._VOLATILE_PARAMS)
    return {k: [before.get(k), after.get(k)] for k in sorted(keys)
            if before.get(k) != after.get(k)}


def _check_params(ctx: FaultContext, here: Optional[str],
                  expected: dict) -> list:
    if here is None:
        return [Check('source_params', False, 'the guest runs nowhere')]
    host = ctx.lab.host(here)
    conn = ctx.lab.connect(host)
    try:
        params = context._source_params(conn.lookupByUUIDString(ctx.server_id))
    finally:
        conn.close()
    same_qemu = (here == ctx.source.name and
                 host.qemu_pid(ctx.domain_name) == ctx.source_pid)
    if same_qemu:
        diff = param_diff(ctx.params_before, params)
        strict = {k: v for k, v in diff.items() if k in context.STRICT_PARAMS}
        return [Check('source_params', not strict,
                      'source QEMU: %s' % (strict or 'multifd as before')),
                Check('params_other', None,
                      json.dumps({k: v for k, v in diff.items()
                                  if k not in context.STRICT_PARAMS}))]
    want = expected.get('multifd-compression', 'none')
    got = params.get('multifd-compression')
    return [Check('source_params', got == want,
                  'new QEMU on %s: multifd-compression %s (expected %s)'
                  % (here, got, want))]


def _check_released(ctx: FaultContext, timeout: float = 15) -> Check:
    deadline = time.monotonic() + timeout
    while True:
        leases = injectors._leases_in_use(ctx.cloud)
        sessions = sum(len(introspect.view(c.driver).get('sessions') or {})
                       for c in ctx.cloud.computes.values())
        budgets = sum(_budget_held(c.driver)
                      for c in ctx.cloud.computes.values())
        done = leases == 0 and sessions == 0 and budgets == 0
        if done or time.monotonic() > deadline:
            return Check('leases_released', done,
                         'QAT leases held %d, migration sessions %d, '
                         'budget shares %d' % (leases, sessions, budgets))
        time.sleep(0.5)


def _budget_held(driver: Any) -> int:
    """Migrations the driver's host budget still counts (0 without one).
    """
    budget = introspect.view(driver).get('budget')
    return len(budget.shares()) if budget is not None else 0


def judge_report(status: Optional[str], record: Optional[dict],
                 ) -> tuple[bool, str]:
    """Whether the driver's record says what Nova's migration record says.
    """
    if record is None:
        return False, 'no qat_migration report record'
    outcome = record.get('outcome')
    detail = 'report outcome %s, migration %s; actions %s; notes %s' % (
        outcome, status, [(a.get('kind'), a.get('reason'))
                          for a in record.get('actions') or ()],
        record.get('notes'))
    if status == 'completed':
        return outcome == outcomes.OUTCOME_COMPLETED, detail
    if status in ('error', 'failed', 'cancelled'):
        return outcome in (outcomes.OUTCOME_FAILED, outcomes.OUTCOME_CANCELLED,
                           outcomes.OUTCOME_ABORTED), detail
    return False, detail


def post_copy_permitted(record: Optional[dict],
                        res: Optional[measure.RunResult],
                        options: dict) -> tuple[bool, str]:
    """Post-copy (flag or switch) only where ``permit_post_copy`` is on."""
    flags = list((record or {}).get('flags') or (res.flags if res else ()))
    actions = [a.get('kind') for a in (record or {}).get('actions') or ()]
    used = 'POSTCOPY' in flags or 'post_copy' in actions
    permitted = bool(options.get('permit_post_copy'))
    return (permitted or not used,
            'POSTCOPY flag %s, switch %s, permit_post_copy %s'
            % ('POSTCOPY' in flags, 'post_copy' in actions, permitted))
