#!/usr/bin/env bash
# The project's test command (README): set the machine up, build the QEMU
# with QATzip (tools/build-qemu-qatzip.sh: once per machine, cached by its
# stamp), then run the unit, functional (Nova's in-process stack) and lab
# (real libvirt + QEMU migrations) suites. The benchmark is its own
# command (nova-qat-migration-lab bench [--quick]). Ends with
# one line "tests: N passed, M failed, K skipped".
#
# The lab's qatzip tests need that build: this command sets
# NQM_REQUIRE_QATZIP_QEMU=1, so they fail (not skip) without it, and a
# failed build counts as a failure of its own with its reason printed
# (again just above the final line).
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
# Horizon's browser test needs Debian's chromium and chromium-driver.
export NQM_BROWSER=1
run_start=$(date +%s)
bash tools/bootstrap.sh || { echo "bootstrap failed"; exit 1; }
echo "=== bootstrap: $(( $(date +%s) - run_start )) s"
. tools/env.sh
PY="$VENV/bin/python"
passed=0 failed=0 skipped=0 rc=0
log=$(mktemp)
# What failed, printed again just above the last line (a CI log cut to
# its tail still names every failed test and the end of its traceback).
summary=$(mktemp)
failures_of_last_run() {
    "$PY" -m stestr last --subunit 2>/dev/null \
        | "$PY" tools/stestr-failures.py "$@"
}
# A count from the totals of the stestr run logged in $log ("" if none).
stestr_count() {
    sed -n "s/^ - $1: \([0-9]*\).*/\1/p" "$log" | tail -1
}
run_suite() {
    local name=$1; shift
    echo "=== $name"
    local t0=$(date +%s)
    "$PY" -m stestr --test-path "$@" 2>&1 | tee "$log"
    local st=${PIPESTATUS[0]}
    echo "=== $name: $(( $(date +%s) - t0 )) s"
    local p f s
    p=$(stestr_count Passed); f=$(stestr_count Failed)
    s=$(stestr_count Skipped)
    # The lab's tests drive real QEMU guests on two shared cores: a test
    # that fails is run once more, on its own, and one that then passes
    # is counted as passed but named FLAKY in the summary (never hidden).
    if [ -n "${RETRY_SUITE:-}" ] && [ "$st" != 0 ] && [ -n "$p" ] \
            && [ "${f:-0}" -gt 0 ] && [ "${f:-0}" -le 5 ]; then
        local first
        first=$(failures_of_last_run --ids)
        { echo "=== $name: failed on the first run:"
          failures_of_last_run; } | tee -a "$summary"
        echo "=== $name: running the failed tests once more"
        "$PY" -m stestr --test-path "$1" run --concurrency 1 --failing \
            2>&1 | tee "$log"
        st=${PIPESTATUS[0]}
        local p2 f2
        p2=$(stestr_count Passed); f2=$(stestr_count Failed)
        p=$((p + ${p2:-0})); f=${f2:-$f}
        local again
        again=$(failures_of_last_run --ids)
        for t in $first; do
            if ! grep -qx "$t" <<<"$again"; then
                echo "=== FLAKY (failed, then passed alone): $t" \
                    | tee -a "$summary"
            fi
        done
        echo "=== $name (with the rerun): $(( $(date +%s) - t0 )) s"
    elif [ "$st" != 0 ]; then
        failures_of_last_run >>"$summary"
    fi
    passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
    skipped=$((skipped + ${s:-0}))
    if [ "$st" != 0 ] || [ -z "$p" ]; then
        echo "=== $name: FAILED (exit $st)" | tee -a "$summary"; rc=1
        [ -z "$f" ] || [ "$f" != 0 ] || failed=$((failed + 1))
    fi
}
# The QEMU with QATzip, for the lab's qatzip tests. The build script
# installs its own build dependencies from Debian's archive and prints
# the binary's path; its progress and errors go to stderr. It runs without
# env.sh's LD_LIBRARY_PATH (pkg-config finds QATzip, the binary its rpath).
export NQM_REQUIRE_QATZIP_QEMU=1
qatzip_failure=
echo "=== qatzip QEMU (tools/build-qemu-qatzip.sh, cached per machine)"
build_start=$(date +%s)
if qatzip_qemu=$(env -u LD_LIBRARY_PATH bash tools/build-qemu-qatzip.sh); then
    echo "=== qatzip QEMU: $qatzip_qemu ready in $(( $(date +%s) - build_start )) s"
    # The tests use exactly this binary (also under a custom
    # NQM_QEMU_QATZIP_PREFIX).
    export NQM_QEMU_QATZIP=$qatzip_qemu
