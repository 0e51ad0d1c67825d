#!/usr/bin/env bash
# The README's main job: set the machine up (its output goes to
# demo-setup.log), bring up the operator's cloud (each service logs to its
# own file under /var/log/nqm-cloud) and migrate one busy guest between two
# real libvirt hosts with Nova's default plan and with the adaptive plan.
# The terminal shows the story: each host's configuration, the commands,
# the facts, the plan and its reasons, the escalations, the outcome.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
log=$PWD/demo-setup.log
started=$(date +%s)
echo "== Setting the machine up (Debian packages, Python environment): $log"
if ! bash tools/bootstrap.sh >"$log" 2>&1; then
    tail -n 30 "$log"
    echo "set-up failed; the whole log is $log" >&2
    exit 1
fi
echo "   done in $(( $(date +%s) - started )) s: $(tail -n 1 "$log")"
. tools/env.sh
"$VENV/bin/nova-qat-migration-lab" --repo-root "$PWD" demo "$@" 2> >(
    grep -v -e 'EventletDeprecationWarning' -e 'Eventlet is deprecated' \
        -e 'we strongly recommend' -e 'If you are already using Eventlet' \
        -e 'framework.  For more detail' -e 'eventlet.readthedocs' \
        -e '^  import eventlet' -e '^$' >&2)
echo "== Done in $(( $(date +%s) - started )) s. The cloud is still up: nova-qat-migration-lab cloud status|down"
