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
"""The words a migration report is written in, for its writer and readers.

The report is built by the libvirt driver
(:mod:`nova_qat_migration.virt.libvirt.report`) and read by modules that
must not import the driver: the history, the replay of a logged report,
the commands. They share what is here: how a migration ended, the prefix
of the report's log line and the report's time format. This module
imports nothing from the package.
"""

from __future__ import annotations

import datetime
from typing import Optional

#: The migration completed.
OUTCOME_COMPLETED = 'completed'
#: The migration failed (libvirt or QEMU reported an error).
OUTCOME_FAILED = 'failed'
#: Nova or the operator cancelled it (e.g. Nova's completion timeout).
OUTCOME_CANCELLED = 'cancelled'
#: Our own escalation aborted it (progress timeout).
OUTCOME_ABORTED = 'aborted'

#: What starts the report's log line (``qat_migration report: {json}``).
PREFIX = 'qat_migration report: '


def iso_utc(when: Optional[float]) -> Optional[str]:
    """``when`` (seconds since the epoch) as UTC ISO 8601.

    None when unset or out of range.
    """
    if when is None:
        return None
    try:
        return datetime.datetime.fromtimestamp(
            when, datetime.timezone.utc).isoformat(timespec='seconds')
    except (OverflowError, OSError, ValueError):
        return None
