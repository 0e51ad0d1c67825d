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
"""The facts one live migration is planned from.

:func:`gather` reads the instance (flavor, state, hints), measures the
source host's load and the guest's dirty rate, asks the QAT device manager
for its state, looks up the instance's migration history, reads the
destination's capabilities from its Placement traits
(:func:`destination`) and, for a block migration, the size of the local
disks Nova copies (:func:`local_disks`). Everything it needs is passed
in; nothing here keeps state between migrations.
"""

from __future__ import annotations

import os
import stat
from typing import Any, Callable, Optional

from nova.compute import vm_states
from nova import exception as nova_exception
from nova import objects
from oslo_log import log as logging

from nova_qat_migration import datamodel
from nova_qat_migration import history as qat_history
from nova_qat_migration import outcomes
from nova_qat_migration.policy import hints as qat_hints
from nova_qat_migration.virt.libvirt import measure
from nova_qat_migration.virt.libvirt import migration_traits

LOG = logging.getLogger(__name__)


def field(obj: Any, name: str, default: Any = None) -> Any:
    """``getattr`` for versioned objects.

    NOTE(qat-migration): an unset field of a Nova object raises
    NotImplementedError ("Cannot load ... in the base class"), not
    AttributeError, so plain ``getattr(obj, name, default)`` is not safe.
    """
    try:
        return getattr(obj, name, default)
    except (NotImplementedError, nova_exception.NovaException) as exc:
        # unset, or its lazy load failed (an orphaned object, a record
        # gone)
        LOG.debug('Field %s not loaded: %s', name, exc)
        return default


def _extra_specs(instance: Any) -> dict:
    flavor = field(instance, 'flavor')
    try:
        return dict(field(flavor, 'extra_specs') or {})
    except (TypeError, ValueError) as exc:   # not a mapping
        LOG.debug('Flavor extra specs unreadable: %s', exc)
        return {}


def _system_metadata(instance: Any) -> dict:
    try:
        return dict(field(instance, 'system_metadata') or {})
    except (TypeError, ValueError) as exc:   # not a mapping
        LOG.debug('Instance system metadata unreadable: %s', exc)
        return {}


def link_mbps(conf: Any) -> float:
    """``[qat_migration] link_gbps`` in MiB/s (the unit plans use)."""
    return conf.qat_migration.link_gbps * 1e9 / 8 / datamodel.MIB


def instance_hints(conf: Any, instance: Any,
                   ignored: Optional[list] = None) -> datamodel.Hints:
    """The live-migration hints of ``instance`` (flavor extra specs and
    image properties, see :func:`~nova_qat_migration.policy.hints.
    from_instance`).

    :param ignored: when given, a bad flavor key or value is ignored with
        a warning naming it (appended here, for the report) instead of
        raised.
    :raises InvalidHint: for a bad flavor extra spec (without ``ignored``).
    """
    return qat_hints.from_instance(
        _extra_specs(instance), None, _system_metadata(instance),
        conf=conf, memory_mb=field(field(instance, 'flavor'), 'memory_mb'),
        instance=instance, ignored=ignored)


def destination(context: Any, reportclient: Any, dest: str,
                migrate_data: Any) -> datamodel.DestinationCaps:
    """The destination's capabilities from its Placement traits.

    :param reportclient: Nova's Placement client (``virtapi.reportclient``).
    :returns: unknown capabilities when the traits cannot be read: only
        plans that need nothing from the destination are used then.
    """
    try:
        migration = field(migrate_data, 'migration')
        node = field(migration, 'dest_node') if migration else None
        if node:
            nodes = [objects.ComputeNode.get_by_host_and_nodename(
                context, dest, node)]
        else:
            nodes = objects.ComputeNodeList.get_all_by_host(context, dest)
        traits: set = set()
        for cn in nodes:
            traits |= set(reportclient.get_provider_traits(
                context, cn.uuid).traits)
        return migration_traits.destination_from_traits(traits)
    except Exception as exc:  # unknown is a valid answer
        LOG.warning('Could not read the traits of destination %(dest)s '
                    '(%(exc)s): only plans needing nothing from it.',
                    {'dest': dest, 'exc': exc})
        return datamodel.DestinationCaps()


#: ``(bytes to copy, each disk's size as Nova counts it, source)``.
DiskFacts = tuple[Optional[int], tuple[int, ...], Optional[str]]

NO_DISKS: DiskFacts = (None, (), None)

