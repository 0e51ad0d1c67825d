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
"""When the cloud counts an API as up: it answers ``/`` without a server
error. A service that answers 500 (Horizon without the module its session
cache needs, on a fresh machine) is up and broken: ``cloud up`` waits,
then fails naming the answer, instead of the browser tests failing later
on a login page that never comes.
"""

import http.server
import threading

import testtools

from nova_qat_migration_lab import services


class _Handler(http.server.BaseHTTPRequestHandler):
    code = 500

    def do_GET(self):
        self.send_response(self.code)
        self.end_headers()
        self.wfile.write(b'answer')

    def log_message(self, *args):
        pass


class TestApiAnswers(testtools.TestCase):

    def setUp(self):
        super().setUp()
        handler = type('Handler', (_Handler,), {})
        self.handler = handler
        server = http.server.HTTPServer(('127.0.0.1', 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        self.cloud = services.ServiceCloud()
        self.cloud.url = lambda service, path: 'http://127.0.0.1:%d%s' % (
            server.server_port, path)

    def test_server_error_is_not_up(self):
        self.assertFalse(self.cloud._api_answers('horizon'))
        self.assertEqual({'horizon': 'HTTP 500 on /'},
                         self.cloud._api_errors)

    def test_any_other_answer_is_up(self):
        for code in (200, 300, 401):
            self.handler.code = code
            self.assertTrue(self.cloud._api_answers('keystone'), code)

    def test_nothing_listening_is_not_up(self):
        self.cloud.url = lambda service, path: 'http://127.0.0.1:9/'
        self.assertFalse(self.cloud._api_answers('glance'))
        self.assertEqual({}, self.cloud._api_errors)
