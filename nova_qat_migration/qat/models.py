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
"""The QAT product lines the kernel's ``drivers/crypto/intel/qat`` drives:
their PCI device IDs and kernel names (used by :mod:`.devices`).
"""

from __future__ import annotations

import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class Model:
    """One QAT product line: PCI IDs and kernel naming.

    :param name: the kernel's device class name, which is also the name of
        its PCI driver and part of the debugfs directory
        (``qat_<name>_<BDF>``).
    """

    name: str
    generation: int
    pf_id: int
    vf_id: int

    @property
    def vf_name(self) -> str:
        return self.name + 'vf'

    @property
    def has_cfg_services(self) -> bool:
        """Gen4 introduced ``qat/state`` and ``qat/cfg_services``."""
        return self.generation >= 4


#: Every QAT product line the kernel's ``drivers/crypto/intel/qat`` drives,
#: DH895xCC (Gen1) to 6xxx (Gen6).
MODELS = (
    Model('dh895xcc', 1, 0x0435, 0x0443),
    Model('c6xx', 2, 0x37c8, 0x37c9),      # C62x
    Model('c3xxx', 2, 0x19e2, 0x19e3),
    Model('d15xx', 2, 0x6f54, 0x6f55),
    Model('4xxx', 4, 0x4940, 0x4941),
    Model('4xxx', 4, 0x4942, 0x4943),      # 401xx (same kernel driver)
    Model('4xxx', 4, 0x4944, 0x4945),      # 402xx (same kernel driver)
    Model('420xx', 4, 0x4946, 0x4947),
    Model('6xxx', 6, 0x4948, 0x4949),
)
_BY_ID: dict[int, tuple[Model, bool]] = {}
for _m in MODELS:
    _BY_ID[_m.pf_id] = (_m, False)
    _BY_ID[_m.vf_id] = (_m, True)
#: Marketing names by PF device ID, for humans only.
PRODUCT_NAMES = {
    0x0435: 'DH895xCC', 0x37c8: 'C62x', 0x19e2: 'C3xxx', 0x6f54: 'D15xx',
    0x4940: '4xxx', 0x4942: '401xx', 0x4944: '402xx', 0x4946: '420xx',
    0x4948: '6xxx',
}
#: Every driver name a QAT kernel driver registers (PF and VF).
QAT_KERNEL_DRIVERS = frozenset(
    [m.name for m in MODELS] + [m.vf_name for m in MODELS]
    + ['qat_' + m.name for m in MODELS] + ['qat_' + m.vf_name for m in MODELS])


def lookup(device_id: int) -> Optional[tuple[Model, bool]]:
    """``(model, is_vf)`` for a PCI device ID, None if not a QAT device."""
    return _BY_ID.get(device_id)
