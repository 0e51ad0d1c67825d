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
"""The service cloud's Neutron: a real API server, ML2 with no agents.

The lab's servers boot with ``--nic none``: they have no ports, and no
path of Nova's creates one. Nova still talks to Neutron on every boot,
show, live migration and delete (the instance's ports by ``device_id``,
its networks, the extension list), so a real Neutron answers: Neutron
29.0.0 (2026.2), whose API is only a WSGI application
(``neutron.wsgi.api:application``; the release has no ``neutron-server``
command and no eventlet server), under gunicorn like the other APIs, with
the ML2 plugin, ``local``/``flat`` type drivers, no mechanism driver, no
service plugin and no agent (``neutron-rpc-server`` only serves agents).
Its own database (``neutron``) and Keystone auth as every other service.
Verified here: about 200 MiB RSS, no measurable idle CPU, up in 12-16 s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Any

PORT = 9696
DATABASES = ('neutron',)


def _files(conf_dir: str) -> str:
    return 'neutron.conf;plugins/ml2/ml2_conf.ini'


def nova_options(auth: dict) -> dict:
    """Nova's ``[neutron]`` section: the ``neutron`` service user."""
    options = dict(auth)
    options['username'] = 'neutron'
    return options


def write_config(conf_dir: str, db: str, transport_url: str,
                 authtoken: dict, state_dir: str, log_dir: str) -> None:
    """``neutron.conf``, ``ml2_conf.ini`` and the paste file."""
    from nova_qat_migration_lab import services
    os.makedirs(os.path.join(conf_dir, 'plugins', 'ml2'), exist_ok=True)
    services._write(os.path.join(conf_dir, 'neutron.conf'), services._ini({
        'DEFAULT': {
            'core_plugin': 'ml2', 'service_plugins': '',
            'auth_strategy': 'keystone',
            'state_path': state_dir,
            'api_paste_config': os.path.join(conf_dir, 'api-paste.ini'),
            'host': 'neutron',
            # No agents and no ports: nothing to notify.
            'dhcp_agent_notification': False,
            'notify_nova_on_port_status_changes': False,
            'notify_nova_on_port_data_changes': False,
            'transport_url': transport_url,
            'rpc_workers': 0, 'rpc_state_report_workers': 0,
            'log_file': os.path.join(log_dir, 'neutron.log'),
            'use_stderr': False,
        },
        'database': {'connection': db},
        'keystone_authtoken': authtoken,
        'oslo_concurrency': {'lock_path': os.path.join(state_dir, 'lock')},
    }))
    services._write(os.path.join(conf_dir, 'plugins', 'ml2',
                                 'ml2_conf.ini'), services._ini({
        'ml2': {'type_drivers': 'local,flat', 'project_network_types': '',
                'mechanism_drivers': '', 'extension_drivers': ''},
        'ml2_type_flat': {'flat_networks': ''},
        'securitygroup': {'enable_security_group': True,
                          'firewall_driver': 'noop'},
    }))
    shutil.copy(os.path.join(sys.prefix, 'etc', 'neutron', 'api-paste.ini'),
                os.path.join(conf_dir, 'api-paste.ini'))


def sync_database(conf_dir: str) -> None:
    from nova_qat_migration_lab import services
    services._run([services._bin('neutron-db-manage'), '--config-file',
                   os.path.join(conf_dir, 'neutron.conf'), '--config-file',
                   os.path.join(conf_dir, 'plugins', 'ml2', 'ml2_conf.ini'),
                   'upgrade', 'heads'])


def process(cloud: Any, conf_dir: str) -> Any:
    """The API's process: gunicorn serving Neutron's WSGI application
    (which parses its own configuration from the environment).
    """
    return cloud._gunicorn('neutron', 'nova_qat_migration_lab.neutron_wsgi:'
                           'application', {
        'OS_NEUTRON_CONFIG_DIR': conf_dir,
        'OS_NEUTRON_CONFIG_FILES': _files(conf_dir)})


def installed() -> bool:
    return subprocess.run([sys.executable, '-c', 'import neutron.wsgi.api'],
                          capture_output=True).returncode == 0
