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
"""The report's ``facts``: what a plan was made from, in one flat dict.

Enough to replay the decision (``nova-qat-migration plan --from-report``,
:mod:`nova_qat_migration.replay`) and to read why a plan was chosen
without the planner's logs.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from nova_qat_migration import datamodel
from nova_qat_migration import outcomes


def reused_note(facts: datamodel.Facts,
                 planned_at: float) -> Optional[str]:
    """The note a plan made from a reused measurement carries.

    :param planned_at: when the migration was planned (seconds since the
        epoch).
    """
    inst = facts.instance
    if inst.measurement != 'reused':
        return None
    if inst.measured_at is None:
        return ('guest measurement reused from the migration history, '
                'taken at an unknown time')
    return ('guest measurement reused from the migration history: taken '
            '%s, %.0f s before this migration was planned'
            % (outcomes.iso_utc(inst.measured_at),
               planned_at - inst.measured_at))


def summary(facts: datamodel.Facts) -> dict:
    """What the plan was made from, in one flat dict."""
    inst, host = facts.instance, facts.host
    return {
        # where the guest's numbers come from: measured before this
        # migration, ended early on a quiet guest, or reused (and when
        # they were taken)
        'measurement': inst.measurement,
        'measured_at': outcomes.iso_utc(inst.measured_at),
        'measured_at_epoch': inst.measured_at,
        'dirty_rate_mbps': inst.dirty_rate_mbps,
        'memory_mb': inst.memory_mb,
        'zero_fraction': inst.zero_fraction,
        'compress_ratio': inst.compress_ratio,
        'xbzrle_friendly': inst.xbzrle_friendly,
        'cpu_idle_pct': host.cpu_idle_pct,
        'cpus': host.cpus,
        'mem_free_mb': host.mem_free_mb,
        'link_mbps': round(facts.link_mbps, 1),
        # a block migration's local disks as planned: the bytes to copy,
        # where that figure comes from (the disks, or the flavor as a
        # bound) and Nova's completion timeout counting them
        'block_migration': facts.block_migration,
        'disk_bytes': facts.disk_bytes,
        'disk_source': facts.disk_source,
        'nova_completion_timeout_s': round(facts.completion_timeout_s(), 1),
        'source_multifd_methods': sorted(facts.hypervisor.multifd_methods),
        'destination_methods': sorted(facts.destination.methods),
        # what the instance's earlier migrations taught the planner
        'history_migrations': facts.history.migrations,
        'history_method': facts.history.method,
        'history_converged': facts.history.converged,
        # what the other migrations in flight held when this was planned
        'in_flight_migrations': facts.in_flight.migrations,
        'link_share': round(facts.in_flight.link_share, 3),
        'cores_held': facts.in_flight.cores_held,
        'xbzrle_mb_held': facts.in_flight.xbzrle_mb_held,
        'qat_leases_held': facts.in_flight.qat_leases_held,
        # the source's QAT as the plan saw it, and why devices it has were
        # not offered (e.g. QATzip ran in software)
        'qat_endpoints': facts.qat.endpoints,
        'qat_hardware': facts.qat.hardware,
        'qat_unusable': facts.qat.unusable or None,
        # what a replay (``plan --from-report``) needs besides the above:
        # the instance's hints (the operator's alone too, when an image
        # narrowed them) and whether the passthrough was allowed
        'hints': _hints_dict(inst.hints),
        'operator_hints': (_hints_dict(inst.hints.operator)
                           if inst.hints.operator is not None else None),
        'passthrough_allowed': facts.passthrough_allowed,
    }


def _hints_dict(hints: datamodel.Hints) -> dict:
    """The hints that are set, by name."""
    return {f.name: getattr(hints, f.name)
            for f in dataclasses.fields(hints)
            if f.name != 'operator' and getattr(hints, f.name) is not None}
