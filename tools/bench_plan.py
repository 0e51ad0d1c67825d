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
"""Time planning one instance: facts -> policy plan -> libvirt translation.

The budget is 5 ms per instance (Done means of issue 2). For a few fact
sets (an idle guest, a busy guest with spare memory, a non-converging
guest, a QAT host, a guest with a forced method) it times
``policy.plan(facts)`` followed by ``translate.to_libvirt(plan, facts)``
with timeit (best of --repeat runs of --number) and prints microseconds
per plan, for ``adaptive`` with and without its convergence model and for
``static`` and ``nova_default``. A benchmark, not a timed test: CI
machines are too noisy for a hard limit; --check turns the budget into the
exit code for a quiet machine.

Usage: python tools/bench_plan.py [--number 500] [--repeat 5] [--json]
                                  [--check]
"""

import argparse
import json
import os
import sys
import timeit

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from nova_qat_migration.conf import CONF  # noqa: E402
from nova_qat_migration import datamodel  # noqa: E402
from nova_qat_migration.policy import hints  # noqa: E402
from nova_qat_migration.policy import loader  # noqa: E402
from nova_qat_migration.virt.libvirt import translate  # noqa: E402

BUDGET_US = 5000.0

DEST = datamodel.DestinationCaps(
    known=True, methods=frozenset({'xbzrle', 'zlib', 'zstd', 'qatzip'}),
    multifd=True, qat=True)
HOST = datamodel.HostLoad(cpus=32, cpu_idle_pct=70.0, mem_free_mb=65536)
LINK = 10e9 / 8 / datamodel.MIB


def fact_sets() -> dict:
    """Named facts covering the adaptive policy's main paths."""
    common = dict(host=HOST, destination=DEST, link_mbps=LINK)
    return {
        'idle 4G': datamodel.Facts(
            instance=datamodel.InstanceFacts(memory_mb=4096, vcpus=2,
                                             dirty_rate_mbps=5.0), **common),
        'busy 16G': datamodel.Facts(
            instance=datamodel.InstanceFacts(memory_mb=16384, vcpus=8,
                                             dirty_rate_mbps=400.0), **common),
        'stalling 64G': datamodel.Facts(
            instance=datamodel.InstanceFacts(memory_mb=65536, vcpus=16,
                                             dirty_rate_mbps=3000.0),
            history=datamodel.History(migrations=2, converged=False,
                                      compression_ratio=0.45, method='zstd'),
            **common),
        'QAT host': datamodel.Facts(
            instance=datamodel.InstanceFacts(memory_mb=16384, vcpus=8,
                                             dirty_rate_mbps=200.0),
            qat=datamodel.QATState(endpoints=4, free_leases=2, hardware=True,
                                   throughput_mbps=1500.0, ratio=0.4),
            hypervisor=datamodel.HypervisorCaps(
                qemu_version=(10, 1, 0),
                multifd_methods=frozenset({'none', 'zlib', 'zstd',
                                           'qatzip'})),
            passthrough_allowed=True, **common),
        'forced zstd': datamodel.Facts(
            instance=datamodel.InstanceFacts(
                memory_mb=8192, vcpus=4, dirty_rate_mbps=100.0,
                hints=hints.from_instance(extra_specs={
                    'qat_migration:method': 'zstd',
                    'qat_migration:level': '3'})),
            **common),
    }


def runs() -> list:
    """(label, policy, option overrides) to time."""
    out = []
    names = loader.available()
    if 'adaptive' in names:
        if 'adaptive_model' in CONF.qat_migration:
            out.append(('adaptive (model)', 'adaptive',
                        {'adaptive_model': True}))
            out.append(('adaptive (rules)', 'adaptive',
                        {'adaptive_model': False}))
        else:
            out.append(('adaptive', 'adaptive', {}))
    for name in ('static', 'nova_default'):
        if name in names:
            out.append((name, name, {}))
    return out


def bench(number: int, repeat: int) -> list:
    results = []
    facts_by_name = fact_sets()
    for label, policy_name, overrides in runs():
        for key, value in overrides.items():
            CONF.set_override(key, value, group='qat_migration')
        try:
            policy = loader.load_policy(policy_name, CONF)
            for facts_name, facts in facts_by_name.items():
                def once(policy=policy, facts=facts):
                    return translate.to_libvirt(policy.plan(facts), facts)

                call = once()
                best = min(timeit.repeat(once, number=number,
                                         repeat=repeat)) / number
                results.append({
                    'policy': label, 'facts': facts_name,
                    'us_per_plan': round(best * 1e6, 1),
                    'plan': call.plan.describe(),
                    'flags': call.flag_names(),
                })
        finally:
            for key in overrides:
                CONF.clear_override(key, group='qat_migration')
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--number', type=int, default=500,
                        help='plans per timing run')
    parser.add_argument('--repeat', type=int, default=5,
                        help='timing runs (the best is reported)')
    parser.add_argument('--json', action='store_true')
    parser.add_argument('--check', action='store_true',
                        help='exit 1 if any plan takes more than %d us'
                             % BUDGET_US)
    args = parser.parse_args(argv)
    results = bench(args.number, args.repeat)
    worst = max(r['us_per_plan'] for r in results)
    if args.json:
        print(json.dumps({'budget_us': BUDGET_US, 'worst_us': worst,
                          'results': results}, indent=2))
    else:
        print('%-18s %-14s %10s  %s' % ('policy', 'facts', 'us/plan',
                                        'plan'))
        for r in results:
            print('%-18s %-14s %10.1f  %s' % (r['policy'], r['facts'],
                                              r['us_per_plan'], r['plan']))
        print('worst: %.1f us per plan (budget %.0f us): %s'
              % (worst, BUDGET_US, 'OK' if worst < BUDGET_US else 'OVER'))
    if args.check and worst >= BUDGET_US:
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
