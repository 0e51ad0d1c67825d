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
"""Planning one live migration: hints, facts, plan, translation, lease.

:class:`QATPlanningMixin` is what the driver does before Nova's own
live-migration path runs: read the instance's hints (:mod:`.facts`),
gather the facts, run the policy, check and translate its plan
(:mod:`.translate`) into a :class:`~.session.MigrationSession`, and hold a
QAT lease for a plan that wants one. It is kept apart from the hooks into
Nova's path (:mod:`.driver`) because it is the one part that decides
anything: each step here degrades (a bad hint ignored, a failing policy
replaced by Nova's, a missing lease re-planned without QAT) and never
fails the migration, and it can be read, and tested, without Nova's
threads.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Optional

from oslo_log import log as logging

from nova_qat_migration import conf as qat_conf
from nova_qat_migration import datamodel
from nova_qat_migration.policy import base
from nova_qat_migration.policy import loader
from nova_qat_migration.virt.libvirt import facts as qat_facts
from nova_qat_migration.virt.libvirt import host
from nova_qat_migration.virt.libvirt import session as lm_session
from nova_qat_migration.virt.libvirt import translate

CONF = qat_conf.CONF
LOG = logging.getLogger(__name__)

#: The policy that reproduces Nova's own plan: the fallback of every
#: failure.
NOVA_DEFAULT = 'nova_default'


class QATPlanningMixin(host.QATHostMixin):
    """Makes the plan of one migration (the driver runs it).

    Mixed into :class:`~.driver.QATMigrationMixin`, which owns the
    attributes (``_qat_policies``, ``_qat_budget``, ``_qat_manager``,
    ``_qat_history``) and starts them in ``init_host``.
    """

    _qat_policies: Optional[loader.PolicySet]
    _qat_budget: Any
    _qat_manager: Any
    _qat_history: Any
    virtapi: Any

    # -- hints ---------------------------------------------------------------

    def _qat_check_hints(self, instance: Any) -> datamodel.Hints:
        """The hints of ``instance``; what cannot be used is ignored.

        Never refuses: a bad flavor extra spec (one that reached the
        flavor below microversion 2.86, or where nova-api lacks this
        package's validator) or image property, or a policy that is not
        installed, is ignored with a warning naming it, and the rest of
        the hints stand. A typo must not block a migration (a host drain)
        that Nova itself would run.
        """
        ignored: list = []
        hints = qat_facts.instance_hints(CONF, instance, ignored)
        return self._qat_known_policy(hints, ignored, instance)

    def _qat_known_policy(self, hints: datamodel.Hints, ignored: list,
                          instance: Any) -> datamodel.Hints:
        """``hints`` without a ``policy`` that is not installed (named in
        ``ignored``): the configured policy plans instead.
        """
        if not hints.policy or self._qat_policies is None:
            return hints
        try:
            self._qat_policies.get(hints.policy)
        except loader.UnknownPolicy as exc:
            message = ('hint not used as given: qat_migration:policy=%s '
                       'ignored (%s); [qat_migration] policy %s plans'
                       % (hints.policy, exc, CONF.qat_migration.policy))
            LOG.warning('Live-migration %s', message, instance=instance)
            ignored.append(message)
            operator = hints.operator
            if operator is not None and operator.policy == hints.policy:
                operator = dataclasses.replace(operator, policy=None)
            hints = dataclasses.replace(hints, policy=None,
                                        operator=operator)
        return hints

    # -- planning ----------------------------------------------------------

    def _qat_gather(self, context: Any, instance: Any, dest: str,
                    migrate_data: Any) -> tuple:
        """``(policy, facts, notes)`` for one migration; the facts'
        ``in_flight`` is filled in by :meth:`_qat_plan`, under the plan
        lock. ``notes`` name the hints that were ignored (for the report).
        """
        policies = self._qat_policies
        nova_policy = policies.get(NOVA_DEFAULT)
        ignored: list = []
        hints = self._qat_known_policy(
            qat_facts.instance_hints(CONF, instance, ignored), ignored,
            instance)
        try:
            policy = policies.for_hints(hints)
        except loader.UnknownPolicy as exc:
            # The configured policy itself went away (a SIGHUP'd name).
            LOG.warning('%s; using %s', exc, NOVA_DEFAULT, instance=instance)
            ignored.append('%s; %s planned' % (exc, NOVA_DEFAULT))
            policy = nova_policy
        # NOTE(qat-migration): Nova's own plan needs no measurement; skip
        # the ~1 s of sampling so nova_default costs what Nova costs.
        measured = not policy.reproduces_nova
        facts = qat_facts.gather(
            CONF, context, instance, dest, migrate_data, hints, measured,
            caps=self._qat_source_caps(instance), host=self._host,
            qat_manager=self._qat_manager, history=self._qat_history,
            reportclient=getattr(self.virtapi, 'reportclient', None),
            in_flight=datamodel.InFlight())
        return policy, facts, ignored

    def _qat_plan(self, context: Any, instance: Any, dest: str,
                  migrate_data: Any, gathered: Optional[tuple] = None,
                  ) -> lm_session.MigrationSession:
        """The session of one migration, planned against what the
        migrations in flight hold now.

        :param gathered: :meth:`_qat_gather`'s result (gathered here when
            None).
        """
        policy, facts, notes = gathered or self._qat_gather(
            context, instance, dest, migrate_data)
        nova_policy = self._qat_policies.get(NOVA_DEFAULT)
        facts = dataclasses.replace(facts,
                                    in_flight=self._qat_budget.snapshot())
        try:
            requested = policy.plan(facts)
            # A plugin's plan is checked before anything translates it.
            base.validate_plan(requested)
        except Exception:  # a plugin bug must not fail LM
            LOG.exception('Migration policy %s failed; using %s',
                          policy.name, NOVA_DEFAULT, instance=instance)
            policy = nova_policy
            requested = nova_policy.plan(facts)
        nova_plan = nova_policy.plan(facts)
        # One translation: the session translates Nova's plan, or this
        # one without the monitor passthrough, only when it falls back.
        try:
            call = translate.to_libvirt(requested, facts)
        except Exception:
            LOG.exception('Could not translate plan %s; using Nova\'s',
                          requested.describe(), instance=instance)
            call = translate.to_libvirt(nova_plan, facts)
        session = lm_session.MigrationSession(
            instance, facts, policy, requested, call, nova_plan,
            qat_facts.field(migrate_data, 'migration'))
        session.notes.extend(notes)
        return session

    def _qat_take_lease(self, stack: contextlib.ExitStack,
                        session: lm_session.MigrationSession) -> None:
        """Hold a QAT lease for a plan that needs one, or re-plan without.

        The lease is released by ``stack`` on every exit path.
        """
        if not session.plan.qat_lease:
            return
        lease = None
        if self._qat_manager is not None:
            try:
                lease = stack.enter_context(
                    self._qat_manager.lease(session.instance_uuid))
            except Exception as exc:
                LOG.warning('QAT lease failed: %s', exc,
                            instance=session.instance)
        if lease is not None:
            session.notes.append('holding QAT lease %s' % (lease,))
            return
        facts = dataclasses.replace(
            session.facts, qat=dataclasses.replace(session.facts.qat,
                                                   free_leases=0))
        session.facts = facts
        call = translate.to_libvirt(session.requested, facts)
        session.replace_call(call, 'no QAT lease free: re-planned to %s'
                             % call.plan.describe())
        LOG.warning('No QAT lease free; plan degraded to %s',
                    session.plan.describe(), instance=session.instance)
