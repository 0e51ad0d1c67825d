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
"""Configuration of nova-qat-migration.

Options live in Nova's global ``CONF`` (nova.conf), group ``[qat_migration]``.
"""

from oslo_config import cfg

from nova_qat_migration.conf import qat_migration

CONF = cfg.CONF

qat_migration.register_opts(CONF)


class ConfigError(ValueError):
    """An option value that is valid alone but not with the others."""


def check(conf: cfg.ConfigOpts = CONF) -> None:
    """Cross-option checks oslo.config types cannot express.

    Called at driver start-up so a bad combination stops nova-compute with
    a message naming the options, instead of surfacing mid-migration.
    """
    group = conf.qat_migration
    if group.xbzrle_cache_min_mb > group.xbzrle_cache_max_mb:
        raise ConfigError(
            '[qat_migration] xbzrle_cache_min_mb (%d) must not exceed '
            '[qat_migration] xbzrle_cache_max_mb (%d)'
            % (group.xbzrle_cache_min_mb, group.xbzrle_cache_max_mb))
    schedule = list(group.throttle_schedule)
    if not schedule or schedule != sorted(set(schedule)):
        raise ConfigError(
            '[qat_migration] throttle_schedule must be a non-empty list of '
            'strictly increasing percentages, got %r' % (schedule,))
