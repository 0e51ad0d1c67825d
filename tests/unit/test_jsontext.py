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
"""JSON text scanned for its nesting before it is parsed."""

import json

import testtools

from nova_qat_migration import jsontext


class TestJsonText(testtools.TestCase):

    def test_depth_skips_brackets_in_strings(self):
        self.assertEqual(0, jsontext.max_depth('"[[[" 1'))
        self.assertEqual(2, jsontext.max_depth('{"a": [1, "]]]{{", 2]}'))
        self.assertEqual(3, jsontext.max_depth('[[["\\"["]]]'))

    def test_depth_of_a_parser_breaking_document(self):
        text = '[' * 100000 + ']' * 100000
        self.assertEqual(100000, jsontext.max_depth(text))
        self.assertRaises(RecursionError, json.loads, text)

    def test_prune_drops_only_what_nests_too_deep(self):
        text = json.dumps({'keep': [1, {'x': 2}], 'deep': [[[[3]]]],
                           's': '[[[['})
        pruned = json.loads(jsontext.prune(text, 3))
        self.assertEqual([1, {'x': 2}], pruned['keep'])
        self.assertEqual([[None]], pruned['deep'])
        self.assertEqual('[[[[', pruned['s'])

    def test_prune_leaves_shallow_text_as_it_is(self):
        text = '{"a": [1, 2], "b": "]"}'
        self.assertEqual(text, jsontext.prune(text, 2))
        self.assertEqual('not json [', jsontext.prune('not json [', 5))
