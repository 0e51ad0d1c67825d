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

"""Exceptions of nova-qat-migration.

Every error the package raises on purpose derives from
:class:`QATMigrationError`, so callers (the driver, the CLIs) can tell the
product's own refusals from bugs by class, never by module name.
"""


class QATMigrationError(Exception):
    """Base class of the package's own errors."""


class UsageError(QATMigrationError):
    """Bad input from the command line: message and exit code 2.

    Defined here rather than in ``cmd.cli`` so that it is one class even when
    ``cli`` runs as ``__main__`` (``python -m nova_qat_migration.cmd.cli``),
    where a class defined in ``cli`` would exist twice and the subcommand
    modules' raises would escape ``main``'s handler.
    """
