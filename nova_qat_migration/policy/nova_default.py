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
"""``nova_default``: exactly what Nova 34 does, from its ``[libvirt]`` options.

The baseline of every comparison, and the fallback when anything else
fails. The translation of this plan yields the flags of Nova's
``_parse_migration_flags()`` and the params of its ``Guest.migrate``.
"""

from nova_qat_migration import datamodel
from nova_qat_migration.policy import base


class NovaDefaultPolicy(base.Policy):
    name = 'nova_default'
    reproduces_nova = True

    def plan(self, facts: datamodel.Facts) -> datamodel.Plan:
        nova = facts.nova
        post_copy = nova.permit_post_copy
        auto_converge = nova.permit_auto_converge and not post_copy
        return datamodel.Plan(
            policy=self.name,
            method='none',
            parallel_connections=max(1, nova.parallel_connections),
            # QEMU's defaults: Nova passes no auto-converge params.
            throttle_initial=20 if auto_converge else None,
            throttle_increment=10 if auto_converge else None,
            max_downtime_ms=nova.downtime_ms,
            post_copy=post_copy,
            bandwidth_mbps=nova.bandwidth_mbps,
            nova_baseline=True,
            reasons=("Nova's own plan from the [libvirt] live_migration_* "
                     "options",))

    def on_progress(self, plan, progress):
        # Nova's monitor already runs its downtime steps and timeouts.
        return []
