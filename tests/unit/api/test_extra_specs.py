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
"""``qat_migration:*`` extra specs through Nova's own validator registry.

``nova.api.validation.extra_specs.validators`` loads every
``nova.api.extra_spec_validators`` entry point, ours included; the flavor
extra-specs API calls ``validate(name, value)`` and turns a
``ValidationError`` into HTTP 400.
"""

import ddt
from nova.api.validation.extra_specs import validators
from nova import exception

from nova_qat_migration.api import extra_specs
from nova_qat_migration.policy import hints
from tests.unit import base

GOOD = [
    ('qat_migration:policy', 'adaptive'),
    ('qat_migration:policy', 'nova_default'),
    ('qat_migration:method', 'none'),
    ('qat_migration:method', 'qatzip'),
    ('qat_migration:level', '1'),
    ('qat_migration:level', '9'),
    ('qat_migration:parallel_connections', '1'),
    ('qat_migration:parallel_connections', '32'),
    ('qat_migration:max_downtime_ms', '10'),
    ('qat_migration:max_downtime_ms', '60000'),
    ('qat_migration:allow_post_copy', 'true'),
    ('qat_migration:allow_post_copy', 'False'),
    ('qat_migration:allow_throttle', 'no'),
    ('qat_migration:allow_throttle', '1'),
    ('qat_migration:working_set_mb', '0'),
    ('qat_migration:working_set_mb', '2048'),
]

BAD = [
    ('qat_migration:policy', 'Adaptive!'),
    ('qat_migration:policy', ''),
    ('qat_migration:method', 'lz4'),
    ('qat_migration:method', 'ZSTD'),
    # Valid for zstd but not for every method with a level: Nova checks
    # one key at a time, so the method cannot be consulted.
    ('qat_migration:level', '0'),
    ('qat_migration:level', '10'),
    ('qat_migration:level', '20'),
    ('qat_migration:level', '-1'),
    ('qat_migration:level', 'fast'),
    ('qat_migration:parallel_connections', '0'),
    ('qat_migration:parallel_connections', '33'),
    ('qat_migration:max_downtime_ms', '9'),
    ('qat_migration:max_downtime_ms', '60001'),
    ('qat_migration:max_downtime_ms', '1.5'),
    ('qat_migration:allow_post_copy', 'maybe'),
    ('qat_migration:allow_throttle', '2'),
    ('qat_migration:working_set_mb', '-5'),
]


@ddt.ddt
class TestThroughNova(base.TestCase):

    @ddt.data(*GOOD)
    @ddt.unpack
    def test_good_values_pass(self, name, value):
        validators.validate(name, value)

    @ddt.data(*BAD)
    @ddt.unpack
    def test_bad_value_names_key(self, name, value):
        exc = self.assertRaises(exception.ValidationError,
                                validators.validate, name, value)
        message = exc.format_message()
        self.assertIn(name, message)
        self.assertIn(repr(value), message)
        # An HTTP 400 at the API.
        self.assertEqual(400, exc.code)

    def test_unknown_key_in_namespace_refused(self):
        exc = self.assertRaises(exception.ValidationError,
                                validators.validate,
                                'qat_migration:compression', 'zstd')
        self.assertIn('qat_migration:compression', exc.format_message())

    def test_every_key_registered(self):
        for key in hints.KEYS:
            self.assertIn(key.spec, validators.VALIDATORS)
            self.assertIsInstance(validators.VALIDATORS[key.spec],
                                  extra_specs.KeyedValidator)

    def test_other_namespaces_untouched(self):
        # Not ours: Nova's own validator decides, we add nothing.
        validators.validate('hw:cpu_policy', 'dedicated')
        validators.validate('custom_thing', 'whatever')

    @ddt.data(*(GOOD + BAD))
    @ddt.unpack
    def test_api_and_hints_agree(self, name, value):
        """A value refused at the API is refused at migration and back."""
        try:
            validators.validate(name, value)
            api_ok = True
        except exception.ValidationError:
            api_ok = False
        try:
            hints.from_instance(extra_specs={name: value})
            hint_ok = True
        except hints.InvalidHint:
            hint_ok = False
        self.assertEqual(api_ok, hint_ok, (name, value))


class TestRegister(base.TestCase):

    def test_register_describes_every_key(self):
        registered = {v.name: v for v in extra_specs.register()}
        self.assertEqual({k.spec for k in hints.KEYS}, set(registered))
        for key in hints.KEYS:
            validator = registered[key.spec]
            self.assertTrue(validator.description)
            self.assertIs(key.type, validator.value['type'])
            if key.min is not None:
                self.assertEqual(key.min, validator.value['min'])
            if key.max is not None:
                self.assertEqual(key.max, validator.value['max'])
            if key.enum is not None:
                self.assertEqual(list(key.enum), validator.value['enum'])
