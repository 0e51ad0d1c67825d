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
"""The product never imports the lab.

``nova_qat_migration`` is what nova-compute loads; the real-migration lab
(``nova_qat_migration_lab``: Nova's test harness, root, network
namespaces) builds on it and must never be pulled in by it, not even
behind a ``try``. Nor is it shipped with it: the lab is a distribution of
its own (``lab/setup.cfg``), and the product's wheel carries neither the
lab nor the guest's C source.
"""

import ast
import configparser
import pathlib
import subprocess
import sys
import tempfile
import zipfile

import testtools

import nova_qat_migration

LAB = 'nova_qat_migration_lab'
PRODUCT = pathlib.Path(nova_qat_migration.__file__).resolve().parent
CHECKOUT = PRODUCT.parent


def build_wheel(source: pathlib.Path, out: str) -> zipfile.ZipFile:
    """The wheel ``pip wheel`` builds from ``source`` (as ``pip install``
    would install it).
    """
    proc = subprocess.run(
        [sys.executable, '-m', 'pip', 'wheel', '--quiet', '--no-deps',
         '--wheel-dir', out, str(source)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=300)
    if proc.returncode:
        raise AssertionError('pip wheel %s failed:\n%s'
                             % (source, proc.stdout[-4000:]))
    wheels = list(pathlib.Path(out).glob('*.whl'))
    if len(wheels) != 1:
        raise AssertionError('expected one wheel in %s: %s' % (out, wheels))
    return zipfile.ZipFile(wheels[0])


def _names(node):
    """The module names an import node, or an importlib call, refers to."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            return []   # relative: inside the product package
        return [node.module or ''] + [
            '%s.%s' % (node.module, alias.name) for alias in node.names]
    if isinstance(node, ast.Call) and node.args:
        func = node.func
        name = getattr(func, 'attr', None) or getattr(func, 'id', None)
        arg = node.args[0]
        if (name in ('import_module', '__import__') and
                isinstance(arg, ast.Constant) and
                isinstance(arg.value, str)):
            return [arg.value]
    return []


def lab_imports(source, filename='<source>'):
    """``(line, module)`` of every import of the lab in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        for name in _names(node):
            if name == LAB or name.startswith(LAB + '.'):
                found.append((node.lineno, name))
    return found


class TestLabSeparation(testtools.TestCase):

    def test_walks_the_product(self):
        files = list(PRODUCT.rglob('*.py'))
        self.assertIn(PRODUCT / 'cmd' / 'cli.py', files)
        self.assertFalse((PRODUCT / 'lab').exists(),
                         'the lab lives in %s, not in the product' % LAB)

    def test_no_product_module_imports_the_lab(self):
        bad = []
        for path in sorted(PRODUCT.rglob('*.py')):
            for line, name in lab_imports(path.read_text(), str(path)):
                bad.append('%s:%d imports %s'
                           % (path.relative_to(PRODUCT.parent), line, name))
        self.assertEqual([], bad)

    def test_operator_cli_has_no_lab_command(self):
        from nova_qat_migration.cmd import cli
        parser = cli.build_parser()
        commands = set()
        for action in parser._actions:
            if action.choices and action.dest == 'command':
                commands = set(action.choices)
        self.assertIn('plan', commands)
        self.assertEqual(set(), commands & {'bench', 'demo', 'model',
                                            'faults', 'lab', 'drain-bench'})

    def test_detector_sees_every_form(self):
        for source in ('import nova_qat_migration_lab',
                       'import nova_qat_migration_lab.cli as c',
                       'from nova_qat_migration_lab import cli',
                       'from nova_qat_migration_lab.cli import main',
                       'try:\n    import nova_qat_migration_lab\n'
                       'except ImportError:\n    pass',
                       'def f():\n    from nova_qat_migration_lab import x',
                       "importlib.import_module('nova_qat_migration_lab.cli')",
                       "__import__('nova_qat_migration_lab')"):
            self.assertTrue(lab_imports(source), source)
        for source in ('import nova_qat_migration',
                       'from nova_qat_migration import lab_helpers',
                       'import nova_qat_migration_laboratory',
                       'from . import cli'):
            self.assertEqual([], lab_imports(source), source)


class TestDistributions(testtools.TestCase):
    """What ``pip install .`` puts on a compute node, and what the lab's
    own distribution carries.
    """

    def _wheel(self, source):
        out = tempfile.mkdtemp(prefix='nqm-wheel-')
        self.addCleanup(subprocess.run, ['rm', '-rf', out])
        wheel = build_wheel(source, out)
        self.addCleanup(wheel.close)
        return wheel

    def test_product_wheel_has_no_lab_and_no_c_source(self):
        wheel = self._wheel(CHECKOUT)
        names = wheel.namelist()
        self.assertIn('nova_qat_migration/cmd/cli.py', names)
        self.assertIn('nova/virt/qat_migration.py', names)
        self.assertEqual([], [n for n in names if LAB in n])
        self.assertEqual([], [n for n in names if n.endswith(('.c', '.h'))])
        entry_points = [n for n in names if n.endswith('entry_points.txt')]
        self.assertEqual(1, len(entry_points))
        self.assertNotIn('nova-qat-migration-lab',
                         wheel.read(entry_points[0]).decode())

    def test_lab_wheel_carries_the_lab_and_its_guest(self):
        names = self._wheel(CHECKOUT / 'lab').namelist()
        self.assertIn(LAB + '/cli.py', names)
        self.assertIn(LAB + '/faults/checks.py', names)
        self.assertIn(LAB + '/bench/stats.py', names)
        self.assertIn(LAB + '/data/dirtier.c', names)
        self.assertEqual([], [n for n in names
                              if n.startswith('nova_qat_migration/')])

    def test_setup_cfgs_declare_one_package_each(self):
        product = configparser.ConfigParser()
        product.read(CHECKOUT / 'setup.cfg')
        lab = configparser.ConfigParser()
        lab.read(CHECKOUT / 'lab' / 'setup.cfg')
        self.assertEqual(['nova_qat_migration'],
                         product['files']['packages'].split())
        self.assertEqual([LAB], lab['files']['packages'].split())
        self.assertNotIn('tools/guest', product['files']['data_files'])
        self.assertIn('nova-qat-migration-lab = nova_qat_migration_lab.cli',
                      lab['entry_points']['console_scripts'])
