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
"""Discovery of Intel QAT physical and virtual functions in sysfs.

Everything here is read-only and reads sysfs only: counting capacity through
qatlib (``icp_sal_userStart``) would take the VFs for this process, so it is
never done. Discovery runs inside nova-compute's periodic task, therefore a
missing, unreadable or garbled file never raises: the function (or the one
attribute) is skipped and a warning is logged once per path and problem.

The layout is the kernel's (``drivers/crypto/intel/qat``); the tests build
such sysfs trees with ``tests/fixtures/qat_sysfs.py`` (no QAT hardware
needed).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import stat
import threading
from typing import Iterable, Optional

from oslo_log import log as logging

from nova_qat_migration.qat import models

LOG = logging.getLogger(__name__)

INTEL_VENDOR = 0x8086

#: Services a QAT device can be configured for (``qat/cfg_services``).
KNOWN_SERVICES = frozenset({'sym', 'asym', 'dc', 'dcc', 'decomp'})
#: Services that give an endpoint a (de)compression engine.
COMPRESSION_SERVICES = frozenset({'dc', 'dcc', 'decomp'})
#: Gen1-3 have no ``cfg_services``: their default configuration runs every
#: service on every function.
LEGACY_SERVICES = ('sym', 'asym', 'dc')

#: Drivers that give a function to userspace through VFIO. On Gen4+ this is
#: how qatlib (and so QATzip and QEMU's ``qatzip`` method) reaches VFs.
VFIO_DRIVERS = frozenset({'vfio-pci', 'qat_vfio_pci'})

#: How the kernel names a PCI function (``DDDD:BB:DD.F``, a domain of
#: four or more hex digits): an entry of ``bus/pci/devices`` named
#: otherwise is not one, whatever it holds.
PCI_ADDRESS = re.compile(r'[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]')
#: A PF's link to its VF number N (ASCII digits only).
VIRTFN = re.compile(r'virtfn([0-9]{1,5})')


def read_attribute(path: str, limit: int) -> bytes:
    """Up to ``limit`` bytes of the regular file ``path``, never blocking.

    Opened non-blocking and checked before reading: a FIFO (or a device
    node) where a sysfs or debugfs attribute should be would otherwise
    block nova-compute's start-up or its periodic scan until something
    wrote to it.

    :raises OSError: when it cannot be opened or read, or is not a
        regular file.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK |
                 getattr(os, 'O_NOCTTY', 0))
    with os.fdopen(fd, 'rb') as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, 'not a regular file')
        return f.read(limit)


#: The product lines, in :mod:`.models`; importable from here.
Model = models.Model
MODELS = models.MODELS
PRODUCT_NAMES = models.PRODUCT_NAMES
QAT_KERNEL_DRIVERS = models.QAT_KERNEL_DRIVERS
lookup = models.lookup


@dataclasses.dataclass(frozen=True)
class VirtualFunction:
    address: str
    driver: Optional[str]

    @property
    def driver_kind(self) -> str:
        return driver_kind(self.driver)


@dataclasses.dataclass(frozen=True)
class PhysicalFunction:
    """A QAT PF and its VFs, as sysfs shows them.

    ``state`` is None on Gen1-3 (no ``qat/state``) and ``'unknown'`` when the
    file could not be read or parsed.
    """

    address: str
    device_id: int
    model: Model
    driver: Optional[str]
    numa_node: int
    sriov_numvfs: int
    sriov_totalvfs: int
    state: Optional[str]
    services: tuple[str, ...]
    vfs: tuple[VirtualFunction, ...] = ()

    @property
    def generation(self) -> int:
        return self.model.generation

    @property
    def product(self) -> str:
        return PRODUCT_NAMES.get(self.device_id, self.model.name)

    @property
    def compression_capable(self) -> bool:
        return bool(COMPRESSION_SERVICES.intersection(self.services))

    @property
    def up(self) -> bool:
        """Whether the PF runs: bound to its QAT driver and not ``down``.

        A PF bound to vfio-pci (passed to a guest) or to nothing serves no
        host endpoint, and its VFs vanish with it anyway.
        """
        if driver_kind(self.driver) != 'qat':
            return False
        return self.state in (None, 'up')

    @property
    def sriov(self) -> bool:
        return self.sriov_numvfs > 0 or bool(self.vfs)

    def endpoints(self) -> tuple[str, ...]:
        """PCI addresses of the functions that can serve a QAT session.

        With SR-IOV on these are the VFs userspace can open: on Gen4+ VFs
        bound to vfio-pci (how qatlib uses them) or to the QAT VF driver; on
        Gen1-2 only VFs bound to the QAT VF driver (how the out-of-tree
        driver and usdm use them) -- there a vfio-pci VF is taken to be
        assigned to a guest. With SR-IOV off it is the PF itself.
        """
        if not self.sriov:
            return (self.address,) if self.up else ()
        usable = ('qat', 'vfio') if self.generation >= 4 else ('qat',)
        return tuple(vf.address for vf in self.vfs
                     if vf.driver_kind in usable)

    def to_dict(self) -> dict:
        return {
            'address': self.address,
            'device_id': '0x%04x' % self.device_id,
            'product': self.product,
            'generation': self.generation,
            'driver': self.driver,
            'numa_node': self.numa_node,
            'sriov_numvfs': self.sriov_numvfs,
            'sriov_totalvfs': self.sriov_totalvfs,
            'state': self.state,
            'services': list(self.services),
            'compression_capable': self.compression_capable,
            'vfs': [{'address': vf.address, 'driver': vf.driver}
                    for vf in self.vfs],
        }


