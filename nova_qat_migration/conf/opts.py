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
"""Entry point for oslo-config-generator (namespace ``nova_qat_migration``).

Lists ``[qat_migration]`` and the options every installed policy declares
(``Policy.CONFIG_GROUP`` / ``CONFIG_OPTS``), found through the
``nova_qat_migration.policies`` entry points like the loader finds them.
"""

from stevedore import extension

from nova_qat_migration.conf import qat_migration

#: The policy entry-point namespace (``policy.loader.NAMESPACE``; not
#: imported from there: the configuration sits below the policies).
POLICY_NAMESPACE = 'nova_qat_migration.policies'


def list_opts():
    """``[(group, [opts])]``: ``[qat_migration]``, then policies' groups."""
    out = list(qat_migration.list_opts().items())
    return out + policy_opts()


def policy_opts():
    """``[(group, [opts])]`` declared by the installed policies, in
    entry-point name order; policies sharing a group share one entry, each
    option once. A policy that fails to import is left out (stevedore logs
    it), as the loader would refuse it.
    """
    mgr = extension.ExtensionManager(POLICY_NAMESPACE, invoke_on_load=False)
    groups = {}
    for ext in sorted(mgr, key=lambda e: e.name):
        opts = getattr(ext.plugin, 'CONFIG_OPTS', ())
        group = getattr(ext.plugin, 'CONFIG_GROUP', None)
        if not opts or group is None:
            continue
        name = getattr(group, 'name', group)
        _, listed = groups.setdefault(name, (group, []))
        listed.extend(o for o in opts if o not in listed)
    return list(groups.values())
