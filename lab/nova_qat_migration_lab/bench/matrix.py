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
"""The benchmark's runs: scenarios x plans x repeats of real migrations.

Runs are ordered repeat by repeat (every scenario once, then again), and
within a scenario the plan order rotates between repeats, so slow drift of
the machine (other work on the same cores) spreads over all plans instead of
favouring one. Each run is one JSON line, written as soon as it ends.
"""

from __future__ import annotations

import os
import time
from typing import Any, Iterable, Optional

from oslo_log import log as logging

from nova_qat_migration_lab.bench import stats
from nova_qat_migration_lab import jsonlines
from nova_qat_migration_lab import measure
from nova_qat_migration_lab import runner
from nova_qat_migration_lab import scenarios as sc

LOG = logging.getLogger(__name__)


def _echo(text: str) -> None:
    print(text, flush=True)


def run_matrix(conf: Any, scenarios: Iterable[str], plans: Iterable[str],
               repeats: int, out_path: str, timeout_s: float,
               prefix: Optional[str] = None, echo=_echo,
               qat_options: Optional[dict] = None,
               qemu: Optional[str] = None,
               cloud: str = 'services', first_repeat: int = 0) -> list:
    """Run the matrix through Nova, appending one JSON line per migration
    to ``out_path``. Returns the result dicts.

    :param conf: unused (kept for callers); options reach the computes
        as ``qat_options`` and per plan spec.
    :param qemu: the lab's QEMU (``distro`` or ``qatzip``, see
        :class:`~nova_qat_migration_lab.runner.NovaLab`).
    :param cloud: ``services`` (the operator's cloud, every service its
        own process; logs under /var/log/nqm-cloud) or ``inprocess``.
    :param first_repeat: the index of the first repeat: a later run
        appending repeats (of fewer plans) keeps its own seeds and plan
        order instead of repeating the first run's.
    """
    scenarios = list(scenarios)
    plans = list(plans)
    results = []
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    first = sc.SCENARIOS[scenarios[0]]
    log_path = os.path.join(os.path.dirname(os.path.abspath(out_path)),
                            'nova.log')
    with runner.NovaLab(prefix, link_mbit=first.link_mbit,
                        qat_options=qat_options,
                        log_path=log_path, qemu=qemu, cloud=cloud) as nlab, \
            open(out_path, 'a') as out:
        echo('bench: %s cloud, Nova API at %s; every migration is '
             '"openstack server migrate --live-migration" through '
             'QATLibvirtDriver (logs: %s)' % (
                 cloud, nlab.cloud.api_url,
                 log_path if cloud == 'inprocess' else
                 '/var/log/nqm-cloud'))
        for repeat in range(first_repeat, first_repeat + repeats):
            for name in scenarios:
                scenario = sc.SCENARIOS[name]
                shift = repeat % len(plans)
                order = plans[shift:] + plans[:shift]
                results += _run_scenario(
                    nlab, scenario, order, repeat,
                    scenario.completion_timeout_s(timeout_s), out, echo)
    return results


def _run_scenario(nlab: runner.NovaLab, scenario: sc.Scenario,
                  order: list, repeat: int, timeout_s: float, out,
                  echo) -> list:
    results = []
    session = runner.GuestSession(nlab, scenario, seed=repeat + 1,
                                  name='%s-%d' % (scenario.name, repeat + 1))
    try:
        boot_s = session.boot()
        echo('[%s] %s repeat %d: guest ready in %.1f s' % (
            time.strftime('%H:%M:%S'), scenario.name, repeat + 1, boot_s))
        for name in order:
            try:
                res = session.migrate(sc.PLANS[name], timeout_s=timeout_s,
                                      repeat=repeat).to_dict()
            except Exception as exc:  # recorded, not hidden
                LOG.exception('run %s/%s failed', scenario.name, name)
                res = measure.RunResult(scenario=scenario.name, plan=name,
                                       repeat=repeat, error=repr(exc),
                                       started_at=time.time()).to_dict()
                # The guest may be in any state: start afresh.
                session.destroy()
                session.boot()
            jsonlines.write(out, res)
            results.append(res)
            echo('[%s]   %-14s %-9s %6s s  downtime %5s ms  wire %6s MB  '
                 'cpu %5s s  integrity %s  %s' % (
                     time.strftime('%H:%M:%S'), name, res['outcome'],
                     stats.fmt(res['total_s']),
                     stats.fmt(res['downtime_ms'], 0),
                     stats.fmt(stats.mb(res['wire_bytes']), 0),
                     stats.fmt(res['src_cpu_s']), res['integrity'],
                     res['effective_plan']))
    except Exception as exc:
        LOG.exception('scenario %s failed', scenario.name)
        res = measure.RunResult(scenario=scenario.name, plan='(boot)',
                               repeat=repeat, error=repr(exc)).to_dict()
        jsonlines.write(out, res)
        results.append(res)
        echo('  scenario failed: %r' % exc)
    finally:
        session.destroy()
    return results
