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
"""``.. qat-migration-keys::`` -- the ``qat_migration:*`` keys as a table.

Rendered from :data:`nova_qat_migration.policy.hints.KEYS`, the table the
API validator, the migration pre-check and the Glance metadefs are made
from, so the documentation cannot drift from what Nova accepts.
"""

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

_TYPES = {str: 'string', int: 'integer', bool: 'boolean'}
_RULES = {
    'lower': 'lowers the operator\'s limit{option}',
    'forbid': 'can only forbid (``false``)',
    'choose': 'used when the flavor sets none; must be allowed{option}',
    'policy': 'only a policy listed in{option}',
}


def _values(key):
    if key.enum is not None:
        return ', '.join('``%s``' % v for v in key.enum)
    if key.min is not None or key.max is not None:
        return '%s .. %s' % (key.min, key.max)
    if key.type is bool:
        return '``true``, ``false``'
    from nova_qat_migration.policy import hints
    return 'name matching ``%s``' % hints.NAME_PATTERN


def _rule(key):
    option = (' ``[qat_migration] %s``' % key.option) if key.option else ''
    if key.image_rule in ('lower', 'choose') and option:
        option = ' (%s)' % option.strip()
    return _RULES.get(key.image_rule, key.image_rule).format(option=option)


class QATMigrationKeys(SphinxDirective):
    has_content = False

    def run(self):
        from nova_qat_migration.policy import hints
        lines = ['.. list-table::', '   :header-rows: 1',
                 '   :widths: 20 10 18 30 22', '',
                 '   * - key', '     - type', '     - values',
                 '     - meaning', '     - as an image property']
        for key in hints.KEYS:
            lines += ['   * - ``%s``' % key.spec,
                      '     - %s' % _TYPES[key.type],
                      '     - %s' % _values(key),
                      '     - %s' % key.description,
                      '     - %s' % _rule(key)]
        node = nodes.container()
        self.state.nested_parse(StringList(lines, source='qat_keys'),
                                self.content_offset, node)
        return node.children


def setup(app):
    app.add_directive('qat-migration-keys', QATMigrationKeys)
    return {'parallel_read_safe': True, 'parallel_write_safe': True}