def driver_kind(driver: Optional[str]) -> str:
    """``qat``, ``vfio``, ``none`` (unbound) or ``other``."""
    if not driver:
        return 'none'
    if driver in QAT_KERNEL_DRIVERS:
        return 'qat'
    if driver in VFIO_DRIVERS:
        return 'vfio'
    return 'other'


def parse_services(text: str) -> tuple[tuple[str, ...], list[str]]:
    """Split ``cfg_services`` (``sym;dc``) into (known, unknown) services."""
    known: list[str] = []
    unknown: list[str] = []
    for token in text.replace(',', ';').split(';'):
        token = token.strip().lower()
        if not token:
            continue
        (known if token in KNOWN_SERVICES else unknown).append(token)
    return tuple(known), unknown


class Scanner:
    """Reads QAT functions under ``<sysfs_root>/bus/pci/devices``.

    Holds only the set of problems already warned about, so a broken file
    on a host is reported once, not on every periodic update.
    """

    def __init__(self, sysfs_root: str = '/sys') -> None:
        self.sysfs_root = sysfs_root
        self.devices_dir = os.path.join(sysfs_root, 'bus', 'pci', 'devices')
        self._warned: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    # -- reading helpers ---------------------------------------------------

    def warn(self, path: str, problem: str, *args: object) -> None:
        key = (path, problem)
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        LOG.warning('QAT discovery: %s: ' + problem, path, *args)

    def _read(self, path: str, required: bool = True) -> Optional[str]:
        try:
            return read_attribute(path, 4096).decode('ascii').strip()
        except FileNotFoundError:
            if required:
                self.warn(path, 'missing, skipped')
            return None
        except (OSError, UnicodeDecodeError) as exc:
            self.warn(path, 'unreadable (%s), skipped', exc)
            return None

    def _read_int(self, path: str, base: int = 10,
                  required: bool = True) -> Optional[int]:
        text = self._read(path, required)
        if text is None:
            return None
        try:
            return int(text, base)
        except ValueError:
            self.warn(path, 'not a number (%r), skipped', text[:40])
            return None

    @staticmethod
    def _link_name(path: str) -> Optional[str]:
        try:
            return os.readlink(path).rpartition('/')[2]
        except OSError:
            return None

    # -- discovery ---------------------------------------------------------

    def _identify(self, dev_dir: str) -> Optional[tuple[int, Model, bool]]:
        vendor = self._read(os.path.join(dev_dir, 'vendor'))
        if vendor is None:
            return None
        try:
            if int(vendor, 16) != INTEL_VENDOR:
                return None
        except ValueError:
            self.warn(os.path.join(dev_dir, 'vendor'),
                      'not a PCI vendor ID (%r), skipped', vendor[:40])
            return None
        device_path = os.path.join(dev_dir, 'device')
        device_id = self._read_int(device_path, 16)
        if device_id is None:
            return None
        found = lookup(device_id)
        if found is None:
            return None
        return device_id, found[0], found[1]

    def _read_pf(self, address: str, device_id: int,
                 model: Model) -> PhysicalFunction:
        d = os.path.join(self.devices_dir, address)
        driver = self._link_name(os.path.join(d, 'driver'))
        numa = self._read_int(os.path.join(d, 'numa_node'))
        numvfs = self._read_int(os.path.join(d, 'sriov_numvfs'),
                                required=False)
        totalvfs = self._read_int(os.path.join(d, 'sriov_totalvfs'),
                                  required=False)
        vf_addrs = []
        try:
            with os.scandir(d) as it:
                for entry in it:
                    if not entry.name.startswith('virtfn'):
                        continue
                    index = VIRTFN.fullmatch(entry.name)
                    if index is None:
                        # Not the kernel's (virtfn² is no index): one
                        # stray entry must not hide the PF.
                        self.warn(d, 'entry %s is not a VF link, ignored',
                                  ascii(entry.name)[:80])
                        continue
                    target = self._link_name(entry.path)
                    if target:
                        vf_addrs.append((int(index.group(1)), target))
        except OSError as exc:
            self.warn(d, 'cannot list (%s)', exc)
        # virtfn0, virtfn1, ... virtfn10: sort by index, not by name.
        vf_addrs.sort()
        state: Optional[str] = None
        services: tuple[str, ...] = LEGACY_SERVICES
        if model.has_cfg_services:
            state_path = os.path.join(d, 'qat', 'state')
            text = self._read(state_path)
            if text in ('up', 'down'):
                state = text
            else:
                if text is not None:
                    self.warn(state_path, 'unknown state %r', text[:40])
                state = 'unknown'
            svc_path = os.path.join(d, 'qat', 'cfg_services')
            text = self._read(svc_path)
            if text is None:
                services = ()
            else:
                services, unknown = parse_services(text)
                if unknown:
                    self.warn(svc_path, 'unknown services %s ignored',
                              ','.join(unknown)[:80])
        return PhysicalFunction(
            address=address, device_id=device_id, model=model,
            driver=driver,
            numa_node=numa if numa is not None else -1,
            sriov_numvfs=numvfs or 0, sriov_totalvfs=totalvfs or 0,
            state=state, services=services,
            vfs=tuple(VirtualFunction(a, None) for _n, a in vf_addrs))

    def scan(self) -> list[PhysicalFunction]:
        """Every QAT PF with its VFs, sorted by PCI address. Never raises."""
        try:
            return self._scan()
        except Exception:
            # Discovery must never break nova-compute (logged, not silent).
            LOG.exception('QAT discovery failed under %s; reporting no QAT',
                          self.sysfs_root)
            return []

    def _scan(self) -> list[PhysicalFunction]:
        try:
            names = sorted(os.listdir(self.devices_dir))
        except FileNotFoundError:
            return []
        except OSError as exc:
            self.warn(self.devices_dir, 'cannot list (%s)', exc)
            return []
        present = set(names)
        base = self.devices_dir + '/'
        pfs: list[PhysicalFunction] = []
        orphans: list[str] = []
        for name in names:
            if not PCI_ADDRESS.fullmatch(name):
                # Not a PCI function (a name that is not even UTF-8 would
                # also break every consumer of the address: logs, the
                # devices command, Placement provider names).
                self.warn(self.devices_dir, 'entry %s is not a PCI '
                          'address, ignored', ascii(name)[:80])
                continue
            dev_dir = base + name
            # NOTE(qat-migration): a function with a ``physfn`` link is a VF
            # and is read through its PF's ``virtfn*`` links below, which
            # the kernel keeps authoritative; that spares two file reads per
            # VF (a 128-VF host scans in a few ms) and skips the VFs of
            # non-QAT PFs (NICs) without opening anything.
            if self._link_name(dev_dir + '/physfn') is not None:
                continue
            ident = self._identify(dev_dir)
            if ident is None:
                continue
            device_id, model, is_vf = ident
            if is_vf:
                # A QAT VF without a PF: inside a guest, typically.
                orphans.append(name)
                continue
            pfs.append(self._read_pf(name, device_id, model))
        result = []
        for pf in pfs:
            vfs = []
            for vf in pf.vfs:
                if vf.address not in present:
                    # A virtfn link to a function that is being removed.
                    continue
                driver = self._link_name(base + vf.address + '/driver')
                vfs.append(VirtualFunction(vf.address, driver))
            result.append(dataclasses.replace(pf, vfs=tuple(vfs)))
        if orphans:
            # Nothing to attach their capacity to.
            self.warn(self.devices_dir, 'QAT VFs without a PF ignored: %s',
                      ' '.join(orphans)[:200])
        return result


def discover(sysfs_root: str = '/sys') -> list[PhysicalFunction]:
    """One-shot discovery; see :class:`Scanner` for repeated scans."""
    return Scanner(sysfs_root).scan()


def endpoints(pfs: Iterable[PhysicalFunction]) -> int:
    return sum(len(pf.endpoints()) for pf in pfs)
