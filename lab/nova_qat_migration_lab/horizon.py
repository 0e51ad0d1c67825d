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
"""The service cloud's dashboard: Horizon, as a deployment serves it.

Horizon (``openstack_dashboard``, the 2026.2 release) runs as its own
process under gunicorn like the other APIs, bound on 127.0.0.1, against
the cloud's Keystone, with Django's memcached cache for sessions (the
cloud's memcached, as Horizon's own default and kolla use).

Its configuration is a ``local/local_settings.py`` in the cloud's state
directory, put first on ``PYTHONPATH``: Horizon's ``settings.py`` imports
``local.local_settings`` by that top-level name, so nothing is written
into the installed package. As packagers and kolla do, the static files
are collected and compressed offline once (``collectstatic``,
``compress``; stamped by Horizon's version, about a minute on a cold
machine) and served by WhiteNoise around Horizon's WSGI application
(:mod:`.horizon_wsgi`) instead of Apache's ``Alias /static``.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import textwrap
from typing import Any

PORT = 8088
#: Horizon's release series the lab serves (test-requirements.txt).
STAMP_FILE = 'static.stamp'


def static_root(conf_dir: str) -> str:
    return os.path.join(conf_dir, 'static')


def _env(conf_dir: str) -> dict:
    return {'PYTHONPATH': conf_dir,
            'DJANGO_SETTINGS_MODULE': 'openstack_dashboard.settings',
            'NQM_HORIZON_STATIC': static_root(conf_dir)}


def write_config(conf_dir: str, keystone_url: str, memcached: str,
                 log_dir: str) -> None:
    """``local/local_settings.py``: Keystone, the cache, the static root,
    no Neutron routers or quotas (the lab's Neutron has no L3 plugin).
    """
    from nova_qat_migration_lab import services
    local = os.path.join(conf_dir, 'local')
    os.makedirs(local, exist_ok=True)
    key_file = os.path.join(conf_dir, 'secret_key')
    if not os.path.exists(key_file):
        services._write(key_file, secrets.token_urlsafe(48), 0o600)
    with open(key_file, encoding='utf-8') as f:
        secret = f.read().strip()
    services._write(os.path.join(local, '__init__.py'), '', 0o644)
    services._write(os.path.join(local, 'local_settings.py'), textwrap.dedent(
        '''\
        # Horizon for the nova-qat-migration lab's service cloud.
        DEBUG = False
        ALLOWED_HOSTS = ['127.0.0.1', 'localhost']
        SECRET_KEY = %(secret)r
        OPENSTACK_HOST = '127.0.0.1'
        OPENSTACK_KEYSTONE_URL = %(keystone)r
        OPENSTACK_KEYSTONE_DEFAULT_ROLE = 'member'
        SESSION_ENGINE = 'django.contrib.sessions.backends.cache'
        CACHES = {
            'default': {
                'BACKEND':
                    'django.core.cache.backends.memcached.PyMemcacheCache',
                'LOCATION': %(memcached)r,
            },
        }
        STATIC_ROOT = %(static)r
        COMPRESS_OFFLINE = True
        TIME_ZONE = 'UTC'
        # The lab keeps its guests' images and flavors: one page for all.
        API_RESULT_PAGE_SIZE = 200
        OPENSTACK_NEUTRON_NETWORK = {
            'enable_router': False,
            'enable_quotas': False,
            'enable_distributed_router': False,
            'enable_ha_router': False,
            'enable_fip_topology_check': False,
        }
        LOGGING = {
            'version': 1,
            'disable_existing_loggers': False,
            'handlers': {'file': {
                'class': 'logging.FileHandler', 'filename': %(log)r}},
            'root': {'handlers': ['file'], 'level': 'INFO'},
        }
        ''') % {'secret': secret, 'keystone': keystone_url,
                'memcached': memcached, 'static': static_root(conf_dir),
                'log': os.path.join(log_dir, 'horizon.log')}, 0o640)


def _version() -> str:
    from importlib import metadata
    return metadata.version('horizon')


def prepare_static(conf_dir: str) -> bool:
    """Collect and compress the static files once per Horizon version.

    Returns True when they were already in place (a warm start).
    """
    stamp = os.path.join(conf_dir, STAMP_FILE)
    want = _version()
    if os.path.exists(stamp):
        with open(stamp, encoding='utf-8') as f:
            if f.read().strip() == want:
                return True
    env = dict(os.environ)
    env.update(_env(conf_dir))
    admin = os.path.join(os.path.dirname(sys.executable), 'django-admin')
    for argv in ([admin, 'collectstatic', '--noinput', '--clear',
                  '--verbosity', '0'],
                 [admin, 'compress', '--force', '--verbosity', '0']):
        proc = subprocess.run(argv, env=env, capture_output=True,
                              text=True, timeout=900)
        if proc.returncode:
            raise RuntimeError('horizon: %s failed (exit %d): %s' % (
                ' '.join(argv[1:2]), proc.returncode,
                (proc.stderr or proc.stdout)[-2000:]))
    with open(stamp, 'w', encoding='utf-8') as f:
        f.write(want)
    return False


def process(cloud: Any, conf_dir: str) -> Any:
    """The dashboard's process: gunicorn serving :mod:`.horizon_wsgi`."""
    return cloud._gunicorn('horizon',
                           'nova_qat_migration_lab.horizon_wsgi:application',
                           _env(conf_dir))


def installed() -> bool:
    return subprocess.run([sys.executable, '-c',
                           'import openstack_dashboard, whitenoise'],
                          capture_output=True).returncode == 0
