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
"""The lab guest: kernel + initramfs + a self-checking memory dirtier.

The guest is the host's own Debian kernel booting an initramfs whose /init
runs this package's ``data/dirtier.c`` (built static). The dirtier is
configured from the kernel command line, says ``READY`` on the serial
console once its memory is filled, and answers ``VERIFY <token>`` with
``VERIFY OK`` or ``VERIFY FAIL`` (see the C file for the protocol).

The serial port is a pty with a log file: the lab reads the guest's output
from the log (each host writes its own: the destination XML names another
file) and writes commands into the pty.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import select
import shutil
import subprocess
import tempfile
import threading
import time
import tty
from typing import Optional
from xml.sax.saxutils import escape

from nova_qat_migration_lab import qemu_build

#: The dirtier's periodic report (see dirtier.c): guest seconds since it
#: started writing, pages written so far (cumulative: it moves with the
#: guest's memory), pages/s over the last interval.
STAT_LINE = re.compile(rb'STAT t=([0-9.]+) written=(\d+) rate=(\d+)')


class StatSample(tuple):
    """One ``STAT`` line and when this host read it.

    ``(host_s, guest_t, written, rate)``: ``host_s`` is
    ``time.monotonic()`` when the console's reader got the line, so
    samples read from different hosts' consoles share one clock.
    """

    __slots__ = ()

    def __new__(cls, host_s: float, guest_t: float, written: int,
                rate: float) -> 'StatSample':
        return tuple.__new__(cls, (host_s, guest_t, written, rate))

    host_s = property(lambda self: self[0])
    guest_t = property(lambda self: self[1])
    written = property(lambda self: self[2])
    rate = property(lambda self: self[3])


#: The guest's program, this package's data (installed with it, so the
#: guest builds without a checkout).
DIRTIER_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                              'data', 'dirtier.c')


CACHE_DIR = os.environ.get('NQM_LAB_CACHE',
                           '/var/cache/nova-qat-migration/guest')

INIT_SCRIPT = """#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/dirtier </dev/ttyS0 >/dev/ttyS0 2>&1
echo "DIRTIER EXITED $?" >/dev/ttyS0
while true; do /bin/busybox sleep 3600; done
"""


class GuestError(Exception):
    """The guest could not be built, booted or asked.
    """


def find_kernel() -> str:
    """The newest host kernel image (Debian's linux-image-amd64)."""
    env = os.environ.get('NQM_LAB_KERNEL')
    if env:
        return env
    kernels = sorted(glob.glob('/boot/vmlinuz-*'))
    if not kernels:
        raise GuestError('no /boot/vmlinuz-*: install linux-image-amd64')
    return kernels[-1]


def dirtier_source() -> str:
    """Path of the dirtier's C source.

    ``NQM_DIRTIER_SRC`` overrides :data:`DIRTIER_SOURCE`.
    """
    path = os.environ.get('NQM_DIRTIER_SRC') or DIRTIER_SOURCE
    if not os.path.exists(path):
        raise GuestError('dirtier.c not found (%s)' % path)
    return path


def build(cache_dir: str = CACHE_DIR, force: bool = False) -> dict:
    """Build the dirtier and the initramfs (cached by source hash).

    :returns: ``{'kernel': path, 'initrd': path}``
    """
    busybox = shutil.which('busybox')
    if busybox is None:
        raise GuestError('busybox not installed (busybox-static)')
    src_path = dirtier_source()
    with open(src_path, 'rb') as f:
        src = f.read()
    digest = hashlib.sha256(src + INIT_SCRIPT.encode()).hexdigest()[:12]
    initrd = os.path.join(cache_dir, 'initrd-%s.cpio.gz' % digest)
    out = {'kernel': find_kernel(), 'initrd': initrd}
    if os.path.exists(initrd) and not force:
        return out
    os.makedirs(cache_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        root = os.path.join(tmp, 'root')
        for d in ('bin', 'dev', 'proc', 'sys', 'tmp'):
            os.makedirs(os.path.join(root, d))
        subprocess.run(['gcc', '-static', '-O2', '-Wall', '-o',
                        os.path.join(root, 'dirtier'), src_path],
                       check=True, capture_output=True, timeout=120)
        shutil.copy(busybox, os.path.join(root, 'bin', 'busybox'))
        os.symlink('busybox', os.path.join(root, 'bin', 'sh'))
        with open(os.path.join(root, 'init'), 'w') as f:
            f.write(INIT_SCRIPT)
        os.chmod(os.path.join(root, 'init'), 0o755)
        tmp_out = initrd + '.tmp'
        with open(tmp_out, 'wb') as f:
            find = subprocess.Popen(['find', '.'], cwd=root,
                                    stdout=subprocess.PIPE)
            cpio = subprocess.Popen(['cpio', '-o', '-H', 'newc', '--quiet'],
                                    cwd=root, stdin=find.stdout,
                                    stdout=subprocess.PIPE)
            find.stdout.close()
            gz = subprocess.run(['gzip', '-1'], stdin=cpio.stdout, stdout=f,
                                timeout=120)
            cpio.wait(timeout=60)
            find.wait(timeout=60)
            if gz.returncode or cpio.returncode or find.returncode:
                raise GuestError('initramfs build failed')
        os.rename(tmp_out, initrd)
    return out


def domain_xml(name: str, memory_mb: int, cmdline: str, images: dict,
               serial_log: str, vcpus: int = 1,
               emulator: str = qemu_build.DISTRO_EMULATOR) -> str:
    """Domain XML for a TCG guest booting the dirtier.

    No disk, no NIC, no balloon: only RAM moves, so what a run measures is
    memory migration. ``<acpi/>`` because libvirt would otherwise ask QEMU
    10 for ``-no-acpi``, which it refuses.

    :param emulator: the lab's QEMU (``Lab.emulator``: Debian's or the
        build with QATzip).
    """
    return """<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{mem}</memory>
  <vcpu>{vcpus}</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>{cmdline}</cmdline>
  </os>
  <features><acpi/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{emulator}</emulator>
    <serial type='pty'>
      <log file='{log}' append='off'/>
      <target port='0'/>
    </serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <memballoon model='none'/>
  </devices>
</domain>
""".format(name=escape(name), mem=memory_mb, vcpus=vcpus,
           kernel=escape(images['kernel']), initrd=escape(images['initrd']),
           cmdline=escape(cmdline), log=escape(serial_log),
           emulator=escape(emulator))


def with_serial_log(xml: str, serial_log: str) -> str:
    """The same domain XML writing its serial log to another file.

    Used as the migration's destination XML: both hosts share one file
    system, and each QEMU must keep its own log.
    """
    return re.sub(r"<log file='[^']*'", "<log file='%s'" % escape(serial_log),
                  xml, count=1)


class Console:
    """The guest's serial console on one host, through its pty.

    A reader thread holds the pty open (QEMU only reads a pty someone
    holds, and a full pty would stall the guest's serial port) and keeps
    what the guest wrote. Nova's ``console.log`` is not used: both hosts
    share it, and the destination truncates it when the guest arrives.
    """

    def __init__(self, dom) -> None:
        self.dom = dom
        self._token = 0
        self._fd: Optional[int] = None
        self._buf = bytearray()
        self._line = bytearray()
        self._stats: list = []
        self._lock = threading.Lock()

    def pty(self) -> str:
        from lxml import etree
        doc = etree.fromstring(self.dom.XMLDesc(0).encode())
        for serial in doc.findall('./devices/serial'):
            source = serial.find('source')
            if serial.get('type') == 'pty' and source is not None and \
                    source.get('path'):
                return source.get('path')
        raise GuestError('no serial pty in the live XML')

    def text(self) -> str:
        """Everything the guest wrote since this console was opened."""
        self.open()
        with self._lock:
            return bytes(self._buf).decode(errors='replace')

    def wait_for(self, pattern: str, timeout: float,
                 start: int = 0) -> re.Match:
        """Wait until the output (from offset ``start``) matches."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            m = rx.search(self.text(), start)
            if m:
                return m
            if time.monotonic() > deadline:
                raise GuestError('timed out after %.0fs waiting for %r; '
                                 'console tail: %r' % (
                                     timeout, pattern, self.text()[-400:]))
            time.sleep(0.2)

    def open(self) -> None:
        """Open the pty and start collecting the guest's output."""
        if self._fd is not None:
            return
        fd = os.open(self.pty(), os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(fd)
        self._fd = fd
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True,
                                        name='lab-console')
        self._reader.start()
        # QEMU notices a newly connected pty on a 1 s timer.
        time.sleep(1.2)

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._fd], [], [], 0.5)
                if ready:
                    data = os.read(self._fd, 65536)
                    if not data:
                        time.sleep(0.2)
                        continue
                    self._take_stats(data, time.monotonic())
                    with self._lock:
                        self._buf += data
                        if len(self._buf) > 4 * 1024 * 1024:
                            del self._buf[:len(self._buf) // 2]
            except (OSError, ValueError):
                # The QEMU behind the pty is gone (the guest moved).
                return

    def _take_stats(self, data: bytes, now: float) -> None:
        """Keep the ``STAT`` lines in ``data`` with the time they came."""
        self._line += data
        *lines, rest = bytes(self._line).split(b'\n')
        self._line = bytearray(rest[-4096:])
        found = [StatSample(now, float(m.group(1)), int(m.group(2)),
                            float(m.group(3)))
                 for m in map(STAT_LINE.search, lines) if m]
        if found:
            with self._lock:
                self._stats += found
                del self._stats[:-100000]

    def stats(self) -> list:
        """The :class:`StatSample` s read so far (oldest first)."""
        with self._lock:
            return list(self._stats)

    def wait_for_stat(self, after: float, timeout: float
                      ) -> Optional[StatSample]:
        """The first ``STAT`` read after ``after`` (monotonic), waiting up
        to ``timeout`` seconds; None if none came.
        """
        self.open()
        deadline = time.monotonic() + timeout
        while True:
            later = [s for s in self.stats() if s.host_s > after]
            if later:
                return later[0]
            if time.monotonic() > deadline:
                return None
            time.sleep(0.1)

    def close(self) -> None:
        if self._fd is None:
            return
        self._stop.set()
        self._reader.join(timeout=2)
        try:
            os.close(self._fd)
        except OSError:
            pass
        self._fd = None

    def send(self, line: str) -> None:
        self.open()
        os.write(self._fd, (line + '\n').encode())

    def verify(self, timeout: float = 120) -> tuple[bool, str]:
        """Ask the dirtier to check every page: (ok, the verdict line)."""
        self._token += 1
        token = 'v%d-%d' % (os.getpid(), self._token)
        start = len(self.text())
        self.send('VERIFY %s' % token)
        m = self.wait_for(r'VERIFY (OK|FAIL) %s[^\r\n]*' % re.escape(token),
                          timeout, start=max(0, start - 1))
        return m.group(1) == 'OK', m.group(0)

    def set_rate(self, pages_per_s: int, timeout: float = 30) -> None:
        """Change the dirtier's rewrite rate (``RATE``) and wait for its
        answer.
        """
        start = len(self.text())
        self.send('RATE %d' % pages_per_s)
        self.wait_for(r'RATE rate=%d\b' % pages_per_s, timeout,
                      start=max(0, start - 1))

    def rate(self) -> Optional[float]:
        """The dirtier's last reported achieved pages/s."""
        found = re.findall(r'STAT t=\S+ written=\d+ rate=(\d+)', self.text())
        return float(found[-1]) if found else None
