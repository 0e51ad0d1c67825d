#!/usr/bin/env python3
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
"""Time QAT discovery on an 8 PF x 16 VF host (the budget is 10 ms).

Builds the fixture sysfs/debugfs tree (no QAT hardware needed), then times
``QATManager.scan()`` and ``scan() + update_provider_tree()`` into a real
Nova ``ProviderTree`` with timeit (best of --repeat runs of --number).
A benchmark, not a timed test: CI machines are too noisy for a hard limit.

Usage: python tools/bench_qat_scan.py [--pfs 8] [--vfs 16] [--json]
"""

import argparse
import json
import os
import sys
import timeit

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from nova.compute import provider_tree  # noqa: E402
from oslo_config import fixture as config_fixture  # noqa: E402
from oslo_utils import uuidutils  # noqa: E402

from nova_qat_migration.conf import CONF  # noqa: E402
from nova_qat_migration.qat import manager  # noqa: E402
from tests.fixtures import qat_sysfs  # noqa: E402

BUDGET_MS = 10.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--pfs', type=int, default=8)
    parser.add_argument('--vfs', type=int, default=16)
    parser.add_argument('--number', type=int, default=50)
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args()

    tree = qat_sysfs.QATSysfs()
    conf = config_fixture.Config(CONF)
    tree.setUp()
    conf.setUp()
    try:
        tree.build_host(args.pfs, args.vfs)
        for i in range(args.pfs):
            tree.set_telemetry('0000:%02x:00.0' % (0x6b + i * 0x10),
                               {'util_cpr0': 10, 'util_dcpr0': 20})
        conf.config(group='qat_migration', sysfs_root=tree.sysfs,
                    debugfs_root=tree.debugfs, qat_endpoints_for_migration=4)
        mgr = manager.QATManager(CONF)
        pt = provider_tree.ProviderTree()
        pt.new_root('cmp1', uuidutils.generate_uuid(), generation=0)
        statuses = mgr.scan()
        endpoints = sum(len(s.compression_endpoints()) for s in statuses)
        assert endpoints == args.pfs * args.vfs, endpoints

        def best_ms(stmt):
            runs = timeit.repeat(stmt, number=args.number,
                                 repeat=args.repeat)
            return min(runs) / args.number * 1000.0

        scan_ms = best_ms(mgr.scan)
        update_ms = best_ms(lambda: mgr.update_provider_tree(pt, 'cmp1'))
    finally:
        conf.cleanUp()
        tree.cleanUp()
    result = {'pfs': args.pfs, 'vfs_per_pf': args.vfs,
              'endpoints': endpoints, 'scan_ms': round(scan_ms, 3),
              'scan_and_update_provider_tree_ms': round(update_ms, 3),
              'budget_ms': BUDGET_MS}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print('%d PFs x %d VFs (%d endpoints)'
              % (args.pfs, args.vfs, endpoints))
        print('scan():                          %.2f ms per scan' % scan_ms)
        print('scan() + update_provider_tree(): %.2f ms per update'
              % update_ms)
        verdict = 'OK' if update_ms < BUDGET_MS else 'OVER BUDGET'
        print('budget %.0f ms: %s' % (BUDGET_MS, verdict))
    return 0 if update_ms < BUDGET_MS else 1


if __name__ == '__main__':
    sys.exit(main())
