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
"""``nova-qat-migration``: the operator's command line.

``plan`` explains what a policy would do for given facts (a dry run, no
libvirt needed); the other subcommands (``devices``, ``selftest``,
``status``, ``drain``) come from the modules in
:data:`SUBCOMMAND_MODULES`. The real-migration lab (benchmark, demo, fault
injection) is a separate command, ``nova-qat-migration-lab``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import typing
from typing import Any, Optional, Sequence

from nova_qat_migration.cmd import drain
from nova_qat_migration.cmd import errors
from nova_qat_migration.cmd import qat as qat_cmd
from nova_qat_migration.cmd import status
from nova_qat_migration.cmd import timeline
from nova_qat_migration import conf as qat_conf
from nova_qat_migration.conf import CONF
from nova_qat_migration import datamodel
from nova_qat_migration import exception
from nova_qat_migration.policy import base
from nova_qat_migration.policy import hints as hints_mod
from nova_qat_migration.policy import loader
from nova_qat_migration.virt.libvirt import translate

#: Modules contributing subcommands through ``add_parsers(subparsers)``
#: (imported above: they import nothing of this module).
SUBCOMMAND_MODULES = (qat_cmd, status, drain, timeline)


UsageError = exception.UsageError


def _version(text: str) -> tuple:
    try:
        parts = [int(p) for p in text.split('.')]
    except ValueError:
        raise UsageError('bad version %r (expected like 10.0.2)' % text)
    return tuple((parts + [0, 0, 0])[:3])


_NESTED = {
    'instance': datamodel.InstanceFacts, 'host': datamodel.HostLoad,
    'qat': datamodel.QATState, 'hypervisor': datamodel.HypervisorCaps,
    'destination': datamodel.DestinationCaps, 'nova': datamodel.NovaSettings,
    'history': datamodel.History, 'in_flight': datamodel.InFlight,
}

#: The largest number any fact may hold: beyond it no field means anything
#: (1e12 MiB is an exbibyte) and the model's arithmetic stops being exact.
_MAX_NUMBER = 1e12
#: ``(minimum, maximum)`` of the numeric facts that have a narrower range
#: than ``0 .. _MAX_NUMBER``; every number must be finite. A zero link,
#: guest or CPU count would give a nonsense plan (or divide by zero).
_BOUNDS = {
    (datamodel.Facts, 'link_mbps'): (0.001, _MAX_NUMBER),
    (datamodel.InstanceFacts, 'memory_mb'): (1, _MAX_NUMBER),
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
    (datamodel.NovaSettings, 'downtime_ms'): (1, _MAX_NUMBER),
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
           bounds: tuple = (0, _MAX_NUMBER)) -> Any:
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
        if name in _NESTED and cls is datamodel.Facts:
            value = _build(_NESTED[name], value, name)
        elif name == 'hints':
            if not isinstance(value, dict):
                raise UsageError('%s.hints must be an object, got %r'
                                 % (where, value))
            value = hints_mod.from_instance(extra_specs={
                '%s:%s' % (hints_mod.NAMESPACE, k): v
                for k, v in value.items()})
        else:
            value = _typed(value, types[name], '%s.%s' % (where, name),
                           _BOUNDS.get((cls, name), (0, _MAX_NUMBER)))
        values[name] = value
    try:
        return cls(**values)
    except TypeError as exc:
        raise UsageError('%s: %s' % (where, exc))


def _depth(text: str) -> int:
    """How deep ``text``'s JSON nests, without parsing (strings skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == '\\':
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in '[{':
            depth += 1
            deepest = max(deepest, depth)
        elif char in ']}':
            depth -= 1
    return deepest


def facts_from_json(text: str) -> datamodel.Facts:
    if _depth(text) > _MAX_DEPTH:
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