else
    st=$?
    qatzip_failure="qatzip QEMU build FAILED (exit $st, after $(( $(date +%s) - build_start )) s; see build-qemu-qatzip's lines above): the lab's qatzip tests fail without it"
    echo "=== $qatzip_failure"
    failed=$((failed + 1)); rc=1
fi
run_suite unit ./tests/unit run
if [ -d tests/functional ] && ls tests/functional/test_*.py >/dev/null 2>&1; then
    run_suite functional ./tests/functional run --concurrency 2
fi
# The operator's cloud (every service its own process, RabbitMQ, MariaDB)
# the lab's surface tests drive, on the QATzip QEMU when it was built. It
# comes up in the background while the suites that need no cloud run
# (Nova's own tests, the documentation): its output is printed after
# them. A failed bring-up counts as a failure (its reason is printed) and
# the surface tests then start one themselves.
cloud_qemu=distro
[ -n "$qatzip_failure" ] || cloud_qemu=qatzip
cloud_log=$(mktemp)
cloud_t0=$(date +%s)
(
    "$VENV/bin/nova-qat-migration-lab" --repo-root "$PWD" cloud down \
        >/dev/null 2>&1
    "$VENV/bin/nova-qat-migration-lab" --repo-root "$PWD" cloud up \
        --qemu "$cloud_qemu"
) >"$cloud_log" 2>&1 &
cloud_pid=$!
# Nova's own libvirt live-migration unit tests, with QATLibvirtDriver
# (policy nova_default) as the driver under test.
run_suite nova-lm ./tests/nova_lm --top-dir ./ run \
    'live_migration|LiveMigration|_live_migr'
# The documentation (tox -e docs), warnings as errors: one suite.
echo "=== docs (sphinx-build -W)"
docs_out=$(mktemp -d)
if "$VENV/bin/sphinx-build" -q -W --keep-going -b html doc/source \
        "$docs_out"; then
    passed=$((passed + 1))
else
    echo "=== docs: FAILED" | tee -a "$summary"
    failed=$((failed + 1)); rc=1
fi
# The release notes as reno's Sphinx extension renders them
# (tox -e releasenotes); reno's scan of the history is printed only when
# they fail.
echo "=== release notes (reno lint, sphinx-build -W)"
reno_log=$(mktemp)
if "$VENV/bin/reno" lint >"$reno_log" 2>&1 && "$VENV/bin/sphinx-build" \
        -q -W --keep-going -b html releasenotes/source \
        "$docs_out/releasenotes" >>"$reno_log" 2>&1; then
    passed=$((passed + 1))
else
    grep -v ': \(adding\|copying data for\|update to\) releasenotes/' \
        "$reno_log" | tail -40
    echo "=== release notes: FAILED" | tee -a "$summary"
    failed=$((failed + 1)); rc=1
fi
rm -f "$reno_log"
echo "=== cloud up (nova-qat-migration-lab cloud up --qemu $cloud_qemu)"
if wait "$cloud_pid"; then
    tail -5 "$cloud_log"
    passed=$((passed + 1))
    echo "=== cloud up: $(( $(date +%s) - cloud_t0 )) s"
else
    cat "$cloud_log"
    echo "=== cloud up: FAILED" | tee -a "$summary"
    failed=$((failed + 1)); rc=1
fi
rm -f "$cloud_log"
if [ -d tests/lab ] && ls tests/lab/test_*.py >/dev/null 2>&1; then
    RETRY_SUITE=1 run_suite lab ./tests/lab run --concurrency 1
fi
echo "=== cloud down"
"$VENV/bin/nova-qat-migration-lab" --repo-root "$PWD" cloud down
# Its life cycle: nothing left after down, a second (warm) up works.
run_suite cloud-lifecycle ./tests/cloud_lifecycle --top-dir ./ run \
    --concurrency 1
rm -rf "$docs_out"
rm -f "$log"
[ -z "$qatzip_failure" ] || echo "=== $qatzip_failure"
if [ -s "$summary" ]; then
    echo "=== what failed (repeated from above)"
    cat "$summary"
fi
rm -f "$summary"
echo "=== total: $(( $(date +%s) - run_start )) s"
echo "tests: $passed passed, $failed failed, $skipped skipped"
exit $rc
