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
import json
import math
import sys
from typing import Any, Optional, Sequence

from nova_qat_migration.cmd import drain
from nova_qat_migration.cmd import errors
from nova_qat_migration.cmd import facts_input
from nova_qat_migration.cmd import qat as qat_cmd
from nova_qat_migration.cmd import status
from nova_qat_migration.cmd import timeline
from nova_qat_migration import conf as qat_conf
from nova_qat_migration.conf import CONF
from nova_qat_migration import exception
from nova_qat_migration.policy import base
from nova_qat_migration.policy import loader
from nova_qat_migration.virt.libvirt import translate

#: Modules contributing subcommands through ``add_parsers(subparsers)``
#: (imported above: they import nothing of this module).
SUBCOMMAND_MODULES = (qat_cmd, status, drain, timeline)


UsageError = exception.UsageError


#: Reading facts from JSON or options: in :mod:`.facts_input`; importable
#: from here.
_NESTED = facts_input.NESTED
_MAX_NUMBER = facts_input.MAX_NUMBER
facts_from_json = facts_input.facts_from_json
facts_from_args = facts_input.facts_from_args


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
