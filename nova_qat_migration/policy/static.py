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
"""``static``: the operator's fixed choice from ``[qat_migration_static]``.

For operators who know their workloads and want one predictable plan
(still per instance where flavors or images say so).
"""

from nova_qat_migration.conf import policies as qat_opts
from nova_qat_migration import datamodel
from nova_qat_migration.policy import base
from nova_qat_migration.policy import candidates
from nova_qat_migration.policy import common
from nova_qat_migration.policy import tenant


class StaticPolicy(base.Policy):
    """One plan from ``[qat_migration_static]``, bounded per instance."""

    name = 'static'
    # Defined with the other options so that the start-up check can read
    # them without importing this policy.
    CONFIG_GROUP = qat_opts.static_group
    CONFIG_OPTS = tuple(qat_opts.static_opts)

    def plan(self, facts: datamodel.Facts) -> datamodel.Plan:
        """The static plan; the operator's when the image's hints would
        keep the guest from converging (:mod:`.tenant`).
        """
        return tenant.plan_any(self.shared, facts, self._plan)

    def _plan(self, facts: datamodel.Facts) -> datamodel.Plan:
        group = self.shared.qat_migration
        static = self.options
        lim = common.limits(self.shared, facts)
        method = lim.forced_method or static.method
        reasons = ['static: [%s] method=%s'
                   % (self.CONFIG_GROUP.name, static.method)]
        if lim.forced_method:
            reasons.append('method %s forced by qat_migration:method'
                           % lim.forced_method)
        elif lim.image_method:
            # The tenant chooses only among what the operator's gates
            # allow (CPU idle, memory headroom, QAT, both hosts).
            why = candidates.closed(self.shared, facts, lim, lim.image_method)
            if why:
                reasons.append('image property qat_migration:method=%s '
                               'ignored: %s' % (lim.image_method, why))
            else:
                method = lim.image_method
                reasons.append('method %s chosen by the image' % method)
        if method not in lim.methods:
            reasons.append('%s not in [qat_migration] allowed_methods: none'
                           % method)
            method = 'none'
        channels = lim.forced_channels or static.parallel_connections
        xbzrle = None
        if method == 'xbzrle':
            # A cache larger than the guest's RAM buys nothing (start-up
            # already bounds it by the host's spare memory).
            xbzrle = static.xbzrle_cache_mb
            if 0 < facts.instance.memory_mb < xbzrle:
                xbzrle = facts.instance.memory_mb
                reasons.append('XBZRLE cache bounded by the guest\'s RAM: '
                               '%d MiB' % xbzrle)
            if method == lim.image_method and not lim.forced_method:
                # The operator chose no cache: the image's is bounded by
                # the memory above the headroom now.
                spare = common.xbzrle_cache_max_mb(self.shared, facts)
                if spare < xbzrle:
                    xbzrle = spare
                    reasons.append('XBZRLE cache bounded by the memory '
                                   'above the headroom: %d MiB' % xbzrle)
        throttle = static.auto_converge and lim.throttle
        level = (lim.forced_level if lim.forced_level is not None
                 else common.default_level(self.shared, method))
        return datamodel.Plan(
            policy=self.name,
            method=method,
            level=common.capped_level(lim, level),
            parallel_connections=min(channels, lim.max_channels),
            xbzrle_cache_mb=xbzrle,
            xbzrle_cache_max_mb=xbzrle,
            throttle_initial=group.auto_converge_initial if throttle else None,
            throttle_increment=(group.auto_converge_increment
                                if throttle else None),
            max_downtime_ms=lim.max_downtime_ms,
            post_copy=lim.post_copy,
            post_copy_after_stalled=group.post_copy_after_stalled,
            progress_timeout_s=group.progress_timeout,
            bandwidth_mbps=facts.nova.bandwidth_mbps,
            qat_lease=method == 'qatzip',
            reasons=tuple(reasons))
