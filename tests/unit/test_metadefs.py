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
"""``etc/metadefs/nova-qat-migration.json``: Glance's metadata definitions.

The committed file must be what ``tools/gen-metadefs.py`` makes from the
API validator's table today, valid against Glance's own namespace schema
(from the installed ``glance`` package), and every value it offers in
Horizon must be one Nova's API accepts -- and nothing beyond its bounds.
"""

import importlib.util
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys

import fixtures
import jsonschema
from nova import exception
import testtools

from nova_qat_migration.api import extra_specs
from nova_qat_migration.policy import hints

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
GENERATOR = os.path.join(REPO, 'tools', 'gen-metadefs.py')


def _generator():
    spec = importlib.util.spec_from_file_location('gen_metadefs', GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TestMetadefs(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.gen = _generator()
        with open(self.gen.OUTPUT) as f:
            self.text = f.read()
        self.doc = json.loads(self.text)
        self.validators = {v.name: v for v in extra_specs.register()}

    def test_committed_file_matches_the_table(self):
        self.assertEqual(
            self.gen.render(), self.text,
            'etc/metadefs/nova-qat-migration.json is out of date: run '
            'tools/gen-metadefs.py')

    def test_valid_against_glance_schema(self):
        # The schema Glance's API validates a namespace with (POST
        # /v2/metadefs/namespaces), from the installed glance package.
        from glance.api.v2 import metadef_namespaces
        from glance.common import exception as glance_exception
        schema = metadef_namespaces.get_schema()
        schema.validate(self.doc)       # raises glance InvalidObject
        raw = schema.raw()
        jsonschema.Draft4Validator.check_schema(raw)
        broken = dict(self.doc, properties={'x': {'type': 'str'}})
        self.assertRaises(glance_exception.InvalidObject, schema.validate,
                          broken)

    def test_every_key_for_flavors_images_and_volumes(self):
        self.assertEqual([k.name for k in hints.KEYS],
                         list(self.doc['properties']))
        prefixes = {a['name']: a['prefix']
                    for a in self.doc['resource_type_associations']}
        self.assertEqual({'OS::Nova::Flavor': 'qat_migration:',
                          'OS::Glance::Image': 'qat_migration:',
                          'OS::Cinder::Volume': 'qat_migration:'},
                         prefixes)
        for name, prop in self.doc['properties'].items():
            key = 'qat_migration:%s' % name
            self.assertIn(key, self.validators)
            self.assertEqual(self.validators[key].description,
                             prop['description'])

    def _accepts(self, name, value):
        try:
            self.validators[name].validate(name, str(value))
        except exception.ValidationError:
            return False
        try:
            hints.from_instance(extra_specs={name: str(value)})
        except hints.InvalidHint:
            return False
        return True

    def test_offered_values_are_what_the_api_accepts(self):
        for short, prop in self.doc['properties'].items():
            name = 'qat_migration:%s' % short
            for value in prop.get('enum', ()):
                self.assertTrue(self._accepts(name, value), (name, value))
            if prop['type'] == 'integer':
                low, high = prop['minimum'], prop['maximum']
                self.assertTrue(self._accepts(name, low), name)
                self.assertTrue(self._accepts(name, high), name)
                self.assertFalse(self._accepts(name, low - 1), name)
                self.assertFalse(self._accepts(name, high + 1), name)
            if prop['type'] == 'boolean':
                self.assertTrue(self._accepts(name, 'true'), name)
                self.assertFalse(self._accepts(name, 'maybe'), name)
            if 'pattern' in prop:
                self.assertTrue(self._accepts(name, 'adaptive'), name)
                self.assertFalse(self._accepts(name, 'Bad Name'), name)
                self.assertRegex('adaptive', prop['pattern'])
                self.assertNotRegex('x adaptive', prop['pattern'])

    def test_check_mode(self):
        self.assertEqual(0, self.gen.main(['--check']))
        stale = self.useFixture(fixtures.TempDir()).join('stale.json')
        with open(stale, 'w') as f:
            f.write('{}\n')
        err = io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', err))
        self.assertEqual(1, self.gen.main(['--check', '--output', stale]))
        self.assertIn('out of date', err.getvalue())

    def test_glance_manage_db_load_metadefs(self):
        # What the documentation tells operators to run, against a
        # throw-away SQLite Glance database (~7 s).
        manage = os.path.join(os.path.dirname(sys.executable),
                              'glance-manage')
        if not os.path.exists(manage):
            self.skipTest('glance-manage not installed beside %s'
                          % sys.executable)
        tmp = self.useFixture(fixtures.TempDir()).path
        os.mkdir(os.path.join(tmp, 'metadefs'))
        shutil.copy(self.gen.OUTPUT, os.path.join(tmp, 'metadefs'))
        conf = os.path.join(tmp, 'glance.conf')
        with open(conf, 'w') as f:
            f.write('[database]\nconnection = sqlite:///%s/glance.db\n'
                    % tmp)
        for command in (['db_sync'],
                        ['db_load_metadefs', os.path.join(tmp, 'metadefs')]):
            proc = subprocess.run([manage, '--config-file', conf] + command,
                                  capture_output=True, text=True,
                                  timeout=120)
            self.assertEqual(0, proc.returncode, proc.stderr[-2000:])
        db = sqlite3.connect(os.path.join(tmp, 'glance.db'))
        self.addCleanup(db.close)
        rows = db.execute(
            'SELECT r.name, a.prefix FROM metadef_namespace_resource_types a'
            ' JOIN metadef_namespaces n ON n.id = a.namespace_id'
            ' JOIN metadef_resource_types r ON r.id = a.resource_type_id'
            ' WHERE n.namespace = ?', (self.gen.NAMESPACE,)).fetchall()
        self.assertEqual({('OS::Nova::Flavor', 'qat_migration:'),
                          ('OS::Glance::Image', 'qat_migration:'),
                          ('OS::Cinder::Volume', 'qat_migration:')},
                         set(rows))
        names = {n for n, in db.execute(
            'SELECT p.name FROM metadef_properties p JOIN metadef_namespaces'
            ' n ON n.id = p.namespace_id WHERE n.namespace = ?',
            (self.gen.NAMESPACE,))}
        self.assertEqual({k.name for k in hints.KEYS}, names)
