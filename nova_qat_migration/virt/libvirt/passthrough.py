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
"""The ``qemu-passthrough`` data-path backend, as pure helpers.

libvirt (up to 11.x) does not know the multifd method ``qatzip``. Both ends
still use it when (a) the source QEMU gets it through libvirt's monitor
passthrough (``migrate-set-parameters``) before ``migrateToURI3`` and (b) the
destination QEMU starts with ``-global migration.multifd-compression=...``
from a ``<qemu:commandline>`` in the migration's destination XML. libvirt
then only adds what it knows (channels, bandwidth) and leaves the method
alone. The persistent XML must not keep the ``-global``: a later cold boot
would otherwise carry a migration setting for ever.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional

from lxml import etree

from nova_qat_migration import exception

QEMU_NS = 'http://libvirt.org/schemas/domain/qemu/1.0'
_Q = '{%s}' % QEMU_NS
_GLOBAL_PREFIX = 'migration.multifd-'


def set_parameters_command(arguments: Mapping) -> str:
    """The QMP command that sets ``arguments`` on the source QEMU."""
    return json.dumps({'execute': 'migrate-set-parameters',
                       'arguments': dict(arguments)}, sort_keys=True)


#: QEMU's defaults for the multifd parameters this backend sets: what a
#: QEMU started without our ``-global`` pairs uses.
QEMU_DEFAULTS = {'multifd-compression': 'none', 'multifd-zlib-level': 1,
                 'multifd-zstd-level': 1, 'multifd-qatzip-level': 1}


def restore_arguments(arguments: Mapping,
                      previous: Optional[Mapping] = None) -> dict:
    """Arguments that undo :func:`set_parameters_command` on failure.

    :param previous: the source's values before the command (see
        :func:`query_source`); QEMU's defaults where unknown.
    """
    previous = previous or {}
    return {key: previous.get(key, QEMU_DEFAULTS[key])
            for key in arguments if key in QEMU_DEFAULTS}


def _globals(arguments: Mapping) -> list:
    return ['%s%s=%s' % (_GLOBAL_PREFIX, key[len('multifd-'):], value)
            for key, value in sorted(arguments.items())
            if key.startswith('multifd-')]


def add_globals(domain_xml: str, arguments: Mapping) -> str:
    """``domain_xml`` with ``-global migration.multifd-*=...`` arguments."""
    doc = etree.fromstring(domain_xml.encode())
    cmdline = doc.find(_Q + 'commandline')
    if cmdline is None:
        cmdline = etree.SubElement(doc, _Q + 'commandline',
                                   nsmap={'qemu': QEMU_NS})
    for value in _globals(arguments):
        etree.SubElement(cmdline, _Q + 'arg', value='-global')
        etree.SubElement(cmdline, _Q + 'arg', value=value)
    return etree.tostring(doc, encoding='unicode')


def strip_globals(domain_xml: str) -> str:
    """``domain_xml`` without our ``-global migration.multifd-*`` pairs."""
    doc = etree.fromstring(domain_xml.encode())
    cmdline = doc.find(_Q + 'commandline')
    if cmdline is None:
        return domain_xml
    args = list(cmdline.findall(_Q + 'arg'))
    for first, second in zip(args, args[1:]):
        if (first.get('value') == '-global' and
                (second.get('value') or '').startswith(_GLOBAL_PREFIX)):
            cmdline.remove(first)
            cmdline.remove(second)
    if len(cmdline) == 0:
        doc.remove(cmdline)
    return etree.tostring(doc, encoding='unicode')


def globals_of(domain_xml: str) -> dict:
    """The multifd parameters our ``-global`` pairs in ``domain_xml`` set,
    i.e. the defaults a QEMU started from it runs with.
    """
    doc = etree.fromstring(domain_xml.encode())
    values = [arg.get('value') or '' for arg in doc.iter(_Q + 'arg')]
    found: dict = {}
    for first, second in zip(values, values[1:]):
        if first == '-global' and second.startswith(_GLOBAL_PREFIX):
            key, _sep, value = second[len('migration.'):].partition('=')
            found[key] = int(value) if value.isdigit() else value
    return found


def clean_params(params: Mapping) -> dict:
    """``params`` with our ``-global`` pairs stripped from both XMLs.

    Nova builds every migration's XML from the running definition, so a
    ``-global`` an earlier migration put there would otherwise travel on,
    into the persistent definition too.
    """
    out = dict(params)
    for key in ('destination_xml', 'persistent_xml'):
        if out.get(key):
            try:
                out[key] = strip_globals(out[key])
            except etree.XMLSyntaxError:
                # Not a document we wrote: libvirt judges it, as it would
                # without this package.
                pass
    return out


class PassthroughError(exception.QATMigrationError):
    """QEMU or libvirt refused the monitor command."""


def _monitor(domain: Any, command: str) -> str:
    """Send one QMP command through libvirt's QEMU monitor passthrough.

    Kept as a module function so tests without a QEMU (Nova's fake
    libvirt) can record the command instead.
    """
    import libvirt_qemu
    return libvirt_qemu.qemuMonitorCommand(domain, command, 0)


def apply_source(domain: Any, arguments: Mapping) -> None:
    """Set ``arguments`` on the source QEMU before ``migrateToURI3``.

    :raises PassthroughError: when the command fails or QEMU answers with
        an error (e.g. a method the binary was not built with).
    """
    try:
        reply = _monitor(domain, set_parameters_command(arguments))
    except Exception as exc:  # libvirtError or a missing binding
        raise PassthroughError(str(exc))
    check_reply(reply)


def check_reply(reply: Any) -> None:
    """Accept only QMP's success reply, an object with ``return``.

    libvirt hands back QEMU's reply verbatim. Anything else -- an error
    object, whatever its ``error`` member holds, a list, a string, a
    number, no reply, text that is not JSON, nesting deep enough to exhaust
    the parser -- means the method may not be set, so the caller must run
    the software plan.

    :raises PassthroughError: describing the reply.
    """
    try:
        answer = json.loads(reply)
    except (TypeError, ValueError, RecursionError):
        raise PassthroughError('malformed QMP reply %s' % _clip(reply))
    if not isinstance(answer, dict):
        raise PassthroughError('malformed QMP reply (%s, not an object): '
                               '%s' % (type(answer).__name__, _clip(reply)))
    if 'error' in answer:
        error = answer['error']
        desc = error.get('desc') if isinstance(error, dict) else None
        raise PassthroughError(desc if isinstance(desc, str) and desc
                               else 'QMP error %s' % _clip(reply))
    if 'return' not in answer:
        raise PassthroughError('QMP reply without "return": %s'
                               % _clip(reply))


def _clip(reply: Any, limit: int = 200) -> str:
    text = repr(reply)
    return text if len(text) <= limit else text[:limit] + '...'


def query_source(domain: Any, keys: Any) -> dict:
    """The source QEMU's current values of the multifd parameters ``keys``.

    :raises PassthroughError: when QEMU cannot be asked.
    """
    try:
        reply = _monitor(domain, json.dumps(
            {'execute': 'query-migrate-parameters'}))
    except Exception as exc:  # libvirtError or a missing binding
        raise PassthroughError(str(exc))
    check_reply(reply)
    current = json.loads(reply)['return']
    if not isinstance(current, dict):
        raise PassthroughError('query-migrate-parameters returned %s'
                               % _clip(reply))
    return {key: current[key] for key in keys if key in current}


def restore_source(domain: Any, arguments: Mapping,
                   previous: Optional[Mapping] = None) -> bool:
    """Undo :func:`apply_source` so the next attempt starts clean.

    Best effort: returns False (never raises) when the domain is gone,
    which is the normal case after a successful migration.

    :param previous: the values before :func:`apply_source`.
    """
    restore = restore_arguments(arguments, previous)
    if not restore:
        return True
    try:
        apply_source(domain, restore)
        return True
    except PassthroughError:
        return False


def rewrite_params(params: Mapping, arguments: Mapping) -> dict:
    """migrateToURI3 params carrying ``arguments`` to the destination.

    The live destination XML gets the ``-global`` pairs so the incoming
    QEMU uses the same method; the persistent XML gets none, so a later
    boot of the instance is unaffected.
    """
    out = dict(params)
    live = out.get('destination_xml')
    if live:
        out['destination_xml'] = add_globals(strip_globals(live), arguments)
        out['persistent_xml'] = strip_globals(out.get('persistent_xml') or
                                              live)
    return out
