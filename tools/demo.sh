#!/usr/bin/env bash
# The README's main job: set the machine up, then migrate one busy guest
# between two real libvirt hosts (network namespaces on this machine) with
# Nova's default plan and with the adaptive plan, and compare them.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
bash tools/bootstrap.sh
. tools/env.sh
exec "$VENV/bin/nova-qat-migration-lab" --repo-root "$PWD" demo "$@"
