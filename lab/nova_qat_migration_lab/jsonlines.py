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
"""The lab's result files: one JSON object a line (``results.jsonl``).

The benchmark, the fault matrix and the soak append one row per run and
rebuild their summaries from the file, so a run can be resumed
(``--append``) and a committed file re-summarised (``--summary-only``).
"""

from __future__ import annotations

import json
from typing import Any, IO


def load(path: str) -> list:
    """The rows of ``path`` (blank lines skipped; none when it is
    missing).
    """
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def write(out: IO[str], row: Any, sort_keys: bool = False) -> None:
    """Append ``row`` to the open file ``out`` as one line, flushed (a
    crashed run keeps the rows it made).
    """
    out.write(json.dumps(row, default=str, sort_keys=sort_keys) + '\n')
    out.flush()
