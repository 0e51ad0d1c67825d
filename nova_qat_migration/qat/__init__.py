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
"""Intel QAT on the compute host: discovery, health, QATzip, leases, Placement.

Modules: :mod:`.devices` (sysfs), :mod:`.health` (debugfs), :mod:`.qatzip`
(cffi binding and self-test), :mod:`.leases`, :mod:`.placement` (pure
ProviderTree logic) and :mod:`.manager` (``QATManager``, the façade the
driver and CLI use). No module loads QATzip or cffi at import time.

The tests run without QAT hardware: discovery and health against sysfs and
debugfs trees laid out as the kernel does (``tests/fixtures/qat_sysfs.py``),
QATzip through its real software fallback. The hardware paths follow the
kernel's and QATzip's documented formats.
"""
