#!/usr/bin/env bash
# Install the system packages nova-qat-migration needs on Debian 12 or 13:
# QEMU 10 + libvirt 11 (bookworm-backports on Debian 12), libvirt headers for
# libvirt-python, the guest build tools, and QATzip/qatlib (apt on Debian 13,
# Debian 13 packages unpacked into a private prefix on Debian 12).
#
# Idempotent. Usage: tools/setup-host.sh [QATZIP_PREFIX]
set -euo pipefail

QATZIP_PREFIX=${1:-${QATZIP_PREFIX:-/opt/nova-qat-migration/qatzip}}
export DEBIAN_FRONTEND=noninteractive
major=$(cut -d. -f1 /etc/debian_version)
APT="apt-get -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"

common_pkgs=(pkg-config gcc libc6-dev python3-dev python3-venv make iproute2 busybox-static cpio gzip
             linux-image-amd64 kmod procps
             # The lab's operator cloud (nova-qat-migration-lab cloud up):
             # its database, message bus and token cache.
             mariadb-server rabbitmq-server memcached)
virt_pkgs=(qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients libvirt-dev)
qat_pkgs=(libqatzip3 qatzip libqat4 libusdm0)
# Horizon's browser test (the test command sets NQM_BROWSER=1; the demo
# does not need a browser).
browser_pkgs=()
[ "${NQM_BROWSER:-0}" = 1 ] && browser_pkgs=(chromium chromium-driver)
common_pkgs+=("${browser_pkgs[@]}")

if [ "$major" = "12" ]; then
    if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
        cat > /etc/apt/sources.list.d/nova-qat-migration-backports.sources <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    fi
    $APT update
    $APT install --no-install-recommends "${common_pkgs[@]}"
    $APT install --no-install-recommends -t bookworm-backports "${virt_pkgs[@]}"
    # QATzip exists only in Debian 13: fetch its .debs through a private apt
    # source list and unpack them into a prefix (software fallback works).
    if [ ! -e "$QATZIP_PREFIX/usr/lib/x86_64-linux-gnu/libqatzip.so.3" ]; then
        tmp=$(mktemp -d)
        mkdir -p "$tmp/lists/partial" "$tmp/archives/partial"
        cat > "$tmp/trixie.sources" <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
        opts=(-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$tmp"
              -o Dir::State::Lists="$tmp/lists" -o Dir::Cache::Archives="$tmp/archives"
              -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null)
        mv "$tmp/trixie.sources" "$tmp/trixie.sources.tmp"
        mkdir -p "$tmp/parts" && mv "$tmp/trixie.sources.tmp" "$tmp/parts/trixie.sources"
        opts[3]=Dir::Etc::SourceParts="$tmp/parts"
        apt-get "${opts[@]}" update -q
        (cd "$tmp/archives" && apt-get "${opts[@]}" download "${qat_pkgs[@]}")
        mkdir -p "$QATZIP_PREFIX"
        for deb in "$tmp"/archives/*.deb; do dpkg-deb -x "$deb" "$QATZIP_PREFIX"; done
        rm -rf "$tmp"
    fi
    echo "QATZIP_LIBDIR=$QATZIP_PREFIX/usr/lib/x86_64-linux-gnu"
else
    $APT update
    $APT install --no-install-recommends "${common_pkgs[@]}" "${virt_pkgs[@]}" "${qat_pkgs[@]}"
    echo "QATZIP_LIBDIR=/usr/lib/x86_64-linux-gnu"
fi
# The system libvirtd is not used (the lab runs its own daemons); keep it from
# holding the default sockets busy.
systemctl disable --now libvirtd.service libvirtd.socket virtqemud.socket 2>/dev/null || true
qemu-system-x86_64 --version | head -1
libvirtd --version
