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
"""Migration data that waits in the host's TCP send buffers.

QEMU counts bytes as transferred once they are written into a migration
connection, and switches over when what remains fits its downtime limit
at the rate it measured. What still waits in the connections' send
buffers at that moment is not in its sum, yet it has to cross the link
while the guest is paused. Linux lets one connection hold up to
``net.ipv4.tcp_wmem``'s maximum (4 MiB by default) of data not yet sent
unless ``net.ipv4.tcp_notsent_lowat`` caps it, and a multifd plan opens
one connection per channel: on a link-bound migration the pause can
outlast QEMU's limit by up to connections x queue / link rate, whatever
limit it is given.

Measured in the lab's scale model (250 Mbit/s, the ``static`` policy's
zstd-1 on 4 channels, QEMU given 300 ms of a 500 ms target): the guest
paused 605 ms (median of 3, 583-700) with Linux's defaults, 346 ms
(339-443) with ``tcp_notsent_lowat = 131072``, the migration taking as
long (``benchmarks/socket-queues``). The cap is the host operator's to set;
this module reads it and says what it costs (``nova-qat-migration
status``, a warning when nova-compute starts).
"""

from __future__ import annotations

import os
from typing import Any, Optional

from nova_qat_migration import conf as qat_conf

#: The ``net.ipv4.tcp_notsent_lowat`` the documentation recommends for the
#: migration network (bytes).
RECOMMENDED_NOTSENT_LOWAT = 131072
#: A queue above this (bytes per connection) gets a warning.
WARN_ABOVE = 1024 * 1024
#: Linux's own default maximum of ``net.ipv4.tcp_wmem`` (bytes), assumed
#: when the value cannot be read.
LINUX_WMEM_MAX = 4 * 1024 * 1024


def _read_ints(path: str) -> Optional[list]:
    try:
        with open(path) as f:
            return [int(v) for v in f.read().split()]
    except (OSError, ValueError):
        return None


def unsent_cap_bytes(proc_sys: str = '/proc/sys') -> int:
    """The most data not yet sent one TCP connection of this host may hold.

    The smaller of ``tcp_notsent_lowat`` (unlimited unless set) and the
    largest send buffer ``tcp_wmem`` allows; Linux's default maximum when
    neither can be read. Read in the caller's network namespace: on a
    compute host nova-compute and QEMU share the host's.
    """
    base = os.path.join(proc_sys, 'net', 'ipv4')
    wmem = _read_ints(os.path.join(base, 'tcp_wmem'))
    lowat = _read_ints(os.path.join(base, 'tcp_notsent_lowat'))
    cap = wmem[-1] if wmem else LINUX_WMEM_MAX
    if lowat:
        cap = min(cap, lowat[0])
    return max(0, cap)


def pause_excess_ms(cap_bytes: int, connections: int,
                    link_gbps: float) -> float:
    """The most a switch-over pause can outlast QEMU's limit (ms) when
    every connection's queue is full on a link of ``link_gbps``.
    """
    if link_gbps <= 0:
        return 0.0
    return 1000.0 * cap_bytes * max(1, connections) * 8 / (link_gbps * 1e9)


def advice(cap_bytes: int, connections: int, link_gbps: float,
           downtime_ms: int) -> Optional[str]:
    """A warning for the operator, or None when the queues are small.

    :param cap_bytes: the host's :func:`unsent_cap_bytes`.
    :param connections: the most channels a plan may open
        (``[qat_migration] max_parallel_connections``).
    :param link_gbps: the migration link (``[qat_migration] link_gbps``).
    :param downtime_ms: the downtime target (``[libvirt]
        live_migration_downtime``).
    """
    if cap_bytes <= WARN_ABOVE:
        return None
    excess = pause_excess_ms(cap_bytes, connections, link_gbps)
    return ('net.ipv4.tcp_notsent_lowat does not cap the data a migration '
            'connection may hold unsent (%d KiB each): with %d '
            'connection(s) on a %g Gbit/s link a switch-over pause can '
            'outlast QEMU\'s downtime limit by up to %.0f ms (target %d '
            'ms). Set net.ipv4.tcp_notsent_lowat = %d on the compute '
            'hosts (sysctl) to keep the pause within the target.'
            % (cap_bytes // 1024, max(1, connections), link_gbps, excess,
               downtime_ms, RECOMMENDED_NOTSENT_LOWAT))


def advice_from_conf(conf: Any, cap_bytes: int) -> Optional[str]:
    """:func:`advice` for the options in force: the channels a plan may
    open, the migration link and the downtime target.
    """
    return advice(cap_bytes,
                  qat_conf.nova_ceiling(conf, 'max_parallel_connections'),
                  conf.qat_migration.link_gbps,
                  qat_conf.nova_ceiling(conf, 'downtime_ms'))
