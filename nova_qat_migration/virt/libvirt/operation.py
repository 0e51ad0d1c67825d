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
"""Nova's operation thread: the planned ``migrateToURI3``.

:class:`PlannedDomain` stands in for the ``virDomain`` Nova's
``_live_migration_operation`` migrates: its ``migrateToURI3`` sends the
planned flags and params instead of the ones Nova built (the flags from
:meth:`~.session.MigrationSession.flags_for`, as the monitor gets them):
it sets a method libvirt does not know on the source QEMU through the
monitor passthrough, resets a multifd method an earlier migration left
behind, and, when libvirt refuses the plan before anything ran, retries
once with exactly Nova's call. :class:`CleanDomain` does the resetting for
a migration that is not planned.
"""

from __future__ import annotations

from typing import Any

from lxml import etree
from oslo_log import log as logging

from nova_qat_migration import conf as qat_conf
from nova_qat_migration.virt.libvirt import constants as c
from nova_qat_migration.virt.libvirt import passthrough
from nova_qat_migration.virt.libvirt import report
from nova_qat_migration.virt.libvirt import session as lm_session
from nova_qat_migration.virt.libvirt import translate

CONF = qat_conf.CONF
LOG = logging.getLogger(__name__)


class PlannedDomain(lm_session.DomainProxy):
    """The domain Nova's operation thread migrates: the planned call."""

    def migrateToURI3(self, dconnuri: str, params: dict, flags: int) -> Any:
        """Run this migration's call instead of the one Nova built.

        Everything is built before the source QEMU is touched, so a plan
        that cannot be built costs nothing: the software plan (or Nova's)
        runs instead, with the source unchanged. Whatever the plan, the
        ``-global`` pairs an earlier passthrough migration left in the
        running definition are stripped from both XMLs: Nova builds every
        migration's XML from the running definition.
        """
        session = self._qat_session
        call = session.call
        try:
            sent_params, sent_flags = self._qat_build(call, params, flags)
        except Exception as exc:  # e.g. an XML that fails
            call = self._qat_degrade(call, 'plan %s could not be built (%s)'
                                     % (call.plan.describe(), exc))
            sent_params, sent_flags = self._qat_build(call, params, flags)
        applied, previous = self._qat_passthrough(call)
        if call is not session.call:
            # The monitor command was refused: the software plan.
            call = session.call
            sent_params, sent_flags = self._qat_build(call, params, flags)
        sent_params = self._qat_reset_stale(sent_params, sent_flags, applied)
        LOG.info('Live migration plan %(plan)s: flags %(flags)s, params '
                 '%(params)s', {'plan': call.plan.describe(),
                                'flags': '|'.join(c.flag_names(sent_flags)),
                                'params': report.visible_params(sent_params)},
                 instance=session.instance)
        session.sent_params, session.sent_flags = sent_params, sent_flags
        try:
            return self._qat_domain.migrateToURI3(
                dconnuri, params=sent_params, flags=sent_flags)
        except Exception as exc:
            if applied:
                # The guest stays here: leave its QEMU as we found it so
                # the next attempt (or Nova's retry below) starts clean.
                if not passthrough.restore_source(self._qat_domain, applied,
                                                  previous):
                    LOG.warning('Could not restore the source QEMU\'s '
                                'multifd parameters %s after a failed '
                                'migration', previous,
                                instance=session.instance)
            if session.abort_requested and self._qat_source_running():
                # NOTE(qat-migration): an abort (Nova's completion timeout
                # or our progress timeout) was asked for and the guest runs
                # on here. QEMU 10 may end such a job as *failed* ("Channel
                # error") rather than cancelled; raising would make Nova
                # put the instance in ERROR. Nova's monitor sees the job end
                # and rolls the migration back either way.
                LOG.warning('Live migration aborted as requested (libvirt: '
                            '%s); the instance continues on this host.',
                            exc, instance=session.instance)
                session.notes.append('aborted as requested; libvirt said: '
                                     '%s' % exc)
                return None
            if call.plan.nova_baseline or not _is_refusal(exc):
                # The report says what ended it (a peer that died, a link
                # that dropped), beside Nova's outcome.
                session.notes.append('migration failed: %s' % exc)
                if self._qat_source_running():
                    # NOTE(qat-migration): the job failed (the destination
                    # QEMU or its daemon died, the peer connection broke)
                    # and the guest runs on here: libvirt resumes the
                    # source only when the destination did not start it.
                    # As for a requested abort, Nova's monitor sees the
                    # job end and rolls back; raising would also make Nova
                    # put the running instance in ERROR.
                    LOG.warning('Live migration failed (libvirt: %s); the '
                                'instance continues on this host.', exc,
                                instance=session.instance)
                    return None
                raise
            LOG.warning('libvirt refused the planned migration (%(plan)s, '
                        'flags %(flags)s, params %(params)s): %(exc)s; '
                        'retrying once with the call Nova would have made '
                        '(flags %(nflags)s, params %(nparams)s).',
                        {'plan': call.plan.describe(),
                         'flags': '|'.join(c.flag_names(sent_flags)),
                         'params': report.visible_params(sent_params),
                         'exc': exc,
                         'nflags': '|'.join(c.flag_names(flags)),
                         'nparams': report.visible_params(params)},
                        instance=session.instance)
            session.fall_back_to_nova(
                'libvirt refused %s (%s): ran Nova\'s plan instead'
                % (call.plan.describe(), exc))
            nova_params = self._qat_reset_stale(
                passthrough.clean_params(params), flags, {})
            session.sent_params, session.sent_flags = nova_params, flags
            return self._qat_domain.migrateToURI3(
                dconnuri, params=nova_params, flags=flags)

    def _qat_source_running(self) -> bool:
        """Whether the guest still runs here (not paused, not gone)."""
        lv = lm_session.libvirt_module()
        try:
            return (self._qat_domain.state()[0] ==
                    getattr(lv, 'VIR_DOMAIN_RUNNING', 1))
        except (lv.libvirtError, IndexError, TypeError) as exc:
            LOG.debug('Source domain state unknown (%s): not running', exc,
                      instance=self._qat_session.instance)
            return False

    def _qat_build(self, call: translate.MigrationCall, params: dict,
                   flags: int) -> tuple[dict, int]:
        """The params and flags ``call`` sends, given what Nova built.

        Pure: touches neither the source nor libvirt.
        """
        session = self._qat_session
        if call.plan.nova_baseline:
            # Nova's own plan: exactly what Nova built, less our leftovers.
            return passthrough.clean_params(params), flags
        # NOTE(qat-migration): Nova's Guest.migrate() drops NON_SHARED_INC
        # when no disk is copied (a libvirt binding quirk would copy all
        # of them, volumes included) and its operation drops POSTCOPY for
        # paused guests; flags_for keeps both decisions.
        planned_flags = session.flags_for(flags)
        planned_params = passthrough.clean_params(
            translate.merge_params(params, call))
        if call.backend == translate.BACKEND_PASSTHROUGH and call.passthrough:
            # The destination QEMU starts with the same method (-global in
            # the live XML only; the persistent XML stays clean).
            planned_params = passthrough.rewrite_params(planned_params,
                                                        call.passthrough)
        return planned_params, planned_flags

    def _qat_degrade(self, call: translate.MigrationCall,
                     why: str) -> translate.MigrationCall:
        """The next plan down after ``call`` failed before it started."""
        session = self._qat_session
        LOG.warning('%s; running the next plan down.', why,
                    instance=session.instance)
        if call.backend == translate.BACKEND_PASSTHROUGH:
            session.fall_back_to_software(why + ': software plan')
        else:
            session.fall_back_to_nova(why + ': Nova\'s plan')
        return session.call

    def _qat_passthrough(self, call: translate.MigrationCall,
                         ) -> tuple[dict, dict]:
        """Set the planned method on the source QEMU, if the plan has one.

        :returns: the arguments applied and the source's values before
            (both empty when there are none or the command failed; then
            the session runs the software plan).
        """
        session = self._qat_session
        if (call.backend != translate.BACKEND_PASSTHROUGH or
                not call.passthrough):
            return {}, {}
        try:
            previous = passthrough.query_source(self._qat_domain,
                                                call.passthrough)
        except passthrough.PassthroughError as exc:
            LOG.info('Could not read the source QEMU\'s multifd '
                     'parameters (%s); QEMU defaults restore a failure.',
                     exc, instance=session.instance)
            previous = {}
        try:
            passthrough.apply_source(self._qat_domain, call.passthrough)
        except passthrough.PassthroughError as exc:
            session.fall_back_to_software(
                'monitor passthrough refused (%s): software plan' % exc)
            LOG.warning('QEMU refused %(args)s through the monitor '
                        'passthrough (%(exc)s); running %(plan)s instead.',
                        {'args': call.passthrough, 'exc': exc,
                         'plan': session.call.plan.describe()},
                        instance=session.instance)
            return {}, {}
        LOG.info('Source QEMU set to %s through the monitor passthrough '
                 '(libvirt marks the domain tainted)', call.passthrough,
                 instance=session.instance)
        session.notes.append('passthrough %s' % (call.passthrough,))
        session.passthrough = dict(call.passthrough)
        return dict(call.passthrough), previous

    def _qat_reset_stale(self, params: dict, flags: int,
                         applied: dict) -> dict:
        session = self._qat_session
        return reset_stale_method(self._qat_domain, params, flags, applied,
                                  session.notes, session.instance)