def cmd_plan(args: argparse.Namespace) -> int:
    if args.from_report:
        return cmd_replay(args)
    try:
        # What nova-compute checks at start-up: a configuration it would
        # refuse gets the same message here, not a traceback mid-plan.
        qat_conf.check(CONF)
    except qat_conf.ConfigError as exc:
        print('nova-qat-migration: configuration error: %s (nova-compute '
              'would not start with it)' % exc, file=sys.stderr)
        return 2
    facts = facts_from_args(args)
    name = args.policy or CONF.qat_migration.policy
    try:
        policy = loader.load_policy(name, CONF)
    except loader.UnknownPolicy as exc:
        raise UsageError(str(exc))
    plan = policy.plan(facts)
    try:
        base.validate_plan(plan)
    except base.InvalidPlan as exc:
        # nova-compute would run Nova's own plan instead.
        raise UsageError('%s: nova-compute would use Nova\'s own plan'
                         % exc)
    call = translate.to_libvirt(plan, facts)
    if args.json:
        print(json.dumps(call.to_dict(), indent=2, sort_keys=True))
        return 0
    print('plan:   %s' % call.plan.describe())
    print('flags:  %s (%d)' % ('|'.join(call.flag_names()), call.flags))
    print('params: %s' % json.dumps(call.params, sort_keys=True))
    if call.passthrough:
        print('qemu:   %s' % json.dumps(call.passthrough, sort_keys=True))
    print('reasons:')
    for reason in call.reasons:
        print('  - %s' % reason)
    return 0


#: A facts file is a few hundred bytes; refuse anything absurd unread.
_MAX_FACTS_BYTES = 1024 * 1024


def _number_arg(kind: type, low: float, high: float = _MAX_NUMBER) -> Any:
    """An argparse ``type`` for a finite number within ``low .. high``."""
    def parse(text: str) -> Any:
        # A ValueError here reads "invalid int value: 'x'" (argparse).
        value = kind(text)
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(
                '%s is not between %g and %g' % (text, low, high))
        return value
    parse.__name__ = kind.__name__   # argparse names the type in errors
    return parse


#: ``plan``'s options that give facts (not combined with --from-report).
_FACT_OPTIONS = ('facts', 'ram', 'vcpus', 'dirty_rate', 'cpus', 'cpu_idle',
                 'mem_free', 'link_gbps', 'dest_methods', 'hint')


def cmd_replay(args: argparse.Namespace) -> int:
    """``plan --from-report``: the recorded decision made again."""
    from nova_qat_migration import replay
    given = [name for name in _FACT_OPTIONS if getattr(args, name)]
    if given or args.policy:
        raise UsageError('--from-report takes the facts and the policy '
                         'from the report; drop %s'
                         % ', '.join('--' + n.replace('_', '-')
                                     for n in given + (['policy']
                                                       if args.policy
                                                       else [])))
    try:
        if args.from_report == '-':
            text = sys.stdin.read(_MAX_REPORT_BYTES + 1)
        else:
            with open(args.from_report, errors='replace') as f:
                text = f.read(_MAX_REPORT_BYTES + 1)
    except OSError as exc:
        raise UsageError('cannot read %s: %s' % (args.from_report, exc))
    if len(text) > _MAX_REPORT_BYTES:
        raise UsageError('%s is larger than %d bytes: grep the report '
                         'line out of the log first'
                         % (args.from_report, _MAX_REPORT_BYTES))
    try:
        record = replay.find_report(text, args.instance)
        result = replay.replay(CONF, record)
    except (replay.NotAReport, loader.UnknownPolicy) as exc:
        raise UsageError(str(exc))
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError('the report\'s facts cannot be read: %s: %s'
                         % (type(exc).__name__, exc))
    if args.json:
        print(json.dumps({'recorded': result.recorded,
                          'replayed': result.replayed.describe(),
                          'differences': result.differences,
                          'reasons': list(result.replayed.reasons)},
                         indent=2, sort_keys=True))
    else:
        print('instance: %s' % (record.get('instance') or '-'))
        print('recorded: %s' % result.recorded)
        print('replayed: %s' % result.replayed.describe())
        if result.differences:
            print('differences (recorded -> replayed):')
            for line in result.differences:
                print('  - %s' % line)
        else:
            print('same plan')
        print('reasons:')
        for reason in result.replayed.reasons:
            print('  - %s' % reason)
    return 1 if result.differences else 0


#: A log of many migrations is fine; anything beyond this is not a log.
_MAX_REPORT_BYTES = 256 * 1024 * 1024


