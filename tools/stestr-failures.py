#!/usr/bin/env python3
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
"""The failed tests of a subunit v2 stream (``stestr last --subunit``),
one block each: the test's id and the end of its traceback.

The test command prints these blocks again just above its last line, so
that a CI log cut to its tail still names what failed and why (stestr
prints each failure's details, the nova-compute logs the lab attaches
among them, long before the end).

Usage: stestr last --subunit | stestr-failures.py [--ids] [--lines N]
"""

import argparse
import sys

import subunit
import testtools


class _Failures(testtools.StreamResult):
    """Collects, per failed test, the text of its ``traceback`` detail."""

    def __init__(self) -> None:
        super().__init__()
        self.status_of: dict = {}
        self.tracebacks: dict = {}

    def status(self, test_id=None, test_status=None, file_name=None,
               file_bytes=None, **kwargs) -> None:
        if not test_id:
            return
        if test_status:
            self.status_of[test_id] = test_status
        if file_name == 'traceback' and file_bytes:
            self.tracebacks[test_id] = self.tracebacks.get(
                test_id, b'') + file_bytes

    def failed(self) -> list:
        return sorted(t for t, s in self.status_of.items()
                      if s in ('fail', 'uxsuccess'))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--ids', action='store_true',
                        help='print only the failed tests\' ids')
    parser.add_argument('--lines', type=int, default=12,
                        help='lines of each traceback to print (its end)')
    args = parser.parse_args()
    result = _Failures()
    subunit.ByteStreamToStreamResult(
        sys.stdin.buffer, non_subunit_name='stdout').run(result)
    for test_id in result.failed():
        if args.ids:
            print(test_id)
            continue
        text = result.tracebacks.get(test_id, b'').decode('utf-8',
                                                           'replace')
        tail = [line for line in text.splitlines() if line.strip()]
        print('--- FAILED %s' % test_id)
        for line in tail[-args.lines:]:
            print('    %s' % line[:300])
    return 0


if __name__ == '__main__':
    sys.exit(main())