def reset_stale_method(domain: Any, params: dict, flags: int,
                       applied: dict, notes: list, instance: Any) -> dict:
    """Make both ends agree on the multifd method.

    A QEMU that arrived through the passthrough backend was started with
    ``-global migration.multifd-compression=<m>``: that is its default. A
    multifd migration that sets no method of its own (none through
    libvirt's params, none through the passthrough) would send with
    ``<m>`` to a destination that now starts clean. Set the source back to
    ``none`` where the operator allows monitor commands; otherwise keep
    ``<m>`` on the destination (live XML only).

    :param applied: what the plan set through the passthrough already.
    :param notes: where what was done is recorded (the report's notes).
    :returns: the params to send.
    """
    if (not flags & c.VIR_MIGRATE_PARALLEL or
            params.get(c.PARAM_COMPRESSION) or
            'multifd-compression' in applied):
        return params
    try:
        stale = passthrough.globals_of(domain.XMLDesc(0))
    except (lm_session.libvirt_module().libvirtError, etree.XMLSyntaxError,
            ValueError, TypeError, AttributeError) as exc:  # no document
        LOG.debug('No running definition to read (%s): nothing stale', exc,
                  instance=instance)
        return params
    method = stale.get('multifd-compression', 'none')
    if method == 'none':
        return params
    if CONF.qat_migration.qemu_monitor_passthrough:
        try:
            passthrough.apply_source(domain, {'multifd-compression': 'none'})
            notes.append('source multifd method %s (left by an earlier '
                         'migration) reset to none' % method)
            return params
        except passthrough.PassthroughError as exc:
            LOG.warning('Could not reset the source\'s multifd method '
                        '%(m)s: %(exc)s', {'m': method, 'exc': exc},
                        instance=instance)
    notes.append('source multifd method %s kept on both ends' % method)
    return passthrough.rewrite_params(params, {'multifd-compression': method})


