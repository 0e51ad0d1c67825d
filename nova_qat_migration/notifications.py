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
"""The migration report as a versioned notification.

:func:`emit_report` sends each per-migration record
(:func:`nova_qat_migration.virt.libvirt.report.build`) as
``qat_migration.live_migration.end`` through Nova's versioned notifier, in
the same envelope as Nova's own versioned notifications -- payload an
``oslo.versionedobjects`` primitive (``nova_object.name``,
``nova_object.namespace``, ``nova_object.version``, ``nova_object.data``),
so a consumer of ``instance.live_migration_post.end`` reads it the same
way -- but under this project's own publisher, ``nova-qat-migration:<host>``
(:data:`PUBLISHER`): Nova's names are Nova's. The payload carries the
source and destination hosts, Nova's migration UUID and the request id,
so it can be matched with ``openstack server migration show`` and Nova's
own ``instance.live_migration_*`` notifications. It is sent only where
Nova sends versioned notifications (``[notifications]
notification_format`` = ``versioned`` or ``both`` and an
``[oslo_messaging_notifications] driver``); Nova accepts no new legacy
(unversioned) event types, so there is no legacy form.

The payload classes are not registered in Nova's object registry (Nova's
object-hash tests cover Nova's own objects only); their ``VERSION`` follows
the same rules: a new field is a minor bump, a removed or retyped field a
major one.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping, Optional

from nova import context as nova_context
from nova.notifications.objects import base as notification
from nova.objects import base as nova_base
from nova.objects import fields
from nova import rpc
from oslo_config import cfg
from oslo_context import context as common_context
from oslo_log import log as logging

from nova_qat_migration import outcomes

LOG = logging.getLogger(__name__)

OBJECT = 'qat_migration'
ACTION = 'live_migration'
PHASE_END = 'end'
EVENT_TYPE = '%s.%s.%s' % (OBJECT, ACTION, PHASE_END)

OUTCOMES = (outcomes.OUTCOME_COMPLETED, outcomes.OUTCOME_FAILED,
            outcomes.OUTCOME_CANCELLED, outcomes.OUTCOME_ABORTED)
#: The publisher's source: ``publisher_id`` is ``nova-qat-migration:<host>``.
PUBLISHER = 'nova-qat-migration'


def _float(value: Any) -> Optional[float]:
    """A finite float, else None: a NaN or infinite number in a record
    must not cost the whole notification (``int(inf)`` raises, and
    oslo.serialization would write NaN into the message).
    """
    if value is None or isinstance(value, bool):
        return None if value is None else float(value)
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _int(value: Any) -> Optional[int]:
    number = _float(value) if not isinstance(value, int) else value
    return None if number is None else int(number)


@nova_base.NovaObjectRegistry.register_if(False)
class QATMigrationEventType(notification.NotificationObject):
    """``<object>.<action>.<phase>`` outside Nova's closed action list."""

    # Version 1.0: Initial version
    VERSION = '1.0'

    fields = {
        'object': fields.StringField(nullable=False),
        'action': fields.StringField(nullable=False),
        'phase': fields.NotificationPhaseField(nullable=True),
    }

    def __init__(self, object, action, phase=None):  # noqa: A002 - Nova's
        super().__init__()
        self.object = object
        self.action = action
        self.phase = phase

    to_notification_event_type_field = (
        notification.EventType.to_notification_event_type_field)


@nova_base.NovaObjectRegistry.register_if(False)
class QATMigrationPublisher(notification.NotificationObject):
    """This project's publisher (Nova's ``NotificationPublisher`` only
    takes Nova's own services as its source).
    """

    # Version 1.0: Initial version
    VERSION = '1.0'

    fields = {
        'host': fields.StringField(nullable=False),
        'source': fields.StringField(nullable=False),
    }

    def __init__(self, host: str, source: str = PUBLISHER) -> None:
        super().__init__()
        self.host = host
        self.source = source


