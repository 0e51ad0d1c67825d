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
from typing import Mapping

from lxml import etree

QEMU_NS = 'http://libvirt.org/schemas/domain/qemu/1.0'
_Q = '{%s}' % QEMU_NS
_GLOBAL_PREFIX = 'migration.multifd-'


def set_parameters_command(arguments: Mapping) -> str:
    """The QMP command that sets ``arguments`` on the source QEMU."""
    return json.dumps({'execute': 'migrate-set-parameters',
                       'arguments': dict(arguments)}, sort_keys=True)


def restore_arguments(arguments: Mapping) -> dict:
    """Arguments that undo :func:`set_parameters_command` on failure."""
    restore: dict = {}
    if 'multifd-compression' in arguments:
        restore['multifd-compression'] = 'none'
    return restore


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


def has_globals(domain_xml: str) -> bool:
    doc = etree.fromstring(domain_xml.encode())
    return any((arg.get('value') or '').startswith(_GLOBAL_PREFIX)
               for arg in doc.iter(_Q + 'arg'))
