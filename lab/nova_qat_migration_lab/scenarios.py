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
"""The benchmark's guests (scenarios) and migration strategies (plans).

A scenario is a guest workload plus the link it migrates over; a plan spec
is either a policy (``nova_default``, ``adaptive``, ``static``: the plan
comes from the project's policy looking at measured facts) or a fixed
:class:`~nova_qat_migration.datamodel.Plan`. Every plan, fixed or not,
goes through the project's translation to libvirt.

Sizes are chosen so that one migration of a busy guest takes seconds to a
minute under TCG on two cores, and so that each scenario separates the
strategies: who converges at all, and how fast.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from nova_qat_migration import datamodel


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A guest workload and the link it is migrated over.

    :param memory_mb: guest RAM.
    :param touch_mb: RAM the dirtier fills (and verifies).
    :param hot_mb: the part it keeps rewriting.
    :param rate: pages rewritten per second.
    :param pattern: zero | small | text | random (see dirtier.c).
    :param link_mbit: the emulated link.
    :param stat_s: seconds between the dirtier's reports.
    """

    name: str
    memory_mb: int
    touch_mb: int
    hot_mb: int
    rate: int
    pattern: str
    link_mbit: int = 1000
    description: str = ''
    #: seconds between the dirtier's ``STAT`` reports (the resolution of
    #: the guest-impact measurement, see ``measure.guest_impact``)
    stat_s: int = 1
    #: Nova's completion timeout per GiB for this scenario's migrations
    #: (``[libvirt] live_migration_completion_timeout``); None: the
    #: benchmark's ``--timeout`` (per migration) applies.
    timeout_s_per_gib: Optional[int] = None

    def completion_timeout_s(self, default_s: float) -> float:
        """The completion timeout (s) of one migration of this guest.

        With :attr:`timeout_s_per_gib`, Nova's own rule: that many seconds
        per GiB of RAM, at least 2 GiB (the runner turns the seconds back
        into the per-GiB option, counting a copied disk).
        """
        if self.timeout_s_per_gib is None:
            return default_s
        return datamodel.NovaSettings(
            completion_timeout_s_per_gib=self.timeout_s_per_gib,
        ).completion_timeout_s(self.memory_mb)

    @property
    def link_mbps(self) -> float:
        """The link in MiB/s."""
        return self.link_mbit * 1e6 / 8 / datamodel.MIB

    def cmdline(self, seed: int = 1) -> str:
        return ('console=ttyS0 quiet loglevel=0 panic=-1 '
                'dirtier.mem=%d dirtier.hot=%d dirtier.rate=%d '
                'dirtier.pattern=%s dirtier.seed=%d dirtier.stat=%d'
                % (self.touch_mb, self.hot_mb, self.rate, self.pattern, seed,
                   self.stat_s))

    @property
    def dirty_mbps(self) -> float:
        """The nominal dirty rate in MiB/s."""
        return self.rate * 4096 / datamodel.MIB


SCENARIOS = {s.name: s for s in (
    Scenario('idle-10g', 1024, 768, 4, 50, 'text', link_mbit=10000,
             description='idle guest with 768 MiB of text-like data, '
                         '10 Gbit/s link'),
    Scenario('small-writes', 1024, 768, 768, 40000, 'small',
             description='40k pages/s small in-page changes over a 768 MiB '
                         'working set (XBZRLE-friendly, incompressible)'),
    Scenario('text-rewrite', 1024, 768, 384, 30000, 'text',
             description='30k pages/s of whole text-like pages rewritten '
                         '(~2.4x with zstd-1)'),
    Scenario('random-writes', 1024, 768, 256, 20000, 'random',
             description='20k pages/s of whole random pages rewritten '
                         '(incompressible, XBZRLE-hostile)'),
    Scenario('mostly-zero', 2048, 192, 64, 8000, 'text',
             description='2 GiB guest, 192 MiB in use, 8k pages/s of text '
                         'rewritten; the rest is zero pages'),
    # Nova's default converges, slowly (30-40 s in the lab, within the
    # 60 s completion timeout): 2-2.5 GiB guests dirtying at about 2/3 of
    # a 1 Gbit/s link; measured with 1 repeat (benchmark notes).
    Scenario('big-random', 2560, 2048, 512, 20000, 'random',
             description='2.5 GiB guest, 2 GiB filled, 20k pages/s of '
                         'whole random pages rewritten over 512 MiB '
                         '(78 MiB/s, incompressible): nova_default ~36 s '
                         'here (19 iterations); no fixed plan much faster '
                         '(xbzrle512 ~31 s, the others ~35-37 s)'),
    Scenario('big-text', 2560, 2048, 512, 20000, 'text',
             description='2.5 GiB guest, 2 GiB filled, 20k pages/s of '
                         'text-like pages rewritten over 512 MiB (78 MiB/s, '
                         '~2.4x with zstd-1): nova_default ~37-39 s here, '
                         'zstd1x4 ~19 s'),
    Scenario('big-small', 2048, 1536, 448, 20000, 'small',
             description='2 GiB guest, 1.5 GiB filled, 20k pages/s of small '
                         'in-page changes over 448 MiB (fits a 512 MiB '
                         'XBZRLE cache; incompressible): nova_default ~30 s '
                         'here, xbzrle512 ~21 s'),
)}


