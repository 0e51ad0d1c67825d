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
"""libvirt's dirty-rate calculation against the guest's achieved rate.

Boots each benchmark scenario's guest through the lab's Nova, one at a
time, and compares ``virDomainStartDirtyRateCalc`` (page sampling, 1 s as
the driver uses it and 3 s; dirty bitmap, 1 s and 3 s) with the rate the
guest's dirtier reports on its console. Run as root from the checkout,
nothing else on the lab::

    .venv/bin/python benchmarks/dirty-rate/measure.py > results.json
"""

import json
import os
import sys
import time

os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')
import nova.tests.functional  # noqa: E402,F401 - before Nova's modules

from nova_qat_migration.conf import CONF  # noqa: E402
CONF.clear()
import libvirt  # noqa: E402

from nova_qat_migration_lab import runner  # noqa: E402
from nova_qat_migration_lab import scenarios as sc  # noqa: E402

MIB = 1024 * 1024
MEASURED = 2
MODES = (('sampling_1s', 0, 1), ('sampling_3s', 0, 3),
         ('bitmap_1s', libvirt.VIR_DOMAIN_DIRTYRATE_MODE_DIRTY_BITMAP, 1),
         ('bitmap_3s', libvirt.VIR_DOMAIN_DIRTYRATE_MODE_DIRTY_BITMAP, 3))


def calc(dom, mode, seconds):
    """One dirty-rate calculation, MiB/s (None if never measured)."""
    dom.startDirtyRateCalc(seconds, mode)
    conn = dom.connect()
    time.sleep(seconds)
    for _ in range(50):
        record = conn.domainListGetStats(
            [dom], libvirt.VIR_DOMAIN_STATS_DIRTYRATE)[0][1]
        if record.get('dirtyrate.calc_status') == MEASURED:
            return record.get('dirtyrate.megabytes_per_second')
        time.sleep(0.2)
    return None


def main():
    out = []
    with runner.NovaLab('dx2', 1000) as nlab:
        for name in ('mostly-zero', 'random-writes', 'text-rewrite',
                     'small-writes'):
            scenario = sc.SCENARIOS[name]
            session = runner.GuestSession(nlab, scenario, name='dx-' + name)
            session.boot()
            try:
                time.sleep(6)
                dom = nlab.cloud.domain(session.server_id)
                row = {'scenario': name, 'pattern': scenario.pattern,
                       'hot_mb': scenario.hot_mb,
                       'nominal_mbps': round(scenario.rate * 4096 / MIB, 1),
                       'achieved_pages_s': []}
                for label, mode, seconds in MODES:
                    row[label] = calc(dom, mode, seconds)
                    row['achieved_pages_s'].append(session.console.rate())
                achieved = [r for r in row['achieved_pages_s'] if r]
                row['achieved_mbps'] = (round(sum(achieved) / len(achieved)
                                              * 4096 / MIB, 1)
                                        if achieved else None)
                out.append(row)
            finally:
                session.destroy()
    json.dump(out, sys.stdout, indent=1)


if __name__ == '__main__':
    main()
