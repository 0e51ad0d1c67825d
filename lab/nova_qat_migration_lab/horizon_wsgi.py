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
"""Horizon's WSGI application with its collected static files.

A deployment puts Apache's ``Alias /static`` in front of
``openstack_dashboard.wsgi``; under gunicorn alone WhiteNoise serves the
files ``collectstatic`` and ``compress`` wrote (:mod:`.horizon`).
"""

import os

from openstack_dashboard.wsgi import application as dashboard
from whitenoise import WhiteNoise

application = WhiteNoise(dashboard, root=os.environ['NQM_HORIZON_STATIC'],
                         prefix='static/')
