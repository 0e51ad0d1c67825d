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
"""Sphinx configuration: ``tox -e docs`` (warnings are errors)."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
# The checkout first (what is being documented: the product and the lab,
# its own distribution under lab/), then local extensions.
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, 'lab'))
sys.path.insert(0, os.path.join(HERE, '_exts'))

extensions = [
    'openstackdocstheme',
    'oslo_config.sphinxext',
    'oslo_config.sphinxconfiggen',
    'sphinx.ext.autodoc',
    'sphinxarg.ext',
    'myst_parser',
    'qat_keys',
]

# -- openstackdocstheme ----------------------------------------------------
openstackdocs_repo_name = 'openstack/nova-qat-migration'
openstackdocs_bug_project = 'nova-qat-migration'
openstackdocs_bug_tag = ''
openstackdocs_auto_name = False
# The version comes from the installed package (pbr), not the theme's guess.
openstackdocs_auto_version = False

# -- oslo.config -----------------------------------------------------------
config_generator_config_file = os.path.join(
    REPO, 'tools', 'config', 'nova-qat-migration-config-generator.conf')
sample_config_basename = '_static/nova-qat-migration'

# -- general ---------------------------------------------------------------
project = 'nova-qat-migration'
copyright = 'nova-qat-migration developers'
master_doc = 'index'
source_suffix = {'.rst': 'restructuredtext'}
exclude_patterns = ['_build']
pygments_style = 'native'
autodoc_member_order = 'bysource'
autodoc_typehints = 'none'
# Only Markdown that is included from benchmarks/ is parsed by MyST; its
# headings become this page's sub-sections.
myst_heading_anchors = 0
suppress_warnings = ['myst.header']

html_theme = 'openstackdocs'
html_static_path = ['_static']
html_title = 'nova-qat-migration'
