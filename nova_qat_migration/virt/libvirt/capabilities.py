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
"""What a host's libvirt and QEMU can do for migrations.

Probed at start-up: versions from libvirt, and which multifd compression
methods the QEMU that libvirt runs was built with (:func:`probe_methods`
says from where, in which order, and when a provisional answer is probed
again). Each host publishes the result as ``CUSTOM_MIGRATION_*`` traits
(:mod:`.migration_traits`) on its compute-node resource provider so a
source can tell what the destination can decode before choosing a plan.

QEMU need not live inside nova-compute's filesystem: kolla-ansible runs it
in the ``nova_libvirt`` container, where nova-compute cannot execute it.
Only libvirt is certain to be reachable, and libvirt publishes no multifd
method: neither its capabilities nor its domain capabilities have a
migration-compression element (libvirt 11.3's ``capability.rng`` and
``domaincaps.rng``). So the methods come from the operator, from a running
QEMU asked through libvirt's QEMU monitor, or from a local binary shown to
be libvirt's. How a QEMU is asked, either way, is :mod:`.qemu_probe`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional

from oslo_log import log as logging

from nova_qat_migration import conf as qat_conf
from nova_qat_migration import datamodel
from nova_qat_migration.virt.libvirt import qemu_probe


LOG = logging.getLogger(__name__)

#: Where :attr:`datamodel.HypervisorCaps.multifd_methods` came from.
#: ``[qat_migration] hypervisor_multifd_methods``
SOURCE_OPTION = 'option'
#: a running domain of this host whose QEMU reports libvirt's QEMU version,
#: asked through libvirt's QEMU monitor
SOURCE_QMP = 'libvirt-qmp'
#: the migrating domain's own QEMU, not libvirt's current version: right for
#: that migration's source side only, never stored as the host's
SOURCE_DOMAIN = 'domain-qmp'
#: the emulator libvirt names, run from nova-compute's filesystem
SOURCE_BINARY = 'local-binary'
#: nothing answered: libvirt-version rules decide
SOURCE_UNKNOWN = 'unknown'
#: Sources that a re-probe may improve on (when it may ask a domain).
PROVISIONAL_SOURCES = frozenset({SOURCE_BINARY, SOURCE_UNKNOWN})
#: Least time between two re-probes of provisional methods from Nova's
#: periodic ``update_provider_tree``.
REPROBE_INTERVAL_S = 300.0

#: ``VIR_CONNECT_LIST_DOMAINS_ACTIVE``, carried here (see :mod:`.constants`).
VIR_CONNECT_LIST_DOMAINS_ACTIVE = 1 << 0
#: ``VIR_DOMAIN_JOB_NONE``: ``virDomainGetJobInfo``'s "no job" type.
VIR_DOMAIN_JOB_NONE = 0

OPTION_NAME = '[qat_migration] hypervisor_multifd_methods'


def _version_tuple(number: int) -> tuple[int, int, int]:
    """libvirt encodes versions as major * 1,000,000 + minor * 1000 + micro."""
    return (number // 1000000, (number // 1000) % 1000, number % 1000)


def emulator_from_capabilities(caps_xml: str) -> Optional[str]:
    """The x86_64 (or first) emulator path in libvirt's capabilities."""
    from lxml import etree
    try:
        doc = etree.fromstring(caps_xml.encode())
    except (etree.XMLSyntaxError, ValueError):
        return None
    for arch in ('x86_64', None):
        path = 'guest/arch%s/emulator' % (
            "[@name='%s']" % arch if arch else '')
        found = doc.find(path)
        if found is not None and found.text:
            return found.text.strip()
    return None


@dataclasses.dataclass(frozen=True)
class MethodsProbe:
    """Multifd methods one probe step found, and from where.

    :param where: for the log: the option, the domain or the binary.
    :param qemu_version: what the QEMU that answered reports (``None`` for
        the option).
    """

    methods: frozenset[str]
    source: str
    where: str
    qemu_version: Optional[tuple[int, int, int]] = None


def configured_methods(conf: Any = None) -> frozenset[str]:
    """``[qat_migration] hypervisor_multifd_methods`` (with ``none``), or
    empty when unset (probe).
    """
    conf = qat_conf.CONF if conf is None else conf
    listed = frozenset(conf.qat_migration.hypervisor_multifd_methods or ())
    return listed | {'none'} if listed else frozenset()


def _domain_name(domain: Any) -> str:
    try:
        return domain.name()
    except Exception as exc:  # libvirtError; only for a log
        LOG.debug('Domain name unreadable: %s', exc)
        return '?'


