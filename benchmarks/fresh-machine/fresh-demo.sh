#!/bin/bash
# The README's main job on a fresh Debian 12 root (debootstrap, chroot),
# timed from the first command: what a new operator's machine runs.
R=/srv/fresh
set -u
mount --bind $R $R
mount -t proc proc $R/proc
mount --rbind /sys $R/sys && mount --make-rslave $R/sys
mount --rbind /dev $R/dev && mount --make-rslave $R/dev
mount -t tmpfs tmpfs $R/run
mount -t tmpfs tmpfs $R/tmp
start=$(date +%s)
chroot $R /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 TERM=dumb SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DEFAULT_TIMEOUT=180 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    bash -c 'cd /root/nqm && tools/demo.sh'
rc=$?
echo "FRESH DEMO rc=$rc in $(( $(date +%s) - start )) s"
chroot $R /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin bash -c \
    'cd /root/nqm && .venv/bin/nova-qat-migration-lab --repo-root $PWD cloud down' 2>&1 | tail -3
for p in /proc/[0-9]*; do
    [ "$(readlink $p/root 2>/dev/null)" = "$R" ] && echo "left: $(cat $p/cmdline | tr '\0' ' ' | cut -c1-100)" && kill -9 ${p#/proc/} 2>/dev/null
done
sleep 2
umount -R $R/tmp $R/run $R/dev $R/sys $R/proc 2>&1 | tail -3; umount -R $R
