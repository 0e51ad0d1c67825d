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
"""``qat_migration:*`` extra specs and image properties -> Hints."""

import dataclasses

import ddt

from nova_qat_migration import datamodel
from nova_qat_migration.policy import hints
from tests.unit import base


@ddt.ddt
class TestFromInstance(base.TestCase):

    def test_nothing_gives_empty_hints(self):
        self.assertEqual(datamodel.Hints(), hints.from_instance())
        self.assertEqual(datamodel.Hints(), hints.from_instance(
            extra_specs={'hw:cpu_policy': 'dedicated'},
            image_properties={'hw_disk_bus': 'virtio'},
            system_metadata={'image_hw_disk_bus': 'virtio'}))

    def test_every_key_parsed_with_its_type(self):
        got = hints.from_instance(extra_specs={
            'qat_migration:policy': 'static',
            'qat_migration:method': 'zstd',
            'qat_migration:level': '3',
            'qat_migration:parallel_connections': '8',
            'qat_migration:max_downtime_ms': ' 750 ',
            'qat_migration:allow_post_copy': 'yes',
            'qat_migration:allow_throttle': 'False',
            'qat_migration:working_set_mb': '1024',
        })
        self.assertEqual(datamodel.Hints(
            policy='static', method='zstd', level=3, parallel_connections=8,
            max_downtime_ms=750, allow_post_copy=True, allow_throttle=False,
            working_set_mb=1024), got)

    def test_table_covers_every_hints_field(self):
        self.assertEqual(
            {f.name for f in dataclasses.fields(datamodel.Hints)
             if f.name != 'operator'},
            set(hints.KEYS_BY_NAME))

    def test_flavor_wins_over_image(self):
        got = hints.from_instance(
            extra_specs={'qat_migration:method': 'zlib'},
            image_properties={'qat_migration:method': 'xbzrle',
                              'qat_migration:max_downtime_ms': '300'})
        self.assertEqual('zlib', got.method)
        # An image may lower the downtime (not raise it, see
        # tests/unit/test_untrusted_inputs.py).
        self.assertEqual(300, got.max_downtime_ms)

    def test_image_property_from_system_metadata(self):
        got = hints.from_instance(system_metadata={
            'image_qat_migration:allow_post_copy': 'false',
            'image_qat_migration:method': 'xbzrle',
            'qat_migration:method': 'zstd',   # not an image sysmeta key
        })
        self.assertIs(False, got.allow_post_copy)
        self.assertEqual('xbzrle', got.method)

    def test_image_properties_win_over_system_metadata(self):
        got = hints.from_instance(
            image_properties={'qat_migration:method': 'zstd'},
            system_metadata={'image_qat_migration:method': 'xbzrle'})
        self.assertEqual('zstd', got.method)

    def test_image_may_forbid_what_the_flavor_allows(self):
        # allow_* are permissions: either source saying no narrows.
        got = hints.from_instance(
            extra_specs={'qat_migration:allow_throttle': 'true'},
            system_metadata={'image_qat_migration:allow_throttle': 'false'})
        self.assertIs(False, got.allow_throttle)

    @ddt.data(
        ('method', 'lz4', 'not one of'),
        ('method', '', 'not one of'),
        ('level', 'high', 'not an integer'),
        ('level', '21', 'above the maximum'),
        ('parallel_connections', '0', 'below the minimum'),
        ('parallel_connections', '33', 'above the maximum'),
        ('max_downtime_ms', '5', 'below the minimum'),
        ('max_downtime_ms', '1.5', 'not an integer'),
        ('allow_post_copy', 'maybe', 'not a boolean'),
        ('allow_throttle', '2', 'not a boolean'),
        ('working_set_mb', '-1', 'below the minimum'),
        ('policy', '  ', 'empty value'),
        ('policy', 'Adaptive!', 'not of the format'),
    )
    @ddt.unpack
    def test_bad_value_names_key(self, key, value, problem):
        exc = self.assertRaises(
            hints.InvalidHint, hints.from_instance,
            extra_specs={'qat_migration:%s' % key: value})
        self.assertIn('qat_migration:%s' % key, str(exc))
        self.assertIn('flavor extra spec', str(exc))
        self.assertIn(problem, str(exc))

    def test_bad_image_property_ignored_saying_image(self):
        got, ignored = hints.resolve(
            system_metadata={'image_qat_migration:level': 'x'})
        self.assertEqual(datamodel.Hints(), got)
        self.assertIn('image property qat_migration:level', ignored[0])

    def test_unknown_key_refused_listing_known(self):
        exc = self.assertRaises(
            hints.InvalidHint, hints.from_instance,
            extra_specs={'qat_migration:compresion': 'zstd'})
        self.assertIn('qat_migration:compresion', str(exc))
        for name in ('method', 'level', 'allow_post_copy'):
            self.assertIn(name, str(exc))

    def test_other_namespaces_ignored(self):
        got = hints.from_instance(extra_specs={
            'qat_migrationx:method': 'lz4', 'hw:mem_page_size': 'large',
            'qat:method': 'bogus'})
        self.assertEqual(datamodel.Hints(), got)

    @ddt.data(('zlib', 9), ('zstd', 9), ('mt', 1), ('qatzip', 1))
    @ddt.unpack
    def test_level_within_method_range(self, method, level):
        got = hints.from_instance(extra_specs={
            'qat_migration:method': method,
            'qat_migration:level': str(level)})
        self.assertEqual((method, level), (got.method, got.level))

    @ddt.data(('zlib', 10), ('mt', 12), ('qatzip', 0), ('zstd', 20))
    @ddt.unpack
    def test_level_outside_common_range(self, method, level):
        # The level key alone is bounded by what every method accepts, as
        # at the API, which cannot see the method.
        exc = self.assertRaises(hints.InvalidHint, hints.from_instance,
                                extra_specs={
                                    'qat_migration:method': method,
                                    'qat_migration:level': str(level)})
        self.assertIn('qat_migration:level', str(exc))

    @ddt.data('none', 'xbzrle')
    def test_level_for_method_without_levels_unused(self, method):
        got = hints.from_instance(extra_specs={
            'qat_migration:method': method, 'qat_migration:level': '1'})
        self.assertEqual((method, 1), (got.method, got.level))

    def test_level_checked_across_sources(self):
        # The method from the image, the level from the flavor: still one
        # instance, still checked together.
        self.assertRaises(hints.InvalidHint, hints.from_instance,
                          extra_specs={'qat_migration:level': '15'},
                          image_properties={'qat_migration:method': 'zlib'})

    def test_level_without_method_accepted(self):
        self.assertEqual(5, hints.from_instance(
            extra_specs={'qat_migration:level': '5'}).level)

    def test_native_python_values(self):
        self.flags(max_parallel_connections=8)
        got = hints.from_instance(image_properties={
            'qat_migration:allow_post_copy': False,
            'qat_migration:parallel_connections': 4})
        self.assertIs(False, got.allow_post_copy)
        self.assertEqual(4, got.parallel_connections)


class TestParseValue(base.TestCase):

    def test_source_in_message(self):
        key = hints.KEYS_BY_NAME['allow_throttle']
        exc = self.assertRaises(hints.InvalidHint, hints.parse_value, key,
                                'perhaps', source='image property')
        self.assertEqual(
            "image property qat_migration:allow_throttle: 'perhaps' is not "
            "a boolean", str(exc))

    def test_spec_name(self):
        self.assertEqual('qat_migration:working_set_mb',
                         hints.KEYS_BY_NAME['working_set_mb'].spec)
