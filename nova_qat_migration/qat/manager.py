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
"""The one object the driver and the CLI use for everything QAT.

``QATManager(conf)`` reads ``[qat_migration] sysfs_root``,
``debugfs_root``, ``qatzip_library`` and ``qat_endpoints_for_migration``
each time it needs them, so option changes (and tests' ``self.flags``) take
effect without a new manager.

* :meth:`QATManager.scan` -- discovery + health, a few ms, read-only;
* :meth:`QATManager.update_provider_tree` -- called from the driver's
  ``update_provider_tree`` after ``super()``; also resizes the lease pool;
* :meth:`QATManager.lease` -- ``with mgr.lease(uuid) as lease:`` around a
  migration (None = no QAT for it);
* :meth:`QATManager.state` -- the :class:`QATState` a policy sees;
* :meth:`QATManager.selftest` -- QATzip round trip (cached).

Nothing here raises into nova-compute: failures are logged and reported as
"no QAT".
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator, Mapping, Optional

from oslo_log import log as logging

from nova_qat_migration import datamodel
from nova_qat_migration.qat import devices
from nova_qat_migration.qat import health
from nova_qat_migration.qat import leases
from nova_qat_migration.qat import placement
from nova_qat_migration.qat import qatzip

LOG = logging.getLogger(__name__)

#: Sample size of the self-test a policy's first ``state()`` triggers.
STATE_SELFTEST_BYTES = 4 * 1024 * 1024


class QATManager:
    """Discovery, health, leases, Placement and self-test for one host."""

    def __init__(self, conf: Any) -> None:
        self.conf = conf
        self._lock = threading.Lock()
        self._scanner: Optional[devices.Scanner] = None
        self.pool = leases.LeasePool()
        self.last_scan: Optional[list[health.PFStatus]] = None
        self.last_plan: Optional[placement.HostPlan] = None
        self._selftest: Optional[qatzip.SelfTestResult] = None
        self._warned: Any = None

    @property
    def group(self) -> Any:
        return self.conf.qat_migration

    def _get_scanner(self) -> devices.Scanner:
        root = self.group.sysfs_root
        with self._lock:
            if self._scanner is None or self._scanner.sysfs_root != root:
                self._scanner = devices.Scanner(root)
            return self._scanner

    def scan(self) -> list[health.PFStatus]:
        """Every QAT PF with its VFs and health. Never raises.

        Each call reads sysfs/debugfs afresh (cheap: ~1-2 ms for 8 PFs x
        16 VFs) and keeps the result in :attr:`last_scan`; the lease pool
        is resized to the endpoints reserved for migrations.
        """
        scanner = self._get_scanner()
        try:
            pfs = scanner.scan()
            reader = health.HealthReader(self.group.debugfs_root,
                                         warn=scanner.warn)
            by_address = reader.read_all([pf.address for pf in pfs])
            statuses = [health.PFStatus(pf, by_address[pf.address])
                        for pf in pfs]
        except Exception:
            # Never break nova-compute over QAT (logged, not silent).
            LOG.exception('QAT scan failed; reporting no QAT')
            statuses = []
        host_plan = placement.plan('', statuses,
                                   self.group.qat_endpoints_for_migration)
        self.pool.resize(host_plan.lease_slots())
        self.last_scan = statuses
        return statuses

    def plan(self, nodename: str,
             statuses: Optional[list[health.PFStatus]] = None,
             ) -> placement.HostPlan:
        """The providers that would be reported (no tree needed)."""
        if statuses is None:
            statuses = self.scan()
        return placement.plan(nodename, statuses,
                              self.group.qat_endpoints_for_migration)

    def update_provider_tree(self, provider_tree: Any, nodename: str,
                             allocations: Optional[Mapping[str, Any]] = None,
                             ) -> Optional[placement.HostPlan]:
        """Report QAT into the driver's ``ProviderTree``.

        Call after the parent driver's ``update_provider_tree`` (the compute
        node provider ``nodename`` must exist), passing its ``allocations``
        through. Logs and returns None instead of raising.
        """
        statuses = self.scan()
        try:
            host_plan = self.plan(nodename, statuses)
            result = placement.apply(provider_tree, host_plan, allocations)
        except Exception:
            # Never break the resource tracker (logged, not silent).
            LOG.exception('Reporting QAT capacity to Placement failed')
            return None
        if result.created or result.removed or result.kept_in_use:
            LOG.info('QAT providers of %s: created %s, removed %s, kept '
                     'while in use %s; %d endpoints, %d reserved for '
                     'migrations', nodename, result.created, result.removed,
                     result.kept_in_use, host_plan.endpoints,
                     host_plan.reserved)
        self.last_plan = host_plan
        return host_plan

    @contextlib.contextmanager
    def lease(self, instance_uuid: str) -> Iterator[Optional[leases.Lease]]:
        """A QAT lease for one migration, or None if none is free."""
        if self.last_scan is None:
            self.scan()
        with self.pool.lease(instance_uuid) as lease:
            yield lease

    def selftest(self, size: int = STATE_SELFTEST_BYTES,
                 refresh: bool = False) -> qatzip.SelfTestResult:
        """QATzip round trip; the result is cached unless ``refresh``.

        On a host with QAT hardware this briefly opens a QAT instance
        (qzInit), so it runs on demand, never from the periodic update.
        """
        with self._lock:
            if self._selftest is not None and not refresh:
                return self._selftest
        result = qatzip.QATzip(self.group.qatzip_library).selftest(size)
        LOG.info('QATzip self-test: %s', result.describe())
        with self._lock:
            self._selftest = result
        return result

    #: What the log and the report say when QATzip only ran in software.
    SOFTWARE_ONLY = ('QAT device present but QATzip ran in software: not '
                     'used')

    def _warn_once(self, test: Optional[qatzip.SelfTestResult],
                   message: str, *args: Any) -> None:
        """Log ``message`` once per self-test result."""
        with self._lock:
            if self._warned is test:
                return
            self._warned = test
        LOG.warning(message, *args)

    def _warn_selftest(self, test: Optional[qatzip.SelfTestResult]) -> None:
        """Say once per result why QAT is not offered to migrations."""
        self._warn_once(
            test, 'QAT devices found but QATzip is unusable (%s: %s; '
            '[qat_migration] qatzip_library=%s): plans use no QAT.',
            getattr(test, 'status', 'self-test did not run'),
            getattr(test, 'message', '') or '-', self.group.qatzip_library)

    def state(self) -> datamodel.QATState:
        """The source's QAT capacity for the migration being planned.

        Only a self-test that ran on QAT hardware makes the endpoints
        usable: QATzip falls back to software silently when no hardware
        path works (no instance, no memory driver, a dead device), and
        software ``qatzip`` costs far more CPU than ``zstd``. The operator
        may count the software path anyway (``[qat_migration]
        qatzip_software_allowed``, for test beds).
        """
        statuses = self.scan()
        endpoints = sum(len(s.compression_endpoints()) for s in statuses)
        test: Optional[qatzip.SelfTestResult] = None
        if endpoints:
            try:
                test = self.selftest()
            except Exception as exc:
                # A binding bug: logged, and the self-test counts as failed.
                LOG.exception('QATzip self-test raised')
                test = qatzip.SelfTestResult(status=qatzip.STATUS_FAILED,
                                             message=str(exc))
        ok = test is not None and test.ok
        hardware = bool(test is not None and test.hardware)
        unusable = ''
        if endpoints and not ok:
            # NOTE(qat-migration): QEMU compresses qatzip pages through
            # the same library; devices without a working QATzip cannot
            # carry a migration, so plans must not count on them.
            self._warn_selftest(test)
            unusable = 'QATzip unusable (%s)' % getattr(
                test, 'status', 'self-test did not run')
            endpoints = 0
        elif endpoints and not hardware:
            if self.group.qatzip_software_allowed:
                self._warn_once(
                    test, 'QAT device present but QATzip ran in software '
                    '(%s); used all the same: [qat_migration] '
                    'qatzip_software_allowed is set.', test.describe())
            else:
                self._warn_once(
                    test, '%s (%s; engine evidence: qzInit %s, session '
                    'status %s, ext_rc 0x%x): plans use no QAT.',
                    self.SOFTWARE_ONLY, test.describe(),
                    qatzip.rc_name(test.init_rc),
                    qatzip.rc_name(test.session_status), test.ext_rc or 0)
                unusable = self.SOFTWARE_ONLY
                endpoints = 0
        return datamodel.QATState(
            endpoints=endpoints,
            free_leases=self.pool.free if endpoints else 0,
            hardware=hardware,
            throughput_mbps=test.compress_mbps if endpoints else 0.0,
            ratio=test.ratio if endpoints else 0.0,
            unusable=unusable)