def probe_domain(domain: Any) -> Optional[MethodsProbe]:
    """The multifd methods of a running domain's QEMU, through libvirt.

    Exact: the QEMU libvirt really runs answers (``query-version``, then
    ``query-qmp-schema``), wherever its binary lives. libvirt marks the
    domain tainted (``custom-monitor``): it does so for every monitor
    command, read-only or not, so callers ask only when
    ``[qat_migration] qemu_monitor_passthrough`` says the operator accepts
    that.

    :returns: ``None`` (with a warning) when the domain cannot be asked or
        answers something else than a QMP schema; never raises.
    """
    name = _domain_name(domain)
    try:
        version = qemu_probe.qemu_version_from_reply(
            qemu_probe.ask_domain(domain, 'query-version'))
        methods = qemu_probe.multifd_methods_from_schema(
            qemu_probe.ask_domain(domain, 'query-qmp-schema'))
    except qemu_probe.QMPReplyError as exc:
        LOG.warning('Could not read the multifd compression methods of '
                    'domain %(dom)s through libvirt\'s QEMU monitor: '
                    '%(exc)s', {'dom': name, 'exc': exc})
        return None
    return MethodsProbe(methods, SOURCE_QMP,
                        'domain %s (QEMU %s) through libvirt\'s QEMU monitor'
                        % (name, datamodel.version_str(version)), version)


def _idle(domain: Any) -> bool:
    """Whether ``domain`` may be asked now: no job (a migration in or out,
    a save) would make libvirt's monitor call wait for its job lock.
    """
    try:
        return domain.jobInfo()[0] == VIR_DOMAIN_JOB_NONE
    except Exception as exc:  # libvirtError: gone, or
        # cannot tell (the binding's error class is not imported here)
        LOG.debug('Domain job unreadable, domain skipped: %s', exc)
        return False


def probe_running_domains(conn: Any, qemu_version: tuple[int, int, int],
                          ) -> Optional[MethodsProbe]:
    """Ask one idle running domain whose QEMU is libvirt's current one.

    Only the first idle domain is asked, so a probe taints at most one
    domain. Its QEMU must report ``qemu_version`` (libvirt's version of
    the emulator it starts now): a domain started before a QEMU upgrade
    runs the old binary, whose methods are not what an incoming migration
    gets. Never raises.
    """
    try:
        domains = conn.listAllDomains(VIR_CONNECT_LIST_DOMAINS_ACTIVE)
    except Exception as exc:
        LOG.warning('Could not list the running domains to ask their QEMU '
                    'for its multifd compression methods: %s', exc)
        return None
    domain = next((d for d in domains if _idle(d)), None)
    if domain is None:
        LOG.debug('No idle running domain to ask for the multifd '
                  'compression methods yet.')
        return None
    found = probe_domain(domain)
    if found is None:
        return None
    if found.qemu_version != qemu_version:
        LOG.info('Not using the multifd compression methods of %(where)s: '
                 'libvirt now starts QEMU %(qv)s.',
                 {'where': found.where,
                  'qv': datamodel.version_str(qemu_version)})
        return None
    return found


def probe_local_binary(binary: Optional[str],
                       qemu_version: tuple[int, int, int],
                       ) -> Optional[MethodsProbe]:
    """Run ``binary`` (``-machine none``) when it is libvirt's QEMU.

    It must exist in nova-compute's filesystem and report libvirt's QEMU
    version: a QEMU that lives beside nova-compute, not inside it (another
    container), is absent here or is another build. Never raises.
    """
    if not binary:
        LOG.info('libvirt names no emulator: no local QEMU binary to ask.')
        return None
    if not os.path.exists(binary):
        LOG.info('libvirt\'s emulator %s is not in nova-compute\'s '
                 'filesystem (QEMU beside nova-compute, e.g. in another '
                 'container): not run.', binary)
        return None
    try:
        version, methods = qemu_probe.query_binary(binary)
    except (OSError, ValueError, TimeoutError, EOFError) as exc:
        LOG.warning('Could not probe the multifd compression methods of '
                    '%(bin)s: %(exc)s', {'bin': binary, 'exc': exc})
        return None
    if version != qemu_version:
        LOG.warning('%(bin)s in nova-compute\'s filesystem is QEMU %(v)s, '
                    'but libvirt runs QEMU %(qv)s: another binary than '
                    'libvirt\'s, not used.',
                    {'bin': binary, 'v': datamodel.version_str(version),
                     'qv': datamodel.version_str(qemu_version)})
        return None
    return MethodsProbe(methods, SOURCE_BINARY,
                        '%s (QEMU %s), run by nova-compute'
                        % (binary, datamodel.version_str(version)), version)


def _libvirt_emulator(conn: Any) -> Optional[str]:
    try:
        return emulator_from_capabilities(conn.getCapabilities())
    except Exception as exc:  # any libvirt failure
        LOG.warning('Could not read libvirt capabilities: %s', exc)
        return None


