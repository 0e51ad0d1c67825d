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
"""The package's structure: no import cycles, layers, constants defined
once, no module longer than :data:`MAX_LINES`.

Every module of ``nova_qat_migration`` is read with :mod:`ast`, never
imported, so these checks see function-local imports too and cost no
start-up of Nova or libvirt.

The layers, bottom up (:data:`LAYERS`, which names every module):
:mod:`nova_qat_migration.datamodel` (a package), ``outcomes`` and
``exception`` import nothing from the rest of the package; ``conf``,
``qat``, ``timeline`` build on the data model only; ``history_format``
(the history file's format) adds the timeline, ``history`` (its store)
that format, ``notifications`` the outcomes; ``policy`` builds on
``conf`` and the data model and never reaches into ``virt`` (a policy is
pure: the driver gathers facts and executes plans); ``budget``,
``replay`` and ``api`` sit on ``policy``; ``virt`` on all of those; only
``cmd`` imports ``cmd``.

An import counts wherever it is written (inside a function too) and so
does a module named by a string in a module that imports by name
(``importlib.import_module``): a cycle hidden either way is found.
"""

import ast
import collections
import pathlib

import fixtures
import testtools

import nova_qat_migration

PACKAGE = 'nova_qat_migration'
ROOT = pathlib.Path(nova_qat_migration.__file__).resolve().parent

_DM = 'nova_qat_migration.datamodel'
_OUT = 'nova_qat_migration.outcomes'
_EXC = 'nova_qat_migration.exception'
_CONF = 'nova_qat_migration.conf'
_POLICY = 'nova_qat_migration.policy'
_TIMELINE = 'nova_qat_migration.timeline'
_HISTORY_FORMAT = 'nova_qat_migration.history_format'
_JSONTEXT = 'nova_qat_migration.jsontext'

#: What each layer may import from the package besides itself. Every
#: module of the package is under one of these
#: (:meth:`TestStructure.test_layers_cover_every_module`).
LAYERS = {
    _DM: [],
    _OUT: [],
    _EXC: [],
    _JSONTEXT: [],
    _CONF: [_DM, _EXC],
    'nova_qat_migration.qat': [_DM, _EXC],
    _TIMELINE: [_DM],
    _HISTORY_FORMAT: [_DM, _JSONTEXT, _TIMELINE],
    'nova_qat_migration.history': [_DM, _HISTORY_FORMAT, _OUT, _TIMELINE],
    'nova_qat_migration.notifications': [_DM, _OUT],
    _POLICY: [_CONF, _DM, _EXC],
    'nova_qat_migration.budget': [_CONF, _DM, _POLICY],
    'nova_qat_migration.replay': [_CONF, _DM, _EXC, _OUT, _POLICY],
    'nova_qat_migration.api': [_CONF, _DM, _EXC, _POLICY],
    'nova_qat_migration.virt': [
        'nova_qat_migration.budget', _CONF, _DM, _EXC,
        'nova_qat_migration.history', 'nova_qat_migration.notifications',
        _OUT, _POLICY, 'nova_qat_migration.qat', _TIMELINE],
    'nova_qat_migration.cmd': [
        'nova_qat_migration.api', 'nova_qat_migration.budget', _CONF, _DM,
        _EXC, 'nova_qat_migration.history', _HISTORY_FORMAT, _JSONTEXT, _OUT,
        _POLICY,
        'nova_qat_migration.qat', 'nova_qat_migration.replay', _TIMELINE,
        'nova_qat_migration.virt'],
}

#: Imports that break a layer today, each with the reason it stays:
#: ``(importer, imported) -> reason``. Remove an entry when it is fixed.
LAYER_EXCEPTIONS: dict = {}

#: Imports that close a cycle today, each with the reason it stays:
#: ``(importer module, imported module) -> reason``; the edge is left out
#: of the cycle check. Remove an entry when the cycle is gone (a test
#: says so).
CYCLE_EXCEPTIONS: dict = {
}

#: The most lines a module of the package may have: past it, split it
#: along a seam into modules named for what they do.
MAX_LINES = 450

#: Calls that import a module named by a string.
DYNAMIC_IMPORTS = frozenset({'import_module', '__import__'})

#: Module-level constants defined in more than one module on purpose:
#: ``name -> reason``.
SHARED_CONSTANTS = {
    'TRAIT_PREFIX':
        'two trait families: CUSTOM_QAT_ (a QAT device provider\'s traits, '
        'qat.placement) and CUSTOM_MIGRATION_ (what a host can receive, '
        'virt.libvirt.migration_traits)',
}


