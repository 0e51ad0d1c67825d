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
"""The operator cloud's life cycle: up, down, nothing left behind."""

import os

# The lab's Nova runs with native threads; Nova decides when its test
# package is first imported (see nova_qat_migration_lab.cloud).
os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')
