#!/bin/sh
# Build the qemu-aarch64 board's root filesystem once: a Debian arm64 system run under
# qemu-user-static, with python3, torch 2.8.0 (the newest aarch64 CPU wheel) and, where
# vendor/onnxruntime-aarch64 holds it, our onnxruntime-training wheel (a rerun installs it).
#
#   sudo hw_tests/qemu/build-rootfs.sh [ROOTFS]     (make qemu-rootfs)
#
# Needs root (debootstrap, chroot, binfmt_misc) and network for the first build. A finished
# rootfs carries a stamp file and is not built again; a half-built one is finished.
set -eu

ROOTFS=${1:-build/qemu-aarch64-rootfs}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
TORCH=${TORCH:-torch==2.8.0}
STAMP="$ROOTFS/.hiertrain-rootfs-ready"

say() { printf 'qemu-rootfs: %s\n' "$*"; }
die() { printf 'qemu-rootfs: error: %s\n' "$*" >&2; exit 1; }

# The vendored onnxruntime-training wheel for aarch64 (make ort-aarch64), installed into the
# board's Python where it is present and not yet installed: the qemu board runs engine = "ort".
install_ort() {
    WHEEL=$(ls vendor/onnxruntime-aarch64/*.whl 2>/dev/null | head -n 1 || true)
    [ -n "$WHEEL" ] || { say "no vendored onnxruntime-training wheel: the ort engine is not installed"; return 0; }
    if chroot "$ROOTFS" /usr/bin/python3 -c 'import onnxruntime.training.api' 2>/dev/null; then
        say "onnxruntime-training is installed"
        return 0
    fi
    say "pip install $(basename "$WHEEL") (vendored) and its dependencies (inside the chroot)"
    cp "$WHEEL" "$ROOTFS/tmp/"
    chroot "$ROOTFS" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin \
        PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CERT=$CA REQUESTS_CA_BUNDLE=$CA SSL_CERT_FILE=$CA \
        ${http_proxy:+http_proxy=$http_proxy} ${https_proxy:+https_proxy=$https_proxy} \
        python3 -m pip install --break-system-packages --no-cache-dir --progress-bar off \
        "/tmp/$(basename "$WHEEL")"
    rm -f "$ROOTFS/tmp/$(basename "$WHEEL")"
}
CA=/etc/ssl/certs/hiertrain-host-ca.crt

if [ -f "$STAMP" ]; then
    say "$ROOTFS is built ($(cat "$STAMP"))"
    install_ort
    exit 0
fi
[ "$(id -u)" = 0 ] || die "run as root: debootstrap, chroot and binfmt_misc need it"

if ! command -v debootstrap >/dev/null || ! command -v qemu-aarch64-static >/dev/null; then
    say "installing debootstrap qemu-user-static binfmt-support"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap qemu-user-static binfmt-support
fi

# qemu-user-static registered with binfmt_misc: the kernel runs arm64 ELF files through it.
sh "$(dirname "$0")/register-binfmt.sh"

mkdir -p "$ROOTFS"
if [ ! -x "$ROOTFS/usr/bin/python3" ]; then
    if [ ! -d "$ROOTFS/debootstrap" ]; then
        say "debootstrap stage 1: $SUITE arm64 from $MIRROR"
        debootstrap --arch=arm64 --foreign --variant=minbase \
            --include=python3,python3-pip,python3-venv,ca-certificates \
            "$SUITE" "$ROOTFS" "$MIRROR"
    fi
    # A copy inside too, for kernels whose binfmt entry lacks the F flag.
    cp /usr/bin/qemu-aarch64-static "$ROOTFS/usr/bin/"
    say "debootstrap stage 2 (under qemu-aarch64)"
    chroot "$ROOTFS" /debootstrap/debootstrap --second-stage
fi
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
# pip inside trusts what this machine trusts: behind a TLS-inspecting proxy, Debian's own CA
# bundle in the rootfs fails with CERTIFICATE_VERIFY_FAILED.
HOST_CA=${HOST_CA:-/etc/ssl/certs/ca-certificates.crt}
[ -f "$HOST_CA" ] && cp "$HOST_CA" "$ROOTFS/etc/ssl/certs/hiertrain-host-ca.crt"

say "pip install $TORCH and the edge runtime's dependencies (inside the chroot)"
# A clean environment: this machine's PIP_*, REQUESTS_CA_BUNDLE and SSL_CERT_FILE name files
# of this machine, not of the rootfs (and REQUESTS_CA_BUNDLE would override PIP_CERT).
# Debian marks its Python externally managed; this rootfs is a board of its own.
chroot "$ROOTFS" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CERT=$CA REQUESTS_CA_BUNDLE=$CA SSL_CERT_FILE=$CA \
    ${http_proxy:+http_proxy=$http_proxy} ${https_proxy:+https_proxy=$https_proxy} \
    python3 -m pip install --break-system-packages --no-cache-dir --progress-bar off \
    "$TORCH" numpy pyserial cobs click rich

ARCH=$(chroot "$ROOTFS" uname -m)
[ "$ARCH" = aarch64 ] || die "the rootfs runs as $ARCH, expected aarch64"
VERSIONS=$(chroot "$ROOTFS" /usr/bin/python3 -c \
    'import platform, torch; print(platform.python_version(), "torch", torch.__version__)')
echo "$ARCH python $VERSIONS" > "$STAMP"
install_ort
say "done: $ROOTFS ($(cat "$STAMP"))"