def long_files(root, limit=MAX_LINES):
    """``['path: N lines', ...]`` for the ``.py`` files under ``root``
    longer than ``limit`` lines (paths relative to ``root``'s parent).
    """
    found = []
    for path in sorted(root.rglob('*.py')):
        with open(path, encoding='utf-8') as f:
            count = sum(1 for _line in f)
        if count > limit:
            found.append('%s: %d lines' % (path.relative_to(root.parent),
                                           count))
    return found


def module_name(path):
    """``nova_qat_migration.x.y`` for ``ROOT/x/y.py`` (a package by name)."""
    parts = list(path.relative_to(ROOT).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts.pop()
    return '.'.join([PACKAGE] + parts)


def package_modules():
    """``{module name: parsed tree}`` of every module of the package."""
    return {module_name(path): ast.parse(path.read_text(), str(path))
            for path in sorted(ROOT.rglob('*.py'))}


def _absolute(node, importer, is_package):
    """The module ``from ... import`` names, relative levels resolved."""
    if not node.level:
        return node.module or ''
    base = importer.split('.')
    # A package's own __init__ is level 1 of itself, a module of its
    # package.
    base = base[:len(base) - node.level + (1 if is_package else 0)]
    return '.'.join(base + ([node.module] if node.module else []))


def imports_of(name, tree, modules):
    """``{imported package module: line}`` for every import in ``tree``,
    function-local ones included.

    ``from a import b`` is an import of the module ``a.b`` when that is a
    module of the package, else of ``a``.
    """
    is_package = ROOT.joinpath(*name.split('.')[1:], '__init__.py').exists()
    found = {}
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(node, name, is_package)
            for alias in node.names:
                full = '%s.%s' % (source, alias.name)
                targets.append(full if full in modules else source)
        for target in targets:
            if target in modules and target != name:
                found.setdefault(target, node.lineno)
    for target, line in string_imports(name, tree, modules).items():
        found.setdefault(target, line)
    return found


def _callee(func):
    """The name a call is made by: ``f`` for ``f()`` and ``m.f()``."""
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else None


def string_imports(name, tree, modules):
    """``{package module: line}`` named by a string literal in ``tree``,
    when ``tree`` imports by name (:data:`DYNAMIC_IMPORTS`).

    Such a module may load any module it names (e.g. a list of
    subcommand modules handed to ``importlib.import_module``), so every
    package module it names counts as imported.
    """
    if not any(isinstance(node, ast.Call) and
               _callee(node.func) in DYNAMIC_IMPORTS
               for node in ast.walk(tree)):
        return {}
    found = {}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                and node.value in modules and node.value != name):
            found.setdefault(node.value, node.lineno)
    return found


def import_graph(modules=None):
    """``{module: {imported module: line}}`` within the package."""
    modules = modules if modules is not None else package_modules()
    return {name: imports_of(name, tree, modules)
            for name, tree in modules.items()}


def cycles(graph):
    """One cycle per strongly connected group of modules (Tarjan).

    Each is a list of modules, the first repeated last.
    """
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_in(graph, group) for group in groups]


def _cycle_in(graph, group):
    """A shortest cycle through the first module of ``group``."""
    start = min(group)
    paths = collections.deque([[start]])
    seen = {start}
    while paths:
        path = paths.popleft()
        for w in sorted(graph[path[-1]]):
            if w == start:
                return path + [start]
            if w in group and w not in seen:
                seen.add(w)
                paths.append(path + [w])
    raise AssertionError('no cycle in %s' % sorted(group))


def reachable(graph, start):
    """The modules ``start`` imports, directly or not."""
    seen, todo = set(), [start]
    while todo:
        for w in graph.get(todo.pop(), ()):
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


def _under(module, layer):
    return module == layer or module.startswith(layer + '.')


def layer_violations(graph, importers, allowed):
    """``importer:line imports imported``, for imports layers forbid.

    Those are the imports from a module under ``importers`` of a package
    module under none of ``allowed`` (:data:`LAYER_EXCEPTIONS` aside).
    """
    bad = []
    for importer, imported in sorted(graph.items()):
        if not _under(importer, importers):
            continue
        for target, line in sorted(imported.items()):
            if any(_under(target, layer) for layer in allowed):
                continue
            if (_layer_of(importer), target) in LAYER_EXCEPTIONS:
                continue
            bad.append('%s:%d imports %s' % (importer, line, target))
    return bad


