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
"""A busy guest's migration as libvirt's job stats would show it.

Shaped after the lab's ``small-writes`` run of the adaptive plan
(benchmarks/results.jsonl): a 1 GiB guest dirtying about 156 MiB/s of
small in-page changes over a 768 MiB working set, a 1 Gbit/s link,
XBZRLE with a 512 MiB cache (cold during the first re-send), QEMU's
auto-converge raising its throttle, Nova's downtime steps. The stats go
through the real :class:`ProgressTracker` (so through its
:class:`~nova_qat_migration.timeline.Series`) and the prediction comes
from the real model; only the guest and QEMU are simulated.
"""

import math

from nova_qat_migration import datamodel
from nova_qat_migration.policy import model
from nova_qat_migration import timeline
from nova_qat_migration.virt.libvirt import tracker as tracker_mod

MIB = datamodel.MIB
RAM_MB = 1024.0
WORKING_MB = 768.0
DIRTY_MBPS = 156.0
LINK_MBPS = 119.0
PLAN = datamodel.Plan(policy='adaptive', method='xbzrle',
                      xbzrle_cache_mb=512, throttle_initial=40,
                      throttle_increment=20, max_downtime_ms=500)
#: (seconds, action) the driver applied: Nova's downtime steps (scaled)
#: and the escalation's cache growth.
ACTIONS = ((0.5, datamodel.Action(datamodel.ACTION_DOWNTIME, 37,
                                  "Nova's downtime step 50 ms")),
           (9.0, datamodel.Action(datamodel.ACTION_DOWNTIME, 75,
                                  "Nova's downtime step 100 ms")),
           (12.5, datamodel.Action(datamodel.ACTION_XBZRLE_CACHE, 1024,
                                   'XBZRLE cache misses 41% > 20%: cache '
                                   'grown')),
           (18.0, datamodel.Action(datamodel.ACTION_DOWNTIME, 150,
                                   "Nova's downtime step 200 ms")))


def job_stats(step_s=0.5):
    """The job stats of the run, one per monitor poll, and the actions
    as ``(index of the poll after which it was applied, action)``.
    """
    stats, actions = [], []
    t = 0.0
    remaining = RAM_MB
    processed = 0.0
    iteration = 1
    written = 0.0
    throttle = 0
    high = 0
    pages = misses = 0.0
    pending = list(ACTIONS)
    while True:
        t += step_s
        dirty = DIRTY_MBPS * (1 - throttle / 100.0)
        # XBZRLE: the first re-send fills the cache (mostly misses), the
        # later ones send deltas (a 90% hit rate saves 80% of the bytes).
        hit = 0.0 if iteration == 1 else (0.15 if iteration == 2 else 0.9)
        rate = LINK_MBPS / (1.0 - 0.8 * hit)
        sent = min(remaining, rate * step_s)
        remaining -= sent
        processed += sent * (1.0 - 0.8 * hit)
        if iteration > 1:
            looked_up = sent * MIB / 4096
            pages += looked_up * hit
            misses += looked_up * (1 - hit)
        # The distinct pages written during this pass.
        written += dirty * step_s
        pass_dirty = WORKING_MB * (1 - math.exp(-written / WORKING_MB))
        if remaining <= 0.0:
            if pass_dirty / rate <= 0.3:
                break
            iteration += 1
            remaining = pass_dirty
            written = 0.0
            # QEMU's auto-converge: every second "dirty rate high" sync.
            high += 1
            if high % 2 == 0:
                throttle = min(99, 40 if not throttle else throttle + 20)
        stats.append({
            'type': 2, 'time_elapsed': int(t * 1000),
            'memory_total': int(RAM_MB * MIB),
            'memory_remaining': int(remaining * MIB),
            'memory_processed': int(processed * MIB),
            'memory_iteration': iteration,
            'memory_dirty_rate': int(dirty * MIB / 4096),
            'memory_page_size': 4096,
            'memory_bps': int(rate * MIB),
            'auto_converge_throttle': throttle,
            'compression_cache': 512 * MIB,
            'compression_pages': int(pages),
            'compression_cache_misses': int(misses),
        })
        while pending and pending[0][0] <= t:
            actions.append((len(stats) - 1, pending.pop(0)[1]))
        if t > 120:
            break
    return stats, actions


def predicted():
    """The model's prediction and remaining-data corners for the run."""
    trace = []
    pred = model.predict(PLAN, model.Workload(
        ram_mb=RAM_MB, dirty_mbps=DIRTY_MBPS, working_set_mb=WORKING_MB,
        compress_ratio=1.0, xbzrle_friendly=0.9), LINK_MBPS, trace=trace)
    return pred, trace


def record(outcome='completed'):
    """The report of the run (the fields a timeline takes from it)."""
    pred, _ = predicted()
    stats, _ = job_stats()
    return {'instance': '6f1c2a9e-3b7d-4c10-9e2f-5a8b7c6d4e31',
            'name': 'instance-0000002a', 'host': 'compute-a',
            'outcome': outcome, 'policy': 'adaptive',
            'plan': PLAN.describe(), 'requested': PLAN.describe(),
            'method': 'xbzrle', 'total_s': stats[-1]['time_elapsed'] / 1e3 +
            1.5, 'job_s': stats[-1]['time_elapsed'] / 1e3,
            'downtime_ms': 107.0, 'memory_total_bytes': RAM_MB * MIB,
            'facts': {'link_mbps': LINK_MBPS, 'memory_mb': 1024},
            'prediction': {'summary': pred.describe(),
                           'total_s': round(pred.total_s, 2),
                           'downtime_ms': round(pred.downtime_ms, 1),
                           'rounds': pred.rounds, 'converges': True}}


def run(series=None):
    """The tracker fed with the run; returns it."""
    tracker = tracker_mod.ProgressTracker()
    if series is not None:
        tracker.series = series
    stats, actions = job_stats()
    by_index = {}
    for index, action in actions:
        by_index.setdefault(index, []).append(action)
    for i, sample in enumerate(stats):
        tracker.update(sample)
        for action in by_index.get(i, ()):
            tracker.applied(action)
    return tracker


def busy_timeline(outcome='completed'):
    """The stored timeline of the run."""
    tracker = run()
    _, trace = predicted()
    return timeline.build(tracker.series, record(outcome), trace,
                          display_name='busy-web-1')
