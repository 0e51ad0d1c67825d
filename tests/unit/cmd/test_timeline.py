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
"""``nova-qat-migration timeline``: the table, the drawn files, and exit
code 2 with a one-line reason on bad input.
"""

import io
import json
import os
import stat
import sys
from unittest import mock

import fixtures
from lxml import etree

from nova_qat_migration.cmd import cli
from nova_qat_migration.cmd import timeline as timeline_cmd
from nova_qat_migration import history
from nova_qat_migration import history_format
from tests.unit import base
from tests.unit import timeline_data

UUID = '6f1c2a9e-3b7d-4c10-9e2f-5a8b7c6d4e31'
SVG = '{http://www.w3.org/2000/svg}'


class TimelineCLITest(base.TestCase):

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.data = timeline_data.busy_timeline()
        self.history = self.write_history([
            {'uuid': 'other', 'migrations': 1},
            {'uuid': UUID, 'migrations': 2, 'method': 'xbzrle',
             'timeline': self.data}])

    def write_history(self, entries, name=history.FILENAME):
        path = os.path.join(self.tmp, name)
        with open(path, 'w') as f:
            json.dump({'version': 1, 'instances': entries}, f)
        return path

    def run_cli(self, *argv, history_file=None):
        out, err = io.StringIO(), io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', out))
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', err))
        argv = ['timeline'] + list(argv) + [
            '--history-file', history_file or self.history]
        code = cli.main(argv)
        return code, out.getvalue(), err.getvalue()

    def assertExit2(self, result, *fragments):
        code, out, err = result
        self.assertEqual(2, code, out + err)
        lines = err.strip().splitlines()
        self.assertEqual(1, len(lines), err)
        self.assertTrue(lines[0].startswith('nova-qat-migration: error: '),
                        err)
        self.assertNotIn('Traceback', err)
        for fragment in fragments:
            self.assertIn(fragment, err)

    # -- table -------------------------------------------------------------

    def test_table(self):
        code, out, err = self.run_cli(UUID)
        self.assertEqual(0, code, err)
        lines = out.splitlines()
        self.assertIn('instance-0000002a (busy-web-1) from compute-a: '
                      'completed after', lines[0])
        self.assertIn('plan adaptive[xbzrle cache=512MiB', lines[1])
        self.assertIn('model: 16.9 s', lines[2])
        header = lines[3].split()
        self.assertEqual(['time', 's', 'left', 'MiB'], header[:4])
        body = lines[4:]
        self.assertEqual(len(self.data['samples']), len(body))
        first = body[0].split()
        self.assertEqual(['0.5', '964.5', '59.5', '156.0', '1', '0', '-',
                          '1024.0', 'downtime', '37ms'], first)
        self.assertIn('xbzrle_cache 1024MiB', out)
        self.assertIn('throttle 40%', out)
        # The cold cache's 15% then the warm cache's 90%.
        hits = [line.split()[6] for line in body]
        self.assertIn('15', hits)
        self.assertEqual('90', hits[-1])

    def test_found_by_domain_name_or_server_name(self):
        by_uuid = self.run_cli(UUID)[1]
        self.assertEqual(by_uuid, self.run_cli('instance-0000002a')[1])
        self.assertEqual(by_uuid, self.run_cli('busy-web-1')[1])
        self.assertEqual(by_uuid, self.run_cli(UUID.upper())[1])

    def test_last_samples(self):
        code, out, _ = self.run_cli(UUID, '--last', '3')
        self.assertEqual(0, code)
        self.assertIn('(%d earlier samples not shown)'
                      % (len(self.data['samples']) - 3), out)
        rows = out.splitlines()[-3:]
        self.assertEqual(['14.5', '15.0', '15.5'],
                         [r.split()[0] for r in rows])

    def test_history_from_the_config(self):
        state = os.path.join(self.tmp, 'state')
        os.mkdir(state)
        os.rename(self.history, os.path.join(state, history.FILENAME))
        conf = os.path.join(self.tmp, 'nova.conf')
        with open(conf, 'w') as f:
            f.write('[qat_migration]\nstate_path = %s\n' % state)
        out, err = io.StringIO(), io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', out))
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', err))
        code = cli.main(['--config-file', conf, 'timeline', UUID])
        self.assertEqual(0, code, err.getvalue())
        self.assertIn('instance-0000002a', out.getvalue())

    # -- files -------------------------------------------------------------

    def output(self, name):
        path = os.path.join(self.tmp, name)
        code, out, err = self.run_cli(UUID, '--output', path)
        self.assertEqual(0, code, err)
        self.assertEqual('wrote %s\n' % path, out)
        with open(path, 'rb') as f:
            return f.read()

    def assertDrawing(self, svg):
        """An SVG drawing of this timeline: title, axes, events as text."""
        root = etree.fromstring(svg)
        self.assertEqual(SVG + 'svg', root.tag)
        title = headline = self.data['name'] + ' (busy-web-1) from ' \
            'compute-a: completed after 17.0 s, downtime 107 ms'
        self.assertEqual(title, root.findtext(SVG + 'title'))
        texts = [''.join(t.itertext()) for t in root.iter(SVG + 'text')]
        self.assertIn(headline, texts)
        for label in ('remaining (libvirt)', 'remaining (model)',
                      'xbzrle_cache 1024MiB', 'throttle 40%', 'completed',
                      'XBZRLE hit %', 'MiB to send'):
            self.assertIn(label, texts)
        # The actual and the predicted lines are drawn.
        self.assertGreater(len(root.findall('.//%spath' % SVG)), 20)
        return root

    def test_svg(self):
        svg = self.output('t.svg')
        self.assertTrue(svg.startswith(b'<?xml'))
        self.assertDrawing(svg)
        # The same timeline draws the same file (committable docs).
        self.assertEqual(svg, self.output('again.svg'))

    def test_png(self):
        png = self.output('t.PNG')
        self.assertEqual(b'\x89PNG\r\n\x1a\n', png[:8])
        self.assertIn(b'instance-0000002a', png)   # the Title text chunk
        self.assertGreater(len(png), 20000)

    def test_html(self):
        page = self.output('t.html').decode('utf-8')
        self.assertTrue(page.startswith('<!DOCTYPE html>'))
        self.assertNotIn('<?xml', page)
        start, end = page.index('<svg'), page.index('</svg>') + 6
        self.assertDrawing(page[start:end].encode('utf-8'))
        table = etree.HTML(page).findtext('.//pre')
        self.assertIn('xbzrle_cache 1024MiB', table)
        self.assertIn('(busy-web-1)', etree.HTML(page).findtext('.//title'))

    def test_last_in_a_drawing(self):
        path = os.path.join(self.tmp, 'last3.svg')
        self.assertEqual(0, self.run_cli(UUID, '--last', '3', '--output',
                                         path)[0])
        with open(path, 'rb') as f:
            root = etree.fromstring(f.read())
        texts = [''.join(t.itertext()) for t in root.iter(SVG + 'text')]
        # The events before the last 3 samples are not drawn.
        self.assertNotIn('xbzrle_cache 1024MiB', texts)
        self.assertIn('completed', texts)

    def test_gaps_and_no_samples(self):
        # libvirt left values out (None once cleaned): gaps, no crash.
        for sample in self.data['samples'][3:6]:
            sample[1] = sample[3] = sample[4] = sample[5] = None
        text = timeline_cmd.table(self.data)
        self.assertIn('    2.0          -      238.0         -     -     -',
                      text)
        self.assertDrawing(timeline_cmd.render(self.data, 'svg'))
        # A job that ended before the monitor's first look.
        empty = dict(self.data, samples=[], events=[], predicted=[])
        self.assertIn('(no samples', timeline_cmd.table(empty))
        root = etree.fromstring(timeline_cmd.render(empty, 'svg'))
        self.assertIn('completed', root.findtext(SVG + 'title'))

    # -- bad input ---------------------------------------------------------

    def test_unknown_instance(self):
        self.assertExit2(self.run_cli('nope'), 'no migration of nope in '
                         + self.history)

    def test_entry_without_timeline(self):
        self.assertExit2(self.run_cli('other'), 'no timeline kept for other')

    def test_ambiguous_name(self):
        twin = dict(self.data, instance='u2')
        path = self.write_history([
            {'uuid': UUID, 'timeline': self.data},
            {'uuid': 'u2', 'timeline': twin}], 'twins.json')
        self.assertExit2(self.run_cli('busy-web-1', history_file=path),
                         'names 2 instances', 'give the UUID')

    def test_missing_history(self):
        path = os.path.join(self.tmp, 'none.json')
        self.assertExit2(self.run_cli(UUID, history_file=path),
                         'cannot read the migration history %s' % path,
                         'No such file')

    def test_empty_history(self):
        for text in ('', '{"version": 1, "instances": []}',
                     '{"instances": [{"no": "uuid"}]}'):
            path = os.path.join(self.tmp, 'empty.json')
            with open(path, 'w') as f:
                f.write(text)
            result = self.run_cli(UUID, history_file=path)
            if text:
                self.assertExit2(result, 'holds no migration')
            else:
                self.assertExit2(result, 'is not a migration history')

    def test_corrupt_history(self):
        for raw in (b'\x00\xff garbage', b'[1, 2]', b'{"instances": 5}',
                    b'[' * 100000, b'{"instances": [' + b'1' * 5000):
            path = os.path.join(self.tmp, 'corrupt.json')
            with open(path, 'wb') as f:
                f.write(raw)
            self.assertExit2(self.run_cli(UUID, history_file=path),
                             'is not a migration history')

    def test_history_too_large(self):
        path = os.path.join(self.tmp, 'huge.json')
        with open(path, 'wb') as f:
            f.truncate(history_format.read_limit(1000) + 1)
        self.assertExit2(self.run_cli(UUID, history_file=path),
                         'is larger than')

    def test_unwritable_output(self):
        directory = os.path.join(self.tmp, 'a-directory.svg')
        os.mkdir(directory)
        for target in (os.path.join(self.tmp, 'no', 'such', 'dir.svg'),
                       directory):
            self.assertExit2(self.run_cli(UUID, '--output', target),
                             'cannot write')
        readonly = os.path.join(self.tmp, 'ro')
        os.mkdir(readonly)
        os.chmod(readonly, stat.S_IRUSR | stat.S_IXUSR)
        if os.access(readonly, os.W_OK):    # root writes anyway
            return
        self.assertExit2(self.run_cli(
            UUID, '--output', os.path.join(readonly, 't.png')),
            'cannot write')

    def test_unknown_format(self):
        self.assertExit2(self.run_cli(UUID, '--output', 'x.pdf'),
                         '--output must end in .svg, .png, .html')
        self.assertFalse(os.path.exists('x.pdf'))

    def test_bad_last(self):
        code, _, err = self.run_cli(UUID, '--last', '-1')
        self.assertEqual(2, code)
        self.assertNotIn('Traceback', err)

    def test_without_matplotlib(self):
        path = os.path.join(self.tmp, 't.svg')
        # None in sys.modules: the import raises ImportError.
        with mock.patch.dict(sys.modules, {'matplotlib': None}):
            self.assertExit2(self.run_cli(UUID, '--output', path),
                             'install nova-qat-migration[timeline]')
        self.assertFalse(os.path.exists(path))
        # The table needs no matplotlib.
        self.assertEqual(0, self.run_cli(UUID)[0])
