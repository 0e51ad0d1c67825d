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
"""Sphinx configuration of the release notes: ``tox -e releasenotes``.

The notes are ``releasenotes/notes/*.yaml`` (reno), rendered by reno's
Sphinx extension from the git history, as OpenStack projects publish
them.
"""

extensions = [
    'openstackdocstheme',
    'reno.sphinxext',
]

# -- openstackdocstheme ----------------------------------------------------
openstackdocs_repo_name = 'openstack/nova-qat-migration'
openstackdocs_bug_project = 'nova-qat-migration'
openstackdocs_bug_tag = ''
openstackdocs_auto_name = False
openstackdocs_auto_version = False

# -- general ---------------------------------------------------------------
project = 'nova-qat-migration Release Notes'
copyright = 'nova-qat-migration developers'
master_doc = 'index'
source_suffix = {'.rst': 'restructuredtext'}
exclude_patterns = ['_build']
pygments_style = 'native'
# No version: the notes say which release each belongs to.
version = ''
release = ''

html_theme = 'openstackdocs'
html_static_path = ['_static']
html_title = 'nova-qat-migration Release Notes'

# Internationalization: as OpenStack's release notes.
locale_dirs = ['locale/']
