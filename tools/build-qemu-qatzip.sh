#!/usr/bin/env bash
# Build QEMU with QATzip (multifd compression method `qatzip`) into its own
# prefix, next to -- never instead of -- the distro's QEMU.
#
#   tools/build-qemu-qatzip.sh [--force]
#
# The QEMU is the same upstream version as the installed qemu-system-x86
# (Debian 12: bookworm-backports, Debian 13: the normal package), built from
# the .orig tarball of Debian's source package (fetched with apt through a
# private source list; on bookworm-backports only the .orig is on the
# mirror, so the Debian patches are not applied on either release). QATzip
# comes from Debian 13's libqatzip-dev: the system package on 13, unpacked
# into $QATZIP_PREFIX (beside the runtime libraries tools/setup-host.sh puts
# there) on 12, found at run time through an rpath, so a libvirt-started
# QEMU needs no LD_LIBRARY_PATH. Firmware is the system's (/usr/share/qemu,
# /usr/share/seabios, /usr/lib/ipxe/qemu).
#
# Built once per machine: a stamp keyed by the distro QEMU version and this
# script's hash (comments aside) makes a second run return at once. On
# success the path of the built qemu-system-x86_64 is the only thing
# written to stdout; progress goes to stderr, the build log to
# $PREFIX/build.log.
#
# tools/run-tests.sh (the test command, so CI) runs it before the suites.
# Cost on 2 cores (Debian 12, 2026-11-30), a fresh prefix and scratch dir:
# 426 s (7.1 min): 380 s compile, 16 s configure, ~30 s for the rest
# (private apt index, QATzip .debs, the 39 MB .orig, checks, install); a
# run compiling every default target (QEMU's tests too) took 542 s under
# other load. Not counted there: apt installing the build dependencies a
# fresh machine lacks after tools/setup-host.sh (glib, pixman, zstd, lz4
# and numa headers, flex, bison, ninja, meson...: ~9 MB to download,
# ~33 MB installed, ~15-40 s).
#
# Environment: NQM_QEMU_QATZIP_PREFIX (default /opt/nova-qat-migration/
# qemu-qatzip), QATZIP_PREFIX (Debian 12 only, default /opt/nova-qat-
# migration/qatzip), NQM_QEMU_BUILD_DIR (scratch, removed on success unless
# NQM_KEEP_BUILD=1), NQM_QEMU_BUILD_JOBS (default 2).
#
# QATzip's warnings without QAT hardware (what operators will see)
# ---------------------------------------------------------------
# Without a usable QAT device, every multifd packet (512 KiB of guest
# pages) adds three lines to QEMU's stderr on the source AND on the
# destination -- under libvirt, the domain's log in /var/log/libvirt/qemu/:
#     Cannot open /dev/vfio                                     (qatlib)
#     [Error] [<time>] (qatzip.c:697): Error no hardware, switch to SW if permitted
#     [Warning] [<time>] (qatzip.c:698): g_process.qz_init_status = QZ_NO_HW
# Measured here (QEMU 10.0.2, QATzip 1.3.1, qatlib 24.02): 64 MiB of
# non-zero pages, 2 channels -> 134 blocks, 402 lines, 26 KB per side, i.e.
# ~6,400 lines (~420 KB) per GiB of non-zero RAM; zstd: 0 lines.
# Why per packet: QEMU calls qzInit(sw_backup=1) once per channel, but
# QATzip calls qzInit again inside every qzCompress/qzDecompress, and a
# failed hardware probe leaves qat_available reset to QZ_NONE (stopQat), so
# the next call probes -- and logs -- again (intel/QATzip issue #113, closed
# as fixed by the logging rework of QATzip 1.3.2; Debian 13 ships 1.3.1).
# How to quiet it (checked with a small program against these libraries):
#   * QATzip's two lines obey qzSetLogLevel(); default LOG_WARNING; there is
#     no environment variable, config file or session parameter for it, and
#     QEMU's multifd-qatzip.c never calls it. qzSetLogLevel(LOG_NONE) before
#     qzInit -- a one-line QEMU patch in migration/multifd-qatzip.c --
#     removes them (and every real QATzip error with them).
#   * qatlib's "Cannot open /dev/vfio" is qat_log(LOG_LEVEL_ERROR): a plain
#     vfprintf(stderr), no level, switch or environment variable. It goes
#     away only when /dev/vfio exists in QEMU's view (vfio loaded); with
#     /dev/vfio present and LOG_NONE the fallback is silent.
#   * Bounded, not quiet: virtlogd (qemu.conf stdio_handler = "logd", the
#     default) rotates a domain log at max_size (2 MiB) keeping max_backups
#     (3): ~5 GiB of RAM sent fills one file and pushes earlier lines out.
#   * The probe itself is cheap (one failed openat per packet).
# With hardware: qzInit succeeds once per process (QZ_OK); every later call
# returns QZ_DUPLICATE at its first check -- no probe, no per-packet lines.
# But a QAT host whose libvirt-started QEMU cannot reach the device
# (libvirt's private /dev for QEMU and cgroup_device_acl must include
# /dev/vfio/vfio and the VF groups; AppArmor; the qemu user's permissions;
# locked-memory limit for vfio DMA) falls back to software and prints
# exactly these lines: there they are the only sign that qatzip runs on
# the CPU. Not verifiable here (no QAT): read from QATzip/qatlib source.
set -Eeuo pipefail

SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
PREFIX=${NQM_QEMU_QATZIP_PREFIX:-/opt/nova-qat-migration/qemu-qatzip}
QATZIP_PREFIX=${QATZIP_PREFIX:-/opt/nova-qat-migration/qatzip}
WORK=${NQM_QEMU_BUILD_DIR:-/var/tmp/nova-qat-migration-qemu-build}
JOBS=${NQM_QEMU_BUILD_JOBS:-2}
BIN=$PREFIX/bin/qemu-system-x86_64
STAMP=$PREFIX/.build-stamp
LOG=$PREFIX/build.log
FIRMWARE=/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu
DEB_ARCHIVE=http://deb.debian.org/debian
DEB_SECURITY=http://deb.debian.org/debian-security
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
START=$(date +%s)
FORCE=0
case "${1:-}" in
    --force) FORCE=1 ;;
    '') ;;
    -h|--help) sed -n '2,/NQM_QEMU_BUILD_JOBS (default/p' "$SCRIPT" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $0 [--force]" >&2; exit 2 ;;
esac

say() {
    local line
    line="build-qemu-qatzip: $*"
    echo "$line" >&2
    if [ -w "$(dirname "$LOG")" ]; then echo "$(date '+%F %T') $line" >>"$LOG"; fi
}

elapsed() { echo "$(( $(date +%s) - START )) s"; }

log_tail() {
    if [ -s "$LOG" ]; then
        echo "build-qemu-qatzip: last lines of $LOG:" >&2
        tail -n 30 "$LOG" | sed 's/^/    /' >&2 || true
    fi
}

die() {
    trap - ERR
    log_tail
    say "ERROR: $*"
    say "failed after $(elapsed); build log: $LOG"
    exit 1
}

on_error() {
    local rc=$? line=$1 cmd=$2
    trap - ERR
    # A failing command inside a subshell: let the parent report it once.
    [ "$BASH_SUBSHELL" = 0 ] || exit "$rc"
    log_tail
    echo "build-qemu-qatzip: ERROR: '$cmd' failed (exit $rc, line $line)" >&2
    echo "build-qemu-qatzip: failed after $(elapsed); build log: $LOG" >&2
    exit 1
}
trap 'on_error $LINENO "$BASH_COMMAND"' ERR

# Run a build step with its output in the log only.
logged() { "$@" >>"$LOG" 2>&1; }

deb_version() {
    case "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" in
        *' ok installed') dpkg-query -W -f='${Version}' "$1" ;;
    esac
}

