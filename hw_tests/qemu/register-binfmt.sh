#!/bin/sh
# Register qemu-aarch64 with binfmt_misc so that the kernel runs arm64 ELF files through
# qemu-user-static (root). Idempotent; the build and `make hil-qemu` both call it, since the
# registration does not survive a reboot or a fresh container.
set -eu
BINFMT=/proc/sys/fs/binfmt_misc
CONF=/usr/lib/binfmt.d/qemu-aarch64.conf
die() { printf 'qemu-binfmt: error: %s\n' "$*" >&2; exit 1; }

[ -f "$BINFMT/register" ] || mount -t binfmt_misc binfmt_misc "$BINFMT" \
    || die "cannot mount binfmt_misc on $BINFMT (run as root; a container needs the privilege)"
if [ ! -f "$BINFMT/qemu-aarch64" ]; then
    [ -f "$CONF" ] || die "$CONF missing: apt-get install -y qemu-user-static"
    # The F flag in the .conf opens the interpreter now: a chroot needs no copy of it.
    cat "$CONF" > "$BINFMT/register" || die "cannot register $CONF with binfmt_misc"
fi
grep -q '^enabled' "$BINFMT/qemu-aarch64" || die "binfmt_misc qemu-aarch64 is not enabled"
