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
"""Configuration of nova-qat-migration.

Options live in Nova's global ``CONF`` (nova.conf): the planner's in
``[qat_migration]``, the built-in policies' in ``[qat_migration_static]``
and ``[qat_migration_adaptive]`` (all registered here; other policies'
groups, ``[qat_migration_<name>]``, are registered by the policy
loader). :func:`check` reads and checks them at start-up.
"""

import difflib
import glob
import json
import math
import os
import re
import stat
from typing import Any, Optional

from oslo_config import cfg
from oslo_log import log as logging

from nova_qat_migration.conf import qat_migration
from nova_qat_migration import datamodel
from nova_qat_migration import exception

CONF = cfg.CONF
LOG = logging.getLogger(__name__)

qat_migration.register_opts(CONF)

GROUP = qat_migration.qat_migration_group.name
STATIC_GROUP = qat_migration.static_group.name
ADAPTIVE_GROUP = qat_migration.adaptive_group.name
#: Where the host's total memory is read for the start-up checks.
MEMINFO = '/proc/meminfo'
#: A calibration file larger than this is not a calibration file.
_CALIBRATION_MAX_BYTES = 64 * 1024
#: Upper bounds the start-up check applies to options that have none of
#: their own (oslo.config takes 1e308 for a FloatOpt without a maximum):
#: ``{option: (maximum, why)}``.
_SANE_MAXIMA = {
    # 10 Tbit/s: no migration network comes near it, and a larger value
    # makes the link practically infinite in the model (and 1e308 makes
    # it infinite: reports then carry Infinity).
    'link_gbps': (10000.0, 'Gbit/s'),
}


#: ``[qat_migration]`` options that follow a ``[libvirt]`` option of Nova's
#: while unset: Nova's switches are the ceiling by default, and an
#: explicit ``[qat_migration]`` value wins (see :func:`nova_ceiling`).
FOLLOWS_LIBVIRT = {
    'permit_auto_converge': 'live_migration_permit_auto_converge',
    'permit_post_copy': 'live_migration_permit_post_copy',
    'downtime_ms': 'live_migration_downtime',
    'max_parallel_connections': 'live_migration_parallel_connections',
}


def nova_ceiling(conf: cfg.ConfigOpts, name: str) -> Any:
    """The value of ``[qat_migration] name`` that plans use.

    The option itself when the operator set it; while unset, the
    ``[libvirt]`` option it follows (:data:`FOLLOWS_LIBVIRT`), so with
    ``[qat_migration]`` untouched a plan is never allowed more than Nova's
    own ``live_migration_*`` switches allow.
    """
    value = getattr(conf.qat_migration, name)
    if value is not None:
        return value
    if 'libvirt' not in conf:
        import nova.conf  # noqa: F401 - registers [libvirt]
    value = getattr(conf.libvirt, FOLLOWS_LIBVIRT[name])
    if name == 'max_parallel_connections':
        # Nova's option has no maximum; multifd's channels do.
        value = max(1, min(int(value), 32))
    return value


#: Defined in :mod:`nova_qat_migration.exception`; importable from here.
ConfigError = exception.ConfigError


def _name(option: str, group: str = GROUP) -> str:
    return '[%s] %s' % (group, option)


def check(conf: cfg.ConfigOpts = CONF,
          host_memory_mb: Optional[int] = None) -> None:
    """Read and check every ``[qat_migration]``, ``[qat_migration_static]``
    and ``[qat_migration_adaptive]`` option.

    Called at driver start-up so a bad value stops nova-compute with a
    message naming the option, instead of surfacing mid-migration as a
    traceback: oslo.config parses a value only when it is first read, and
    its float bounds let NaN (and, without a maximum, infinity) through.

    :param host_memory_mb: the host's memory, bounding the static XBZRLE
        cache (read from ``/proc/meminfo`` when None; unchecked when that
        is unreadable).
    :raises ConfigError: naming the option.
    """
    qat_migration.register_static_opts(conf)
    qat_migration.register_adaptive_opts(conf)
    values = _read(conf, GROUP, qat_migration.ALL_OPTS)
    static = _read(conf, STATIC_GROUP, qat_migration.static_opts)
    _read(conf, ADAPTIVE_GROUP, qat_migration.adaptive_opts)
    _check_sane_maxima(values)
    _check_combinations(values, static)
    _check_static_cache(values, static, host_memory_mb)
    if values['model_calibration']:
        check_calibration(values['model_calibration'])