def _add_plan_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        'plan', help='show the plan a policy chooses for given facts, or '
                     'replay a logged decision (--from-report)',
        description='A dry run of the planner: the facts come from '
                    '--facts and the options below (default: the defaults '
                    'of "Facts format" in the CLI documentation, a 1 GiB '
                    'guest of unknown dirty rate on an idle 2-CPU source); '
                    'the options from nova.conf (--config-file / '
                    '--config-dir before "plan"). '
                    'Prints the plan, the libvirt flags and parameters '
                    'nova-compute would send, and the reasons.')
    p.add_argument('--facts', metavar='FILE',
                   help='JSON file with the facts: an object whose keys '
                        'are fields of nova_qat_migration.datamodel.Facts, '
                        'with one nested object per section (instance, '
                        'host, qat, hypervisor, destination, nova, '
                        'history, in_flight); see "Facts format" in the '
                        'CLI documentation. Options below override it')
    p.add_argument('--from-report', metavar='FILE',
                   help='replay a logged decision: FILE (or - for stdin) '
                        'holds a nova-compute log with "qat_migration '
                        'report:" lines (the last one is used, see '
                        '--instance), one report as JSON, or a lab '
                        'benchmark record; the plan is made again from the '
                        'facts it recorded, with this nova.conf, and any '
                        'difference is printed (exit 1)')
    p.add_argument('--instance', metavar='UUID',
                   help='with --from-report: the last report of this '
                        'instance')
    p.add_argument('--policy', help='policy name (default: the configured '
                   'one, [qat_migration] policy)')
    p.add_argument('--ram', type=_number_arg(int, 1), metavar='MiB',
                   help="the guest's memory")
    p.add_argument('--vcpus', type=_number_arg(int, 1, 65536),
                   metavar='N', help="the guest's vCPUs")
    p.add_argument('--dirty-rate', type=_number_arg(float, 0),
                   metavar='MiB/s',
                   help='how fast the guest dirties memory (default: '
                        'unknown)')
    p.add_argument('--cpus', type=_number_arg(int, 1, 65536), metavar='N',
                   help="the source host's CPUs")
    p.add_argument('--cpu-idle', type=_number_arg(float, 0, 100),
                   metavar='PCT',
                   help="share of the source's CPU that is idle")
    p.add_argument('--mem-free', type=_number_arg(int, 0), metavar='MiB',
                   help="the source's free memory")
    p.add_argument('--link-gbps', type=_number_arg(float, 0.001, 1e6),
                   metavar='GBIT/S',
                   help='migration link speed (default: [qat_migration] '
                        'link_gbps)')
    p.add_argument('--dest-methods', metavar='M1,M2',
                   help='compression methods the destination advertises '
                        '(its CUSTOM_MIGRATION_COMPRESS_<METHOD> traits), '
                        'e.g. '
                        'xbzrle,zlib,zstd')
    p.add_argument('--hint', action='append', metavar='KEY=VALUE',
                   help='a qat_migration:KEY flavor extra spec, e.g. '
                        'method=zstd (repeat for more)')
    p.add_argument('--json', action='store_true',
                   help='print the libvirt call (or the replay) as JSON')
    p.set_defaults(func=cmd_plan)


def package_version() -> str:
    """This package's version, as pip installed it."""
    from importlib import metadata
    try:
        return metadata.version('nova-qat-migration')
    except metadata.PackageNotFoundError:
        return 'unknown (not installed)'


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # exit code 2, no traceback
        self.print_usage(sys.stderr)
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog='nova-qat-migration',
                     description='Per-instance live-migration planning for '
                                 "Nova's libvirt driver.")
    parser.add_argument('--version', action='version',
                        version='%(prog)s ' + package_version())
    parser.add_argument('--config-file', action='append', default=[],
                        metavar='PATH',
                        help='nova.conf to read the options from (repeat '
                             'for more; later files win)')
    parser.add_argument('--config-dir', action='append', default=[],
                        metavar='DIR',
                        help='a directory whose .conf files are read after '
                             'the '
                             '--config-file ones, in name order (the '
                             'nova.conf.d layout)')
    subparsers = parser.add_subparsers(dest='command', metavar='COMMAND',
                                       parser_class=_Parser)
    _add_plan_parser(subparsers)
    for module in SUBCOMMAND_MODULES:
        module.add_parsers(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, 'func', None):
            parser.print_help()
            return 2
        CONF(args=[], project='nova', default_config_files=args.config_file,
             default_config_dirs=args.config_dir,
             validate_default_values=True)
        return args.func(args)
    except UsageError as exc:
        print('nova-qat-migration: error: %s' % exc, file=sys.stderr)
        return 2
    except errors.CONFIG_ERRORS as exc:
        print('nova-qat-migration: configuration error: %s' % exc,
              file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
