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
"""One structured record per migration: what was planned, what happened.

The record is logged as a single line (``qat_migration report: {json}``)
so operators can grep and parse it, and its numbers are fed to the
per-host :mod:`~nova_qat_migration.history` the adaptive policy learns
from.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any, Mapping, Optional, Sequence

from lxml import etree
from oslo_log import log as logging

from nova_qat_migration import datamodel
from nova_qat_migration import outcomes
from nova_qat_migration.virt.libvirt import constants as c
from nova_qat_migration.virt.libvirt import passthrough
from nova_qat_migration.virt.libvirt import report_facts


LOG = logging.getLogger(__name__)

#: Params never worth a log line (large XML documents).
_HIDDEN_PARAMS = frozenset({'destination_xml', 'persistent_xml'})


def visible_params(params: Optional[Mapping[str, Any]]) -> dict:
    """``params`` without the ones never worth a log line."""
    return {k: v for k, v in (params or {}).items()
            if k not in _HIDDEN_PARAMS}


def _num(stats: Mapping[str, Any], key: str) -> Optional[float]:
    """``stats[key]`` as a finite float, else None."""
    try:
        value = stats.get(key)
        number = None if value is None else float(value)
    except (TypeError, ValueError):
        return None
    return number if number is None or math.isfinite(number) else None


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float (in dicts, lists and
    tuples too) replaced by None.

    A record carries numbers from libvirt's job stats, the facts and the
    model; one non-finite value would otherwise make the log line, the
    notification and the history record invalid JSON (or an ``int()``
    raise and lose all three).
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def dumps(record: Mapping[str, Any]) -> str:
    """``record`` as one line of strict JSON (no NaN or Infinity)."""
    return json.dumps(finite(record), sort_keys=True, default=str,
                      allow_nan=False)


#: libvirt's number of multifd channels when the call names none
#: (``VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS``).
LIBVIRT_DEFAULT_CHANNELS = 2


def qemu_ran(params: Optional[Mapping[str, Any]],
             flags: Optional[Sequence[str]]) -> Optional[dict]:
    """The page compression QEMU ran with, from what was sent.

    Read from the ``migrateToURI3`` call itself, not from the plan: the
    flags and typed parameters libvirt sets on both QEMUs, and the
    ``-global migration.multifd-*`` pairs of the live destination XML,
    which carry what the passthrough backend set on the source through
    QMP (and a method an earlier passthrough migration left on both ends,
    which a plan without one does not see).

    :param params: the params ``migrateToURI3`` received (XMLs included).
    :param flags: the names of the flags it received (``PARALLEL``, ...).
    :returns: ``{'method', 'level', 'channels', 'source'}`` (``source``:
        ``libvirt`` or ``qemu-global``), None when nothing was sent.
    """
    if params is None or flags is None:
        return None
    names = set(flags)
    compression = params.get(c.PARAM_COMPRESSION) or []
    if isinstance(compression, str):
        compression = [compression]
    compression = [str(m) for m in compression]
    level = None
    source = 'libvirt'
    if 'PARALLEL' in names:
        try:
            channels = int(params.get(c.PARAM_PARALLEL_CONNECTIONS) or
                           LIBVIRT_DEFAULT_CHANNELS)
        except (TypeError, ValueError):
            channels = LIBVIRT_DEFAULT_CHANNELS
        multifd = [m for m in compression
                   if m in datamodel.MULTIFD_METHODS]
        if multifd:
            # libvirt sets a method it knows on both QEMUs.
            method = multifd[0]
            level = params.get(c.LEVEL_PARAMS.get(method, ''))
        else:
            found: dict = {}
            xml = params.get(c.PARAM_DESTINATION_XML)
            if xml:
                try:
                    found = passthrough.globals_of(xml)
                except (etree.XMLSyntaxError, ValueError):
                    found = {}
            method = str(found.get('multifd-compression', 'none'))
            if method != 'none':
                source = 'qemu-global'
                level = found.get('multifd-%s-level' % method)
    else:
        channels = 1
        if compression:
            method = '+'.join(compression)
            level = params.get(c.LEVEL_PARAMS.get(method, ''))
        elif 'COMPRESSED' in names:
            # libvirt's method for COMPRESSED without one is XBZRLE.
            method = 'xbzrle'
        else:
            method = 'none'
    return {'method': method,
            'level': level if isinstance(level, int) else None,
            'channels': channels, 'source': source}


def _ran_note(plan: datamodel.Plan, ran: Mapping[str, Any]) -> str:
    """What a report says when QEMU ran other than the plan said."""
    def shape(method: str, level: Any, channels: int) -> str:
        text = method if level is None else '%s-%s' % (method, level)
        return text + (' x%d' % channels if channels > 1 else '')

    return ('QEMU ran %s (from %s), not the planned %s'
            % (shape(ran['method'], ran['level'], ran['channels']),
               'the destination XML\'s -global pairs'
               if ran['source'] == 'qemu-global' else 'libvirt\'s call',
               shape(plan.method, plan.level, plan.parallel_connections)))


def build(*, instance_uuid: str, instance_name: str = '',
          requested: Optional[datamodel.Plan] = None,
          call: Any = None, outcome: str = outcomes.OUTCOME_FAILED,
          total_s: float = 0.0,
          last_stats: Optional[Mapping[str, Any]] = None,
          completed_stats: Optional[Mapping[str, Any]] = None,
          summary: Optional[Mapping[str, Any]] = None,
          sent_params: Optional[Mapping[str, Any]] = None,
          sent_flags: Optional[Sequence[str]] = None,
          passthrough_globals: Optional[Mapping[str, Any]] = None,
          actions: Sequence[datamodel.Action] = (),
          notes: Sequence[str] = (),
          facts: Optional[datamodel.Facts] = None,
          host: Optional[str] = None,
          prediction: Optional[Mapping[str, Any]] = None,
          destination: Optional[str] = None,
          migration_uuid: Optional[str] = None,
          request_id: Optional[str] = None) -> dict:
    """Assemble the record of one finished migration.

    :param requested: the plan the policy asked for.
    :param call: the ``MigrationCall`` that was executed (its ``plan`` is
        the effective plan after degradation).
    :param last_stats: the last libvirt job stats seen by the monitor.
    :param completed_stats: libvirt's statistics of the completed job
        (downtime, totals); they win over ``last_stats``.
    :param summary: :meth:`ProgressTracker.summary` of the migration.
    :param sent_params: params ``migrateToURI3`` really received.
    :param passthrough_globals: the multifd parameters set on the source
        QEMU through the monitor passthrough (the destination's
        ``-global`` pairs), if any.
    :param notes: what the driver changed on the way (fallbacks, lease).
    :param host: the source host.
    :param prediction: what the convergence model predicted for the plan.
    :param destination: the destination host.
    :param migration_uuid: Nova's migration record (``openstack server
        migration show``), to match Nova's own ``instance.live_migration_*``
        notifications and API.
    :param request_id: the request that asked for the migration
        (``req-...``), as in Nova's logs and instance actions.

    Besides the prose of ``plan`` and ``notes``, ``effective_plan`` is the
    executed plan field by field (:meth:`~nova_qat_migration.datamodel.
    Plan.to_dict`) and ``passthrough`` what the monitor passthrough set
    (``{'globals': {...}}``, or ``{}``), so no reader parses prose.

    ``method`` is what QEMU ran (:func:`qemu_ran`, from ``sent_params`` and
    ``sent_flags``); where that differs from the plan, ``plan`` keeps the
    planned one and a note says both.
    """
    stats = dict(last_stats or {})
    stats.update(completed_stats or {})
    plan = getattr(call, 'plan', None) or requested
    notes = list(notes)
    ran = qemu_ran(sent_params, sent_flags)
    method = ran['method'] if ran else (plan.method if plan else None)
    if ran and plan and (
            ran['method'] != plan.method or
            (plan.parallel_connections > 1 and
             ran['channels'] != plan.parallel_connections)):
        notes.append(_ran_note(plan, ran))
    memory_total = _num(stats, 'memory_total')
    processed = _num(stats, 'memory_processed') or _num(stats,
                                                        'data_processed')
    elapsed_ms = _num(stats, 'time_elapsed')
    iterations = _num(stats, 'memory_iteration')
    record = {
        'instance': instance_uuid,
        'name': instance_name,
        'host': host,
        'destination': destination,
        'migration_uuid': migration_uuid,
        'request_id': request_id,
        'policy': plan.policy if plan else None,
        'plan': plan.describe() if plan else None,
        # what QEMU ran (the plan's own method is in 'plan')
        'method': method,
        'requested': requested.describe() if requested else None,
        # in full, so a record can be replayed (e.g. by the model's
        # accuracy check)
        'requested_plan': requested.to_dict() if requested else None,
        # the executed plan in full (after degradation)
        'effective_plan': plan.to_dict() if plan else None,
        'passthrough': ({'globals': dict(passthrough_globals)}
                        if passthrough_globals else {}),
        'reasons': list(getattr(call, 'reasons', ()) or
                        (plan.reasons if plan else ())),
        'flags': list(sent_flags if sent_flags is not None else
                      (call.flag_names() if call is not None else [])),
        'params': visible_params(sent_params if sent_params is not None
                                 else getattr(call, 'params', {})),
        'backend': getattr(call, 'backend', None),
        'outcome': outcome,
        'total_s': round(total_s, 3),
        # libvirt's own duration of the job (the migration proper, without
        # planning and Nova's bookkeeping around it)
        'job_s': (round(elapsed_ms / 1000.0, 3)
                  if completed_stats and elapsed_ms else None),
        # Only a completed job has a downtime; a running one's is QEMU's
        # expectation.
        'downtime_ms': (_num(completed_stats, 'downtime')
                        if completed_stats else None),
        'memory_total_bytes': memory_total,
        'bytes': processed,
        'iterations': int(iterations) if iterations is not None else None,
        'compression': {
            'bytes': _num(stats, 'compression_bytes'),
            'pages': _num(stats, 'compression_pages'),
            'cache': _num(stats, 'compression_cache'),
            'cache_misses': _num(stats, 'compression_cache_misses'),
            'overflow': _num(stats, 'compression_overflow'),
        },

        'monitor': dict(summary or {}),
        'actions': [{'kind': a.kind, 'value': a.value, 'reason': a.reason}
                    for a in actions],
        'notes': list(notes),
    }
    if memory_total and processed:
        record['wire_ratio'] = round(processed / memory_total, 4)
    if processed and elapsed_ms:
        record['wire_mbps'] = round(processed / datamodel.MIB /
                                    (elapsed_ms / 1000.0), 1)
    disk = disk_note(stats, facts)
    if disk:
        record['notes'].append(disk)
    record['facts'] = (report_facts.summary(facts) if facts is not None
                       else {})
    reused = (report_facts.reused_note(facts, time.time() - total_s)
              if facts is not None else None)
    if reused:
        record['notes'].append(reused)
    record['dirty_rate_mbps_before'] = record['facts'].get('dirty_rate_mbps')
    record['prediction'] = dict(prediction) if prediction else None
    return finite(record)


def disk_note(stats: Mapping[str, Any],
              facts: Optional[datamodel.Facts]) -> Optional[str]:
    """What a block migration's disk copy did, beside what was planned.

    From libvirt's ``disk_total``, ``disk_processed``, ``disk_remaining``
    and ``disk_bps`` job stats (the completed job's when libvirt sent
    them); the planned bytes are ``facts.disk_bytes`` (also in the
    record's facts). None when no disk was copied or planned.

    NOTE(qat-migration): a note, not a section of its own: the record's
    keys are the versioned notification's fields.
    """
    total = _num(stats, 'disk_total')
    planned = (facts.disk_bytes if facts is not None and
               facts.block_migration else None)
    if not total and planned is None:
        return None
    mib = float(datamodel.MIB)
    text = 'block migration disks: '
    if total:
        text += ('libvirt copied %.0f of %.0f MiB (%.0f MiB left'
                 % ((_num(stats, 'disk_processed') or 0.0) / mib,
                    total / mib,
                    (_num(stats, 'disk_remaining') or 0.0) / mib))
        bps = _num(stats, 'disk_bps')
        text += ', %.0f MiB/s)' % (bps / mib) if bps else ')'
    else:
        text += 'no disk_* job stats from libvirt'
    if planned is not None:
        text += '; %.0f MiB planned from the %s' % (planned / mib,
                                                   facts.disk_source)
    return text


def history_values(record: Mapping[str, Any]) -> dict:
    """The fields of a record the history keeps for the next plan."""
    monitor = record.get('monitor') or {}
    dirty = record.get('dirty_rate_mbps_before')
    if dirty is None and monitor.get('max_dirty_rate_mbps'):
        dirty = monitor['max_dirty_rate_mbps']
    values = {
        'dirty_rate_mbps': dirty,
        'wire_mbps': record.get('wire_mbps'),
        'compression_ratio': record.get('wire_ratio'),
        'xbzrle_hit_ratio': monitor.get('xbzrle_hit_ratio'),
        'method': record.get('method'),
        'converged': record.get('outcome') == outcomes.OUTCOME_COMPLETED,
        'total_s': record.get('total_s'),
    }
    facts = record.get('facts') or {}
    # Only a measurement taken for this migration is kept as one: a
    # reused one keeps its original time, so it ages out.
    if (facts.get('measurement') in ('measured', 'quiet') and
            facts.get('measured_at_epoch') is not None and
            facts.get('dirty_rate_mbps') is not None):
        values.update(
            measured_at=facts['measured_at_epoch'],
            measured_memory_mb=facts.get('memory_mb'),
            measured_dirty_rate_mbps=facts['dirty_rate_mbps'],
            measured_zero_fraction=facts.get('zero_fraction'),
            measured_compress_ratio=facts.get('compress_ratio'),
            measured_xbzrle_friendly=facts.get('xbzrle_friendly'))
    return values


def emit(record: Mapping[str, Any], history: Any = None,
         timeline: Optional[Mapping[str, Any]] = None) -> None:
    """Log ``record`` as one line, send it as the versioned notification
    ``qat_migration.live_migration.end`` (where Nova sends versioned
    notifications, :mod:`nova_qat_migration.notifications`) and feed it
    into ``history``, with the migration's ``timeline`` (kept there only:
    too large for a log line or a notification).

    Never raises: a report that cannot be written must not turn a finished
    migration into a failed one.
    """
    try:
        line = dumps(record)
    except (TypeError, ValueError, RecursionError):
        line = repr(record)
    level = (LOG.info if record.get('outcome') == outcomes.OUTCOME_COMPLETED
             else LOG.warning)
    level('%s%s', outcomes.PREFIX, line)
    try:
        # Imported here: Nova's RPC layer is only wanted where a report is
        # really emitted (nova-compute), not by every user of build().
        from nova_qat_migration import notifications
        notifications.emit_report(record)
    except Exception:   # best effort, see docstring
        LOG.exception('Could not send the %s notification for %s',
                      'qat_migration.live_migration.end',
                      record.get('instance'))
    if history is not None:
        try:
            values = history_values(record)
            values['timeline'] = timeline
            history.record(record['instance'], values)
        except Exception:   # best effort, see docstring
            LOG.exception('Could not record migration history for %s',
                          record.get('instance'))