def _layer_of(module):
    """``nova_qat_migration.conf`` for ``nova_qat_migration.conf.opts``."""
    return '.'.join(module.split('.')[:2])


def _literal(node):
    """Whether ``node`` is a literal: number, string, or tuple/frozenset.

    Tuples and frozensets count when they hold literals only.
    """
    if isinstance(node, ast.Constant):
        return (isinstance(node.value, (int, float, str)) and
                not isinstance(node.value, bool))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return _literal(node.operand)
    if isinstance(node, ast.Tuple):
        return all(_literal(e) for e in node.elts)
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and
            node.func.id == 'frozenset' and len(node.args) <= 1 and
            not node.keywords):
        if not node.args:
            return True
        arg = node.args[0]
        return (isinstance(arg, (ast.Set, ast.List, ast.Tuple)) and
                all(_literal(e) for e in arg.elts))
    return False


def literal_constants(tree):
    """``{NAME: line}`` of module-level UPPER_CASE literal constants."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        for target in targets:
            if (isinstance(target, ast.Name) and target.id.isupper() and
                    not target.id.startswith('_') and _literal(value)):
                found[target.id] = node.lineno
    return found


def twin_constants(modules):
    """``{NAME: ['module:line', ...]}`` for names in several modules."""
    where = collections.defaultdict(list)
    for name, tree in sorted(modules.items()):
        for constant, line in literal_constants(tree).items():
            where[constant].append('%s:%d' % (name, line))
    return {name: places for name, places in sorted(where.items())
            if len(places) > 1}


class TestStructure(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.modules = package_modules()
        self.graph = import_graph(self.modules)

    def test_walks_the_package(self):
        for name in ('nova_qat_migration.datamodel',
                     'nova_qat_migration.conf',
                     'nova_qat_migration.policy.base',
                     'nova_qat_migration.virt.libvirt.driver'):
            self.assertIn(name, self.modules)
        # Function-local imports count.
        self.assertIn('nova_qat_migration.history',
                      self.graph['nova_qat_migration.cmd.status'])

    def test_no_import_cycle(self):
        graph = {importer: {t: line for t, line in imported.items()
                            if (importer, t) not in CYCLE_EXCEPTIONS}
                 for importer, imported in self.graph.items()}
        found = [' -> '.join(cycle) for cycle in cycles(graph)]
        self.assertEqual([], found, 'import cycles in the package (imports '
                         'inside functions and by importlib count)')

    def test_cycle_exceptions_still_needed(self):
        for importer, imported in CYCLE_EXCEPTIONS:
            self.assertIn(imported, self.graph.get(importer, {}),
                          'cycle exception %s -> %s: no such import'
                          % (importer, imported))
            self.assertIn(importer, reachable(self.graph, imported),
                          'cycle exception %s -> %s no longer needed'
                          % (importer, imported))

    def test_layers_cover_every_module(self):
        uncovered = [name for name in sorted(self.modules)
                     if name != PACKAGE and
                     not any(_under(name, layer) for layer in LAYERS)]
        self.assertEqual([], uncovered, 'modules in no layer of LAYERS')
        # The package's own __init__ imports nothing of it.
        self.assertEqual({}, self.graph[PACKAGE])

    def test_datamodel_imports_nothing_from_the_package(self):
        outside = {name: sorted(t for t in imported if not _under(t, _DM))
                   for name, imported in self.graph.items()
                   if _under(name, _DM)}
        self.assertIn(_DM, outside)
        self.assertIn(_DM + '.plan', outside)
        self.assertEqual({name: [] for name in outside}, outside)

    def test_layers(self):
        bad = []
        for importers, allowed in sorted(LAYERS.items()):
            bad += layer_violations(self.graph, importers,
                                    [importers] + allowed)
        self.assertEqual([], bad)

    def test_policies_never_import_virt(self):
        self.assertNotIn('nova_qat_migration.virt',
                         LAYERS['nova_qat_migration.policy'])

    def test_only_commands_import_commands(self):
        bad = [
            '%s imports %s' % (importer, target)
            for importer, imported in sorted(self.graph.items())
            if not _under(importer, 'nova_qat_migration.cmd')
            for target in imported
            if _under(target, 'nova_qat_migration.cmd')]
        self.assertEqual([], bad)

    def test_layer_exceptions_still_needed(self):
        for importer, imported in LAYER_EXCEPTIONS:
            self.assertTrue(
                any(_layer_of(m) == importer and imported in targets
                    for m, targets in self.graph.items()),
                'layer exception %s -> %s no longer needed'
                % (importer, imported))

    def test_no_module_too_long(self):
        self.assertEqual([], long_files(ROOT),
                         'modules over %d lines: split each along a seam'
                         % MAX_LINES)

    def test_each_literal_constant_defined_once(self):
        twins = {name: places
                 for name, places in twin_constants(self.modules).items()
                 if name not in SHARED_CONSTANTS}
        self.assertEqual({}, twins,
                         'constants defined in more than one module: '
                         'define each once and import it')

    def test_shared_constants_still_shared(self):
        twins = twin_constants(self.modules)
        self.assertEqual([], [name for name in SHARED_CONSTANTS
                              if name not in twins])


class TestChecksThemselves(testtools.TestCase):
    """The checks catch what they are for."""

    def test_cycle_named(self):
        graph = {'a': {'b': 1}, 'b': {'c': 1}, 'c': {'a': 1}, 'd': {'a': 1}}
        self.assertEqual([['a', 'b', 'c', 'a']], cycles(graph))
        self.assertEqual([], cycles({'a': {'b': 1}, 'b': {}}))

    def test_function_local_and_relative_imports_seen(self):
        source = ('def f():\n'
                  '    from nova_qat_migration.policy import model\n'
                  'from . import datamodel\n'
                  'import nova_qat_migration.qat.devices\n')
        modules = {'nova_qat_migration.history': None,
                   'nova_qat_migration.policy.model': None,
                   'nova_qat_migration.datamodel': None,
                   'nova_qat_migration.qat.devices': None}
        found = imports_of('nova_qat_migration.history', ast.parse(source),
                           modules)
        self.assertEqual({'nova_qat_migration.policy.model': 2,
                          'nova_qat_migration.datamodel': 3,
                          'nova_qat_migration.qat.devices': 4}, found)

    def test_importlib_string_and_local_import_cycle_found(self):
        # The hidden cycle the structure test once missed: a module that
        # loads another by name, which imports it back inside a function.
        modules = {'nova_qat_migration.cmd.cli': ast.parse(
                       'import importlib\n'
                       'MODS = ("nova_qat_migration.cmd.drain",)\n'
                       'def build():\n'
                       '    for m in MODS:\n'
                       '        importlib.import_module(m)\n'),
                   'nova_qat_migration.cmd.drain': ast.parse(
                       'def main():\n'
                       '    from nova_qat_migration.cmd import cli\n')}
        graph = import_graph(modules)
        self.assertEqual({'nova_qat_migration.cmd.drain': 2},
                         graph['nova_qat_migration.cmd.cli'])
        self.assertEqual([['nova_qat_migration.cmd.cli',
                           'nova_qat_migration.cmd.drain',
                           'nova_qat_migration.cmd.cli']], cycles(graph))

    def test_strings_are_no_imports_without_importlib(self):
        tree = ast.parse('HELP = "see nova_qat_migration.cmd.drain"\n'
                         'NAME = "nova_qat_migration.cmd.drain"\n')
        self.assertEqual({}, string_imports(
            'nova_qat_migration.history', tree,
            {'nova_qat_migration.cmd.drain': None}))

    def test_long_file_named_with_its_length(self):
        root = pathlib.Path(self.useFixture(fixtures.TempDir()).path, 'pkg')
        (root / 'sub').mkdir(parents=True)
        (root / 'short.py').write_text('x = 1\n' * 450)
        (root / 'sub' / 'long.py').write_text('x = 1\n' * 451)
        (root / 'notes.txt').write_text('x\n' * 1000)
        self.assertEqual(['pkg/sub/long.py: 451 lines'], long_files(root))

    def test_literal_constants(self):
        tree = ast.parse('A = 1\nB: int = -2.5\nC = ("x", 1)\n'
                         'D = frozenset({"a"})\nE = dict()\nF = True\n'
                         '_G = 1\nh = 1\nI = A\nJ = frozenset()\n')
        self.assertEqual(['A', 'B', 'C', 'D', 'J'],
                         sorted(literal_constants(tree)))
