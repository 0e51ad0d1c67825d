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
"""``nova_default`` checked against Nova 34 itself.

For combinations of the ``[libvirt] live_migration_*`` options, the flags
of ``translate.to_libvirt(NovaDefaultPolicy.plan(facts), facts)`` must
equal what ``LibvirtDriver._parse_migration_flags()`` computes, and the
flags and params Nova's ``_live_migration_operation`` finally hands to
``migrateToURI3`` (through ``Guest.migrate``, with Nova's fake libvirt)
must equal the translated call merged into Nova's params.
"""

import itertools
from unittest import mock

from nova.compute import vm_states
from nova import objects
from nova import test
from nova.tests import fixtures as nova_fixtures
from nova.virt import fake
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import guest as libvirt_guest

from nova_qat_migration.conf import CONF
from nova_qat_migration import datamodel
from nova_qat_migration.policy import nova_default
from nova_qat_migration.virt.libvirt import constants as c
from nova_qat_migration.virt.libvirt import translate

#: ``[libvirt]`` option combinations: every on/off combination of the
#: boolean options with one and with four parallel connections.
BOOLS = ('live_migration_tunnelled', 'live_migration_with_native_tls',
         'live_migration_permit_post_copy',
         'live_migration_permit_auto_converge')
COMBINATIONS = [
    dict(zip(BOOLS, values), live_migration_parallel_connections=parallel)
    for values in itertools.product((False, True), repeat=len(BOOLS))
    for parallel in (1, 4)
]


class NovaDefaultAgainstNova(test.NoDBTestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(nova_fixtures.LibvirtFixture())
        self.policy = nova_default.NovaDefaultPolicy(CONF)

    def _ours(self, block_migration, paused=False):
        facts = datamodel.Facts(
            instance=datamodel.InstanceFacts(paused=paused),
            nova=datamodel.NovaSettings.from_conf(CONF),
            block_migration=block_migration)
        return translate.to_libvirt(self.policy.plan(facts), facts)

    def _nova_driver(self):
        drvr = libvirt_driver.LibvirtDriver(fake.FakeVirtAPI(), False)
        drvr._parse_migration_flags()
        return drvr

    def test_flags_equal_parse_migration_flags(self):
        # A sanity check that the combinations do change Nova's flags, so
        # equality below is not equality of constants.
        seen = set()
        for combo in COMBINATIONS:
            self.flags(group='libvirt', **combo)
            drvr = self._nova_driver()
            seen.add(drvr._live_migration_flags)
            live = self._ours(block_migration=False)
            block = self._ours(block_migration=True)
            self.assertEqual(
                c.flag_names(drvr._live_migration_flags),
                c.flag_names(live.flags), combo)
            self.assertEqual(drvr._live_migration_flags, live.flags, combo)
            self.assertEqual(drvr._block_migration_flags, block.flags,
                             combo)
            self.assertEqual((), live.degradations)
        self.assertGreater(len(seen), 10)

    def test_nova_flags_helper_equals_nova(self):
        for combo in COMBINATIONS:
            self.flags(group='libvirt', **combo)
            drvr = self._nova_driver()
            nova = datamodel.NovaSettings.from_conf(CONF)
            self.assertEqual(drvr._live_migration_flags,
                             translate.nova_flags(nova), combo)
            self.assertEqual(drvr._block_migration_flags,
                             translate.nova_flags(nova, True), combo)

    def test_params_equal_guest_migrate(self):
        for parallel, bandwidth in ((1, 0), (4, 0), (4, 125), (1, 900)):
            self.flags(group='libvirt',
                       live_migration_parallel_connections=parallel,
                       live_migration_bandwidth=bandwidth)
            domain = mock.Mock()
            guest = libvirt_guest.Guest(domain)
            ours = self._ours(block_migration=False)
            guest.migrate('qemu+tcp://dest/system', flags=ours.flags,
                          bandwidth=CONF.libvirt.live_migration_bandwidth,
                          parallel=CONF.libvirt
                          .live_migration_parallel_connections)
            sent = domain.migrateToURI3.call_args.kwargs
            self.assertEqual(sent['params'], ours.params)
            self.assertEqual(sent['params'],
                             translate.merge_params(sent['params'], ours))
            self.assertEqual(sent['flags'], ours.flags)


class NovaDefaultThroughLiveMigrationOperation(test.NoDBTestCase):
    """What Nova's own migration operation sends to ``migrateToURI3``.

    Covers what ``_parse_migration_flags`` does not: Nova drops post-copy
    for paused instances, and ``Guest.migrate`` builds the params.
    """

    def setUp(self):
        super().setUp()
        self.useFixture(nova_fixtures.LibvirtFixture())
        self.stub_out('nova.virt.libvirt.migration.get_updated_guest_xml',
                      lambda *a, **k: '<domain/>')
        self.policy = nova_default.NovaDefaultPolicy(CONF)

    def _nova_call(self, paused, block_migration):
        drvr = libvirt_driver.LibvirtDriver(fake.FakeVirtAPI(), False)
        drvr._parse_migration_flags()
        instance = mock.Mock(vm_state=(vm_states.PAUSED if paused
                                       else vm_states.ACTIVE),
                             uuid='fake-uuid')
        migrate_data = objects.LibvirtLiveMigrateData(
            block_migration=block_migration, serial_listen_addr='127.0.0.1',
            target_connect_addr=None)
        domain = mock.Mock()
        drvr._live_migration_operation(
            None, instance, 'dest', block_migration, migrate_data,
            libvirt_guest.Guest(domain),
            ['vda'] if block_migration else [])
        return domain.migrateToURI3.call_args.kwargs

    def test_migrate_to_uri3_matches(self):
        cases = [
            dict(live_migration_permit_post_copy=True),
            dict(live_migration_permit_post_copy=True,
                 live_migration_parallel_connections=4),
            dict(live_migration_permit_auto_converge=True,
                 live_migration_bandwidth=300),
            dict(live_migration_with_native_tls=True,
                 live_migration_parallel_connections=2),
            dict(live_migration_tunnelled=True),
        ]
        defaults = dict(dict.fromkeys(BOOLS, False),
                        live_migration_parallel_connections=1,
                        live_migration_bandwidth=0)
        for options in cases:
            self.flags(group='libvirt', **dict(defaults, **options))
            for paused in (False, True):
                for block in (False, True):
                    sent = self._nova_call(paused, block)
                    facts = datamodel.Facts(
                        instance=datamodel.InstanceFacts(paused=paused),
                        nova=datamodel.NovaSettings.from_conf(CONF),
                        block_migration=block)
                    ours = translate.to_libvirt(self.policy.plan(facts),
                                                facts)
                    what = (options, paused, block)
                    expected = ours.flags
                    if not sent['params'].get('migrate_disks'):
                        # Guest.migrate drops NON_SHARED_INC when no disk
                        # is copied (Nova empties the list when tunnelled);
                        # the driver's domain proxy does the same.
                        expected &= ~c.VIR_MIGRATE_NON_SHARED_INC
                    self.assertEqual(c.flag_names(sent['flags']),
                                     c.flag_names(expected), what)
                    # Nova's params carry more (destination XML, disks);
                    # the baseline changes none of them.
                    self.assertEqual(sent['params'], translate.merge_params(
                        sent['params'], ours), what)
                    for key, value in ours.params.items():
                        self.assertEqual(value, sent['params'][key], what)
