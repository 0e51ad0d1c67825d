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
"""Per-instance overrides: ``qat_migration:*`` flavor extra specs and image
properties.

One table (:data:`KEYS`) defines every key, its type and bounds; the API
validator (:mod:`nova_qat_migration.api.extra_specs`) and the migration
pre-check both use it, so a value refused at one is refused at the other.
Image properties reach the compute host through the instance's system
metadata (``image_qat_migration:<key>``); flavor extra specs win over image
properties. Hints only narrow what the operator permits: an image cannot
turn on post-copy on a host whose ``[qat_migration] permit_post_copy`` is
off.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping, Optional

from oslo_utils import strutils

from nova_qat_migration.conf.qat_migration import METHODS
from nova_qat_migration.policy import base

NAMESPACE = 'qat_migration'
IMAGE_SYSMETA_PREFIX = 'image_'
#: What a free-text value (a policy name) must look like, here and at the
#: API (:mod:`nova_qat_migration.api.extra_specs`).
NAME_PATTERN = r'[a-z][a-z0-9_]*'


@dataclasses.dataclass(frozen=True)
class Key:
    name: str
    type: type
    description: str
    min: Optional[int] = None
    max: Optional[int] = None
    enum: Optional[tuple] = None

    @property
    def spec(self) -> str:
        return '%s:%s' % (NAMESPACE, self.name)


KEYS = (
    Key('policy', str, 'Migration policy for this instance (an installed '
        'nova_qat_migration.policies plugin, e.g. adaptive, static, '
        'nova_default).'),
    Key('method', str, 'Force this page-compression method (it must be '
        'allowed by [qat_migration] allowed_methods; the plan still '
        'degrades when the hosts cannot run it).', enum=METHODS),
    Key('level', int, 'Compression level for the forced method.',
        min=0, max=20),
    Key('parallel_connections', int, 'Multifd channels for this instance.',
        min=1, max=32),
    Key('max_downtime_ms', int, 'Maximum switch-over downtime (ms) this '
        'instance tolerates.', min=10, max=60000),
    Key('allow_post_copy', bool, 'Whether this instance may be switched to '
        'post-copy (only where the host permits post-copy).'),
    Key('allow_throttle', bool, 'Whether this instance\'s vCPUs may be '
        'throttled (auto-converge).'),
    Key('working_set_mb', int, 'Expected writable working set (MiB), used '
        'to size the XBZRLE cache.', min=0, max=16 * 1024 * 1024),
)
KEYS_BY_NAME = {key.name: key for key in KEYS}


class InvalidHint(ValueError):
    """A ``qat_migration:*`` value that cannot be used; names the key."""


def parse_value(key: Key, value: Any, source: str = 'extra spec') -> Any:
    """Parse and check one value; raise :class:`InvalidHint` if bad."""
    where = '%s %s' % (source, key.spec)
    if key.type is bool:
        if isinstance(value, bool):
            return value
        try:
            return strutils.bool_from_string(str(value), strict=True)
        except ValueError:
            raise InvalidHint('%s: %r is not a boolean' % (where, value))
    if key.type is int:
        try:
            number = int(str(value).strip())
        except ValueError:
            raise InvalidHint('%s: %r is not an integer' % (where, value))
        if key.min is not None and number < key.min:
            raise InvalidHint('%s: %d is below the minimum %d'
                              % (where, number, key.min))
        if key.max is not None and number > key.max:
            raise InvalidHint('%s: %d is above the maximum %d'
                              % (where, number, key.max))
        return number
    text = str(value).strip()
    if key.enum is not None and text not in key.enum:
        raise InvalidHint('%s: %r is not one of %s'
                          % (where, text, ', '.join(key.enum)))
    if not text:
        raise InvalidHint('%s: empty value' % where)
    if key.enum is None and not re.fullmatch(NAME_PATTERN, text):
        raise InvalidHint('%s: %r is not of the format %s'
                          % (where, text, NAME_PATTERN))
    return text


def _collect(mapping: Optional[Mapping[str, Any]], prefix: str,
             source: str) -> dict:
    found: dict = {}
    ns = prefix + NAMESPACE + ':'
    for name, value in (mapping or {}).items():
        if not name.startswith(ns):
            continue
        short = name[len(ns):]
        key = KEYS_BY_NAME.get(short)
        if key is None:
            raise InvalidHint('%s %s:%s is not a known key (known: %s)'
                              % (source, NAMESPACE, short,
                                 ', '.join(sorted(KEYS_BY_NAME))))
        found[short] = parse_value(key, value, source)
    return found


def from_instance(extra_specs: Optional[Mapping[str, Any]] = None,
                  image_properties: Optional[Mapping[str, Any]] = None,
                  system_metadata: Optional[Mapping[str, Any]] = None,
                  ) -> base.Hints:
    """Hints for one instance.

    :param extra_specs: the flavor's extra specs.
    :param image_properties: image properties (``qat_migration:<key>``).
    :param system_metadata: the instance's system metadata, where Nova
        keeps image properties as ``image_qat_migration:<key>``.
    :raises InvalidHint: naming the key and the problem.
    """
    values = _collect(system_metadata, IMAGE_SYSMETA_PREFIX,
                      'image property')
    values.update(_collect(image_properties, '', 'image property'))
    values.update(_collect(extra_specs, '', 'flavor extra spec'))
    level = values.get('level')
    method = values.get('method')
    if level is not None and method is not None:
        from nova_qat_migration.virt.libvirt import constants
        bounds = constants.LEVEL_RANGES.get(method)
        if bounds is None:
            raise InvalidHint('%s:level is set but method %s has no level'
                              % (NAMESPACE, method))
        if not bounds[0] <= level <= bounds[1]:
            raise InvalidHint('%s:level %d is outside %d..%d for %s'
                              % (NAMESPACE, level, bounds[0], bounds[1],
                                 method))
    return base.Hints(**values)
