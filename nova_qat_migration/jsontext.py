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
"""JSON text read for its nesting without being parsed.

Python's JSON parser gives up on a whole document that nests a few
thousand levels deep (``RecursionError``). Text that may come from
anyone (a history file, facts given to the CLI) is scanned first: its
brackets outside strings tell how deep it nests, and which values to
drop, before :func:`json.loads` sees it.
"""

from __future__ import annotations

from typing import Iterator


def brackets(text: str) -> Iterator[tuple[int, str, int]]:
    """``(index, bracket, depth)`` for each bracket of ``text`` outside
    its strings; ``depth`` counts the opening bracket itself (1 at the
    top), and a closing bracket has its opener's depth.
    """
    depth = 0
    in_string = escaped = False
    for i, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == '\\':
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in '[{':
            depth += 1
            yield i, char, depth
        elif char in ']}':
            yield i, char, depth
            depth -= 1


def max_depth(text: str) -> int:
    """How deep ``text``'s arrays and objects nest (0: none)."""
    return max((depth for _i, _char, depth in brackets(text)), default=0)


def prune(text: str, limit: int) -> str:
    """``text`` with every array or object nested deeper than ``limit``
    replaced by ``null``: it costs only the values that nest that deep,
    and a text that is not JSON stays not JSON.
    """
    out = []
    keep_from = 0
    pruned_at = None        # depth of the container being dropped
    for i, char, depth in brackets(text):
        if char in '[{':
            if depth > limit and pruned_at is None:
                out.append(text[keep_from:i])
                out.append('null')
                pruned_at = depth
        elif pruned_at is not None and depth == pruned_at:
            pruned_at = None
            keep_from = i + 1
    if pruned_at is None:
        out.append(text[keep_from:])
    return ''.join(out)
