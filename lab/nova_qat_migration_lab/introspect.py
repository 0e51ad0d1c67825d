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
"""What the lab reads from a compute's driver, through its public API.

The lab never touches the driver's private state. It reads what
``QATLibvirtDriver.qat_introspect()`` returns (a read-only snapshot: the
host's migration capabilities, the live sessions, the budget, the history
and the QAT device manager) and changes one thing only, through the
driver's documented test fixture ``qat_set_test_capabilities()``: the
capabilities a host advertises, to pretend it decodes ``qatzip`` (Debian's
QEMU cannot) or that its libvirt is older. Every such use is in this
module, so that the lab depends on that API and nothing else.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Iterator, Mapping


def view(driver: Any) -> dict:
    """The driver's introspection snapshot (``{}`` for another driver)."""
    introspect = getattr(driver, 'qat_introspect', None)
    return dict(introspect()) if introspect is not None else {}


def capabilities(driver: Any) -> Any:
    """The host's ``HostMigrationCaps`` (None before the first probe)."""
    return view(driver).get('capabilities')


def manager(driver: Any) -> Any:
    """The driver's QAT device manager (None without one)."""
    return view(driver).get('manager')


def set_capabilities(driver: Any, caps: Any) -> None:
    """Make the driver plan with ``caps`` (the documented test fixture)."""
    driver.qat_set_test_capabilities(caps)


@contextlib.contextmanager
def pretend(computes: Mapping[str, Any], **changes: Any) -> Iterator[dict]:
    """Each compute's capabilities with ``changes``, then its own again.

    ``changes`` are fields of ``HostMigrationCaps``; a value that is a
    callable is given the host's current value (e.g. ``multifd_methods=
    lambda m: m | {'qatzip'}``). Hosts not probed yet are left alone.
    On the way out, the changed fields get their own values back (on what
    the host advertises then: a re-probe meanwhile is kept). Yields
    ``{host: the capabilities it had}``.
    """
    saved = {}
    for name, compute in computes.items():
        caps = capabilities(compute.driver)
        if caps is None:
            continue
        saved[name] = caps
        set_capabilities(compute.driver, dataclasses.replace(caps, **{
            field: value(getattr(caps, field)) if callable(value) else value
            for field, value in changes.items()}))
    try:
        yield saved
    finally:
        for name, caps in saved.items():
            compute = computes.get(name)
            if compute is not None:
                now = capabilities(compute.driver) or caps
                set_capabilities(compute.driver, dataclasses.replace(
                    now, **{field: getattr(caps, field)
                            for field in changes}))
