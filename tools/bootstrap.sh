#!/usr/bin/env bash
# Prepare a fresh Debian 12/13 machine: system packages (tools/setup-host.sh)
# and a virtualenv at $VENV (default .venv) with nova-qat-migration installed
# (non-editable, so the nova.virt shim lands inside Nova's package) and,
# next to it, the lab: its own distribution (lab/setup.cfg, the
# nova-qat-migration-lab command), which compute nodes never get.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
# The Debian packages install while pip fetches the Python ones: on a fresh
# machine each takes minutes, mostly waiting on the network. Only
# libvirt-python waits for them (it builds against libvirt-dev).
host_log=
if [ -z "${SKIP_SETUP_HOST:-}" ]; then
    host_log=$(mktemp)
    bash tools/setup-host.sh >"$host_log" 2>&1 &
    host_pid=$!
fi
wait_for_host() {
    [ -n "$host_log" ] || return 0
    local st=0
    wait "$host_pid" || st=$?
    cat "$host_log"
    rm -f "$host_log"
    host_log=
    if [ "$st" != 0 ]; then
        echo "tools/setup-host.sh failed (exit $st)" >&2
        exit "$st"
    fi
}
trap wait_for_host EXIT
if [ ! -x "$VENV/bin/python" ]; then
    python3 -c 'import ensurepip' 2>/dev/null || wait_for_host
    python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --upgrade pip >/dev/null 2>&1 || true
without_libvirt=$(mktemp)
grep -v '^libvirt-python' requirements.txt >"$without_libvirt"
"$VENV/bin/pip" install -q -c constraints.txt -r "$without_libvirt" \
    -r test-requirements.txt -r doc/requirements.txt -r lab/requirements.txt
rm -f "$without_libvirt"
wait_for_host
"$VENV/bin/pip" install -q -c constraints.txt -r requirements.txt
# The product first, then the lab: upgrading a venv whose product still
# carried the lab (before it became its own distribution) must not let the
# product's uninstall remove the lab just installed.
"$VENV/bin/pip" install -q --no-deps -c constraints.txt .
"$VENV/bin/pip" install -q --no-deps -c constraints.txt ./lab
echo "bootstrap: $("$VENV/bin/python" --version), nova $("$VENV/bin/python" -c 'import nova.version as v; print(v.version_string())')"
