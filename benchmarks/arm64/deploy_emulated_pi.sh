#!/usr/bin/env bash
# Deploy to an emulated 64-bit Raspberry Pi: a Debian bookworm arm64 root (Pi OS is
# bookworm-based) built with debootstrap, run through qemu-user-static, with OpenSSH inside on
# a loopback port.  Then `deploy.sh --bench` against it: the aarch64 wheels (numpy,
# ai-edge-litert, opencv) install and `device bench` / `device run` execute ARM code.
# Emulated timings mean nothing; the point is that the ARM path works.
#
#   sudo benchmarks/arm64/deploy_emulated_pi.sh [WORKDIR]
#
# Takes ~10-20 minutes (debootstrap ~4 min, pip under emulation most of the rest), so it is a
# script a developer runs, not a CI test.  Output: benchmarks/results/arm64-qemu/ (the deploy
# log and the result JSON copied back from the emulated Pi).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="${1:-/var/tmp/mnist-edge-arm64}"
ROOTFS="$WORK/rootfs"
PORT="${PORT:-2299}"
OUT="$HERE/benchmarks/results/arm64-qemu"
[ "$(id -u)" = 0 ] || { echo "run as root (debootstrap, chroot, binfmt)" >&2; exit 2; }
mkdir -p "$WORK" "$OUT"
LOG="$OUT/deploy.log"
: > "$LOG"
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$LOG"; }

log "host packages: qemu-user-static debootstrap binfmt-support"
if ! command -v debootstrap >/dev/null || [ ! -e /usr/bin/qemu-aarch64-static ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static debootstrap binfmt-support >/dev/null
fi
mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
update-binfmts --enable qemu-aarch64 || true

if [ ! -x "$ROOTFS/usr/bin/python3" ]; then
    log "debootstrap bookworm arm64 -> $ROOTFS"
    debootstrap --arch=arm64 --include=python3,python3-venv,python3-pip,openssh-server,ca-certificates,rsync,sudo \
        bookworm "$ROOTFS" http://deb.debian.org/debian >>"$LOG" 2>&1
fi
log "rootfs: $(chroot "$ROOTFS" uname -m), $(chroot "$ROOTFS" python3 --version)"

for m in proc sys dev dev/pts; do
    mountpoint -q "$ROOTFS/$m" || mount --bind "/$m" "$ROOTFS/$m"
done
cleanup() {
    if [ -f "$ROOTFS/run/sshd-test.pid" ]; then kill "$(cat "$ROOTFS/run/sshd-test.pid")" 2>/dev/null || true; fi
    for m in dev/pts dev sys proc; do umount -l "$ROOTFS/$m" 2>/dev/null || true; done
}
trap cleanup EXIT

# The machine's CA files, so pip inside the root reaches the package registry.
cp /usr/local/share/ca-certificates/*.crt "$ROOTFS/usr/local/share/ca-certificates/" 2>/dev/null || true
chroot "$ROOTFS" update-ca-certificates >/dev/null 2>&1 || true
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"

log "user pi, ssh keys, sshd on 127.0.0.1:$PORT"
chroot "$ROOTFS" id pi >/dev/null 2>&1 || chroot "$ROOTFS" useradd -m -s /bin/bash pi
# A key-only user: "*" (no password) rather than useradd's locked "!", which sshd refuses.
chroot "$ROOTFS" usermod -p '*' pi
KEYS="$WORK/keys"
mkdir -p "$KEYS"
[ -f "$KEYS/client" ] || ssh-keygen -q -t ed25519 -N '' -f "$KEYS/client"
mkdir -p "$ROOTFS/home/pi/.ssh"
cp "$KEYS/client.pub" "$ROOTFS/home/pi/.ssh/authorized_keys"
chroot "$ROOTFS" chown -R pi:pi /home/pi/.ssh
chmod 700 "$ROOTFS/home/pi/.ssh"; chmod 600 "$ROOTFS/home/pi/.ssh/authorized_keys"
chroot "$ROOTFS" ssh-keygen -A >/dev/null
mkdir -p "$ROOTFS/run/sshd"
chroot "$ROOTFS" /usr/sbin/sshd -p "$PORT" -o ListenAddress=127.0.0.1 -o PidFile=/run/sshd-test.pid \
    -o PasswordAuthentication=no -o UsePAM=no
sleep 3
KNOWN="$WORK/known_hosts"
rm -f "$KNOWN"
printf 'Host 127.0.0.1\n  UserKnownHostsFile %s\n  LogLevel ERROR\n' "$KNOWN" > "$WORK/ssh_config"

log "deploy.sh --bench to the emulated Pi (first contact: --accept-new-host-key)"
start=$(date +%s)
"$HERE/deploy.sh" --ssh-config "$WORK/ssh_config" --port "$PORT" --identity "$KEYS/client" \
    --accept-new-host-key --bench --reports "$OUT" pi@127.0.0.1 2>&1 | tee -a "$LOG"
log "deploy took $(( $(date +%s) - start )) s"
log "device info on the emulated Pi:"
ssh -F "$WORK/ssh_config" -p "$PORT" -i "$KEYS/client" -o BatchMode=yes pi@127.0.0.1 \
    'mnist-edge/current/bin/device info; mnist-edge/current/venv/bin/python -c "import platform, numpy, cv2; print(platform.machine(), numpy.__version__, cv2.__version__)"' 2>&1 | tee -a "$LOG"
log "second deploy (nothing changed): should be a no-op"
"$HERE/deploy.sh" --ssh-config "$WORK/ssh_config" --port "$PORT" --identity "$KEYS/client" pi@127.0.0.1 2>&1 | tee -a "$LOG"
log "done; results in $OUT"
