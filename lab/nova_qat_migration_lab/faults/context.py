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
"""The fault matrix's settings and plans, and what a fault acts on.

:class:`FaultContext` is one migration under a fault: the lab, the
guest's session, what the source looked like before (its QEMU's
migration parameters, its ``-global`` pairs, Nova's migration records,
the report count, the history) and the events the fault logged.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any, Optional

from oslo_log import log as logging

from nova_qat_migration import datamodel
from nova_qat_migration.virt.libvirt import passthrough
from nova_qat_migration_lab import cloud as cloud_mod
from nova_qat_migration_lab import hosts as hosts_mod
from nova_qat_migration_lab import introspect
from nova_qat_migration_lab import runner
from nova_qat_migration_lab import scenarios as sc

LOG = logging.getLogger(__name__)


#: ``[qat_migration]`` options the QAT sysfs fixture sets on both computes.
QAT_FIXTURE_OPTIONS = ('sysfs_root', 'debugfs_root',
                       'qat_endpoints_for_migration',
                       'qatzip_software_allowed')

#: A busy guest whose first pass takes ~10 s on the lab's 200 Mbit/s link:
#: long enough to hit it in pre-copy, short enough for CI. 256 MiB filled
#: and all of it rewritten at 2000 pages/s (8 MiB/s): every plan converges
#: without a fault.
FAULT_SCENARIO = sc.Scenario(
    'fault-busy', memory_mb=512, touch_mb=256, hot_mb=256, rate=2000,
    pattern='small', link_mbit=200,
    description='256 MiB rewritten at 2000 pages/s over a 200 Mbit/s link')

#: Completion timeout (Nova's, scaled per GiB by the runner) of a fault run.
TIMEOUT_S = 60.0
#: A run that has not ended this long after the request is given up (the
#: checks then say what was left): e.g. a post-copy that cannot finish.
GIVE_UP_S = 240.0
#: ``[DEFAULT] manager_shutdown_timeout`` of the stopped nova-compute
#: (Nova 34's default: in-progress tasks get 140 s of it).
SHUTDOWN_TIMEOUT_S = 160
#: How long the checks wait for the other end to be cleaned up.
SETTLE_S = 30.0
#: Pre-copy is "under way" once this much was sent (the destination QEMU
#: exists and receives).
PRECOPY_BYTES = 24 * 1024 * 1024
#: Pages/s the guest jumps to in the dirty-rate fault (~117 MiB/s asked;
#: a TCG vCPU reaches what it can, well above the 200 Mbit/s link).
JUMP_RATE = 30000

#: The source QEMU's multifd parameters the driver itself sets (through
#: the monitor passthrough): they must be exactly back after a failure.
STRICT_PARAMS = ('multifd-compression', 'multifd-zlib-level',
                 'multifd-zstd-level', 'multifd-qatzip-level')
#: Parameters that never say anything about a migration's leftovers.
_VOLATILE_PARAMS = ('tls-creds', 'tls-hostname', 'tls-authz')
#: The source QEMU's migration parameters compared before and after a
#: fault: the multifd ones (:data:`STRICT_PARAMS`, judged) and those a
#: plan sets through libvirt (reported).
WATCHED_PARAMS = STRICT_PARAMS + (
    'multifd-channels', 'downtime-limit', 'max-bandwidth',
    'max-postcopy-bandwidth', 'xbzrle-cache-size', 'cpu-throttle-initial',
    'cpu-throttle-increment', 'cpu-throttle-tailslow')

TERMINAL = cloud_mod.TERMINAL_MIGRATION
DRIVER_NOVA = 'libvirt.LibvirtDriver'

#: The plans of the fault matrix, one per column of its summary.
PASSTHROUGH_ZSTD = sc.PlanSpec(
    'passthrough-zstd', policy='static', options=tuple(sorted(
        dict(sc.static_options(datamodel.Plan(
            policy='static', method='zstd', level=1,
            parallel_connections=4)),
             qemu_monitor_passthrough=True).items())))
MATRIX_PLANS = {
    'nova_default': sc.PLANS['nova_default'],
    'adaptive': sc.PLANS['adaptive'],
    'passthrough-zstd': PASSTHROUGH_ZSTD,
    'xbzrle': dataclasses.replace(sc.PLANS['xbzrle128'], name='xbzrle'),
    'autoconverge': dataclasses.replace(sc.PLANS['autoconv20+10'],
                                        name='autoconverge'),
    'postcopy': dataclasses.replace(sc.PLANS['postcopy2'], name='postcopy'),
}
#: QAT fault only: a static qatzip plan (needs a lease).
QATZIP = sc.PlanSpec(
    'qatzip', policy='static', options=tuple(sorted(
        dict(sc.static_options(datamodel.Plan(
            policy='static', method='qatzip', level=1,
            parallel_connections=4)),
             qemu_monitor_passthrough=True).items())))


# -- context -----------------------------------------------------------------

@dataclasses.dataclass
class Check:
    """One check after a fault. ``ok`` None: informational."""

    name: str
    ok: Optional[bool]
    detail: str = ''


class FaultContext:
    """One fault run: the lab, the guest and what was true before."""

    def __init__(self, nlab: runner.NovaLab, session: runner.GuestSession,
                 spec: sc.PlanSpec, options: dict) -> None:
        self.nlab = nlab
        self.lab: hosts_mod.Lab = nlab.lab
        self.cloud: cloud_mod.LabCloud = nlab.cloud
        self.session = session
        self.spec = spec
        self.options = options
        self.server_id: str = session.server_id
        self.source = self.lab.host(session.host)
        self.dest = next(h for h in self.lab.hosts if h is not self.source)
        self.link_mbit = self.lab.link_mbit
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.events: list = []
        self.state: dict = {}
        self.error = ''
        self.our_driver = nlab.driver != DRIVER_NOVA
        self._conn: Any = None
        self._src_dom: Any = None
        dom = self.source_domain()
        self.domain_name = dom.name()
        self.source_pid = self.source.qemu_pid(self.domain_name)
        self.params_before = _source_params(dom)
        self.globals_before = passthrough.globals_of(dom.XMLDesc(0))
        self.migrations_before = {m['id'] for m in
                                  self.cloud.migrations(self.server_id)}
        self.n_reports = len(self.cloud.reports.records)
        self.history_before = _history(self.cloud, self.server_id)

    def event(self, text: str) -> None:
        t = round(time.monotonic() - self.started, 2)
        LOG.info('fault t=%.2f: %s', t, text)
        self.events.append([t, text])

    def source_domain(self) -> Any:
        """The guest's domain on the source, on the lab's own connection
        (Nova's connections are Nova's).
        """
        if self._src_dom is None:
            self._conn = self.lab.connect(self.source)
            self._src_dom = self._conn.lookupByUUIDString(self.server_id)
        return self._src_dom

    def job(self) -> dict:
        """The source's migration job statistics ({} when none runs)."""
        try:
            stats = self.source_domain().jobStats()
        except Exception:  # the domain left: no job
            return {}
        return stats if stats.get('type') == 2 else {}

    def precopy_running(self, min_bytes: int = PRECOPY_BYTES) -> bool:
        """Pre-copy under way: a job that has sent ``min_bytes`` while the
        guest still runs on the source.
        """
        stats = self.job()
        sent = stats.get('memory_processed') or stats.get(
            'data_processed') or 0
        return bool(stats) and sent >= min_bytes and \
            self.source_state()[0] == 1

    def source_state(self) -> tuple:
        try:
            return tuple(self.source_domain().state())
        except Exception:
            return (0, 0)

    def in_post_copy(self) -> bool:
        # libvirt: VIR_DOMAIN_PAUSED (3), reason POSTCOPY (12)
        return self.source_state() == (3, 12) and bool(self.job())

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # a killed daemon's socket
                pass
        self._conn = self._src_dom = None


def _source_params(dom: Any) -> dict:
    """:data:`WATCHED_PARAMS` of the QEMU running ``dom``, asked as the
    driver asks it (:func:`passthrough.query_source`); {} when QEMU cannot
    be asked (e.g. it is gone).
    """
    try:
        return passthrough.query_source(dom, WATCHED_PARAMS)
    except passthrough.PassthroughError as exc:
        LOG.info('query-migrate-parameters failed: %s', exc)
        return {}


def _history(cloud: cloud_mod.LabCloud, server_id: str) -> Optional[dict]:
    for compute in cloud.computes.values():
        store = introspect.view(compute.driver).get('history')
        if store is not None:
            return dataclasses.asdict(store.get(server_id))
    return None
