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
"""The benchmark: scenarios x plans x repeats of real migrations.

By concern: :mod:`.matrix` runs them (one JSON line per run),
:mod:`.stats` computes the numbers and the done checks from the JSON
lines, :mod:`.scale` the physical floor, the oracle and the link
calibration, and :mod:`.report` writes ``summary.md`` and the chart. The
summary and chart come from the JSON lines alone, so they can be rebuilt
from a committed ``results.jsonl``.
"""
