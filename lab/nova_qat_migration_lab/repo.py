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
"""Where the lab finds the repository's files.

The lab reads and writes files of the source tree it comes from:
``benchmarks/`` (results, calibration), ``tests/fixtures/`` (the fake QAT
sysfs tree of the QAT fault), ``etc/`` (the metadefs) and ``lab-run/``
(quick benchmark output). They are found relative to the repository root,
never relative to the current directory: by default the checkout this
package lives in (``<root>/lab/nova_qat_migration_lab``), or the directory
given with
``nova-qat-migration-lab --repo-root`` (needed when the package runs from
an installed copy, whose parent directory is ``site-packages``). A root
without the repository's ``setup.cfg`` and ``benchmarks/`` is refused
(:class:`NoRepository`) rather than written into.
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys
from types import ModuleType
from typing import Union

#: The checkout this package lives in (``<root>/lab/<package>``).
DEFAULT_ROOT = pathlib.Path(__file__).resolve().parents[2]

_root = DEFAULT_ROOT


class NoRepository(Exception):
    """The lab's repository root is not a checkout of this repository."""


def is_checkout(path: pathlib.Path) -> bool:
    return (path / 'setup.cfg').is_file() and (path / 'benchmarks').is_dir()


def root() -> pathlib.Path:
    """The repository root the lab uses.

    :raises NoRepository: it is not a checkout (an installed copy run
        without ``--repo-root``, or a wrong ``--repo-root``).
    """
    if not is_checkout(_root):
        raise NoRepository(
            '%s is not a nova-qat-migration checkout (no setup.cfg and '
            'benchmarks/): give the checkout with --repo-root' % _root)
    return _root


def set_root(path: Union[str, pathlib.Path, None]) -> pathlib.Path:
    """Use ``path`` as the repository root (``None``: the default)."""
    global _root
    _root = (pathlib.Path(path).resolve() if path is not None
             else DEFAULT_ROOT)
    return _root


def path(*parts: str) -> str:
    """``parts`` joined below the repository root, as a string."""
    return str(root().joinpath(*parts))


def load_fixture(name: str) -> ModuleType:
    """The module ``tests/fixtures/<name>.py`` of the repository.

    Loaded from its file, so that neither the current directory nor
    another installed ``tests`` package decides which file it is.
    """
    qualified = 'tests.fixtures.%s' % name
    module = sys.modules.get(qualified)
    if module is not None:
        return module
    location = root() / 'tests' / 'fixtures' / ('%s.py' % name)
    spec = importlib.util.spec_from_file_location(qualified, location)
    if spec is None or not location.is_file():
        raise ImportError('no %s (see --repo-root)' % location)
    module = importlib.util.module_from_spec(spec)
    sys.modules[qualified] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[qualified]
        raise
    return module