# 1:10.0.2+ds-2+deb13u1~bpo12+1 -> 10.0.2
upstream_of() {
    local v=${1#*:}
    v=${v%-*}
    echo "${v%%[+~]*}"
}

# ---------------------------------------------------------------- cached?
DISTRO_VERSION=$(deb_version qemu-system-x86)
[ -n "$DISTRO_VERSION" ] || {
    echo "build-qemu-qatzip: ERROR: qemu-system-x86 is not installed;" \
         "run tools/setup-host.sh first" >&2; exit 1; }
UPSTREAM=$(upstream_of "$DISTRO_VERSION")
# Comments do not count: editing them must not cost a rebuild.
SCRIPT_HASH=$(grep -v '^[[:space:]]*#' "$SCRIPT" | sha256sum | cut -c1-16)
KEY="qemu=$DISTRO_VERSION script=$SCRIPT_HASH"

is_built() {
    [ -f "$STAMP" ] && [ "$(head -n1 "$STAMP")" = "$KEY" ] && [ -x "$BIN" ] &&
        env -u LD_LIBRARY_PATH "$BIN" --version 2>/dev/null |
            grep -q "version $UPSTREAM\b"
}

if [ "$FORCE" = 0 ] && is_built; then
    echo "build-qemu-qatzip: QEMU $UPSTREAM with QATzip already built ($(elapsed))" >&2
    echo "$BIN"
    exit 0
fi

# ----------------------------------------------------------------- build
[ "$(id -u)" = 0 ] || { echo "build-qemu-qatzip: ERROR: run as root" >&2; exit 1; }
mkdir -p "$PREFIX"
exec 9>"$PREFIX/.build-lock"
if ! flock -n 9; then
    echo "build-qemu-qatzip: another build holds $PREFIX/.build-lock; waiting" >&2
    flock -w 3600 9 || { echo "build-qemu-qatzip: ERROR: lock wait timed out" >&2; exit 1; }
    if [ "$FORCE" = 0 ] && is_built; then
        echo "build-qemu-qatzip: built by the other run ($(elapsed))" >&2
        echo "$BIN"
        exit 0
    fi
fi
: >"$LOG"
say "building QEMU $UPSTREAM (distro $DISTRO_VERSION) with QATzip into $PREFIX"

# shellcheck disable=SC1091
. /etc/os-release
MAJOR=$(cut -d. -f1 /etc/debian_version)
CODENAME=${VERSION_CODENAME:-}
case "$MAJOR" in
    12|13) ;;
    *) die "Debian 12 or 13 expected, found $(cat /etc/debian_version)" ;;
esac
[ -n "$CODENAME" ] || die "no VERSION_CODENAME in /etc/os-release"
if dpkg --compare-versions "$UPSTREAM" lt 9.2; then
    die "the installed QEMU $UPSTREAM has no qatzip method (QEMU 9.2+);" \
        "install QEMU 10 with tools/setup-host.sh"
fi
avail_kb=$(df -Pk "$(dirname "$WORK")" | awk 'NR == 2 {print $4}')
[ "$avail_kb" -gt $((3 * 1024 * 1024)) ] || die "less than 3 GiB free under $(dirname "$WORK")"

