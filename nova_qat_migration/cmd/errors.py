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
"""The errors the commands turn into a message rather than a traceback,
by class (never by the name of the module that raised them).

Below every command module (``cli``, ``drain``, ``status``, ...), so that
they share it without importing each other.
"""

from __future__ import annotations

from oslo_config import cfg

from nova_qat_migration import exception

#: A bad nova.conf: a value oslo.config refuses, a file it cannot parse or
#: find. (``cfg.ParseError`` is not a ``cfg.Error``.)
CONFIG_ERRORS = (cfg.Error, cfg.ParseError, exception.ConfigError)


def cloud_errors() -> tuple:
    """The base classes of openstacksdk's and keystoneauth's errors (no
    cloud configured, bad credentials, API unreachable, HTTP errors), and
    ours for a ``clouds.yaml`` the SDK cannot read.

    A function so that the SDK is imported only when a command talks to a
    cloud (an ``except`` clause evaluates it only when something was
    raised).
    """
    from keystoneauth1 import exceptions as ksa_exc
    from openstack import exceptions as sdk_exc
    return (ksa_exc.ClientException, sdk_exc.SDKException,
            exception.CloudConfigError)
