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
"""A finished migration's record: the report, the model's prediction
beside it, and the timeline the history keeps.

Called by the driver once Nova's ``_live_migration`` returns, whatever the
outcome.
"""

from __future__ import annotations

import time
from typing import Any, Optional

from oslo_log import log as logging

from nova_qat_migration import conf as qat_conf
from nova_qat_migration import outcomes
from nova_qat_migration.policy import predictive
from nova_qat_migration import timeline as qat_timeline
from nova_qat_migration.virt.libvirt import constants as c
from nova_qat_migration.virt.libvirt import facts as qat_facts
from nova_qat_migration.virt.libvirt import report
from nova_qat_migration.virt.libvirt import session as lm_session

CONF = qat_conf.CONF
LOG = logging.getLogger(__name__)

#: How long the report waits for libvirt's job-completed event.
JOB_EVENT_WAIT_S = 2.0


def report_session(session: lm_session.MigrationSession, host: str,
                   history: Any, dest: Optional[str] = None,
                   request_id: Optional[str] = None) -> None:
    """Report a finished migration: log line, notification, history.

    Never raises: reporting is best effort (see :func:`.report.emit`).

    :param host: this compute's ``host``.
    :param history: where the record is kept for the next plan.
    :param dest: the destination, when the migration record names none.
    :param request_id: the request that asked for the migration.
    """
    if (session.outcome == outcomes.OUTCOME_COMPLETED and
            session.job_watch is not None):
        # The event may trail Nova's monitor by a moment.
        session.completed_event.wait(JOB_EVENT_WAIT_S)
    try:
        # The model's predicted remaining data, for the timeline.
        predicted: list = []
        record = report.build(
            instance_uuid=session.instance_uuid,
            instance_name=qat_facts.field(session.instance, 'name', ''),
            requested=session.requested, call=session.call,
            outcome=session.outcome,
            total_s=time.monotonic() - session.started,
            last_stats=session.tracker.last,
            completed_stats=session.completed_stats,
            summary=session.tracker.summary(),
            sent_params=session.sent_params,
            sent_flags=(c.flag_names(session.sent_flags)
                        if session.sent_flags is not None else None),
            passthrough_globals=session.passthrough,
            actions=session.actions, notes=session.notes,
            # Nova's own plan measures nothing: no facts to report.
            facts=(None if session.policy.reproduces_nova
                   else session.facts),
            host=host,
            prediction=_prediction(session, predicted),
            destination=(qat_facts.field(session.migration,
                                         'dest_compute') or dest),
            migration_uuid=qat_facts.field(session.migration, 'uuid'),
            request_id=request_id)
        report.emit(record, history,
                    timeline=_timeline(session, record, predicted))
    except Exception:  # reporting is best effort
        LOG.exception('Could not report the migration',
                      instance=session.instance)


def _prediction(session: lm_session.MigrationSession,
                trace: Optional[list] = None) -> Optional[dict]:
    """The convergence model's prediction for the plan that ran, for the
    report (what the planner expected beside what happened).

    :param trace: receives the predicted remaining data over time.
    """
    if session.policy.reproduces_nova:
        return None   # Nova's own plan: nothing was measured
    try:
        return predictive.predict_dict(CONF, session.facts, session.plan,
                                       trace=trace)
    except Exception as exc:  # informational only
        LOG.debug('No prediction for the report: %s', exc)
        if trace is not None:
            trace.clear()   # no half a line either
        return None


def _timeline(session: lm_session.MigrationSession, record: dict,
              predicted: list) -> Optional[dict]:
    """The migration's timeline for its history entry (None if it cannot
    be built: the report and the history go on without).
    """
    try:
        return qat_timeline.build(
            session.tracker.series, record, predicted,
            display_name=qat_facts.field(session.instance, 'display_name',
                                         ''))
    except Exception:  # informational only
        LOG.exception('No timeline for the migration history',
                      instance=session.instance)
        return None
