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
"""Lease pool under many native threads."""

import threading
import time

import testtools

from nova_qat_migration.qat import leases


class Boom(Exception):
    pass


class TestLeasePool(testtools.TestCase):

    def test_basic(self):
        pool = leases.LeasePool(['pfA', 'pfB'])
        with pool.lease('i1') as a, pool.lease('i2') as b, \
                pool.lease('i3') as c:
            self.assertEqual(('i1', 0, 'pfA'),
                             (a.instance_uuid, a.slot, a.pf_address))
            self.assertEqual('pfB', b.pf_address)
            self.assertIsNone(c)
            self.assertEqual(0, pool.free)
            self.assertEqual(2, pool.in_use)
            self.assertEqual([a, b], pool.held())
        self.assertEqual(2, pool.free)

    def test_released_on_exception(self):
        pool = leases.LeasePool(1)

        def migrate():
            with pool.lease('i1') as lease:
                self.assertIsNotNone(lease)
                raise Boom()

        self.assertRaises(Boom, migrate)
        self.assertEqual(1, pool.free)
        self.assertEqual(0, pool.in_use)

    def test_empty_pool(self):
        pool = leases.LeasePool()
        with pool.lease('i1') as lease:
            self.assertIsNone(lease)
        pool.release(None)

    def test_shrink_keeps_held_leases(self):
        pool = leases.LeasePool(3)
        held = [pool.acquire('i%d' % i) for i in range(3)]
        pool.resize(1)
        self.assertEqual(0, pool.free)
        self.assertIsNone(pool.acquire('x'))
        pool.release(held[0])
        pool.release(held[2])
        self.assertEqual(0, pool.free)    # slot 1 still held, capacity 1
        pool.release(held[1])
        self.assertEqual(1, pool.free)
        self.assertEqual(0, pool.acquire('y').slot)

    def test_double_release_is_harmless(self):
        pool = leases.LeasePool(1)
        lease = pool.acquire('i')
        pool.release(lease)
        other = pool.acquire('j')
        pool.release(lease)          # stale: must not free j's slot
        self.assertEqual(0, pool.free)
        pool.release(other)
        self.assertEqual(1, pool.free)

    def test_many_threads_never_exceed_capacity(self):
        capacity = 4
        pool = leases.LeasePool(capacity)
        lock = threading.Lock()
        state = {'now': 0, 'max': 0, 'got': 0, 'none': 0, 'errors': 0}
        slots_seen = set()

        def worker(n):
            for i in range(25):
                try:
                    with pool.lease('inst-%d-%d' % (n, i)) as lease:
                        if lease is None:
                            with lock:
                                state['none'] += 1
                            continue
                        with lock:
                            state['now'] += 1
                            state['got'] += 1
                            state['max'] = max(state['max'], state['now'])
                            slots_seen.add(lease.slot)
                            held = [x.slot for x in pool.held()]
                        assert len(held) == len(set(held)) <= capacity
                        time.sleep(0.0005)
                        with lock:
                            state['now'] -= 1
                        if (n + i) % 3 == 0:
                            raise Boom()
                except Boom:
                    with lock:
                        state['errors'] += 1

        threads = [threading.Thread(target=worker, args=(n,))
                   for n in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertLessEqual(state['max'], capacity)
        self.assertGreater(state['got'], 0)
        self.assertGreater(state['none'], 0)
        self.assertGreater(state['errors'], 0)
        self.assertEqual(800, state['got'] + state['none'])
        self.assertTrue(slots_seen <= set(range(capacity)))
        # None leaked, exceptions included.
        self.assertEqual(0, pool.in_use)
        self.assertEqual(capacity, pool.free)

    def test_exactly_capacity_concurrent_holders(self):
        pool = leases.LeasePool(3)
        barrier = threading.Barrier(10)
        results = []
        lock = threading.Lock()

        def worker(n):
            with pool.lease('i%d' % n) as lease:
                with lock:
                    results.append(lease)
                barrier.wait(timeout=10)   # everybody holds or has None

        threads = [threading.Thread(target=worker, args=(n,))
                   for n in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        got = [r for r in results if r is not None]
        self.assertEqual(3, len(got))
        self.assertEqual({0, 1, 2}, {r.slot for r in got})
        self.assertEqual(3, pool.free)
