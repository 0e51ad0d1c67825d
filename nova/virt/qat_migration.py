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
"""Shim so Nova can load the driver: ``compute_driver =
qat_migration.QATLibvirtDriver``.

Nova's ``load_compute_driver`` only imports from the ``nova.virt``
namespace; this module is the only file nova-qat-migration adds there.
"""

from nova_qat_migration.virt.libvirt.driver import QATLibvirtDriver

__all__ = ['QATLibvirtDriver']