def _read(conf: cfg.ConfigOpts, group: str, opts: list) -> dict:
    """``{dest: value}`` of ``opts`` in ``group``; floats must be finite.

    An option whose default is not empty must not be empty: oslo.config
    reads ``downtime_ms =`` as None, which every later comparison or
    arithmetic turns into a TypeError (per migration, or a bare traceback
    at start-up), and ``sysfs_root =`` as '', a path relative to
    wherever nova-compute was started. (An empty list keeps its meaning:
    ``allowed_methods =`` allows only ``none``.)

    :raises ConfigError: naming the first option that cannot be read.
    """
    section = conf[group]
    values = {}
    for opt in opts:
        try:
            value = values[opt.dest] = getattr(section, opt.dest)
        except (cfg.Error, ValueError) as exc:
            raise ConfigError('%s: %s' % (_name(opt.name, group),
                                          plain_error(exc)))
        if _empty(value) and not _empty(opt.default):
            raise ConfigError('%s must not be empty (remove the line for '
                              'the default, %s)'
                              % (_name(opt.name, group), opt.default))
        if (isinstance(opt, cfg.FloatOpt) and value is not None and
                not math.isfinite(value)):
            raise ConfigError('%s must be a finite number, got %s'
                              % (_name(opt.name, group), value))
    return values


#: oslo.config's reasons for a bad value, and how an operator reads them.
_PLAIN_REASONS = (
    (re.compile(r'Should be greater than or equal to (\S+)'),
     r'must be at least \1'),
    (re.compile(r'Should be less than or equal to (\S+)'),
     r'must be at most \1'),
    (re.compile(r'Valid values are \[(.*)\], but found (.*)'),
     r'\2 is not one of \1'),
    (re.compile(r'Unexpected boolean value (.*)'),
     r'\1 is not true or false'),
    (re.compile(r'invalid literal for int\(\) with base 10: (.*)'),
     r'\1 is not a whole number'),
    (re.compile(r'could not convert string to float: (.*)'),
     r'\1 is not a number'),
)


def plain_error(exc: BaseException) -> str:
    """oslo.config's error about a value, in plain words.

    Its message names internals (``Value for option x from
    LocationInfo(location=<Locations.user: (4, True)>, detail='/etc/...')
    is not valid: Should be greater than or equal to 10``); this keeps the
    file and the reason: ``in /etc/...: must be at least 10``.
    """
    text = str(exc)
    where = re.search(r"LocationInfo\(.*?detail='([^']*)'\)", text)
    reason = text.split(' is not valid: ', 1)[-1]
    for pattern, plain in _PLAIN_REASONS:
        if pattern.search(reason):
            reason = pattern.sub(plain, reason)
            break
    if where and where.group(1):
        return 'in %s: %s' % (where.group(1), reason)
    return reason


def config_files(conf: cfg.ConfigOpts) -> list:
    """The files ``conf`` was read from: ``--config-file`` ones, then each
    ``--config-dir``'s ``*.conf`` in name order (as oslo.config reads
    them).
    """
    files = list(getattr(conf, 'config_file', None) or ())
    dirs = getattr(conf, 'config_dir', None) or ()
    for directory in [dirs] if isinstance(dirs, str) else dirs:
        files += sorted(glob.glob(os.path.join(directory, '*.conf')))
    return files


def known_options() -> dict:
    """``{group: {option names}}`` of the groups this package owns
    (``[qat_migration]``, ``[qat_migration_static]`` and every installed
    policy's), former names included.
    """
    from nova_qat_migration.conf import opts as conf_opts
    known: dict = {}
    for group, group_opts in conf_opts.list_opts():
        name = getattr(group, 'name', group)
        names = known.setdefault(name, set())
        for opt in group_opts:
            names.update((opt.name, opt.dest))
            for old in opt.deprecated_opts:
                known.setdefault(old.group or name, set()).add(old.name)
    for group, group_opts in ((STATIC_GROUP, qat_migration.static_opts),
                              (ADAPTIVE_GROUP, qat_migration.adaptive_opts)):
        known.setdefault(group, set()).update(o.name for o in group_opts)
        for opt in group_opts:
            for old in opt.deprecated_opts:
                known.setdefault(old.group or group, set()).add(old.name)
    return known


def unknown_options(conf: cfg.ConfigOpts) -> list:
    """Options in the groups this package owns that no option is called:
    oslo.config ignores them silently (a misspelt ``downtime_msec`` leaves
    ``downtime_ms`` at its default).

    :returns: ``[(file, group, name, close known names)]``.
    """
    known = known_options()
    found = []
    for path in config_files(conf):
        sections: dict = {}
        try:
            cfg.ConfigParser(path, sections).parse()
        except (OSError, ValueError, cfg.ParseError) as exc:
            # oslo.config itself reports a file it cannot read or parse.
            LOG.debug('Unknown options of %s not looked for: %s', path, exc)
            continue
        for section, values in sections.items():
            group = section.lower()
            if group not in known:
                continue
            for name in values:
                if name not in known[group]:
                    found.append((path, group, name, difflib.get_close_matches(
                        name, sorted(known[group]), n=1)))
    return found


def _empty(value: Any) -> bool:
    return value is None or value == ''


