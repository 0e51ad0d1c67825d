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
"""Validators for ``qat_migration:*`` flavor extra specs.

Registered through Nova's ``nova.api.extra_spec_validators`` entry point,
so ``openstack flavor set --property qat_migration:method=bogus`` is
refused with HTTP 400 naming the key, before any instance uses it.

Nova validates one extra spec at a time (it never sees the flavor's other
keys), so a pair of keys cannot be checked here. The key table
(:data:`nova_qat_migration.policy.hints.KEYS`) is therefore built so that
every combination of individually valid values plans: e.g.
``qat_migration:level`` is bounded by the levels every method accepts. A
flavor this validator accepts has every ``qat_migration:*`` value used
when a migration is planned (only an uninstalled policy name is ignored
there, which the API cannot know).
"""

from nova.api.validation.extra_specs import base
from nova import exception

from nova_qat_migration.policy import hints


class KeyedValidator(base.ExtraSpecValidator):
    """Nova's validator, with the key named in every refusal.

    Nova's own messages only quote the value (``'lz4' is not one of: ...``);
    with many keys in one request the operator could not tell which one.
    After Nova's checks the value goes through the planner's own parser,
    so the API never accepts what a migration would ignore.
    """

    def validate(self, name, value):
        try:
            super().validate(name, value)
        except exception.ValidationError as exc:
            raise exception.ValidationError(
                'extra spec %s: %s' % (name, exc.format_message()))
        key = hints.KEYS_BY_NAME.get(name.split(':', 1)[-1])
        if key is not None:
            try:
                hints.parse_value(key, value)
            except hints.InvalidHint as exc:
                raise exception.ValidationError(str(exc))


def _value(key: hints.Key) -> dict:
    value: dict = {'type': key.type}
    if key.min is not None:
        value['min'] = key.min
    if key.max is not None:
        value['max'] = key.max
    if key.enum is not None:
        value['enum'] = list(key.enum)
    elif key.type is str:
        value['pattern'] = hints.NAME_PATTERN
    return value


def register():
    return [
        KeyedValidator(name=key.spec, description=key.description,
                       value=_value(key))
        for key in hints.KEYS
    ]