class CleanDomain:
    """The domain of a migration that runs Nova's call unplanned.

    NOTE(qat-migration): with the planner disabled, or when planning
    failed, Nova's own call still starts from the running definition, so
    the ``-global`` pairs an earlier passthrough migration put there would
    be persisted at the destination, and a source QEMU started with one
    would send with that method by default. Every migration this driver
    runs, planned or not, goes out clean.
    """

    def __init__(self, domain: Any, instance: Any) -> None:
        self._qat_domain = domain
        self._qat_instance = instance
        #: what was done, for the log (there is no session to report it)
        self.notes: list = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._qat_domain, name)

    def migrateToURI3(self, dconnuri: str, params: dict, flags: int) -> Any:
        sent = reset_stale_method(self._qat_domain,
                                  passthrough.clean_params(params), flags,
                                  {}, self.notes, self._qat_instance)
        for note in self.notes:
            LOG.info('Unplanned live migration: %s', note,
                     instance=self._qat_instance)
        return self._qat_domain.migrateToURI3(dconnuri, params=sent,
                                              flags=flags)


def _is_refusal(exc: Exception) -> bool:
    """Whether libvirt refused the call before anything was sent."""
    lv = lm_session.libvirt_module()
    if not isinstance(exc, getattr(lv, 'libvirtError', ())):
        return False
    try:
        return exc.get_error_code() in c.refused_error_codes(lv)
    except (AttributeError, IndexError, TypeError) as error:
        LOG.debug('Malformed libvirt error %r (%s): no refusal', exc, error)
        return False
