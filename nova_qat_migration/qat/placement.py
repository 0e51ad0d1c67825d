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
"""QAT capacity as Placement sees it: nested providers, inventory, traits.

Layout:

* one child provider per QAT PF under the compute node provider, named
  ``<nodename>_qat_<PCI address>`` (e.g. ``cmp1_qat_0000:6b:00.0``);
* on it, inventory of :data:`RESOURCE_CLASS` ``CUSTOM_QAT_DC`` = healthy
  compression-capable endpoints (VFs, or the PF itself with SR-IOV off),
  with ``reserved`` = the endpoints kept for migrations
  (``[qat_migration] qat_endpoints_for_migration``, spread round-robin
  over PFs in address order so leases spread over devices);
* traits on the child: ``CUSTOM_QAT_GEN<n>`` and one ``CUSTOM_QAT_<SERVICE>``
  per configured service (``SYM``, ``ASYM``, ``DC``, ``DCC``, ``DECOMP``;
  Gen1-3 report ``SYM``, ``ASYM``, ``DC``). Traits and resource classes
  are separate namespaces in Placement, so the ``CUSTOM_QAT_DC`` trait and
  resource class do not clash;
* trait :data:`HOST_TRAIT` ``CUSTOM_QAT_MIGRATION`` on the compute node
  provider while at least one healthy compression endpoint exists -- what
  a source looks for on a destination before sending ``qatzip``.

Nova's rules respected here: inventory in use is never deleted (Placement
would answer InventoryInUse and the whole update would fail). Shrinking a
total below usage is allowed by Placement (it only warns), but when the
allocations are known an in-use total is kept at the allocated amount and
the unhealthy part is marked ``reserved`` so nothing new lands on it. When
Nova does not pass allocations (its normal periodic call), a provider that
loses all healthy endpoints keeps its previous total, fully reserved. The
layout never moves inventory between providers, so no reshape is needed.

Pure functions: :func:`plan` decides from discovered devices,
:func:`apply` writes the decision into a Nova ``ProviderTree``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping, Optional

from nova_qat_migration.qat import health as qat_health

RESOURCE_CLASS = 'CUSTOM_QAT_DC'
HOST_TRAIT = 'CUSTOM_QAT_MIGRATION'
TRAIT_PREFIX = 'CUSTOM_QAT_'


def child_name(nodename: str, pf_address: str) -> str:
    return '%s_qat_%s' % (nodename, pf_address)


def child_prefix(nodename: str) -> str:
    return '%s_qat_' % nodename


def generation_trait(generation: int) -> str:
    return '%sGEN%d' % (TRAIT_PREFIX, generation)


def service_trait(service: str) -> str:
    return TRAIT_PREFIX + service.upper()


@dataclasses.dataclass(frozen=True)
class ChildPlan:
    """What one PF's provider should show (before allocations are seen)."""

    name: str
    pf_address: str
    healthy: int
    reserved: int
    traits: frozenset[str]

    def inventory(self) -> dict:
        return inventory_record(self.healthy, self.reserved)


@dataclasses.dataclass(frozen=True)
class HostPlan:
    nodename: str
    children: tuple[ChildPlan, ...]
    reserved_requested: int

    @property
    def endpoints(self) -> int:
        return sum(c.healthy for c in self.children)

    @property
    def reserved(self) -> int:
        return sum(c.reserved for c in self.children)

    @property
    def host_traits(self) -> frozenset[str]:
        return frozenset({HOST_TRAIT}) if self.endpoints else frozenset()

    def lease_slots(self) -> list[str]:
        """One PF address per endpoint reserved for migrations."""
        out = []
        for child in self.children:
            out.extend([child.pf_address] * child.reserved)
        return out

    def to_dict(self) -> dict:
        return {
            'resource_class': RESOURCE_CLASS,
            'compute_node_traits': sorted(self.host_traits),
            'reserved_requested': self.reserved_requested,
            'children': [
                {'name': c.name, 'pf_address': c.pf_address,
                 'inventory': c.inventory(), 'traits': sorted(c.traits)}
                for c in self.children],
        }


def inventory_record(total: int, reserved: int) -> dict:
    """``{RESOURCE_CLASS: {...}}``, or ``{}`` when there is nothing."""
    if total <= 0:
        return {}
    return {RESOURCE_CLASS: {
        'total': total,
        'reserved': max(0, min(reserved, total)),
        'min_unit': 1,
        'max_unit': total,
        'step_size': 1,
        'allocation_ratio': 1.0,
    }}


def distribute(healthy: Mapping[str, int], count: int) -> dict[str, int]:
    """Spread ``count`` reserved endpoints round-robin over PFs.

    PFs are taken in address order; each gets at most its healthy count.
    Asking for more than exists reserves everything.
    """
    out = {address: 0 for address in healthy}
    remaining = max(count, 0)
    order = sorted(a for a, n in healthy.items() if n > 0)
    while remaining and order:
        progressed = False
        for address in order:
            if remaining and out[address] < healthy[address]:
                out[address] += 1
                remaining -= 1
                progressed = True
        if not progressed:
            break
    return out


def pf_traits(status: qat_health.PFStatus) -> frozenset[str]:
    traits = {generation_trait(status.pf.generation)}
    traits.update(service_trait(s) for s in status.pf.services)
    return frozenset(traits)