#: Nova's default ``[libvirt] live_migration_completion_timeout`` (s/GiB).
NOVA_TIMEOUT_S_PER_GIB = 800
#: The scale model's link: on the lab's two cores zstd-1 on 4 channels
#: keeps a link of this speed full (``bench --link-calibration`` measures
#: where that stops), as tens of idle cores keep a 10-25 Gbit/s link
#: shared by concurrent migrations full on a real compute host.
SCALE_MODEL_LINK_MBIT = 250
#: Dirty rates of the scale model's guests, as shares of the link.
SCALE_DIRTY_SHARE = (0.5, 0.9)


def scale_model(link_mbit: int = SCALE_MODEL_LINK_MBIT) -> tuple:
    """The scale model's scenarios over a ``link_mbit`` link.

    1.5-2 GiB guests dirtying between half and nine tenths of the link
    (:data:`SCALE_DIRTY_SHARE`), with Nova's own completion timeout
    (:data:`NOVA_TIMEOUT_S_PER_GIB`) so that plain pre-copy's slow
    convergence is timed, not cut off: text (compresses about 0.3-0.45),
    small in-page writes (XBZRLE-friendly, incompressible), random pages
    (incompressible) and a mostly zero guest.
    """
    link = link_mbit * 1e6 / 8 / datamodel.MIB

    def rate(share: float) -> int:
        # pages/s for a dirty rate of ``share`` of the link
        return int(round(share * link * datamodel.MIB / 4096))

    common = dict(link_mbit=link_mbit,
                  timeout_s_per_gib=NOVA_TIMEOUT_S_PER_GIB)
    return (
        Scenario('scale-text', 1536, 1280, 384, rate(0.67), 'text',
                 description='scale model: 1.5 GiB guest, 1.25 GiB of '
                             'text-like pages, 2/3 of the link rewritten '
                             'over 384 MiB', **common),
        Scenario('scale-small', 1536, 1280, 384, rate(0.75), 'small',
                 description='scale model: 1.5 GiB guest, small in-page '
                             'changes at 3/4 of the link over 384 MiB '
                             '(XBZRLE-friendly, incompressible)', **common),
        Scenario('scale-random', 1536, 1280, 256, rate(0.6), 'random',
                 description='scale model: 1.5 GiB guest, whole random '
                             'pages at 0.6 of the link over 256 MiB '
                             '(incompressible)', **common),
        Scenario('scale-zero', 2048, 256, 128, rate(0.55), 'text',
                 description='scale model: 2 GiB guest, 256 MiB in use, '
                             'text pages at 0.55 of the link over 128 MiB; '
                             'the rest zero pages', **common),
    )


def check_scale_scenario(scenario: Scenario) -> list:
    """What keeps ``scenario`` from being a scale-model scenario ([] if
    nothing): its dirty rate within :data:`SCALE_DIRTY_SHARE` of its link,
    Nova's completion timeout, a hot set within what it fills.
    """
    problems = []
    low, high = SCALE_DIRTY_SHARE
    share = scenario.dirty_mbps / scenario.link_mbps
    if not low <= share <= high:
        problems.append('%s: dirty rate %.1f MiB/s is %.2f of the %d '
                        'Mbit/s link, not within %.1f-%.1f'
                        % (scenario.name, scenario.dirty_mbps, share,
                           scenario.link_mbit, low, high))
    if scenario.timeout_s_per_gib != NOVA_TIMEOUT_S_PER_GIB:
        problems.append('%s: completion timeout %s s/GiB, not Nova\'s %d'
                        % (scenario.name, scenario.timeout_s_per_gib,
                           NOVA_TIMEOUT_S_PER_GIB))
    if not 0 < scenario.hot_mb <= scenario.touch_mb <= scenario.memory_mb:
        problems.append('%s: hot %d MiB, filled %d MiB, memory %d MiB'
                        % (scenario.name, scenario.hot_mb,
                           scenario.touch_mb, scenario.memory_mb))
    return problems


#: Link rates (Mbit/s) ``bench --link-calibration`` migrates an idle text
#: guest over, with plain pre-copy and zstd-1 x4.
LINK_CALIBRATION_MBIT = (100, 250, 500, 1000)
LINK_CALIBRATION_PLANS = ('plain', 'zstd1x4')


def link_calibration(rates: tuple = LINK_CALIBRATION_MBIT) -> tuple:
    """An idle guest of 768 MiB of text pages per link rate: its wire
    rate against the link shows where the cores, not the link, bound a
    migration.
    """
    return tuple(Scenario('link-%d' % mbit, 1024, 768, 4, 50, 'text',
                          link_mbit=mbit,
                          timeout_s_per_gib=NOVA_TIMEOUT_S_PER_GIB,
                          description='link calibration: idle guest, '
                                      '768 MiB of text pages, %d Mbit/s'
                                      % mbit)
                 for mbit in rates)


