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
"""The data every layer shares: facts, plans, progress and the methods.

A policy sees :class:`Facts` and returns a :class:`Plan`; while the
migration runs it sees :class:`Progress` and returns :class:`Action`
values. Everything is a frozen dataclass so that facts gathered once per
migration and the plan computed from them can be printed, logged,
compared and replayed. The data model imports nothing from the rest of
the package: it sits below every other module, and the method
vocabulary (which methods exist, which run on multifd, their level
ranges) is defined in it once.

Its modules, each named for what it holds:

:mod:`~nova_qat_migration.datamodel.vocabulary`
    the methods, their level ranges, and the units.
:mod:`~nova_qat_migration.datamodel.facts`
    :class:`Facts` and its parts: what a policy may base a plan on.
:mod:`~nova_qat_migration.datamodel.plan`
    :class:`Plan`: what a policy decides, and the downtime headroom it
    keeps.
:mod:`~nova_qat_migration.datamodel.calibration`
    :class:`Calibration`: the convergence model's machine constants.
:mod:`~nova_qat_migration.datamodel.progress`
    :class:`Progress` and :class:`Action`: a running migration, and the
    escalations a policy asks for.

``nova_qat_migration.datamodel.<name>`` is the path third-party policies
(see the contributor guide), the documentation, the lab and the rest of
the package use, so every name of those modules is also here.
"""

from nova_qat_migration.datamodel.calibration import Calibration
from nova_qat_migration.datamodel.facts import DestinationCaps
from nova_qat_migration.datamodel.facts import Facts
from nova_qat_migration.datamodel.facts import Hints
from nova_qat_migration.datamodel.facts import History
from nova_qat_migration.datamodel.facts import HostLoad
from nova_qat_migration.datamodel.facts import HypervisorCaps
from nova_qat_migration.datamodel.facts import InFlight
from nova_qat_migration.datamodel.facts import InstanceFacts
from nova_qat_migration.datamodel.facts import NovaSettings
from nova_qat_migration.datamodel.facts import QATState
from nova_qat_migration.datamodel.facts import version_str
from nova_qat_migration.datamodel.plan import DOWNTIME_HEADROOM
from nova_qat_migration.datamodel.plan import MULTIFD_DOWNTIME_HEADROOM
from nova_qat_migration.datamodel.plan import Plan
from nova_qat_migration.datamodel.progress import Action
from nova_qat_migration.datamodel.progress import ACTION_ABORT
from nova_qat_migration.datamodel.progress import ACTION_DOWNTIME
from nova_qat_migration.datamodel.progress import ACTION_POST_COPY
from nova_qat_migration.datamodel.progress import ACTION_XBZRLE_CACHE
from nova_qat_migration.datamodel.progress import Progress
from nova_qat_migration.datamodel.progress import XBZRLE_WARM_ITERATION
from nova_qat_migration.datamodel.vocabulary import level_option
from nova_qat_migration.datamodel.vocabulary import LEVEL_RANGES
from nova_qat_migration.datamodel.vocabulary import METHODS
from nova_qat_migration.datamodel.vocabulary import MIB
from nova_qat_migration.datamodel.vocabulary import MULTIFD_METHODS
from nova_qat_migration.datamodel.vocabulary import pow2_floor
from nova_qat_migration.datamodel.vocabulary import QEMU_MULTIFD_COMPRESSION
from nova_qat_migration.datamodel.vocabulary import SINGLE_STREAM_METHODS

__all__ = [
    'ACTION_ABORT', 'ACTION_DOWNTIME', 'ACTION_POST_COPY',
    'ACTION_XBZRLE_CACHE', 'Action', 'Calibration', 'DOWNTIME_HEADROOM',
    'DestinationCaps', 'Facts', 'Hints', 'History', 'HostLoad',
    'HypervisorCaps', 'InFlight', 'InstanceFacts', 'LEVEL_RANGES',
    'METHODS', 'MIB', 'MULTIFD_DOWNTIME_HEADROOM', 'MULTIFD_METHODS',
    'NovaSettings', 'Plan', 'Progress', 'QATState',
    'QEMU_MULTIFD_COMPRESSION', 'SINGLE_STREAM_METHODS',
    'XBZRLE_WARM_ITERATION', 'level_option', 'pow2_floor', 'version_str',
]
