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
"""QAT health from debugfs: firmware heartbeat and telemetry utilisation.

The kernel exposes, per PF, ``<debugfs>/qat_<class>_<BDF>/heartbeat/status``
(``0`` alive, ``-1`` unresponsive; reading it makes the driver check, nobody
polls it otherwise) and, on Gen4+, ``telemetry/device_data`` with
``util_cpr<N>``/``util_dcpr<N>`` percentages once telemetry is switched on
(``telemetry/control``). Either may be absent (debugfs not mounted, not
root, older kernel): then health is *unknown*, which counts as usable --
only a heartbeat of -1 takes a device out of service, as the Kubernetes QAT
device plugin does. Unreadable or garbled files are skipped with a warning.

The files are read in the kernel's documented format; the tests build them
in fixture trees (no QAT hardware needed).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Optional

from oslo_log import log as logging

from nova_qat_migration.qat import devices

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Health:
    """Health of one PF (its VFs share it).

    :param heartbeat: 0 alive, -1 unresponsive, None unknown.
    :param dc_utilization: mean compression/decompression slice utilisation
        in percent from telemetry, None when telemetry is off or absent.
    """

    heartbeat: Optional[int] = None
    dc_utilization: Optional[float] = None

    @property
    def healthy(self) -> bool:
        return self.heartbeat is None or self.heartbeat >= 0

    @property
    def status(self) -> str:
        if self.heartbeat is None:
            return 'unknown'
        return 'ok' if self.heartbeat >= 0 else 'unresponsive'

    def to_dict(self) -> dict:
        return {'heartbeat': self.heartbeat, 'status': self.status,
                'dc_utilization': self.dc_utilization}


UNKNOWN = Health()


@dataclasses.dataclass(frozen=True)
class PFStatus:
    """A PF as discovered plus its health: what placement and leases use."""

    pf: devices.PhysicalFunction
    health: Health = UNKNOWN

    @property
    def address(self) -> str:
        return self.pf.address

    @property
    def healthy(self) -> bool:
        """Up (driver bound, state up) and heartbeat not failing."""
        return self.pf.up and self.health.healthy

    def compression_endpoints(self) -> tuple[str, ...]:
        """Addresses of healthy endpoints that can (de)compress."""
        if not (self.healthy and self.pf.compression_capable):
            return ()
        return self.pf.endpoints()

    def to_dict(self) -> dict:
        data = self.pf.to_dict()
        data['health'] = self.health.to_dict()
        data['healthy'] = self.healthy
        data['compression_endpoints'] = list(self.compression_endpoints())
        return data


Warn = Callable[..., None]


def _default_warn(path: str, problem: str, *args: object) -> None:
    LOG.warning('QAT health: %s: ' + problem, path, *args)


class HealthReader:
    """Finds and reads the debugfs directory of each PF.

    The kernel names it ``qat_<device class>_<BDF>``; the class part differs
    between in-tree and out-of-tree drivers, so directories are matched by
    the PCI address after one listing of the debugfs root.
    """

    def __init__(self, debugfs_root: str = '/sys/kernel/debug',
                 warn: Optional[Warn] = None) -> None:
        self.debugfs_root = debugfs_root
        self.warn = warn or _default_warn

    def _dirs(self) -> Optional[dict[str, str]]:
        """``{BDF: directory}`` for every ``qat_*`` entry, one listing."""
        try:
            names = os.listdir(self.debugfs_root)
        except OSError:
            # Not mounted or not root: health is simply unknown.
            return None
        out = {}
        for name in names:
            if name.startswith('qat_'):
                bdf = name.rsplit('_', 1)[-1]
                out[bdf] = os.path.join(self.debugfs_root, name)
        return out

    def _read(self, path: str) -> Optional[str]:
        try:
            # Never blocks on a FIFO where a debugfs file should be.
            return devices.read_attribute(path, 65536).decode('ascii')
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            self.warn(path, 'unreadable (%s), skipped', exc)
            return None

    def heartbeat(self, directory: str) -> Optional[int]:
        path = os.path.join(directory, 'heartbeat', 'status')
        text = self._read(path)
        if text is None:
            return None
        try:
            return int(text.strip())
        except ValueError:
            self.warn(path, 'not a heartbeat status (%r), skipped',
                      text.strip()[:40])
            return None

    def dc_utilization(self, directory: str) -> Optional[float]:
        path = os.path.join(directory, 'telemetry', 'device_data')
        text = self._read(path)
        if text is None:
            return None
        return parse_dc_utilization(text, path, self.warn)

    def read_all(self, addresses: list[str]) -> dict[str, Health]:
        """Health for each PF address (UNKNOWN where nothing is readable)."""
        dirs = self._dirs() if addresses else None
        out = {}
        for address in addresses:
            directory = dirs.get(address) if dirs else None
            if directory is None:
                out[address] = UNKNOWN
                continue
            out[address] = Health(self.heartbeat(directory),
                                  self.dc_utilization(directory))
        return out


def parse_dc_utilization(text: str, path: str = 'device_data',
                         warn: Warn = _default_warn) -> Optional[float]:
    """Mean of ``util_cpr<N>``/``util_dcpr<N>`` in a telemetry dump.

    Lines are ``<name> <value>``; other counters are ignored. Lines that do
    not parse are skipped; if none of the utilisation counters parse, the
    result is None (telemetry off or garbled).
    """
    values = []
    bad = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        key = parts[0]
        if not (key.startswith('util_cpr') or key.startswith('util_dcpr')):
            continue
        try:
            value = float(parts[1])
        except ValueError:
            bad += 1
            continue
        if 0.0 <= value <= 100.0:
            values.append(value)
        else:
            bad += 1
    if bad:
        warn(path, '%d garbled utilisation counters skipped', bad)
    if not values:
        return None
    return round(sum(values) / len(values), 1)
