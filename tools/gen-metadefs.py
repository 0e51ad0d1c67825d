#!/usr/bin/env python3
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
"""Write Glance's metadata definitions for the ``qat_migration:*`` keys.

Horizon's "Update Metadata" dialog (flavors, images, volumes) lists what
Glance's metadefs catalogue holds. This generates that catalogue entry,
``etc/metadefs/nova-qat-migration.json``, from the validators Nova's API
applies to flavor extra specs
(:func:`nova_qat_migration.api.extra_specs.register`, built from the one
table :data:`nova_qat_migration.policy.hints.KEYS`), so Horizon offers
exactly the values the API accepts. A unit test fails when the committed
file and the table drift apart.

Run from the repository root::

    .venv/bin/python tools/gen-metadefs.py           # rewrite the file
    .venv/bin/python tools/gen-metadefs.py --check   # exit 1 if stale

Load it into Glance with ``glance-manage db_load_metadefs`` (see the
documentation, "Horizon and Glance metadata definitions").
"""

import argparse
import collections
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUT = os.path.join(REPO, 'etc', 'metadefs', 'nova-qat-migration.json')

NAMESPACE = 'OS::Compute::QATMigration'
DISPLAY_NAME = 'Live Migration Planning (nova-qat-migration)'
DESCRIPTION = (
    'Per-instance live-migration overrides read by nova-qat-migration '
    '(compute_driver = qat_migration.QATLibvirtDriver): compression method '
    'and level, multifd channels, downtime, post-copy and throttling. They '
    'only narrow what the operator allows in nova.conf [qat_migration]; '
    'flavor extra specs win over image properties.')
#: Nova reads ``qat_migration:<key>`` from flavor extra specs, from image
#: properties, and (boot from volume) from the volume's image metadata.
PREFIX = 'qat_migration:'
RESOURCE_TYPES = (
    ('OS::Nova::Flavor', None),
    ('OS::Glance::Image', None),
    ('OS::Cinder::Volume', 'image'),
)
_TYPES = {str: 'string', int: 'integer', bool: 'boolean'}


def _title(key):
    words = key.replace('_', ' ').split()
    special = {'ms': '(ms)', 'mb': '(MiB)'}
    return ' '.join(special.get(w, w.capitalize() if i == 0 else w)
                    for i, w in enumerate(words))


def _property(validator):
    value = validator.value
    prop = collections.OrderedDict()
    prop['title'] = _title(validator.name[len(PREFIX):])
    prop['description'] = validator.description
    prop['type'] = _TYPES[value['type']]
    if 'enum' in value:
        prop['enum'] = list(value['enum'])
    if 'pattern' in value:
        # Nova matches the whole value (re.fullmatch); JSON Schema and
        # Horizon search, so anchor it.
        prop['pattern'] = '^(?:%s)$' % value['pattern']
    if 'min' in value:
        prop['minimum'] = value['min']
    if 'max' in value:
        prop['maximum'] = value['max']
    return prop


def namespace():
    """The metadefs namespace document (a dict, in file order)."""
    from nova_qat_migration.api import extra_specs

    properties = collections.OrderedDict()
    for validator in extra_specs.register():
        if not validator.name.startswith(PREFIX):
            raise ValueError('validator %s outside %s' % (validator.name,
                                                          PREFIX))
        properties[validator.name[len(PREFIX):]] = _property(validator)
    associations = []
    for name, target in RESOURCE_TYPES:
        association = collections.OrderedDict(name=name, prefix=PREFIX)
        if target:
            association['properties_target'] = target
        associations.append(association)
    doc = collections.OrderedDict()
    doc['namespace'] = NAMESPACE
    doc['display_name'] = DISPLAY_NAME
    doc['description'] = DESCRIPTION
    doc['visibility'] = 'public'
    doc['protected'] = True
    doc['resource_type_associations'] = associations
    doc['properties'] = properties
    return doc


def render():
    """The file's text."""
    return json.dumps(namespace(), indent=4, ensure_ascii=False) + '\n'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--check', action='store_true',
                        help='exit 1 if the committed file is out of date')
    parser.add_argument('--output', default=OUTPUT)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        try:
            with open(args.output) as f:
                current = f.read()
        except OSError:
            current = None
        if current != text:
            print('%s is out of date: run tools/gen-metadefs.py'
                  % args.output, file=sys.stderr)
            return 1
        return 0
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, 'w') as f:
        f.write(text)
    print('wrote %s (%d properties)' % (args.output,
                                        len(namespace()['properties'])))
    return 0


if __name__ == '__main__':
    sys.path.insert(0, REPO)
    sys.exit(main())
