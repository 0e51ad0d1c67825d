#!/usr/bin/env bash
# Prepare a fresh Debian 12/13 machine: system packages (tools/setup-host.sh)
# and a virtualenv at $VENV (default .venv) with nova-qat-migration installed
# (non-editable, so the nova.virt shim lands inside Nova's package) and,
# next to it, the lab: its own distribution (lab/setup.cfg, the
# nova-qat-migration-lab command), which compute nodes never get.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
if [ -z "${SKIP_SETUP_HOST:-}" ]; then
    bash tools/setup-host.sh
fi
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --upgrade pip >/dev/null 2>&1 || true
"$VENV/bin/pip" install -q -c constraints.txt -r requirements.txt \
    -r test-requirements.txt -r doc/requirements.txt -r lab/requirements.txt
# The product first, then the lab: upgrading a venv whose product still
# carried the lab (before it became its own distribution) must not let the
# product's uninstall remove the lab just installed.
"$VENV/bin/pip" install -q --no-deps -c constraints.txt .
"$VENV/bin/pip" install -q --no-deps -c constraints.txt ./lab
echo "bootstrap: $("$VENV/bin/python" --version), nova $("$VENV/bin/python" -c 'import nova.version as v; print(v.version_string())')"
