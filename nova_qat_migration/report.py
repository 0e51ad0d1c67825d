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
"""Transition shim: moved to :mod:`nova_qat_migration.virt.libvirt.report`
(and :mod:`nova_qat_migration.outcomes`). Kept only until the lab reads the
new paths; removed at merge.
"""

from nova_qat_migration.outcomes import *  # noqa: F401,F403,H303
from nova_qat_migration.virt.libvirt.report import *  # noqa: F401,F403,H303
