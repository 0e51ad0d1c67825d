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
"""The service cloud's network endpoint.

The lab's servers boot with ``--nic none``: they have no ports, and no
network path of Nova's creates one. Nova still talks to Neutron on every
boot, live migration and delete (its extension list, the instance's
ports by ``device_id``, security groups), so an endpoint must answer.

This is the smallest stand-in that answers those calls the way a Neutron
with no ports does: every collection is empty, no extension is listed
(so Nova takes its paths for a Neutron without port bindings: with no
ports they bind nothing), and anything that would change state is refused
with 404. It is served by gunicorn like the other APIs and logs each
request to its own file, so what Nova asked is visible. Why not a real
``neutron-server``: see ``doc/source/lab.rst``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable, Iterable

PORT = 9696
#: A real neutron-server runs instead of the stand-in (see the docs).
REAL = False
#: Databases the network service needs (none for the stand-in).
DATABASES: tuple = ()


def nova_options(auth: dict) -> dict:
    """Nova's ``[neutron]`` section for this endpoint."""
    options = dict(auth)
    options.update({'username': 'neutron',
                    'endpoint_override': 'http://127.0.0.1:%d' % PORT})
    return options


def write_config(conf_dir: str, authtoken: dict) -> None:
    """Nothing to configure for the stand-in."""
    os.makedirs(conf_dir, exist_ok=True)


def sync_database(conf_dir: str) -> None:
    """The stand-in has no database."""


def process(cloud: Any, conf_dir: str) -> Any:
    """The endpoint's process (gunicorn serving :func:`application`)."""
    return cloud._gunicorn('neutron', 'nova_qat_migration_lab.neutron:'
                           'application', {'PYTHONPATH': _package_root()})


def _package_root() -> str:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.pathsep.join([here] + [p for p in sys.path if p])


def _collection(path: str) -> str:
    """``/v2.0/security-groups.json`` -> ``security_groups``."""
    name = path.rstrip('/').split('/')[-1]
    if name.endswith('.json'):
        name = name[:-len('.json')]
    return name.replace('-', '_')


def application(environ: dict,
                start_response: Callable) -> Iterable[bytes]:
    """Neutron's API with nothing in it."""
    method = environ.get('REQUEST_METHOD', 'GET')
    path = environ.get('PATH_INFO', '/') or '/'
    status, body = '404 Not Found', {'NeutronError': {
        'type': 'NotFound', 'message': 'nothing here (lab stand-in)',
        'detail': ''}}
    parts = [p for p in path.split('/') if p]
    if method == 'GET' and not parts:
        status, body = '200 OK', {'versions': [{
            'id': 'v2.0', 'status': 'CURRENT', 'links': [{
                'href': 'http://127.0.0.1:%d/v2.0/' % PORT,
                'rel': 'self'}]}]}
    elif method == 'GET' and parts == ['v2.0']:
        status, body = '200 OK', {'resources': []}
    elif method == 'GET' and len(parts) == 2 and parts[0] == 'v2.0':
        # A collection: empty (``extensions`` too).
        status, body = '200 OK', {_collection(path): []}
    data = json.dumps(body).encode()
    start_response(status, [('Content-Type', 'application/json'),
                            ('Content-Length', str(len(data)))])
    return [data]