rm -rf "$WORK"
mkdir -p "$WORK"
export DEBIAN_FRONTEND=noninteractive
APT=(apt-get -y -q -o DPkg::Lock::Timeout=1800
     -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

# ------------------------------------------------------ build dependencies
build_deps=(gcc libc6-dev make pkg-config ninja-build python3 python3-venv
            python3-tomli libglib2.0-dev libpixman-1-dev flex bison
            libzstd-dev liblz4-dev zlib1g-dev libnuma-dev xz-utils)
if [ "$MAJOR" = 12 ]; then
    newer_deps=(meson python3-pycotap)    # meson >= 1.5: bookworm-backports
else
    build_deps+=(meson python3-pycotap libqatzip-dev libqatzip3 qatzip libqat4 libusdm0)
    newer_deps=()
fi
missing=()
for p in "${build_deps[@]}" "${newer_deps[@]}"; do
    [ -n "$(deb_version "$p")" ] || missing+=("$p")
done
meson_v=$(deb_version meson)
if [ -n "$meson_v" ] && dpkg --compare-versions "$meson_v" lt 1.5; then
    missing+=(meson)
fi
apt_install() {
    # Retry once after refreshing the lists (a stale list names files the
    # mirror no longer has).
    logged "${APT[@]}" install --no-install-recommends "$@" ||
        { logged "${APT[@]}" update && logged "${APT[@]}" install --no-install-recommends "$@"; }
}
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing build dependencies: ${missing[*]}"
    base=() newer=()
    for p in "${missing[@]}"; do
        if [[ " ${newer_deps[*]:-} " == *" $p "* ]]; then newer+=("$p"); else base+=("$p"); fi
    done
    [ "${#base[@]}" = 0 ] || apt_install "${base[@]}" || die "apt-get install ${base[*]} failed"
    if [ "${#newer[@]}" -gt 0 ]; then
        apt_install -t "$CODENAME-backports" "${newer[@]}" ||
            die "apt-get install -t $CODENAME-backports ${newer[*]} failed" \
                "(is $CODENAME-backports in apt's sources? tools/setup-host.sh adds it)"
    fi
fi
meson_v=$(deb_version meson)
dpkg --compare-versions "${meson_v:-0}" ge 1.5 || die "meson >= 1.5 needed, have ${meson_v:-none}"

# ---------------------------------------------- private apt configuration
# Our own source list and state: the system's apt configuration is untouched.
PAPT=$WORK/apt
mkdir -p "$PAPT/parts" "$PAPT/lists/partial" "$PAPT/archives/partial"
{
    printf 'Types: deb-src\nURIs: %s\nSuites: %s %s-updates %s-backports\n' \
        "$DEB_ARCHIVE" "$CODENAME" "$CODENAME" "$CODENAME"
    printf 'Components: main\nSigned-By: %s\n\n' "$KEYRING"
    printf 'Types: deb-src\nURIs: %s\nSuites: %s-security\n' "$DEB_SECURITY" "$CODENAME"
    printf 'Components: main\nSigned-By: %s\n' "$KEYRING"
    if [ "$MAJOR" = 12 ]; then     # QATzip's headers exist only from Debian 13
        printf '\nTypes: deb\nURIs: %s\nSuites: trixie\n' "$DEB_ARCHIVE"
        printf 'Components: main\nSigned-By: %s\n' "$KEYRING"
    fi
} >"$PAPT/parts/nqm.sources"
PAPT_OPTS=(-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$PAPT/parts"
           -o Dir::State::Lists="$PAPT/lists" -o Dir::Cache::Archives="$PAPT/archives"
           -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
           -o APT::Sandbox::User=root)
say "reading Debian's source index (private apt list)"
logged apt-get "${PAPT_OPTS[@]}" -q update || die "apt-get update (private list) failed"

# ------------------------------------------------------------------ QATzip
if [ "$MAJOR" = 12 ]; then
    QATZIP_LIBDIR=$QATZIP_PREFIX/usr/lib/x86_64-linux-gnu
    want=()
    [ -e "$QATZIP_LIBDIR/libqatzip.so.3" ] || want+=(libqatzip3)
    [ -e "$QATZIP_LIBDIR/libqat.so.4" ] || want+=(libqat4)
    [ -e "$QATZIP_LIBDIR/libusdm.so.0" ] || want+=(libusdm0)
    [ -e "$QATZIP_PREFIX/usr/include/qatzip.h" ] || want+=(libqatzip-dev)
    if [ "${#want[@]}" -gt 0 ]; then
        say "unpacking Debian 13 ${want[*]} into $QATZIP_PREFIX"
        (cd "$PAPT/archives" && logged apt-get "${PAPT_OPTS[@]}" -q download "${want[@]}") ||
            die "apt-get download ${want[*]} (trixie) failed"
        mkdir -p "$QATZIP_PREFIX"
        for deb in "$PAPT"/archives/*.deb; do logged dpkg-deb -x "$deb" "$QATZIP_PREFIX"; done
    fi
    pc=$QATZIP_LIBDIR/pkgconfig/qatzip.pc
    [ -f "$pc" ] || die "$pc missing after unpacking libqatzip-dev"
    # The .pc says prefix=/usr; point it at the private prefix.
    sed -i "s|^prefix=.*|prefix=$QATZIP_PREFIX/usr|" "$pc"
    export PKG_CONFIG_PATH=$QATZIP_LIBDIR/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
    # DT_RPATH (not RUNPATH): it also serves libqatzip's own dependencies
    # (libqat, libusdm), which sit in the same private directory.
    RPATH_LDFLAGS="-Wl,--disable-new-dtags -Wl,-rpath,$QATZIP_LIBDIR"
else
    QATZIP_LIBDIR=/usr/lib/x86_64-linux-gnu
    RPATH_LDFLAGS=
fi
QATZIP_VERSION=$(pkg-config --modversion qatzip) || die "pkg-config cannot find qatzip"
say "QATzip $QATZIP_VERSION ($QATZIP_LIBDIR)"

# ------------------------------------------------------------ QEMU source
SRCDIR=$WORK/src
mkdir -p "$SRCDIR"
# The exact installed version's source package, else another Debian
# revision of the same upstream version (only its .orig is used).
src_version=$DISTRO_VERSION
src_versions=$(apt-cache "${PAPT_OPTS[@]}" showsrc qemu 2>/dev/null | sed -n 's/^Version: //p' || true)
if ! grep -qxF "$src_version" <<<"$src_versions"; then
    src_version=
    for v in $src_versions; do
        if [ "$(upstream_of "$v")" = "$UPSTREAM" ]; then src_version=$v; break; fi
    done
    [ -n "$src_version" ] || die "no Debian source package of QEMU $UPSTREAM in" \
        "$CODENAME{,-updates,-backports,-security}"
    say "source $DISTRO_VERSION not in the index; using $src_version (same upstream)"
fi
say "downloading source qemu=$src_version"
if ! (cd "$SRCDIR" && logged apt-get "${PAPT_OPTS[@]}" -q source --download-only "qemu=$src_version"); then
    # bookworm-backports: the .dsc and .debian.tar.xz answer 404 on the
    # mirror, the .orig is there. apt keeps the files that did arrive (each
    # checked against the index); the .orig is all this build uses.
    say "apt-get source failed (known for bookworm-backports: .dsc and" \
        ".debian.tar.xz are 404); building from the .orig alone"
fi
find_orig() {   # a .FAILED file is one apt refused (hash mismatch)
    find "$SRCDIR" -maxdepth 1 -type f -name 'qemu_*.orig.tar.*' ! -name '*.FAILED' | head -n1
}
if [ -z "$(find_orig)" ]; then
    # Not even the .orig came: fetch it alone, checked against the index.
    mkdir -p "$WORK/uris"
    line=$(cd "$WORK/uris" && apt-get "${PAPT_OPTS[@]}" -q source --print-uris "qemu=$src_version" |
        grep -E "^'[^']+' [^ ]+\.orig\.tar\.[a-z0-9]+ " | head -n1) ||
        die "no .orig tarball listed for qemu=$src_version"
    read -r url name _size hash <<<"$line"
    url=${url//\'/}
    (cd "$SRCDIR" && logged /usr/lib/apt/apt-helper download-file "$url" "$name" "$hash") ||
        die "download of $url failed"
fi
orig=$(find_orig)
[ -n "$orig" ] || die "no .orig tarball downloaded for qemu=$src_version"
say "unpacking $(basename "$orig")"
tar -C "$SRCDIR" -xf "$orig"
QEMU_SRC=$(find "$SRCDIR" -mindepth 1 -maxdepth 1 -type d -name 'qemu*' | head -n1)
[ -f "$QEMU_SRC/configure" ] || die "no QEMU source tree in $orig"
[ "$(cat "$QEMU_SRC/VERSION")" = "$UPSTREAM" ] ||
    die "source tree is QEMU $(cat "$QEMU_SRC/VERSION"), expected $UPSTREAM"

# Debian's +ds tarball drops the edk2 .fd.bz2 blobs, yet meson.build plans
# to unpack them whenever bzip2 is installed (even with
# --disable-install-blobs). Unpack only what is there.
if grep -q "^    unpack_edk2_blobs = bzip2.found()$" "$QEMU_SRC/meson.build"; then
    sed -i "s|^    unpack_edk2_blobs = bzip2.found()$|    unpack_edk2_blobs = bzip2.found() and fs.exists('pc-bios/edk2-x86_64-code.fd.bz2')|" \
        "$QEMU_SRC/meson.build"
elif [ ! -e "$QEMU_SRC/pc-bios/edk2-x86_64-code.fd.bz2" ]; then
    say "warning: edk2 guard not applied (meson.build changed); configure may fail"
fi

# --------------------------------------------------------------- configure
BUILD=$WORK/build
mkdir -p "$BUILD"
say "configuring"
t0=$(date +%s)
(cd "$BUILD" && logged env PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    "$QEMU_SRC/configure" \
    --prefix="$PREFIX" \
    --python=/usr/bin/python3 \
    --target-list=x86_64-softmmu \
    --without-default-features \
    --enable-qatzip --enable-zstd --enable-kvm --enable-tcg --enable-pixman \
    --disable-fdt --disable-download --disable-install-blobs --disable-docs \
    --disable-werror --disable-tools --disable-guest-agent --disable-user \
    --enable-strip \
    --firmwarepath="$FIRMWARE" \
    --with-pkgversion="nova-qat-migration qatzip build of Debian $DISTRO_VERSION" \
    ${RPATH_LDFLAGS:+--extra-ldflags="$RPATH_LDFLAGS"}) ||
    die "configure failed"
grep -q "qatzip support *: *YES" "$LOG" || die "configure did not enable qatzip"
say "configured in $(( $(date +%s) - t0 )) s; compiling (ninja -j$JOBS, nice 10)"

# ------------------------------------------------------------------ build
# Only what gets installed (qemu-system-x86_64, trace-events-all): the
# default target would also compile QEMU's unit tests and the Berkeley
# softfloat/testfloat suites, a quarter of all the build steps.
t0=$(date +%s)
MESON=$BUILD/pyvenv/bin/meson
[ -x "$MESON" ] || MESON=meson
targets=$(env PATH=/usr/sbin:/usr/bin:/sbin:/bin "$MESON" introspect --targets "$BUILD" |
    /usr/bin/python3 -c '
import json, os, sys
build = sys.argv[1]
print(" ".join(sorted({os.path.relpath(f, build) for t in json.load(sys.stdin)
                       if t.get("installed") for f in t["filename"]})))' "$BUILD") ||
    die "meson introspect --targets failed"
[[ " $targets " == *" qemu-system-x86_64 "* ]] ||
    die "qemu-system-x86_64 is not among the installed targets: $targets"
# shellcheck disable=SC2086 # one word per target
logged env PATH=/usr/sbin:/usr/bin:/sbin:/bin nice -n 10 ninja -C "$BUILD" -j "$JOBS" $targets ||
    die "compile failed"
say "compiled $targets in $(( $(date +%s) - t0 )) s"
STAGE=$WORK/stage
logged env PATH=/usr/sbin:/usr/bin:/sbin:/bin DESTDIR="$STAGE" \
    "$MESON" install -C "$BUILD" --no-rebuild || die "install (staging) failed"
SBIN=$STAGE$PREFIX/bin/qemu-system-x86_64
[ -x "$SBIN" ] || die "no qemu-system-x86_64 in the staged install"

# ----------------------------------------------------------------- checks
# Run without LD_LIBRARY_PATH, as libvirt would.
check() {
    local bin=$1 out
    out=$(env -u LD_LIBRARY_PATH "$bin" --version) || die "$bin does not start: $out"
    grep -q "version $UPSTREAM\b" <<<"$out" || die "$bin reports '$out', expected $UPSTREAM"
    if env -u LD_LIBRARY_PATH ldd "$bin" | grep -q 'not found'; then
        die "$bin: unresolved libraries: $(env -u LD_LIBRARY_PATH ldd "$bin" | grep 'not found' | tr -s ' \n' ' ')"
    fi
    env -u LD_LIBRARY_PATH /usr/bin/python3 - "$bin" <<'PY' >>"$LOG" 2>&1 ||
import json, subprocess, sys
p = subprocess.Popen([sys.argv[1], '-machine', 'none', '-nodefaults',
                      '-display', 'none', '-qmp', 'stdio'],
                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                     stderr=subprocess.DEVNULL, text=True)
def reply(cmd):
    p.stdin.write(json.dumps({'execute': cmd}) + '\n')
    p.stdin.flush()
    while True:
        msg = json.loads(p.stdout.readline())
        if 'return' in msg or 'error' in msg:
            return msg
try:
    json.loads(p.stdout.readline())          # greeting
    reply('qmp_capabilities')
    schema = {e['name']: e for e in reply('query-qmp-schema')['return']}
    args = schema[schema['migrate-set-parameters']['arg-type']]
    member, = [m for m in args['members'] if m['name'] == 'multifd-compression']
    methods = schema[member['type']]['values']
    print('multifd-compression:', ' '.join(methods))
    sys.exit(0 if 'qatzip' in methods else 1)
finally:
    p.kill()
    p.wait()
PY
        die "$bin: QMP schema does not list qatzip for multifd-compression"
}
check "$SBIN"

# ---------------------------------------------------------------- install
rm -f "$STAMP"
for d in "$STAGE$PREFIX"/*; do rm -rf "${PREFIX:?}/$(basename "$d")"; done
cp -a "$STAGE$PREFIX/." "$PREFIX/"
check "$BIN"
{
    echo "$KEY"
    echo "upstream=$UPSTREAM source=$src_version qatzip=$QATZIP_VERSION qatzip_libdir=$QATZIP_LIBDIR"
    echo "built=$(date -u '+%FT%TZ') seconds=$(( $(date +%s) - START ))"
} >"$STAMP.tmp"
mv "$STAMP.tmp" "$STAMP"
if [ -z "${NQM_KEEP_BUILD:-}" ]; then rm -rf "$WORK"; fi
say "done in $(elapsed): $(du -sh "$PREFIX" | cut -f1) in $PREFIX," \
    "qemu-system-x86_64 $(du -h "$BIN" | cut -f1)"
echo "$BIN"