#: Scenario sets ``bench --scenario-set`` names.
SCENARIO_SETS = {
    'default': tuple(SCENARIOS),
    'scale-model': tuple(s.name for s in scale_model()),
    'link-calibration': tuple(s.name for s in link_calibration()),
}
SCENARIOS.update({s.name: s for s in scale_model() + link_calibration()})


@dataclasses.dataclass(frozen=True)
class PlanSpec:
    """A strategy to benchmark: a policy and its ``[qat_migration]`` options.

    Every spec runs through the driver an operator installs: a fixed plan
    is the ``static`` policy with the ``[qat_migration_static]`` options
    that ask for it (:func:`static_options`), as an operator would
    configure it.
    """

    name: str
    policy: str
    #: Options while this spec migrates (see :func:`option_group`).
    options: tuple = ()
    #: the plan a fixed spec stands for (documentation and tests).
    plan: Optional[datamodel.Plan] = None

    @property
    def fixed(self) -> bool:
        return self.plan is not None

    def conf_options(self) -> dict:
        """``[qat_migration]`` options, ``policy`` included."""
        out = dict(self.options)
        out['policy'] = self.policy
        return out


#: The ``static`` policy's own option group (its ``CONFIG_GROUP``).
STATIC_GROUP = 'qat_migration_static'


def option_group(name: str) -> tuple:
    """(group, option) of a spec option: ``group.option`` names another
    group, a bare name is ``[qat_migration]``'s.
    """
    group, _dot, option = name.rpartition('.')
    return (group or 'qat_migration', option)


def static_options(plan: datamodel.Plan) -> tuple:
    """The ``static`` policy's options that produce ``plan``."""
    static = '%s.%%s' % STATIC_GROUP
    opts = {static % 'method': plan.method,
            static % 'parallel_connections': plan.parallel_connections,
            static % 'auto_converge': plan.auto_converge,
            'permit_post_copy': plan.post_copy,
            'downtime_ms': plan.max_downtime_ms,
            'max_parallel_connections': max(4, plan.parallel_connections)}
    if plan.method != 'none':
        opts['allowed_methods'] = ['none', plan.method]
    if plan.level is not None and plan.method in ('zlib', 'zstd', 'qatzip'):
        opts[datamodel.level_option(plan.method)] = plan.level
    if plan.xbzrle_cache_mb:
        opts[static % 'xbzrle_cache_mb'] = plan.xbzrle_cache_mb
    if plan.auto_converge:
        opts['auto_converge_initial'] = plan.throttle_initial
        opts['auto_converge_increment'] = plan.throttle_increment
    if plan.post_copy:
        opts['post_copy_after_stalled'] = plan.post_copy_after_stalled
    return tuple(sorted(opts.items()))


def _fixed(name: str, **kwargs) -> PlanSpec:
    plan = datamodel.Plan(policy='static', **kwargs)
    return PlanSpec(name, policy='static', options=static_options(plan),
                    plan=plan)


PLANS = {p.name: p for p in (
    PlanSpec('nova_default', policy='nova_default'),
    PlanSpec('adaptive', policy='adaptive'),
    # The adaptive policy's rules alone, without the convergence model:
    # the "before" of the model's before/after comparison.
    PlanSpec('adaptive-rules', policy='adaptive',
             options=(('adaptive_model', False),)),
    _fixed('plain'),
    _fixed('parallel4', parallel_connections=4),
    _fixed('zstd1x4', method='zstd', level=1, parallel_connections=4),
    _fixed('zlib1x4', method='zlib', level=1, parallel_connections=4),
    _fixed('xbzrle128', method='xbzrle', xbzrle_cache_mb=128),
    _fixed('xbzrle512', method='xbzrle', xbzrle_cache_mb=512),
    _fixed('autoconv20+10', throttle_initial=20, throttle_increment=10),
    _fixed('postcopy2', post_copy=True, post_copy_after_stalled=2),
)}

#: Fixed plans that ask for what QEMU 10 refuses; the translation must
#: degrade them (never send them). Used by the lab tests.
FORBIDDEN_ASKS = {
    'xbzrle-multifd': datamodel.Plan(policy='fixed:bad', method='xbzrle',
                                     xbzrle_cache_mb=64,
                                     parallel_connections=4),
    'postcopy-multifd': datamodel.Plan(policy='fixed:bad', method='zstd',
                                       level=1, parallel_connections=4,
                                       post_copy=True,
                                       post_copy_after_stalled=1),
    'mt': datamodel.Plan(policy='fixed:bad', method='mt', level=1,
                         mt_threads=2),
}

QUICK_SCENARIOS = ('small-writes',)
QUICK_PLANS = ('nova_default', 'adaptive', 'zstd1x4')
