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


# NOTE(qat-migration): the classes below keep the built-in base they had
# before they moved here (ValueError for a bad value), so handlers that
# catch the built-in class keep working.

class ConfigError(QATMigrationError, ValueError):
    """An option value that cannot be used.

    The message names the option as ``[group] name``.
    """


class InvalidHint(QATMigrationError, ValueError):
    """A ``qat_migration:*`` value that cannot be used; names the key."""


class InvalidPlan(QATMigrationError, ValueError):
    """A plan no libvirt call can be made from; names the field."""


class UnknownPolicy(QATMigrationError, ValueError):
    """A policy that cannot be used (base of the two cases below)."""


class PolicyNotFound(UnknownPolicy):
    """No installed plugin has the policy's name; names the installed
    ones.
    """


class PolicyLoadError(UnknownPolicy):
    """The policy's plugin is installed but fails to import, is not a
    ``Policy``, or its options, construction or ``load()`` fail.
    """


class NotAReport(QATMigrationError, ValueError):
    """The input holds no report that can be replayed; says why."""


class QATzipError(QATMigrationError):
    """A QATzip call returned an error code."""

    def __init__(self, call: str, rc: int, rc_text: str = '') -> None:
        super().__init__('%s failed: %s' % (call, rc_text or rc))
        self.call = call
        self.rc = rc


class QATzipMissing(QATMigrationError):
    """cffi or libqatzip could not be loaded."""


class CloudConfigError(QATMigrationError):
    """``OS_*`` / ``clouds.yaml`` cannot be made into a connection."""
