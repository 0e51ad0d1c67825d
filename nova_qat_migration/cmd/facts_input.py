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
"""Facts for ``nova-qat-migration plan``, from a JSON file (the fields of
:class:`~nova_qat_migration.datamodel.Facts`, checked: types, ranges and
nesting) and from the command's options.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import typing
from typing import Any

from nova_qat_migration import datamodel
from nova_qat_migration import exception
from nova_qat_migration import jsontext
from nova_qat_migration.policy import hints as hints_mod

UsageError = exception.UsageError

#: A facts file is a few hundred bytes; refuse anything absurd unread.
_MAX_FACTS_BYTES = 1024 * 1024


def _version(text: str) -> tuple:
    try:
        parts = [int(p) for p in text.split('.')]
    except ValueError:
        raise UsageError('bad version %r (expected like 10.0.2)' % text)
    return tuple((parts + [0, 0, 0])[:3])


NESTED = {
    'instance': datamodel.InstanceFacts, 'host': datamodel.HostLoad,
    'qat': datamodel.QATState, 'hypervisor': datamodel.HypervisorCaps,
    'destination': datamodel.DestinationCaps, 'nova': datamodel.NovaSettings,
    'history': datamodel.History, 'in_flight': datamodel.InFlight,
}

#: The largest number any fact may hold: beyond it no field means anything
#: (1e12 MiB is an exbibyte) and the model's arithmetic stops being exact.
MAX_NUMBER = 1e12
#: ``(minimum, maximum)`` of the numeric facts that have a narrower range
#: than ``0 .. MAX_NUMBER``; every number must be finite. A zero link,
#: guest or CPU count would give a nonsense plan (or divide by zero).
_BOUNDS = {
    (datamodel.Facts, 'link_mbps'): (0.001, MAX_NUMBER),
    (datamodel.InstanceFacts, 'memory_mb'): (1, MAX_NUMBER),
    (datamodel.InstanceFacts, 'vcpus'): (1, 65536),
    (datamodel.InstanceFacts, 'zero_fraction'): (0.0, 1.0),
    (datamodel.InstanceFacts, 'compress_ratio'): (0.001, 1.0),
    (datamodel.InstanceFacts, 'xbzrle_friendly'): (0.0, 1.0),
    (datamodel.HostLoad, 'cpus'): (1, 65536),
    (datamodel.HostLoad, 'cpu_idle_pct'): (0.0, 100.0),
    (datamodel.QATState, 'ratio'): (0.0, 1.0),
    (datamodel.History, 'compression_ratio'): (0.0, 1e3),
    (datamodel.History, 'xbzrle_hit_ratio'): (0.0, 1.0),
    (datamodel.NovaSettings, 'parallel_connections'): (1, 32),
    (datamodel.NovaSettings, 'downtime_ms'): (1, MAX_NUMBER),
    (datamodel.NovaSettings, 'downtime_steps'): (1, 1000),
    (datamodel.InFlight, 'link_share'): (0.001, 1.0),
    (datamodel.InFlight, 'migrations'): (0, 65536),
}
#: JSON nested deeper than this is refused before it is parsed (the facts
#: are three levels deep; Python's parser would hit RecursionError).
_MAX_DEPTH = 32


def _check_number(number: Any, bounds: tuple, where: str) -> None:
    low, high = bounds
    if not low <= number <= high:
        raise UsageError('%s must be between %g and %g, got %g'
                         % (where, low, high, number))


def _typed(value: Any, hint: Any, where: str,
           bounds: tuple = (0, MAX_NUMBER)) -> Any:
    """``value`` from JSON as the field type ``hint`` wants, or UsageError.

    A wrong type would otherwise only fail inside a policy, as a traceback;
    a non-finite or out-of-range number would give a nonsense plan.

    :param bounds: ``(minimum, maximum)`` of a numeric field.
    """
    args = typing.get_args(hint)
    if typing.get_origin(hint) is typing.Union and type(None) in args:
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
    origin = typing.get_origin(hint)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and hint in (int, float) and not math.isfinite(value):
        raise UsageError('%s must be a finite number, got %s'
                         % (where, json.dumps(value)))
    if hint is bool and isinstance(value, bool):
        return value
    if hint is int and number and value == int(value):
        _check_number(value, bounds, where)
        return int(value)
    if hint is float and number:
        _check_number(value, bounds, where)
        return float(value)
    if hint is str and isinstance(value, str):
        return value
    if origin is frozenset and isinstance(value, list) and all(
            isinstance(v, str) for v in value):
        return frozenset(value)
    if origin is tuple:
        if isinstance(value, str):
            return _version(value)
        if isinstance(value, list) and value and all(
                isinstance(v, int) and not isinstance(v, bool) and
                0 <= v <= 1000000 for v in value):
            return tuple((value + [0, 0, 0])[:3])
    if hint in (bool, int, float, str) or origin in (frozenset, tuple):
        wanted = {bool: 'true or false', int: 'an integer',
                  float: 'a number', str: 'a string'}.get(hint) or (
            'a list of strings' if origin is frozenset else
            'a version like "10.0.2"')
        raise UsageError('%s must be %s, got %s'
                         % (where, wanted, json.dumps(value)))
    return value


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise UsageError('%s must be an object, got %r' % (where, data))
    fields = {f.name: f for f in dataclasses.fields(cls)}
    types = typing.get_type_hints(cls)
    values = {}
    for name, value in data.items():
        if name not in fields:
            raise UsageError('unknown field %s.%s (known: %s)'
                             % (where, name, ', '.join(sorted(fields))))
        if name in NESTED and cls is datamodel.Facts:
            value = _build(NESTED[name], value, name)
        elif name == 'hints':
            if not isinstance(value, dict):
                raise UsageError('%s.hints must be an object, got %r'
                                 % (where, value))
            value = hints_mod.from_instance(extra_specs={
                '%s:%s' % (hints_mod.NAMESPACE, k): v
                for k, v in value.items()})
        else:
            value = _typed(value, types[name], '%s.%s' % (where, name),
                           _BOUNDS.get((cls, name), (0, MAX_NUMBER)))
        values[name] = value
    try:
        return cls(**values)
    except TypeError as exc:
        raise UsageError('%s: %s' % (where, exc))


def facts_from_json(text: str) -> datamodel.Facts:
    if jsontext.max_depth(text) > _MAX_DEPTH:
        raise UsageError('facts nest deeper than %d levels' % _MAX_DEPTH)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise UsageError('facts are not valid JSON: %s' % exc)
    try:
        return _build(datamodel.Facts, data, 'facts')
    except hints_mod.InvalidHint as exc:
        raise UsageError(str(exc))


def facts_from_args(args: argparse.Namespace) -> datamodel.Facts:
    if args.facts:
        try:
            with open(args.facts, 'rb') as f:
                raw = f.read(_MAX_FACTS_BYTES + 1)
        except OSError as exc:
            raise UsageError('cannot read %s: %s' % (args.facts, exc))
        if len(raw) > _MAX_FACTS_BYTES:
            raise UsageError('%s is larger than %d bytes'
                             % (args.facts, _MAX_FACTS_BYTES))
        try:
            text = raw.decode('utf-8')
        except UnicodeDecodeError as exc:
            raise UsageError('%s is not UTF-8 text: %s' % (args.facts, exc))
        facts = facts_from_json(text)
    else:
        facts = datamodel.Facts()
    inst = facts.instance
    changes = {}
    for attr, field in (('ram', 'memory_mb'), ('vcpus', 'vcpus'),
                        ('dirty_rate', 'dirty_rate_mbps')):
        if getattr(args, attr) is not None:
            changes[field] = getattr(args, attr)
    if args.hint:
        specs = {}
        for item in args.hint:
            key, sep, value = item.partition('=')
            if not sep:
                raise UsageError('--hint wants KEY=VALUE, got %r' % item)
            specs['%s:%s' % (hints_mod.NAMESPACE, key)] = value
        try:
            changes['hints'] = hints_mod.from_instance(extra_specs=specs)
        except hints_mod.InvalidHint as exc:
            raise UsageError(str(exc))
    if changes:
        facts = dataclasses.replace(
            facts, instance=dataclasses.replace(inst, **changes))
    host = {}
    if args.cpu_idle is not None:
        host['cpu_idle_pct'] = args.cpu_idle
    if args.cpus is not None:
        host['cpus'] = args.cpus
    if args.mem_free is not None:
        host['mem_free_mb'] = args.mem_free
    if host:
        facts = dataclasses.replace(
            facts, host=dataclasses.replace(facts.host, **host))
    if args.link_gbps is not None:
        facts = dataclasses.replace(facts,
                                    link_mbps=args.link_gbps * 1e9 / 8 /
                                    datamodel.MIB)
    if args.dest_methods is not None:
        methods = frozenset(m for m in args.dest_methods.split(',') if m)
        facts = dataclasses.replace(
            facts, destination=datamodel.DestinationCaps(
                known=True, methods=methods, multifd=True))
    return facts
