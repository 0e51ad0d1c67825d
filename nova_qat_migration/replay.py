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
"""A logged decision, made again: ``nova-qat-migration plan --from-report``.

Every planned migration logs one ``qat_migration report: {json}`` line
(:mod:`nova_qat_migration.virt.libvirt.report`) with the facts the plan
was made from, as the report summarises them, and the plan the policy
asked for.
:func:`replay` rebuilds the facts from that summary and asks the same
policy again, with the options of the ``nova.conf`` it is given (the
report does not carry them), so any decision in a log can be reproduced,
and a change of the planner or of the options shows as a difference.

The summary leaves out what the report does not record (the history's
rates, the QAT devices' ratio, Nova's ``[libvirt]`` settings): those take
their defaults.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping, Optional

from nova_qat_migration import datamodel
from nova_qat_migration import exception
from nova_qat_migration import outcomes
from nova_qat_migration.policy import loader


#: Defined in :mod:`nova_qat_migration.exception`; importable from here.
NotAReport = exception.NotAReport


def facts_from_summary(summary: Mapping[str, Any]) -> datamodel.Facts:
    """Facts from a report's summary of them (``record['facts']``).

    An empty summary (Nova's own plan measures nothing) gives the
    default facts.
    """
    s = summary
    if not s:
        return datamodel.Facts()
    instance = datamodel.InstanceFacts(
        memory_mb=s['memory_mb'], dirty_rate_mbps=s.get('dirty_rate_mbps'),
        zero_fraction=s.get('zero_fraction'),
        compress_ratio=s.get('compress_ratio'),
        xbzrle_friendly=s.get('xbzrle_friendly'),
        hints=_hints(s.get('hints'), s.get('operator_hints')))
    dest_methods = frozenset(s.get('destination_methods') or ())
    return datamodel.Facts(
        instance=instance,
        host=datamodel.HostLoad(cpus=s.get('cpus', 2),
                                cpu_idle_pct=s['cpu_idle_pct'],
                                mem_free_mb=s.get('mem_free_mb', 0)),
        qat=datamodel.QATState(endpoints=s.get('qat_endpoints') or 0,
                               hardware=bool(s.get('qat_hardware')),
                               free_leases=s.get('qat_endpoints') or 0),
        hypervisor=datamodel.HypervisorCaps(
            multifd_methods=frozenset(s.get('source_multifd_methods') or
                                      ())),
        destination=datamodel.DestinationCaps(
            known=bool(dest_methods), methods=dest_methods,
            multifd=bool(dest_methods), qat='qatzip' in dest_methods),
        history=datamodel.History(
            migrations=s.get('history_migrations', 0),
            converged=s.get('history_converged'),
            method=s.get('history_method')),
        link_mbps=s['link_mbps'],
        passthrough_allowed=bool(s.get('passthrough_allowed')),
        block_migration=bool(s.get('block_migration')),
        disk_bytes=s.get('disk_bytes'),
        disk_source=s.get('disk_source'),
        in_flight=datamodel.InFlight(
            migrations=s.get('in_flight_migrations', 0),
            link_share=s.get('link_share', 1.0),
            cores_held=s.get('cores_held', 0),
            xbzrle_mb_held=s.get('xbzrle_mb_held', 0),
            qat_leases_held=s.get('qat_leases_held', 0)))


def _hints(values: Optional[Mapping[str, Any]],
           operator: Optional[Mapping[str, Any]]) -> datamodel.Hints:
    """Hints as the report recorded them (already validated then)."""
    names = {f.name for f in dataclasses.fields(datamodel.Hints)} - {
        'operator'}

    def known(data: Optional[Mapping[str, Any]]) -> dict:
        return {k: v for k, v in (data or {}).items() if k in names}

    return datamodel.Hints(
        **known(values),
        operator=(datamodel.Hints(**known(operator))
                  if operator is not None else None))


def plan_from_dict(data: Mapping[str, Any]) -> datamodel.Plan:
    """A :class:`~.datamodel.Plan` from its ``to_dict()`` (unknown keys
    left out, lists made tuples).
    """
    fields = {f.name for f in dataclasses.fields(datamodel.Plan)}
    plan = {k: v for k, v in data.items() if k in fields}
    plan['reasons'] = tuple(plan.get('reasons') or ())
    plan['fallbacks'] = tuple(tuple(f) if isinstance(f, list) else f
                              for f in plan.get('fallbacks') or ())
    return datamodel.Plan(**plan)


def find_report(text: str, instance: Optional[str] = None) -> dict:
    """The report in ``text``: a log (its last ``qat_migration report:``
    line, or the last one of ``instance``), one report as JSON, or a lab
    benchmark record (a JSON line whose ``report`` is the report).

    :raises NotAReport: saying what was looked for.
    """
    found = None
    for line in text.splitlines():
        _, sep, payload = line.partition(outcomes.PREFIX)
        if not sep:
            continue
        try:
            record = json.loads(payload)
        except ValueError:
            continue
        if isinstance(record, dict) and (
                instance is None or record.get('instance') == instance):
            found = record
    if found is None:
        try:
            record = json.loads(text)
        except ValueError:
            record = None
        if isinstance(record, dict):
            found = record.get('report') if isinstance(
                record.get('report'), dict) else record
            if instance is not None and found.get('instance') != instance:
                found = None
    if not found:
        raise NotAReport('no %r line%s, and not a report as JSON'
                         % (outcomes.PREFIX.strip(),
                            ' of instance %s' % instance if instance
                            else ''))
    return found


def recorded_plan(record: Mapping[str, Any]) -> tuple:
    """``(policy name, description, Plan or None)`` the record asked for."""
    full = record.get('requested_plan')
    if isinstance(full, dict):
        plan = plan_from_dict(full)
        return plan.policy, plan.describe(), plan
    text = record.get('requested') or record.get('plan')
    if not text:
        raise NotAReport('the report names no requested plan')
    return (record.get('policy') or str(text).split('[', 1)[0], text, None)


def differences(recorded: Optional[datamodel.Plan], replayed: datamodel.Plan,
                recorded_text: str) -> list:
    """``['field: recorded -> replayed']`` (reasons left out); the
    descriptions when the record has no plan in full.
    """
    if recorded is None:
        if recorded_text == replayed.describe():
            return []
        return ['plan: %s -> %s' % (recorded_text, replayed.describe())]
    out = []
    for field in dataclasses.fields(datamodel.Plan):
        if field.name == 'reasons':
            continue
        old = getattr(recorded, field.name)
        new = getattr(replayed, field.name)
        if old != new:
            out.append('%s: %s -> %s' % (field.name, old, new))
    return out


@dataclasses.dataclass
class Replay:
    policy: str
    recorded: str
    replayed: datamodel.Plan
    differences: list
    facts: datamodel.Facts


def replay(conf: Any, record: Mapping[str, Any]) -> Replay:
    """Plan again what ``record`` (a report) planned, with ``conf``.

    :raises NotAReport: when the record cannot be replayed.
    :raises UnknownPolicy: when its policy is not installed here.
    """
    name, text, plan = recorded_plan(record)
    facts = facts_from_summary(record.get('facts') or {})
    policy = loader.load_policy(name, conf)
    replayed = policy.plan(facts)
    return Replay(name, text, replayed,
                  differences(plan, replayed, text), facts)