GIB = 1024 ** 3
#: Where a block device's size is, by device number.
SYS_DEV_BLOCK = '/sys/dev/block'


def _copied_bytes(path: str) -> tuple[int, int]:
    """(bytes the mirror copies, size Nova counts) of one disk.

    A file's allocated bytes (a sparse raw file, or a qcow2 overlay whose
    backing file the destination already has, copies only those) and
    its ``st_size``, which Nova's monitor counts. A block device's
    ``st_size`` is 0: its size is read from sysfs (in 512-byte sectors;
    nova-compute need not be able to open the device).

    :raises OSError: when the disk cannot be read.
    :raises ValueError: when sysfs says something that is not a size.
    """
    info = os.stat(path)
    if stat.S_ISBLK(info.st_mode):
        sysfs = '%s/%d:%d/size' % (SYS_DEV_BLOCK, os.major(info.st_rdev),
                                   os.minor(info.st_rdev))
        with open(sysfs) as f:
            return int(f.read().strip()) * 512, info.st_size
    allocated = getattr(info, 'st_blocks', None)
    copied = (info.st_size if allocated is None
              else min(info.st_size, allocated * 512))
    return copied, info.st_size


def _flavor_disks(instance: Any, migrate_data: Any) -> DiskFacts:
    """The flavor's local disks: root (unless the instance boots from a
    volume), ephemeral and swap. A bound: a disk never holds more.
    """
    flavor = field(instance, 'flavor')
    root_gb = (0 if field(migrate_data, 'is_volume_backed', False)
               else int(field(flavor, 'root_gb', 0) or 0))
    sizes = tuple(size for size in (
        root_gb * GIB,
        int(field(flavor, 'ephemeral_gb', 0) or 0) * GIB,
        int(field(flavor, 'swap', 0) or 0) * datamodel.MIB) if size > 0)
    return sum(sizes), sizes, 'flavor'


def local_disks(instance: Any, migrate_data: Any,
                guest: Callable[[], Any]) -> DiskFacts:
    """What a block migration of ``instance`` copies.

    The disks Nova names in ``migrate_disks``
    (``LibvirtDriver._live_migration_copy_disk_paths``): the guest's file
    and block disks that are neither read-only nor shareable nor an
    attached volume (``migrate_data.bdms``, filled in by the destination's
    ``pre_live_migration``; a volume disk also carries its volume's
    serial). When a disk cannot be read, the flavor's disk sizes bound the
    copy instead (:func:`_flavor_disks`); when neither can be had, nothing
    is known and the plan predicts no disk time.

    :param guest: returns Nova's ``Guest`` of the instance.
    :returns: (bytes to copy, each copied disk's ``st_size`` as Nova's
        monitor counts it for its timeouts, ``'disks'`` or ``'flavor'``).
    """
    try:
        volumes = {field(bdm, 'dev')
                   for bdm in field(migrate_data, 'bdms', None) or ()}
        copied, sizes = 0, []
        for disk in guest().get_all_disks():
            if disk.readonly or disk.shareable:
                continue
            if disk.source_type not in ('file', 'block'):
                continue
            if disk.target_dev in volumes or disk.serial:
                continue
            disk_copied, size = _copied_bytes(disk.source_path)
            copied += disk_copied
            sizes.append(size)
        return copied, tuple(sizes), 'disks'
    except Exception as exc:  # a bound will do
        LOG.info('Local disks not read (%s): the flavor\'s disk sizes '
                 'bound the block migration\'s copy.', exc,
                 instance=instance)
    try:
        return _flavor_disks(instance, migrate_data)
    except Exception as exc:  # unknown is a valid answer
        LOG.info('Block migration\'s disk size unknown: %s', exc,
                 instance=instance)
        return NO_DISKS


def reusable_measurement(conf: Any, instance_uuid: str, memory_mb: int,
                         history: Optional[qat_history.HistoryStore],
                         now: Optional[float] = None,
                         ) -> Optional[qat_history.Measurement]:
    """The measurement of the instance's last migration, if still good.

    Good means at most ``[qat_migration] measurement_reuse_seconds`` old
    (a clock that went backwards makes it stale), taken on a guest of the
    same memory size, and with a dirty rate.
    """
    max_age = conf.qat_migration.measurement_reuse_seconds
    if not max_age or history is None:
        return None
    try:
        found = history.measurement(instance_uuid)
    except Exception as exc:  # the history is optional
        LOG.warning('Migration history unreadable (%s): measuring.', exc)
        return None
    if found is None:
        return None
    age = found.age_s(now)
    if not 0 <= age <= max_age:
        return None
    if found.memory_mb is not None and found.memory_mb != memory_mb:
        return None
    return found


