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
"""Nova's own libvirt live-migration unit tests, against our driver class.

``stestr --test-path ./tests/nova_lm`` imports this package in every
worker; before Nova's test modules are loaded it makes the name those
tests instantiate, ``nova.virt.libvirt.driver.LibvirtDriver``, refer to
``QATLibvirtDriver`` configured with ``[qat_migration] policy =
nova_default`` (``QAT_LM_DRIVER=nova`` leaves Nova's class in place, for a
baseline run). Driven by ``tools/run-nova-lm-tests.sh``.

NOTE(qat-migration): the option defaults are changed on the option
objects, not with ``CONF.set_default``: Nova's config fixture resets
defaults set that way after every test.
"""

import os
import tempfile
import unittest

from nova_qat_migration import datamodel

#: Nova's unit-test modules whose live-migration tests are run.
MODULES = ('nova.tests.unit.virt.libvirt.test_driver',
           'nova.tests.unit.virt.libvirt.test_migration')

DRIVER = os.environ.get('QAT_LM_DRIVER', 'qat')


def _use_qat_driver():
    from nova.virt import libvirt as nova_libvirt
    from nova.virt.libvirt import driver as nova_driver

    from nova_qat_migration.conf import qat_migration as opts
    from nova_qat_migration.virt.libvirt import driver as qat_driver

    state = tempfile.mkdtemp(prefix='nova-lm-qat-')
    for opt in opts.ALL_OPTS:
        if opt.name == 'policy':
            opt.default = 'nova_default'
        elif opt.name == 'state_path':
            opt.default = state
        elif opt.name == 'enabled':
            opt.default = True

    # NOTE(qat-migration): no QEMU to probe under the fake libvirt (and a
    # real one on the test machine must not be started for every test).
    caps = datamodel.HypervisorCaps()
    qat_driver.QATMigrationMixin.qat_probe_hypervisor = staticmethod(
        lambda conn, qemu_binary=None: caps)

    # NOTE(qat-migration): mock.patch.object(..., autospec=True) finds a
    # staticmethod only in the patched class's own __dict__; Nova's tests
    # patch e.g. _create_ephemeral on the name that is now our subclass.
    # Same descriptors, so nothing changes but where mock looks.
    ours = vars(qat_driver.QATLibvirtDriver)
    for name, attr in list(vars(nova_driver.LibvirtDriver).items()):
        if isinstance(attr, (staticmethod, classmethod)) and name not in ours:
            setattr(qat_driver.QATLibvirtDriver, name, attr)

    nova_driver.LibvirtDriver = qat_driver.QATLibvirtDriver
    nova_libvirt.LibvirtDriver = qat_driver.QATLibvirtDriver

    stats = os.environ.get('QAT_LM_STATS')
    if stats:
        _count_plans(qat_driver.QATMigrationMixin, stats)


def _count_plans(mixin, path):
    """Append one line per planning attempt to ``path`` (ok / error).

    Shows that Nova's tests really went through our planning path rather
    than through its fallback to Nova's plan.
    """
    plan = mixin._qat_plan

    def counted(self, *args, **kwargs):
        try:
            session = plan(self, *args, **kwargs)
        except Exception as exc:
            with open(path, 'a') as f:
                f.write('error %s\n' % type(exc).__name__)
            raise
        with open(path, 'a') as f:
            f.write('ok %s\n' % session.plan.policy)
        return session

    mixin._qat_plan = counted


if DRIVER == 'qat':
    _use_qat_driver()


def load_tests(loader, standard_tests, pattern):
    suite = unittest.TestSuite()
    for name in MODULES:
        suite.addTests(loader.loadTestsFromName(name))
    return suite
