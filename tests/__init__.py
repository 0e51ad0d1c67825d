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
"""The checkout's tests.

The lab is a distribution of its own (``lab/setup.cfg``). Tests that use
it import the checkout's copy, ``lab/nova_qat_migration_lab``, ahead of an
installed one, as stestr puts the checkout's product first.
"""

import os
import sys

LAB_DIR = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'lab')

if os.path.isdir(LAB_DIR) and LAB_DIR not in sys.path:
    sys.path.insert(0, LAB_DIR)