def plan(nodename: str, statuses: Iterable[qat_health.PFStatus],
         reserved_count: int) -> HostPlan:
    """Decide the providers for a host's PFs (no allocations involved)."""
    statuses = sorted(statuses, key=lambda s: s.address)
    healthy = {s.address: len(s.compression_endpoints()) for s in statuses}
    reserved = distribute(healthy, reserved_count)
    children = tuple(
        ChildPlan(name=child_name(nodename, s.address),
                  pf_address=s.address, healthy=healthy[s.address],
                  reserved=reserved[s.address], traits=pf_traits(s))
        for s in statuses)
    return HostPlan(nodename, children, reserved_count)


def usage_by_provider(allocations: Optional[Mapping[str, Any]],
                      resource_class: str = RESOURCE_CLASS,
                      ) -> Optional[dict[str, int]]:
    """``{rp_uuid: used}`` from ``update_provider_tree``'s allocations.

    The shape is ``{consumer: {'allocations': {rp_uuid: {'resources':
    {rc: n}}}}}``. None stays None (allocations unknown).
    """
    if allocations is None:
        return None
    used: dict[str, int] = {}
    for consumer in allocations.values():
        for rp_uuid, alloc in (consumer or {}).get('allocations',
                                                   {}).items():
            amount = (alloc or {}).get('resources', {}).get(resource_class)
            if amount:
                used[rp_uuid] = used.get(rp_uuid, 0) + int(amount)
    return used


def _previous_total(provider: Any) -> int:
    record = (provider.inventory or {}).get(RESOURCE_CLASS)
    return int(record['total']) if record else 0


def _inventory_with_usage(healthy: int, reserved: int,
                          used: Optional[int], previous_total: int) -> dict:
    """Inventory that never drops below what is (or may be) allocated."""
    if used is None:
        if healthy > 0:
            return inventory_record(healthy, reserved)
        # Allocations unknown: keep the record, fully reserved, rather
        # than risk deleting inventory that is in use.
        return inventory_record(previous_total, previous_total)
    total = max(healthy, used)
    # The part of total that is not healthy stays reserved.
    return inventory_record(total, reserved + (total - healthy))


@dataclasses.dataclass
class ApplyResult:
    """What :func:`apply` changed, for logs and tests."""

    created: list[str] = dataclasses.field(default_factory=list)
    updated: list[str] = dataclasses.field(default_factory=list)
    removed: list[str] = dataclasses.field(default_factory=list)
    kept_in_use: list[str] = dataclasses.field(default_factory=list)
    host_trait: bool = False


def _children(provider_tree: Any, nodename: str) -> dict[str, Any]:
    """Our child providers under ``nodename``, by name."""
    prefix = child_prefix(nodename)
    root = provider_tree.data(nodename)
    out = {}
    for uuid in provider_tree.get_provider_uuids(nodename):
        data = provider_tree.data(uuid)
        if data.parent_uuid == root.uuid and data.name.startswith(prefix):
            out[data.name] = data
    return out


def apply(provider_tree: Any, host_plan: HostPlan,
          allocations: Optional[Mapping[str, Any]] = None) -> ApplyResult:
    """Write ``host_plan`` into a Nova ``ProviderTree``.

    Creates missing child providers, replaces their inventory and traits,
    removes children of vanished PFs that hold no allocations, and sets or
    clears :data:`HOST_TRAIT` on the compute node. Only touches providers
    named ``<nodename>_qat_*`` and that one trait.

    :param allocations: as passed to the driver's ``update_provider_tree``
        (None when Nova does not supply them).
    """
    nodename = host_plan.nodename
    result = ApplyResult()
    used = usage_by_provider(allocations)
    existing = _children(provider_tree, nodename)
    wanted = {c.name for c in host_plan.children}
    host_capable = False

    for child in host_plan.children:
        if child.name not in existing:
            provider_tree.new_child(child.name, nodename)
            result.created.append(child.name)
            previous = 0
            rp_used: Optional[int] = 0 if used is not None else None
        else:
            data = existing[child.name]
            previous = _previous_total(data)
            rp_used = (used.get(data.uuid, 0) if used is not None
                       else None)
        inventory = _inventory_with_usage(child.healthy, child.reserved,
                                          rp_used, previous)
        if provider_tree.update_inventory(child.name, inventory):
            result.updated.append(child.name)
        if child.healthy > 0:
            host_capable = True
        if rp_used and rp_used > child.healthy:
            result.kept_in_use.append(child.name)
        provider_tree.update_traits(child.name, sorted(child.traits))

    for name, data in existing.items():
        if name in wanted:
            continue
        previous = _previous_total(data)
        rp_used = used.get(data.uuid, 0) if used is not None else None
        if rp_used == 0 or (rp_used is None and previous == 0):
            provider_tree.remove(name)
            result.removed.append(name)
            continue
        # Vanished but (possibly) in use: keep, nothing claimable.
        total = rp_used if rp_used is not None else previous
        provider_tree.update_inventory(name, inventory_record(total, total))
        result.kept_in_use.append(name)

    if host_capable:
        provider_tree.add_traits(nodename, HOST_TRAIT)
    else:
        provider_tree.remove_traits(nodename, HOST_TRAIT)
    result.host_trait = host_capable
    return result