def probe_methods(conn: Any, qemu_version: tuple[int, int, int],
                  qemu_binary: Optional[str] = None,
                  conf: Any = None) -> MethodsProbe:
    """Which multifd compression methods the QEMU libvirt runs has.

    In this order, the first that answers wins:

    1. ``[qat_migration] hypervisor_multifd_methods`` when set: the
       operator's word beats any guess, and nothing is probed (no binary
       run, no domain tainted). The answer for QEMU in another container.
    2. QMP through libvirt on one idle running domain whose QEMU reports
       libvirt's QEMU version -- only with ``[qat_migration]
       qemu_monitor_passthrough``: libvirt taints the domain it asks
       (``custom-monitor``), for a read-only query too, and a capability
       probe must not taint a tenant's instance unless the operator has
       accepted monitor commands. Exact: it is the QEMU libvirt runs.
    3. The emulator libvirt names, run from nova-compute's filesystem,
       when it exists there and reports libvirt's QEMU version.
       Provisional: a same-version build of other features (e.g. built
       with QATzip in the libvirt container only) cannot be told apart.
    4. Unknown: libvirt-version rules decide (``zlib``/``zstd`` assumed
       for QEMU >= 5.0, never ``qatzip``).

    Provisional answers (3, 4) are re-probed through libvirt later (see
    :func:`reprobe`). Never raises for a QEMU that cannot be asked.

    :param qemu_binary: the emulator to consider instead of the one
        libvirt's capabilities name.
    """
    conf = qat_conf.CONF if conf is None else conf
    listed = configured_methods(conf)
    if listed:
        return MethodsProbe(listed, SOURCE_OPTION, OPTION_NAME)
    if conf.qat_migration.qemu_monitor_passthrough:
        found = probe_running_domains(conn, qemu_version)
        if found is not None:
            return found
    else:
        LOG.info('Not asking a running domain for its multifd compression '
                 'methods: libvirt would taint it, and [qat_migration] '
                 'qemu_monitor_passthrough is off.')
    binary = qemu_binary or _libvirt_emulator(conn)
    found = probe_local_binary(binary, qemu_version)
    if found is not None:
        return found
    return MethodsProbe(frozenset(), SOURCE_UNKNOWN, 'no probe answered')


def probe_hypervisor(conn: Any, qemu_binary: Optional[str] = None,
                     ) -> datamodel.HypervisorCaps:
    """Probe a libvirt connection (a ``virConnect``) at start-up.

    Versions come from libvirt, the multifd methods from
    :func:`probe_methods` (which says in which order, and why).
    """
    libvirt_version = _version_tuple(conn.getLibVersion())
    qemu_version = _version_tuple(conn.getVersion())
    found = probe_methods(conn, qemu_version, qemu_binary=qemu_binary)
    caps = datamodel.HypervisorCaps(libvirt_version=libvirt_version,
                                    qemu_version=qemu_version,
                                    multifd_methods=found.methods,
                                    methods_source=found.source)
    _log_caps(caps, found)
    return caps


def _log_caps(caps: datamodel.HypervisorCaps, found: MethodsProbe) -> None:
    LOG.info('Migration capabilities: libvirt %(lv)s, QEMU %(qv)s, multifd '
             'compression %(m)s (%(source)s: %(where)s)',
             {'lv': datamodel.version_str(caps.libvirt_version),
              'qv': datamodel.version_str(caps.qemu_version),
              'm': ','.join(sorted(caps.multifd_methods)) or 'unknown',
              'source': found.source, 'where': found.where})
    if found.source == SOURCE_UNKNOWN:
        LOG.warning('The multifd compression methods of libvirt\'s QEMU are '
                    'unknown: zlib/zstd are assumed from the versions and '
                    'qatzip is neither planned nor advertised. Where QEMU '
                    'runs beside nova-compute (another container), set '
                    '%s.', OPTION_NAME)


def needs_reprobe(caps: Optional[datamodel.HypervisorCaps],
                  conf: Any = None) -> bool:
    """Whether a re-probe through libvirt may improve ``caps``' methods:
    they are provisional and the operator accepts the taint of asking a
    domain (``[qat_migration] qemu_monitor_passthrough``).
    """
    conf = qat_conf.CONF if conf is None else conf
    return (caps is not None and
            caps.methods_source in PROVISIONAL_SOURCES and
            bool(conf.qat_migration.qemu_monitor_passthrough))


def reprobe(conn: Any, caps: datamodel.HypervisorCaps,
            domain: Any = None) -> datamodel.HypervisorCaps:
    """``caps`` with methods read through libvirt, or ``caps`` unchanged.

    Cheap: no binary is run; libvirt's versions are read again (QEMU may
    have been upgraded since start-up), then one domain is asked.

    :param domain: the domain to ask (the one being migrated, on the
        source side); by default an idle running domain of ``conn``.
        A given domain whose QEMU is not libvirt's current version still
        answers for itself: the result is marked :data:`SOURCE_DOMAIN`,
        right for that domain's migration, not for the host.
    :raises: libvirt's errors reading the versions (callers degrade).
    """
    caps = dataclasses.replace(
        caps, libvirt_version=_version_tuple(conn.getLibVersion()),
        qemu_version=_version_tuple(conn.getVersion()))
    if domain is None:
        found = probe_running_domains(conn, caps.qemu_version)
    else:
        found = probe_domain(domain)
        if (found is not None and
                found.qemu_version != caps.qemu_version):
            found = dataclasses.replace(found, source=SOURCE_DOMAIN)
    if found is None:
        return caps
    caps = dataclasses.replace(caps, multifd_methods=found.methods,
                               methods_source=found.source)
    _log_caps(caps, found)
    return caps