@nova_base.NovaObjectRegistry.register_if(False)
class QATMigrationCompressionPayload(notification.NotificationPayloadBase):
    """libvirt's compression counters at the end of the migration."""

    # Version 1.0: Initial version
    VERSION = '1.0'

    fields = {
        'bytes': fields.IntegerField(nullable=True),
        'pages': fields.IntegerField(nullable=True),
        'cache': fields.IntegerField(nullable=True),
        'cache_misses': fields.IntegerField(nullable=True),
        'overflow': fields.IntegerField(nullable=True),
    }

    def __init__(self, stats: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__()
        stats = stats or {}
        for name in self.fields:
            setattr(self, name, _int(stats.get(name)))


@nova_base.NovaObjectRegistry.register_if(False)
class QATMigrationMonitorPayload(notification.NotificationPayloadBase):
    """What the progress monitor saw (``ProgressTracker.summary()``)."""

    # Version 1.0: Initial version
    VERSION = '1.0'

    fields = {
        'samples': fields.IntegerField(nullable=True),
        'iterations': fields.IntegerField(nullable=True),
        'max_dirty_rate_mbps': fields.FloatField(nullable=True),
        'max_throttle_pct': fields.IntegerField(nullable=True),
        'lowest_remaining_mb': fields.FloatField(nullable=True),
        'stalled_iterations': fields.IntegerField(nullable=True),
        'downtime_ms': fields.IntegerField(nullable=True),
        'post_copy': fields.BooleanField(nullable=True),
        'xbzrle_cache_mb': fields.IntegerField(nullable=True),
        'xbzrle_hit_ratio': fields.FloatField(nullable=True),
        'compression_bytes': fields.IntegerField(nullable=True),
        'compression_overflow': fields.IntegerField(nullable=True),
    }

    def __init__(self, summary: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__()
        summary = summary or {}
        for name, field in self.fields.items():
            value = summary.get(name)
            if value is not None and isinstance(field, fields.IntegerField):
                value = _int(value)
            elif value is not None and isinstance(field, fields.FloatField):
                value = _float(value)
            elif value is not None and isinstance(field,
                                                  fields.BooleanField):
                value = bool(value)
            setattr(self, name, value)


@nova_base.NovaObjectRegistry.register_if(False)
class QATMigrationPayload(notification.NotificationPayloadBase):
    """One finished live migration: plan, reasons, call and outcome.

    Field for field the ``qat_migration report:`` log record, with
    ``bytes`` named ``bytes_transferred``, ``destination`` named
    ``destination_host`` and libvirt's typed params as strings.
    """

    # Version 1.0: Initial version
    # Version 1.1: destination_host, migration_uuid and request_id added
    VERSION = '1.1'

    fields = {
        'instance_uuid': fields.UUIDField(nullable=False),
        'instance_name': fields.StringField(nullable=True),
        'host': fields.StringField(nullable=True),
        'destination_host': fields.StringField(nullable=True),
        'migration_uuid': fields.UUIDField(nullable=True),
        'request_id': fields.StringField(nullable=True),
        'outcome': fields.EnumField(valid_values=OUTCOMES, nullable=False),
        'policy': fields.StringField(nullable=True),
        'plan': fields.StringField(nullable=True),
        'requested': fields.StringField(nullable=True),
        'method': fields.StringField(nullable=True),
        'backend': fields.StringField(nullable=True),
        'reasons': fields.ListOfStringsField(),
        'flags': fields.ListOfStringsField(),
        'params': fields.DictOfNullableStringsField(),
        'notes': fields.ListOfStringsField(),
        'actions': fields.ListOfDictOfNullableStringsField(),
        'total_s': fields.FloatField(nullable=True),
        'downtime_ms': fields.FloatField(nullable=True),
        'memory_total_bytes': fields.IntegerField(nullable=True),
        'bytes_transferred': fields.IntegerField(nullable=True),
        'wire_ratio': fields.FloatField(nullable=True),
        'wire_mbps': fields.FloatField(nullable=True),
        'dirty_rate_mbps_before': fields.FloatField(nullable=True),
        'iterations': fields.IntegerField(nullable=True),
        'job_s': fields.FloatField(nullable=True),
        'facts': fields.DictOfNullableStringsField(),
        'prediction': fields.DictOfNullableStringsField(nullable=True),
        'requested_plan': fields.DictOfNullableStringsField(nullable=True),
        'compression': fields.ObjectField('QATMigrationCompressionPayload'),
        'monitor': fields.ObjectField('QATMigrationMonitorPayload'),
    }

    def __init__(self, record: Mapping[str, Any], host: Optional[str] = None,
                 ) -> None:
        super().__init__()
        self.instance_uuid = record['instance']
        self.instance_name = record.get('name') or None
        self.host = record.get('host') or host
        self.destination_host = record.get('destination') or None
        self.migration_uuid = record.get('migration_uuid') or None
        self.request_id = record.get('request_id') or None
        self.outcome = record.get('outcome') or outcomes.OUTCOME_FAILED
        for name in ('policy', 'plan', 'requested', 'method', 'backend'):
            value = record.get(name)
            setattr(self, name, None if value is None else str(value))
        self.reasons = [str(r) for r in record.get('reasons') or ()]
        self.flags = [str(f) for f in record.get('flags') or ()]
        self.params = {str(k): None if v is None else str(v)
                       for k, v in (record.get('params') or {}).items()}
        self.notes = [str(n) for n in record.get('notes') or ()]
        self.actions = [{str(k): None if v is None else str(v)
                         for k, v in action.items()}
                        for action in record.get('actions') or ()]
        self.total_s = _float(record.get('total_s'))
        self.downtime_ms = _float(record.get('downtime_ms'))
        self.memory_total_bytes = _int(record.get('memory_total_bytes'))
        self.bytes_transferred = _int(record.get('bytes'))
        self.wire_ratio = _float(record.get('wire_ratio'))
        self.wire_mbps = _float(record.get('wire_mbps'))
        self.dirty_rate_mbps_before = _float(
            record.get('dirty_rate_mbps_before'))
        self.iterations = _int(record.get('iterations'))
        self.job_s = _float(record.get('job_s'))
        self.facts = _strings(record.get('facts'))
        prediction = record.get('prediction')
        self.prediction = (_strings(prediction) if prediction is not None
                           else None)
        requested_plan = record.get('requested_plan')
        self.requested_plan = (_strings(requested_plan)
                               if requested_plan is not None else None)
        self.compression = QATMigrationCompressionPayload(
            record.get('compression'))
        self.monitor = QATMigrationMonitorPayload(record.get('monitor'))


@nova_base.NovaObjectRegistry.register_if(False)
class QATMigrationNotification(notification.NotificationBase):
    """``qat_migration.live_migration.end``."""

    # Version 1.0: Initial version
    # Version 1.1: the publisher is QATMigrationPublisher
    #              (nova-qat-migration:<host>), payload 1.1
    VERSION = '1.1'

    fields = {
        'event_type': fields.ObjectField('QATMigrationEventType'),
        'publisher': fields.ObjectField('QATMigrationPublisher'),
        'payload': fields.ObjectField('QATMigrationPayload'),
    }


#: The record keys the payload carries (a test keeps this in step with
#: ``report.build``: a new record key must be added to the payload).
RECORD_KEYS = frozenset({
    'instance', 'name', 'outcome', 'policy', 'plan', 'requested', 'method',
    'backend', 'reasons', 'flags', 'params', 'notes', 'actions', 'total_s',
    'downtime_ms', 'memory_total_bytes', 'bytes', 'wire_ratio', 'wire_mbps',
    'dirty_rate_mbps_before', 'compression', 'monitor', 'host',
    'iterations', 'facts', 'prediction', 'requested_plan', 'job_s',
    'destination', 'migration_uuid', 'request_id'})

#: Record keys only the log line and the history carry: the structured
#: forms of what the payload has as ``plan`` and ``notes`` (a later
#: payload version may add them).
LOG_ONLY_KEYS = frozenset({'effective_plan', 'passthrough'})


def _strings(mapping: Any) -> dict:
    """A flat dict of strings (lists joined) for a string-dict field."""
    out: dict = {}
    for key, value in (mapping or {}).items():
        if isinstance(value, dict):
            value = json.dumps(value, sort_keys=True, default=str)
        elif isinstance(value, (list, tuple, set, frozenset)):
            value = ','.join(str(v) for v in value)
        elif isinstance(value, float) and not math.isfinite(value):
            value = None
        out[str(key)] = None if value is None else str(value)
    return out


def _context() -> Any:
    """The request context of this thread (the migration's), or admin."""
    current = common_context.get_current()
    if isinstance(current, nova_context.RequestContext):
        return current
    return nova_context.get_admin_context()


def enabled() -> bool:
    """Whether Nova would send a versioned notification now."""
    return bool(rpc.NOTIFIER is not None and rpc.NOTIFIER.is_enabled() and
                cfg.CONF.notifications.notification_format in
                ('both', 'versioned'))


def build(record: Mapping[str, Any], host: Optional[str] = None,
          ) -> QATMigrationNotification:
    """The notification object for one report ``record``."""
    host = host or cfg.CONF.host
    completed = record.get('outcome') == outcomes.OUTCOME_COMPLETED
    return QATMigrationNotification(
        priority=(fields.NotificationPriority.INFO if completed
                  else fields.NotificationPriority.WARN),
        publisher=QATMigrationPublisher(host=host),
        event_type=QATMigrationEventType(object=OBJECT, action=ACTION,
                                         phase=PHASE_END),
        payload=QATMigrationPayload(record, host=host))


def emit_report(record: Mapping[str, Any], context: Any = None) -> bool:
    """Send ``record`` as ``qat_migration.live_migration.end``.

    :returns: whether it was sent (False where notifications are off, e.g.
        in the command-line tools, which never initialise Nova's RPC).
    """
    if not enabled():
        return False
    build(record).emit(context or _context())
    return True
