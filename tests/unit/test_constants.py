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
"""Our libvirt constants equal the real binding's (and Nova's fake's)."""

import importlib

from nova_qat_migration import datamodel
from nova_qat_migration.virt.libvirt import constants as c
from tests.unit import base

#: Our PARAM_* name -> the binding's VIR_MIGRATE_PARAM_* name where the
#: suffixes differ.
PARAM_ALIASES = {'PARAM_DESTINATION_XML': 'VIR_MIGRATE_PARAM_DEST_XML'}


def _ours(prefix):
    return {name: getattr(c, name) for name in dir(c)
            if name.startswith(prefix)}


def _binding_name(ours):
    if ours.startswith('PARAM_'):
        return PARAM_ALIASES.get(ours, 'VIR_MIGRATE_' + ours)
    return ours


class ConstantsTestCase(base.TestCase):

    def compare(self, module, require_all,
                prefixes=('VIR_MIGRATE_', 'PARAM_', 'VIR_ERR_')):
        checked = 0
        for prefix in prefixes:
            for name, value in _ours(prefix).items():
                theirs = _binding_name(name)
                if not hasattr(module, theirs):
                    if require_all:
                        self.fail('%s has no %s' % (module.__name__, theirs))
                    continue
                self.assertEqual(getattr(module, theirs), value, name)
                checked += 1
        return checked


class TestAgainstRealLibvirt(ConstantsTestCase):

    def setUp(self):
        super().setUp()
        try:
            self.libvirt = importlib.import_module('libvirt')
        except ImportError:
            self.skipTest('libvirt-python is not installed')
        if not hasattr(self.libvirt, 'virConnect'):
            self.skipTest('the libvirt module here is not the real binding')

    def test_all_equal(self):
        # A current binding (libvirt >= 9.4) has every one of ours.
        if self.libvirt.getVersion() < 9004000:
            checked = self.compare(self.libvirt, require_all=False)
        else:
            checked = self.compare(self.libvirt, require_all=True)
        self.assertGreater(checked, 30)

    def test_flag_names_cover_binding(self):
        for name in dir(self.libvirt):
            if not name.startswith('VIR_MIGRATE_') or \
                    name.startswith('VIR_MIGRATE_PARAM_'):
                continue
            value = getattr(self.libvirt, name)
            if isinstance(value, int) and hasattr(c, name):
                self.assertEqual(name[len('VIR_MIGRATE_'):],
                                 c.FLAG_NAMES[value])


class TestAgainstNovaFake(ConstantsTestCase):

    def test_equal_where_the_fake_has_them(self):
        from nova.tests.fixtures import libvirt as fakelibvirt
        # Error codes are not compared: the fake makes some up
        # (VIR_ERR_CONFIG_UNSUPPORTED is 951 there, 67 in libvirt).
        checked = self.compare(fakelibvirt, require_all=False,
                               prefixes=('VIR_MIGRATE_', 'PARAM_'))
        self.assertGreater(checked, 5)
        # Why we carry our own: the fake lacks the compression ones.
        self.assertFalse(hasattr(fakelibvirt,
                                 'VIR_MIGRATE_PARAM_COMPRESSION'))


class TestInternalConsistency(base.TestCase):

    def test_flags_are_distinct_bits(self):
        values = list(_ours('VIR_MIGRATE_').values())
        self.assertEqual(len(values), len(set(values)))
        for value in values:
            self.assertEqual(1, bin(value).count('1'), value)

    def test_planned_flags(self):
        self.assertEqual(['COMPRESSED', 'AUTO_CONVERGE', 'POSTCOPY',
                          'PARALLEL'], c.flag_names(c.PLANNED_FLAGS))

    def test_level_params_for_level_ranges(self):
        self.assertEqual(set(c.LEVEL_PARAMS), set(datamodel.LEVEL_RANGES) -
                         {'qatzip'})
        for method, param in c.LEVEL_PARAMS.items():
            self.assertEqual('compression.%s.level' % method, param)