def _check_sane_maxima(v: dict) -> None:
    for option, (maximum, unit) in _SANE_MAXIMA.items():
        if v[option] is not None and v[option] > maximum:
            raise ConfigError('%s must be at most %g %s, got %g'
                              % (_name(option), maximum, unit, v[option]))


def _check_combinations(v: dict, static: dict) -> None:
    if v['xbzrle_cache_min_mb'] > v['xbzrle_cache_max_mb']:
        raise ConfigError(
            '%s (%d) must not exceed %s (%d)'
            % (_name('xbzrle_cache_min_mb'), v['xbzrle_cache_min_mb'],
               _name('xbzrle_cache_max_mb'), v['xbzrle_cache_max_mb']))
    schedule = list(v['throttle_schedule'])
    if not schedule or schedule != sorted(set(schedule)):
        raise ConfigError(
            '%s must be a non-empty list of strictly increasing '
            'percentages, got %r' % (_name('throttle_schedule'), schedule))
    allowed = set(v['allowed_methods']) | {'none'}
    if static['method'] not in allowed:
        raise ConfigError(
            '%s %s is not in %s (%s)'
            % (_name('method', STATIC_GROUP), static['method'],
               _name('allowed_methods'), ', '.join(v['allowed_methods'])))


def host_memory_mb(meminfo: str = MEMINFO) -> Optional[int]:
    """``MemTotal`` in MiB, or None when it cannot be read."""
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith('MemTotal:'):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _check_static_cache(v: dict, static: dict,
                        memory_mb: Optional[int]) -> None:
    cache = static['xbzrle_cache_mb']
    name = _name('xbzrle_cache_mb', STATIC_GROUP)
    if cache > v['xbzrle_cache_max_mb']:
        raise ConfigError('%s (%d) must not exceed %s (%d)'
                          % (name, cache, _name('xbzrle_cache_max_mb'),
                             v['xbzrle_cache_max_mb']))
    if memory_mb is None:
        memory_mb = host_memory_mb()
    if memory_mb is None:
        return
    spare = memory_mb - v['memory_headroom_mb']
    if cache > spare:
        raise ConfigError(
            '%s (%d) exceeds this host\'s memory above %s (%d - %d = %d '
            'MiB)' % (name, cache, _name('memory_headroom_mb'), memory_mb,
                      v['memory_headroom_mb'], spare))


def check_calibration(path: str) -> dict:
    """Check the shape of a ``model_calibration`` file.

    The file must be a JSON object whose keys are fields of the model's
    ``Calibration`` and whose values are finite numbers in each field's
    range; otherwise every adaptive plan would fall back, or divide by
    zero, per migration.

    :returns: the values, as floats.
    :raises ConfigError: naming ``[qat_migration] model_calibration``, the
        file and the field.
    """
    where = '%s %s' % (_name('model_calibration'), path)
    try:
        raw = _read_regular_file(path, _CALIBRATION_MAX_BYTES, where)
        data = json.loads(raw.decode('utf-8'),
                          parse_constant=_refuse_constant)
    except ConfigError:
        raise
    except (OSError, ValueError, RecursionError) as exc:
        raise ConfigError('%s is not a readable JSON file: %s'
                          % (where, exc))
    if not isinstance(data, dict):
        raise ConfigError('%s must hold a JSON object, got %s'
                          % (where, type(data).__name__))
    ranges = datamodel.Calibration.ranges()
    unknown = sorted(set(data) - set(ranges))
    if unknown:
        raise ConfigError('%s: unknown field(s) %s (known: %s)'
                          % (where, ', '.join(unknown),
                             ', '.join(sorted(ranges))))
    out = {}
    for name, value in data.items():
        low, high, low_open = ranges[name]
        ok = (isinstance(value, (int, float)) and
              not isinstance(value, bool) and math.isfinite(value) and
              (value > low if low_open else value >= low) and
              value <= high)
        if not ok:
            raise ConfigError(
                '%s: %s must be a number %s %s and <= %s, got %s'
                % (where, name, '>' if low_open else '>=', low, high,
                   json.dumps(value)[:64]))
        out[name] = float(value)
    return out


def _read_regular_file(path: str, limit: int, where: str) -> bytes:
    """The bytes of ``path``, which must be a regular file of at most
    ``limit`` bytes.

    Opened without blocking and checked before reading: a FIFO (or a
    device) at the path would otherwise block nova-compute's start-up
    until something writes to it.

    :raises ConfigError: naming ``where`` for anything but a regular file
        or one that is too large.
    :raises OSError: when it cannot be opened or read.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, 'rb') as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError('%s is not a regular file' % where)
        raw = f.read(limit + 1)
    if len(raw) > limit:
        raise ConfigError('%s is larger than %d bytes' % (where, limit))
    return raw


def _refuse_constant(name: str) -> Any:
    # json.loads accepts NaN/Infinity by default; a calibration must not.
    raise ValueError('%s is not a number' % name)