def gather(conf: Any, context: Any, instance: Any, dest: str,
           migrate_data: Any, hints: datamodel.Hints, measured: bool, *,
           caps: Optional[datamodel.HypervisorCaps], host: Any,
           qat_manager: Any, history: Optional[qat_history.HistoryStore],
           reportclient: Any, in_flight: datamodel.InFlight,
           ) -> datamodel.Facts:
    """The facts of one migration.

    :param measured: sample host load, dirty rate and QAT state and read
        the destination's traits (not needed by Nova's own plan, and not
        free: the samples take ~1 s). The guest's own numbers are reused
        from its last migration when recent
        (:func:`reusable_measurement`); the facts say so
        (``InstanceFacts.measurement`` and ``measured_at``).
    :param caps: this host's hypervisor capabilities (unknown if None).
    :param host: Nova's libvirt ``Host``, to find the guest to measure.
    :param qat_manager: the QAT device manager, or None without one.
    :param history: the migration history store, or None.
    :param reportclient: Nova's Placement client, for :func:`destination`.
    :param in_flight: what the migrations already running hold.

    A block migration's disks are read with the measurements (only
    ``measured`` plans predict anything from them).
    """
    found: dict = {}

    def guest() -> Any:
        """Nova's ``Guest`` of the instance, looked up once."""
        if 'guest' not in found:
            found['guest'] = host.get_guest(instance)
        return found['guest']

    flavor = field(instance, 'flavor')
    paused = field(instance, 'vm_state') == vm_states.PAUSED
    block_migration = bool(field(migrate_data, 'block_migration', False))
    disk_bytes, disk_sizes, disk_source = (
        local_disks(instance, migrate_data, guest)
        if measured and block_migration else NO_DISKS)
    memory_mb = int(field(flavor, 'memory_mb', 0) or
                    field(instance, 'memory_mb', 0) or 0)
    measurements: dict = {}
    host_load = datamodel.HostLoad()
    qat = datamodel.QATState()
    if measured:
        host_load = measure.host_load()
        seconds = conf.qat_migration.dirty_rate_sample_seconds
        reused = (reusable_measurement(conf, instance.uuid, memory_mb,
                                       history)
                  if seconds and not paused else None)
        if reused is not None:
            measurements = reused.fields()
            LOG.info('Guest measurement of %(when)s (%(age).0f s ago, '
                     '[qat_migration] measurement_reuse_seconds=%(max)d) '
                     'reused: dirty rate %(rate).1f MiB/s; not measured '
                     'again.',
                     {'when': outcomes.iso_utc(reused.measured_at),
                      'age': reused.age_s(),
                      'max': conf.qat_migration.measurement_reuse_seconds,
                      'rate': reused.dirty_rate_mbps}, instance=instance)
        elif seconds and not paused:
            try:
                measurements = measure.instance_fields(
                    guest()._domain, memory_mb, seconds,
                    **({} if conf.qat_migration.sample_guest_memory
                       else {'sample_pages': 0}))
            except Exception as exc:
                LOG.info('Guest not measured: %s', exc, instance=instance)
        if qat_manager is not None:
            try:
                qat = qat_manager.state()
            except Exception as exc:
                LOG.warning('QAT state unavailable: %s', exc)
    inst = datamodel.InstanceFacts(
        uuid=instance.uuid, name=field(instance, 'name', ''),
        memory_mb=memory_mb,
        vcpus=int(field(flavor, 'vcpus', 0) or
                  field(instance, 'vcpus', 0) or 1),
        paused=paused, hints=hints, **measurements)
    return datamodel.Facts(
        instance=inst, host=host_load, qat=qat,
        hypervisor=caps or datamodel.HypervisorCaps(),
        destination=(destination(context, reportclient, dest, migrate_data)
                     if measured else datamodel.DestinationCaps()),
        nova=datamodel.NovaSettings.from_conf(conf),
        history=(history.get(instance.uuid) if history is not None
                 else datamodel.History()),
        link_mbps=link_mbps(conf),
        block_migration=block_migration, disk_bytes=disk_bytes,
        disk_sizes=disk_sizes, disk_source=disk_source,
        passthrough_allowed=conf.qat_migration.qemu_monitor_passthrough,
        in_flight=in_flight)
