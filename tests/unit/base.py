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
"""Shared unit-test base: option overrides reset per test, a Facts builder.

``make_facts`` starts from a deliberately plain situation -- a 4 GiB,
4 vCPU guest whose dirty rate is unknown, on a 4-core source with nothing
spare (busy CPU, no free memory, no QAT), a 10 Gbit/s link, and a
destination of unknown capabilities -- so that each test names exactly the
facts its decision depends on.
"""

import dataclasses
import os

import fixtures
from oslo_config import cfg
from oslo_config import fixture as config_fixture
from oslotest import base as oslotest_base

from nova_qat_migration.conf import CONF
from nova_qat_migration.conf import qat_migration as qat_opts
from nova_qat_migration import datamodel

#: 10 Gbit/s in MiB/s.
LINK_10G = 10e9 / 8 / datamodel.MIB

#: A destination running the planner with Debian's QEMU 10.0 (zlib, zstd).
DEST_SOFTWARE = datamodel.DestinationCaps(
    known=True, methods=frozenset({'xbzrle', 'zlib', 'zstd'}), multifd=True)
#: A destination that can also decode qatzip (and has QAT).
DEST_QAT = datamodel.DestinationCaps(
    known=True, methods=frozenset({'xbzrle', 'zlib', 'zstd', 'qatzip'}),
    multifd=True, qat=True)
#: A source QEMU built with qatzip.
HV_QATZIP = datamodel.HypervisorCaps(
    multifd_methods=frozenset({'none', 'zlib', 'zstd', 'qatzip'}))


#: ``[qat_migration]`` options the planner's tests set explicitly (as the
#: lab's computes do): vCPU throttling and four multifd channels, beyond
#: Nova's ``[libvirt]`` defaults (no auto-converge, one connection), which
#: the options follow while unset. Tests of those defaults do not use it.
WIDENED = {'permit_auto_converge': True, 'max_parallel_connections': 4}


def _section(default, value, where):
    if value is None:
        return default
    if isinstance(value, dict):
        return dataclasses.replace(default, **value)
    if not isinstance(value, type(default)):
        raise TypeError('%s must be a dict or %s' % (where,
                                                     type(default).__name__))
    return value


def make_facts(instance=None, host=None, qat=None, hypervisor=None,
               destination=None, nova=None, history=None, hints=None,
               **top):
    """Facts for a test; each section a dict of changes or a dataclass.

    ``hints`` is a dict of :class:`datamodel.Hints` fields (or a Hints).
    Remaining keyword arguments are top-level :class:`datamodel.Facts` fields
    (``link_mbps``, ``block_migration``, ``passthrough_allowed``).
    """
    inst = _section(datamodel.InstanceFacts(memory_mb=4096, vcpus=4), instance,
                    'instance')
    if hints is not None:
        inst = dataclasses.replace(
            inst, hints=_section(datamodel.Hints(), hints, 'hints'))
    values = dict(
        instance=inst,
        host=_section(datamodel.HostLoad(cpus=4, cpu_idle_pct=10.0,
                                         mem_free_mb=0), host, 'host'),
        qat=_section(datamodel.QATState(), qat, 'qat'),
        hypervisor=_section(datamodel.HypervisorCaps(), hypervisor,
                            'hypervisor'),
        destination=_section(datamodel.DestinationCaps(), destination,
                             'destination'),
        nova=_section(datamodel.NovaSettings(), nova, 'nova'),
        history=_section(datamodel.History(), history, 'history'),
        link_mbps=LINK_10G,
    )
    values.update(top)
    return datamodel.Facts(**values)


def temp_file(test, name, text):
    """``text`` written to a file ``name`` in a directory of ``test``'s."""
    path = os.path.join(test.useFixture(fixtures.TempDir()).path, name)
    with open(path, 'wb' if isinstance(text, bytes) else 'w') as f:
        f.write(text)
    return path


def conf_from_text(test, text, register=True):
    """A private ``ConfigOpts`` reading ``text`` as nova.conf.

    :param register: register ``[qat_migration]`` and
        ``[qat_migration_static]`` first.
    """
    conf = cfg.ConfigOpts()
    if register:
        qat_opts.register_opts(conf)
    conf(args=[], default_config_files=[temp_file(test, 'nova.conf', text)])
    return conf


class TestCase(oslotest_base.BaseTestCase):
    """oslotest base with ``[qat_migration]`` overrides undone per test."""

    def setUp(self):
        super().setUp()
        self.conf_fixture = self.useFixture(config_fixture.Config(CONF))
        self.conf = CONF

    def flags(self, group='qat_migration', **kw):
        """Override options of ``group`` for this test only."""
        self.conf_fixture.config(group=group, **kw)

    def assertReason(self, fragment, reasons):
        """Some reason in ``reasons`` contains ``fragment``."""
        for reason in reasons:
            if fragment in reason:
                return
        self.fail('no reason contains %r; reasons: %r'
                  % (fragment, list(reasons)))

    def assertNoReason(self, fragment, reasons):
        for reason in reasons:
            if fragment in reason:
                self.fail('unexpected reason %r (contains %r)'
                          % (reason, fragment))
