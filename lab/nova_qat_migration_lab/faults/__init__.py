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
"""Faults in the middle of real migrations, and what must survive them.

By concern:

* :mod:`.context`: the matrix's settings and plans, :class:`~.context.Check`
  and :class:`~.context.FaultContext` (one migration under a fault);
* :mod:`.injectors`: the faults (:data:`~.injectors.FAULTS`), each doing
  one real thing to the lab at its moment and undoing it afterwards;
* :mod:`.checks`: what must hold after every fault
  (:func:`~.checks.check`);
* :mod:`.matrix`: one fault on one migration (:func:`~.matrix.run_fault`)
  and the fault x plan matrix (:func:`~.matrix.run_matrix`);
* :mod:`.summary`: ``summary.md`` from the matrix's ``results.jsonl``.

Nothing here plans, escalates, aborts or cleans up the migration itself:
that is Nova's and the driver's.
"""
