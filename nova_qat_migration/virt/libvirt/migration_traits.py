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
"""The ``CUSTOM_MIGRATION_*`` traits: what a host can receive.

Each host publishes them on its compute-node resource provider (from the
capabilities :mod:`.capabilities` probed), and a source reads the
destination's back (:func:`destination_from_traits`) before choosing a
plan: placement is the one channel both hosts already share, so a source
learns what the destination's QEMU decodes without asking it. Naming and
reading the traits is kept in one module so the two sides cannot drift.
"""

from __future__ import annotations

from typing import Iterable, Optional

from nova_qat_migration import datamodel
from nova_qat_migration.qat import placement


TRAIT_PREFIX = 'CUSTOM_MIGRATION_'
TRAIT_MULTIFD = TRAIT_PREFIX + 'MULTIFD'
TRAIT_POSTCOPY_MULTIFD = TRAIT_PREFIX + 'POSTCOPY_MULTIFD'
#: Marks a host that runs this planner (its other traits are meaningful).
TRAIT_PLANNER = TRAIT_PREFIX + 'PLANNER'


def compress_trait(method: str) -> str:
    return '%sCOMPRESS_%s' % (TRAIT_PREFIX, method.upper())


def traits_for(caps: datamodel.HypervisorCaps) -> set[str]:
    """The ``CUSTOM_MIGRATION_*`` traits a host publishes about itself.

    They describe what the host can *receive*: QEMU decodes a multifd
    method whenever its binary has it, whatever libvirt knows.
    """
    traits = {TRAIT_PLANNER, TRAIT_MULTIFD, compress_trait('xbzrle')}
    receivable = set(caps.multifd_methods) - {'none'}
    if not caps.multifd_methods:
        receivable = {m for m in ('zlib', 'zstd')
                      if caps.accepts(m) and m in caps.libvirt_methods}
    traits |= {compress_trait(m) for m in receivable}
    if caps.has_mt:
        traits.add(compress_trait('mt'))
    if caps.postcopy_with_multifd:
        traits.add(TRAIT_POSTCOPY_MULTIFD)
    # Whether the host can lend QAT (placement.HOST_TRAIT) is published by
    # the QAT device manager alone.
    return traits


def destination_from_traits(traits: Optional[Iterable[str]],
                            ) -> datamodel.DestinationCaps:
    """Destination capabilities from its provider traits.

    ``None`` (traits unreadable) or a host without the planner's traits
    gives ``known=False``: only plans needing nothing from it are used.
    """
    if traits is None:
        return datamodel.DestinationCaps()
    traits = set(traits)
    if TRAIT_PLANNER not in traits:
        return datamodel.DestinationCaps()
    prefix = TRAIT_PREFIX + 'COMPRESS_'
    methods = frozenset(t[len(prefix):].lower() for t in traits
                        if t.startswith(prefix))
    return datamodel.DestinationCaps(
        known=True, methods=methods,
        multifd=TRAIT_MULTIFD in traits,
        postcopy_with_multifd=TRAIT_POSTCOPY_MULTIFD in traits,
        qat=placement.HOST_TRAIT in traits)
