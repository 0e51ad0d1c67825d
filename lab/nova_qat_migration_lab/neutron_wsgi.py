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
"""Neutron's WSGI application for a Neutron without service plugins.

NOTE(qat-migration): Neutron 29.0.0's ``get_ports`` eager-loads
``Port.port_forwardings``, a relationship that only the port-forwarding
model defines (as a backref). With no service plugin, nothing imports that
model, and every ``GET /v2.0/ports`` without ``fields`` (Nova's, on each
server show) fails with ``AttributeError: type object 'Port' has no
attribute 'port_forwardings'``. Importing that model and configuring the
mappers (which creates the backref) before the first request is all this
module adds.
"""

from neutron.db.models import port_forwarding  # noqa: F401
from sqlalchemy import orm

from neutron.wsgi.api import application  # noqa: E402,F401

orm.configure_mappers()
