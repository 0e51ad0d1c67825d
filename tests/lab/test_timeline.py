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
"""A real migration's timeline, drawn on the source compute.

One busy guest is live-migrated through the operator's cloud
(:mod:`tests.lab.test_cloud`'s cloud and guest); then the operator's
command runs with the source compute's own nova.conf, as an operator on
that host would::

    nova-qat-migration --config-file <nova.conf> timeline <uuid> \\
        --output timeline.svg

and the test checks the drawing and the table against the driver's
report of the same migration.
"""

import json
import os
import subprocess

import fixtures
from lxml import etree
import testtools

from nova_qat_migration import history
from nova_qat_migration_lab import scenarios as sc
from nova_qat_migration_lab import timeline_doc
from tests.lab import test_cloud

SVG = '{http://www.w3.org/2000/svg}'


class TestTimeline(test_cloud.CloudTestCase):

    def test_timeline_of_a_real_migration(self):
        session = self.boot()
        res = session.migrate(sc.PLANS['adaptive'],
                              timeout_s=test_cloud.TIMEOUT_S)
        self.assert_planned(res, session, 'adaptive')
        source = self.cloud.compute(res.source)
        uuid = session.server_id

        # The history nova-compute wrote: strict JSON, the entry's
        # timeline bounded and from this migration.
        path = os.path.join(source.state_path, 'qat', history.FILENAME)
        with open(path) as f:
            entries = {e['uuid']: e for e in json.load(
                f, parse_constant=self.fail)['instances']}
        data = entries[uuid]['timeline']
        self.assertEqual('completed', data['outcome'])
        self.assertEqual(res.effective_plan, data['plan'])
        self.assertEqual(res.source, data['host'])
        self.assertGreaterEqual(len(data['samples']), 2, data)
        self.assertLessEqual(len(data['samples']), 600)
        self.assertEqual(res.report['monitor']['samples'],
                         data['samples_seen'])
        self.assertEqual(res.downtime_ms, int(data['downtime_ms']))
        # The escalation's actions, as the report lists them; besides
        # them, only Nova's downtime steps and QEMU's throttle changes.
        escalations = [(e['kind'], e['value']) for e in data['events']
                       if e['kind'] != 'throttle' and e['reason'] and
                       not e['reason'].startswith("Nova's")]
        self.assertEqual([(a['kind'], a['value'])
                          for a in res.report['actions']], escalations)
        self.assertTrue(data['predicted'], 'no prediction drawn')

        out = self.useFixture(fixtures.TempDir()).path
        svg = os.path.join(out, 'timeline.svg')
        table = timeline_doc.draw(source.conf_file, uuid, svg)
        self.addDetail('table', testtools.content.text_content(table))
        root = etree.parse(svg).getroot()
        self.assertEqual(SVG + 'svg', root.tag)
        title = root.findtext(SVG + 'title')
        self.assertIn(res.report['name'], title)
        self.assertIn('from %s: completed' % res.source, title)
        texts = {''.join(t.itertext()) for t in root.iter(SVG + 'text')}
        for label in ('remaining (libvirt)', 'remaining (model)',
                      'completed', 'plan %s' % data['plan']):
            self.assertIn(label, texts)
        lines = table.splitlines()
        self.assertIn('completed', lines[0])
        self.assertEqual(len(data['samples']),
                         len([line for line in lines
                              if line[:7].strip().replace('.', '').isdigit()
                              ]))
        with open(os.path.join(out, 'timeline.txt')) as f:
            self.assertEqual(table, f.read())

        # An unknown instance: exit 2 and one line, as an operator sees.
        bad = subprocess.run(timeline_doc.timeline_command(
            source.conf_file, 'no-such-server'), capture_output=True,
            text=True, timeout=120)
        self.assertEqual(2, bad.returncode, bad.stderr)
        self.assertEqual(1, len(bad.stderr.strip().splitlines()),
                         bad.stderr)
