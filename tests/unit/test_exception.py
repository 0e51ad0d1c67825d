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
"""Every error the package defines has one base, so callers tell the
product's own refusals from bugs by class.
"""

import importlib
import inspect
import pkgutil

import testtools

import nova_qat_migration
from nova_qat_migration import exception


def _package_exceptions():
    """``{qualified name: class}`` of every exception class defined in the
    package (aliases counted once, where they are defined).
    """
    found = {}
    for info in pkgutil.walk_packages(nova_qat_migration.__path__,
                                      nova_qat_migration.__name__ + '.'):
        module = importlib.import_module(info.name)
        for _name, obj in inspect.getmembers(module, inspect.isclass):
            if (issubclass(obj, BaseException)
                    and obj.__module__ == module.__name__):
                found['%s.%s' % (obj.__module__, obj.__qualname__)] = obj
    return found


class TestExceptionBase(testtools.TestCase):

    def test_every_package_exception_has_the_base(self):
        found = _package_exceptions()
        self.assertIn('nova_qat_migration.exception.UsageError', found)
        self.assertIn(
            'nova_qat_migration.virt.libvirt.passthrough.PassthroughError',
            found)
        without = sorted(name for name, cls in found.items()
                         if not issubclass(cls, exception.QATMigrationError))
        self.assertEqual([], without)
