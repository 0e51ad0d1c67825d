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
"""Per-instance overrides: ``qat_migration:*`` flavor extra specs and image
properties.

One table (:data:`KEYS`) defines every key, its type and bounds; the API
validator (:mod:`nova_qat_migration.api.extra_specs`) and the migration
planning both use it, so a value refused at one is ignored (with a
warning naming it) at the other.
Image properties reach the compute host through the instance's system
metadata (``image_qat_migration:<key>``).

The two sources are not trusted alike:

* flavor extra specs are the operator's. Nova's API refuses a bad key or
  value (from microversion 2.86, where this package is installed on the
  nova-api hosts); one that reached a flavor anyway (an older
  microversion, as openstacksdk's 2.61) is ignored with a warning naming
  it when a migration is planned (``lenient``), never refusing the
  migration. They may widen a limit within the option bounds, e.g. a
  ``max_downtime_ms`` above ``[qat_migration] downtime_ms``;
* image properties are the tenant's. A bad key or value is ignored with a
  warning -- a tenant must not be able to make its server impossible to
  live-migrate -- and a valid value only narrows what the operator allows
  (see :attr:`Key.image_rule`): it lowers a limit, forbids a lever, or
  chooses among what the operator permits. An image never changes the
  policy unless the operator lists it in ``[qat_migration] image_policies``.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping, Optional

from oslo_log import log as logging
from oslo_utils import strutils

from nova_qat_migration import datamodel
from nova_qat_migration import exception


LOG = logging.getLogger(__name__)

NAMESPACE = 'qat_migration'
IMAGE_SYSMETA_PREFIX = 'image_'
#: What a free-text value (a policy name) must look like, here and at the
#: API (:mod:`nova_qat_migration.api.extra_specs`).
NAME_PATTERN = r'[a-z][a-z0-9_]*'

#: ``qat_migration:level`` bounds: the levels every method that has a level
#: accepts. Nova validates one extra spec at a time, so the API cannot
#: check a level against the flavor's ``method``; bounding the level by
#: the intersection of the methods' ranges means no pair the API accepts
#: can fail a pre-check. (``none`` and ``xbzrle`` have no level: a level
#: beside them is simply unused.)
LEVEL_MIN = max(lo for lo, _hi in datamodel.LEVEL_RANGES.values())
LEVEL_MAX = min(hi for _lo, hi in datamodel.LEVEL_RANGES.values())

#: How an image value combines with what the operator set
#: (:attr:`Key.image_rule`).
#: ``lower``: the smaller of the image's value and the operator's limit
#: (the flavor's, else the option's).
RULE_LOWER = 'lower'
#: ``forbid``: a boolean permission; the image can only say ``false``.
RULE_FORBID = 'forbid'
#: ``choose``: used only when the flavor sets nothing for the key, and only
#: if the value is among what the options allow. The policies narrow it
#: further (:class:`~.common.Limits`): a method only among the plans the
#: operator's gates produce, a level only below the policy's own.
RULE_CHOOSE = 'choose'
#: ``policy``: only the policies in ``[qat_migration] image_policies``.
RULE_POLICY = 'policy'

#: The lowest downtime (ms) an image may ask for, unless the operator's
#: own limit is lower. Nova itself never plans a switch-over under 100 ms
#: (``[libvirt] live_migration_downtime`` has that minimum): a busy guest
#: rarely fits a smaller pause, so a tenant's 10 ms would only make its
#: server's migration run until a timeout. The operator's options and
#: flavors keep the key's own minimum.
IMAGE_DOWNTIME_FLOOR_MS = 100


@dataclasses.dataclass(frozen=True)
class Key:
    name: str
    type: type
    description: str
    image_rule: str
    min: Optional[int] = None
    max: Optional[int] = None
    enum: Optional[tuple] = None
    #: The ``[qat_migration]`` option that bounds an image's value
    #: (``lower``) or lists its allowed values (``choose``, ``policy``).
    option: Optional[str] = None

    @property
    def spec(self) -> str:
        return '%s:%s' % (NAMESPACE, self.name)


KEYS = (
    Key('policy', str, 'Migration policy for this instance (an installed '
        'nova_qat_migration.policies plugin, e.g. adaptive, static, '
        'nova_default). From an image only if [qat_migration] '
        'image_policies lists it.', RULE_POLICY, option='image_policies'),
    Key('method', str, 'Force this page-compression method (it must be '
        'allowed by [qat_migration] allowed_methods; the plan still '
        'degrades when the hosts cannot run it).', RULE_CHOOSE,
        enum=datamodel.METHODS, option='allowed_methods'),
    Key('level', int, 'Compression level for the method the plan uses '
        '(%d..%d, valid for every method that has a level; unused by none '
        'and xbzrle).' % (LEVEL_MIN, LEVEL_MAX), RULE_CHOOSE,
        min=LEVEL_MIN, max=LEVEL_MAX),
    Key('parallel_connections', int, 'Multifd channels for this instance '
        '(at most [qat_migration] max_parallel_connections).', RULE_LOWER,
        min=1, max=32, option='max_parallel_connections'),
    Key('max_downtime_ms', int, 'Maximum switch-over downtime (ms) this '
        'instance tolerates. From an image it can only lower '
        '[qat_migration] downtime_ms.', RULE_LOWER, min=10, max=60000,
        option='downtime_ms'),
    Key('allow_post_copy', bool, 'Whether this instance may be switched to '
        'post-copy (only where the host permits post-copy).', RULE_FORBID),
    Key('allow_throttle', bool, 'Whether this instance\'s vCPUs may be '
        'throttled (auto-converge).', RULE_FORBID),
    Key('working_set_mb', int, 'Expected writable working set (MiB), used '
        'to size the XBZRLE cache (from an image, at most the instance\'s '
        'RAM).', RULE_LOWER, min=0, max=16 * 1024 * 1024),
)
KEYS_BY_NAME = {key.name: key for key in KEYS}


#: Defined in :mod:`nova_qat_migration.exception`; importable from here.
InvalidHint = exception.InvalidHint


def parse_value(key: Key, value: Any, source: str = 'extra spec') -> Any:
    """Parse and check one value; raise :class:`InvalidHint` if bad.

    Accepts exactly what Nova's API validator accepts for the same key (the
    API calls this too), so a flavor the API took never fails here.
    """
    where = '%s %s' % (source, key.spec)
    if key.type is bool:
        if isinstance(value, bool):
            return value
        try:
            return strutils.bool_from_string(str(value), strict=True)
        except ValueError:
            raise InvalidHint('%s: %r is not a boolean' % (where, value))
    if key.type is int:
        if isinstance(value, bool):
            raise InvalidHint('%s: %r is not an integer' % (where, value))
        try:
            # NOTE(qat-migration): int() of a str also refuses more than
            # sys.get_int_max_str_digits() digits (ValueError), so a huge
            # value costs nothing.
            number = int(str(value).strip())
        except ValueError:
            raise InvalidHint('%s: %r is not an integer'
                              % (where, _short(value)))
        if key.min is not None and number < key.min:
            raise InvalidHint('%s: %d is below the minimum %d'
                              % (where, number, key.min))
        if key.max is not None and number > key.max:
            raise InvalidHint('%s: %d is above the maximum %d'
                              % (where, number, key.max))
        return number
    text = str(value)
    if key.enum is not None and text not in key.enum:
        raise InvalidHint('%s: %r is not one of %s'
                          % (where, _short(text), ', '.join(key.enum)))
    if not text.strip():
        raise InvalidHint('%s: empty value' % where)
    if key.enum is None and not re.fullmatch(NAME_PATTERN, text):
        raise InvalidHint('%s: %r is not of the format %s'
                          % (where, _short(text), NAME_PATTERN))
    return text


def _short(value: Any, limit: int = 64) -> str:
    """``value`` for a message, cut so a huge property cannot flood logs."""
    text = str(value)
    return text if len(text) <= limit else text[:limit] + '...'


def _collect(mapping: Optional[Mapping[str, Any]], prefix: str,
             source: str, errors: Optional[list] = None,
             warnings: Optional[list] = None) -> dict:
    """The ``qat_migration:*`` values of ``mapping``, parsed.

    :param errors: when given, a bad key or value is appended to it (and
        skipped) instead of raised.
    :param warnings: when given, keys in another spelling of the
        namespace (``QAT_MIGRATION:x``), which are never used, are named
        in it.
    :raises InvalidHint: naming the key, when ``errors`` is None.
    """
    found: dict = {}
    ns = prefix + NAMESPACE + ':'
    for name, value in (mapping or {}).items():
        if not isinstance(name, str):
            continue
        if not name.startswith(ns):
            if name.lower().startswith(ns) and warnings is not None:
                # Nova's API takes QAT_MIGRATION:x (an unknown namespace
                # to it), and nothing here reads it: say so rather than
                # let the operator or tenant believe it applies.
                warnings.append(
                    '%s %s ignored: the namespace is %s (lower case)'
                    % (source, _short(name[len(prefix):]), NAMESPACE))
            continue
        short = name[len(ns):]
        key = KEYS_BY_NAME.get(short)
        try:
            if key is None:
                raise InvalidHint('%s %s:%s is not a known key (known: %s)'
                                  % (source, NAMESPACE, _short(short),
                                     ', '.join(sorted(KEYS_BY_NAME))))
            found[short] = parse_value(key, value, source)
        except InvalidHint as exc:
            if errors is None:
                raise
            errors.append(str(exc))
    return found


def _narrow_image(image: dict, flavor: dict, conf: Any,
                  memory_mb: Optional[int], ignored: list) -> dict:
    """The image's values that narrow what the operator allows.

    Applies each key's :attr:`Key.image_rule`; a value that would widen a
    limit is lowered to it or dropped, and the reason appended to
    ``ignored``.
    """
    group = conf.qat_migration
    out: dict = {}
    for name, value in image.items():
        key = KEYS_BY_NAME[name]
        where = 'image property %s' % key.spec
        rule = key.image_rule
        if rule == RULE_FORBID:
            # Only a refusal narrows; "true" leaves the operator's say.
            if value is False:
                out[name] = False
        elif rule == RULE_LOWER:
            if name == 'working_set_mb':
                if not value:
                    # 0 means "unknown" to the policies (all of RAM):
                    # it would undo a flavor's smaller working set.
                    continue
                limit = flavor.get(name, memory_mb)
            else:
                limit = flavor.get(name, _option(conf, key.option))
            if limit is not None and value > limit:
                ignored.append('%s=%d lowered to the operator\'s %d'
                               % (where, value, limit))
                value = limit
            if name == 'max_downtime_ms':
                floor = min(IMAGE_DOWNTIME_FLOOR_MS, limit or value)
                if value < floor:
                    ignored.append('%s=%d raised to %d ms, the least an '
                                   'image may ask for' % (where, value,
                                                          floor))
                    value = floor
            out[name] = value
        elif rule == RULE_CHOOSE:
            if name in flavor:
                if flavor[name] != value:
                    ignored.append('%s=%s ignored: the flavor sets %s'
                                   % (where, value, flavor[name]))
                continue
            # ``none`` (plain pre-copy) is always allowed.
            if (key.option and value != 'none' and
                    value not in getattr(group, key.option)):
                ignored.append('%s=%s ignored: not in [qat_migration] %s'
                               % (where, value, key.option))
                continue
            out[name] = value
        elif rule == RULE_POLICY:
            if name in flavor:
                continue
            if value not in (getattr(group, key.option) or ()):
                ignored.append('%s=%s ignored: images may not choose the '
                               'policy unless [qat_migration] %s lists it'
                               % (where, value, key.option))
                continue
            out[name] = value
        else:  # pragma: no cover - a KEYS entry without a rule
            raise AssertionError('no image rule for %s' % name)
    return out


def _option(conf: Any, name: str) -> Any:
    """``[qat_migration] name`` as plans use it (for the options that
    follow ``[libvirt]`` while unset, :func:`~nova_qat_migration.conf.
    nova_ceiling`).
    """
    from nova_qat_migration import conf as qat_conf
    if name in qat_conf.FOLLOWS_LIBVIRT:
        return qat_conf.nova_ceiling(conf, name)
    return getattr(conf.qat_migration, name)


def resolve(extra_specs: Optional[Mapping[str, Any]] = None,
            image_properties: Optional[Mapping[str, Any]] = None,
            system_metadata: Optional[Mapping[str, Any]] = None,
            conf: Any = None, memory_mb: Optional[int] = None,
            lenient: bool = False) -> tuple[datamodel.Hints, list]:
    """Hints for one instance and what was ignored from its image.

    :param extra_specs: the flavor's extra specs (strict).
    :param image_properties: image properties (``qat_migration:<key>``).
    :param system_metadata: the instance's system metadata, where Nova
        keeps image properties as ``image_qat_migration:<key>``.
    :param conf: the options image values are narrowed against (default:
        nova-compute's ``CONF``).
    :param memory_mb: the instance's RAM, bounding an image's working set.
    :param lenient: a bad flavor key or value is ignored (named in
        ``ignored``) instead of raised, as when a migration is planned: a
        typo in a flavor never blocks a migration, the rest of its hints
        stand.
    :returns: ``(hints, ignored)``: ``hints`` carries the flavor's alone
        as :attr:`~.datamodel.Hints.operator` when the image changed
        anything; ``ignored`` has one message per image value that was
        invalid or was lowered or raised to a bound, and per key in
        another spelling of the namespace (flavor or image), never
        used.
    :raises InvalidHint: for a bad flavor extra spec, naming the key
        (unless ``lenient``).
    """
    if conf is None:
        from nova_qat_migration import conf as qat_conf
        conf = qat_conf.CONF
    ignored: list = []
    flavor_errors: Optional[list] = [] if lenient else None
    flavor = _collect(extra_specs, '', 'flavor extra spec', flavor_errors,
                      warnings=ignored)
    ignored.extend('%s: ignored' % error for error in flavor_errors or ())
    image = _collect(system_metadata, IMAGE_SYSMETA_PREFIX,
                     'image property', ignored, warnings=ignored)
    image.update(_collect(image_properties, '', 'image property', ignored,
                          warnings=ignored))
    values = dict(flavor)
    values.update(_narrow_image(image, flavor, conf, memory_mb, ignored))
    operator = datamodel.Hints(**flavor)
    hints = datamodel.Hints(**values)
    if hints != operator:
        hints = dataclasses.replace(hints, operator=operator)
    return hints, ignored


def from_instance(extra_specs: Optional[Mapping[str, Any]] = None,
                  image_properties: Optional[Mapping[str, Any]] = None,
                  system_metadata: Optional[Mapping[str, Any]] = None,
                  conf: Any = None, memory_mb: Optional[int] = None,
                  instance: Any = None, ignored: Optional[list] = None,
                  ) -> datamodel.Hints:
    """Hints for one instance; ignored values are logged.

    See :func:`resolve` for the parameters; ``instance`` only tags the
    warnings.

    :param ignored: when given, a bad flavor key or value is ignored too
        (``resolve``'s ``lenient``), and every message logged is appended
        to it (for the migration's report).
    :raises InvalidHint: for a bad flavor extra spec, naming the key
        (unless ``ignored`` is given).
    """
    hints, messages = resolve(extra_specs, image_properties,
                              system_metadata, conf=conf,
                              memory_mb=memory_mb,
                              lenient=ignored is not None)
    for message in messages:
        LOG.warning('Live-migration hint not used as given: %s',
                    message, instance=instance)
    if ignored is not None:
        ignored.extend('hint not used as given: %s' % message
                       for message in messages)
    return hints
