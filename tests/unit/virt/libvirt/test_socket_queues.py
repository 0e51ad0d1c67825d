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
"""The migration connections' send buffers, read from a /proc/sys tree."""

import os

import fixtures

from nova_qat_migration.virt.libvirt import socket_queues
from tests.unit import base

#: Linux's defaults: notsent_lowat unlimited, send buffers up to 4 MiB.
UNLIMITED = '4294967295'
WMEM = '4096\t16384\t4194304'


def write_proc_sys(root, wmem=WMEM, lowat=UNLIMITED):
    """A /proc/sys tree with the two TCP settings (None: absent)."""
    base_dir = os.path.join(root, 'net', 'ipv4')
    os.makedirs(base_dir, exist_ok=True)
    for name, value in (('tcp_wmem', wmem), ('tcp_notsent_lowat', lowat)):
        path = os.path.join(base_dir, name)
        if value is None:
            if os.path.exists(path):
                os.unlink(path)
            continue
        with open(path, 'w') as f:
            f.write(value + '\n')
    return root


class TestSocketQueues(base.TestCase):

    def setUp(self):
        super().setUp()
        self.root = self.useFixture(fixtures.TempDir()).path

    def test_linux_defaults_hold_the_whole_send_buffer(self):
        write_proc_sys(self.root)
        self.assertEqual(4 * 1024 * 1024,
                         socket_queues.unsent_cap_bytes(self.root))

    def test_notsent_lowat_caps_it(self):
        write_proc_sys(self.root, lowat='131072')
        self.assertEqual(131072, socket_queues.unsent_cap_bytes(self.root))

    def test_small_send_buffers_cap_it_without_lowat(self):
        write_proc_sys(self.root, wmem='4096 16384 65536')
        self.assertEqual(65536, socket_queues.unsent_cap_bytes(self.root))

    def test_unreadable_assumes_linux_default(self):
        write_proc_sys(self.root, wmem=None, lowat='garbage')
        self.assertEqual(socket_queues.LINUX_WMEM_MAX,
                         socket_queues.unsent_cap_bytes(self.root))

    def test_pause_excess_is_queues_over_link(self):
        # 4 connections x 4 MiB at 250 Mbit/s: 537 ms, which is what the
        # lab's scale model paused beyond QEMU's limit at most (700 - 300).
        excess = socket_queues.pause_excess_ms(4 * 1024 * 1024, 4, 0.25)
        self.assertAlmostEqual(536.9, excess, places=1)
        self.assertAlmostEqual(excess / 4,
                               socket_queues.pause_excess_ms(
                                   4 * 1024 * 1024, 1, 0.25))
        self.assertEqual(0.0, socket_queues.pause_excess_ms(1, 4, 0.0))

    def test_advice_names_the_sysctl_and_the_bound(self):
        write_proc_sys(self.root)
        text = socket_queues.advice(
            socket_queues.unsent_cap_bytes(self.root), 4, 0.25, 500)
        self.assertIn('net.ipv4.tcp_notsent_lowat = 131072', text)
        self.assertIn('4096 KiB each', text)
        self.assertIn('537 ms', text)
        self.assertIn('target 500 ms', text)

    def test_no_advice_when_capped(self):
        write_proc_sys(self.root, lowat=str(
            socket_queues.RECOMMENDED_NOTSENT_LOWAT))
        self.assertIsNone(socket_queues.advice(
            socket_queues.unsent_cap_bytes(self.root), 4, 0.25, 500))
