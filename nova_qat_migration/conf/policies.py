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
"""Options of the built-in policies' own groups: ``[qat_migration_static]``
and ``[qat_migration_adaptive]``.

:class:`~nova_qat_migration.policy.static.StaticPolicy` and
:class:`~nova_qat_migration.policy.adaptive.AdaptivePolicy` declare them as
their ``CONFIG_OPTS``; they are defined here, beside ``[qat_migration]``,
so that the start-up check (:func:`nova_qat_migration.conf.check`) reads
them without importing a policy. Both groups still read their options'
former ``[qat_migration]`` names (``deprecated_opts``).
"""

from oslo_config import cfg

from nova_qat_migration import datamodel

static_group = cfg.OptGroup(
    'qat_migration_static',
    title='The static migration policy',
    help="""
Options of the ``static`` policy (``[qat_migration] policy = static``): one
fixed plan for every instance, still bounded per instance by flavor extra
specs, image properties and ``[qat_migration]`` limits. The former names,
``[qat_migration] static_<name>``, are still read, with a deprecation
warning.
""")


def _was(name: str) -> list:
    """The option's former name, ``[qat_migration] static_<name>``."""
    return [cfg.DeprecatedOpt('static_' + name, group='qat_migration')]


static_opts = [
    cfg.StrOpt('method',
        default='none', choices=datamodel.METHODS,
        deprecated_opts=_was('method'),
        help="""
Compression method of every plan. Must be in ``[qat_migration]
allowed_methods`` (checked at start-up).
"""),
    cfg.IntOpt('parallel_connections',
        default=1, min=1, max=32,
        deprecated_opts=_was('parallel_connections'),
        help="""
Multifd channels (1 = none), at most ``[qat_migration]
max_parallel_connections``.
"""),
    cfg.IntOpt('xbzrle_cache_mb',
        default=256, min=1,
        deprecated_opts=_was('xbzrle_cache_mb'),
        help="""
XBZRLE cache (MiB) when ``method`` is ``xbzrle``. At most ``[qat_migration]
xbzrle_cache_max_mb`` and the host's memory above ``[qat_migration]
memory_headroom_mb`` (checked at start-up), and never more than the guest's
RAM.
"""),
    cfg.BoolOpt('auto_converge',
        default=False,
        deprecated_opts=_was('auto_converge'),
        help="""
Throttle the guest's vCPUs (auto-converge, from ``[qat_migration]
auto_converge_initial`` by ``auto_converge_increment``) where the instance
and ``[qat_migration] permit_auto_converge`` allow it.
"""),
]

adaptive_group = cfg.OptGroup(
    'qat_migration_adaptive',
    title='The adaptive migration policy',
    help="""
Options of the ``adaptive`` policy (``[qat_migration] policy = adaptive``,
the default). The former names, ``[qat_migration] adaptive_model`` and
``[qat_migration] gentle_tolerance``, are still read, with a deprecation
warning. The model's constants (``[qat_migration] model_calibration``) stay
shared: every policy's tenant check and the CPU-impact gate predict with
them.
""")


def _formerly_shared(name: str) -> list:
    """The option's former name, ``[qat_migration] <name>``."""
    return [cfg.DeprecatedOpt(name, group='qat_migration')]


adaptive_opts = [
    cfg.BoolOpt('adaptive_model',
        default=True,
        deprecated_opts=_formerly_shared('adaptive_model'),
        help="""
Let the ``adaptive`` policy predict every candidate plan with the pre-copy
convergence model (time, downtime, whether it converges) and pick the
fastest that converges within the downtime target. When False, or when the
model finds no converging plan, the rule-based choice is used.
"""),
    cfg.FloatOpt('gentle_tolerance',
        default=0.2, min=0.0, max=5.0,
        deprecated_opts=_formerly_shared('gentle_tolerance'),
        help="""
How much slower (as a share of the fastest prediction) the model may
predict a gentler plan to be and still prefer it. Among the plans
predicted to converge, the ``adaptive`` policy takes the least intrusive
one -- no vCPU throttling, then throttling starting low, then post-copy --
whose predicted time is within this share of the fastest plan's. 0 picks
the fastest plan whatever it does to the guest; a large value keeps the
gentlest converging plan however slow.
"""),
]


def register_static_opts(conf: cfg.ConfigOpts) -> None:
    """Register ``[qat_migration_static]`` (again is harmless)."""
    conf.register_group(static_group)
    conf.register_opts(static_opts, group=static_group)


def register_adaptive_opts(conf: cfg.ConfigOpts) -> None:
    """Register ``[qat_migration_adaptive]`` (again is harmless)."""
    conf.register_group(adaptive_group)
    conf.register_opts(adaptive_opts, group=adaptive_group)
