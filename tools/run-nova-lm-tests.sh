#!/usr/bin/env bash
# Run Nova's own libvirt live-migration unit tests with the driver under
# test being QATLibvirtDriver ([qat_migration] policy = nova_default), and
# once more with Nova's LibvirtDriver for a baseline.
#
#   tools/run-nova-lm-tests.sh [FILTER_REGEX]   (default: live migration)
#
# How: tests/nova_lm is a stestr test path whose package __init__ rebinds
# nova.virt.libvirt.driver.LibvirtDriver to QATLibvirtDriver before Nova's
# test modules load (QAT_LM_DRIVER=nova skips that).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
FILTER=${1:-'live_migration|LiveMigration|_live_migr'}
CONCURRENCY=${CONCURRENCY:-2}
export OS_STDOUT_CAPTURE=1 OS_STDERR_CAPTURE=1 OS_TEST_TIMEOUT=160

run() {
    local driver=$1 log
    log=$(mktemp)
    local start=$SECONDS rc=0
    QAT_LM_DRIVER=$driver "$PY" -m stestr --test-path ./tests/nova_lm \
        --top-dir ./ run --concurrency "$CONCURRENCY" "$FILTER" \
        >"$log" 2>&1 || rc=$?
    local passed failed skipped
    passed=$(sed -n 's/^ - Passed: //p' "$log" | tail -1)
    failed=$(sed -n 's/^ - Failed: //p' "$log" | tail -1)
    skipped=$(sed -n 's/^ - Skipped: //p' "$log" | tail -1)
    echo "$driver: passed=${passed:-0} failed=${failed:-0}" \
         "skipped=${skipped:-0} in $((SECONDS - start)) s (rc=$rc)"
    if [ "$rc" -ne 0 ]; then
        grep -E '^(FAIL|ERROR)|\.\.\. FAILED' "$log" | head -40 || true
        echo "full log: $log"
    else
        rm -f "$log"
    fi
    return "$rc"
}

rc=0
stats=$(mktemp)
export QAT_LM_STATS=$stats
run qat || rc=$?
echo "  QATLibvirtDriver planning during these tests:" \
     "$(grep -c '^ok' "$stats" || true) planned," \
     "$(grep -c '^error' "$stats" || true) planning errors"
rm -f "$stats"
unset QAT_LM_STATS
if [ "${BASELINE:-1}" = 1 ]; then
    run nova || rc=$?
fi
exit "$rc"
