#!/usr/bin/env bash
# The emulated Raspberry Pi board matrix: the real ./deploy.sh and the device verbs on the CPUs
# Pis really have, under qemu-user (QEMU_CPU = cortex-a53 / cortex-a72 / cortex-a76 in a Debian
# bookworm arm64 root; cortex-a7 in an armhf root for 32-bit Pi OS).  Pi OS is bookworm-based.
#
#   sudo benchmarks/arm/emulated_matrix.sh setup            # roots, users, keys, runtimes (~20 min)
#   sudo benchmarks/arm/emulated_matrix.sh run [CELL...]    # default: every cell, one at a time
#   sudo benchmarks/arm/emulated_matrix.sh cells            # list the cells
#
# Each cell: sshd inside the root on a loopback port, run under that CPU model (QEMU_CPU set
# for sshd and, through sshd_config SetEnv, for every session, so deploy's pip, python and the
# device verbs all run on it); the board's recorded /proc/cpuinfo (tests/data/cpuinfo/) bind-
# mounted over the root's.  Steps, each with its exit status in <cell>/steps.json:
#   cpu-check (uname -m, AT_HWCAP, an SDOT and an LSE instruction executed), deploy.sh --bench
#   (fresh --dir per cell), device info, device bench, device run on the replay clip, device
#   classify on the 100 dev photos, device golden.
# Results: benchmarks/results/<cell>/ (EMULATED: timings meaningless).  Roots, wheels and
# venvs stay under $WORK (/var/tmp), never in the repository.  Not a CI test: ~1 h in all.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="${ARM_WORK:-/var/tmp/mnist-edge-arm}"
RESULTS="$HERE/benchmarks/results"
PHOTOS="${PHOTOS:-$HERE/../shared/data/digit-photos}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

# cell | root | QEMU CPU model | ssh port | recorded /proc/cpuinfo of the board
CELLS=(
    "pi3-a53-emulated|arm64|cortex-a53|2301|pi3bplus-a53-aarch64.txt"
    "pi4-a72-emulated|arm64|cortex-a72|2302|pi4b-a72-aarch64.txt"
    "pi5-a76-emulated|arm64|cortex-a76|2303|pi5-a76-aarch64.txt"
    "pi2-a7-armv7l-emulated|armhf|cortex-a7|2304|pi2b-a7-armv7l.txt"
)

die() { echo "emulated_matrix: error: $*" >&2; exit 2; }
log() { echo "[$(date -u +%H:%M:%S)] $*"; }
[ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot, mount, binfmt)"

binfmt() {
    mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
    update-binfmts --enable qemu-arm >/dev/null 2>&1 || true
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] && [ -e /proc/sys/fs/binfmt_misc/qemu-arm ] \
        || die "qemu binfmt handlers missing: apt-get install qemu-user-static binfmt-support"
}

setup_root() {  # $1: arm64 | armhf
    local arch="$1" root="$WORK/$1"
    if [ ! -x "$root/usr/sbin/sshd" ]; then
        log "debootstrap bookworm $arch -> $root (~5-15 min)"
        debootstrap --arch="$arch" \
            --include=python3,python3-venv,python3-pip,openssh-server,ca-certificates,rsync,sudo,procps \
            bookworm "$root" "$MIRROR" > "$WORK/debootstrap-$arch.log" 2>&1
    fi
    # The machine's CA files, so pip inside the root reaches the package registry.
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
    chroot "$root" update-ca-certificates >/dev/null 2>&1 || true
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    if [ "$arch" = armhf ] && ! chroot "$root" dpkg -s python3-opencv >/dev/null 2>&1; then
        # PyPI has no armv7l wheels of numpy or OpenCV, and piwheels (Pi OS's extra index) has
        # none of opencv-python-headless for Python 3.11 either (its builds run out of memory):
        # on 32-bit Pi OS they come from apt.  (apt needs /proc for some maintainer scripts.)
        log "apt: python3-numpy python3-opencv in the armhf root (under emulation, ~10 min)"
        mount -t proc proc "$root/proc"
        chroot "$root" apt-get install -y -q --no-install-recommends python3-numpy python3-opencv \
            > "$WORK/apt-armhf.log" 2>&1 || { umount "$root/proc"; die "apt in the armhf root failed: $WORK/apt-armhf.log"; }
        umount "$root/proc"
    fi
    # A source build of OpenCV under emulation takes many hours: make pip fail fast instead.
    printf '[global]\nonly-binary = :all:\n' > "$root/etc/pip.conf"
    chroot "$root" id pi >/dev/null 2>&1 || chroot "$root" useradd -m -s /bin/bash pi
    chroot "$root" usermod -p '*' pi   # key-only login ("!" would be a locked account to sshd)
    mkdir -p "$WORK/keys"
    [ -f "$WORK/keys/client" ] || ssh-keygen -q -t ed25519 -N '' -f "$WORK/keys/client"
    install -d -m 700 "$root/home/pi/.ssh"
    install -m 600 "$WORK/keys/client.pub" "$root/home/pi/.ssh/authorized_keys"
    chroot "$root" chown -R pi:pi /home/pi/.ssh
    chroot "$root" ssh-keygen -A >/dev/null
    mkdir -p "$root/run/sshd"
    # The dev photos, for `device classify` on the "Pi".
    rm -rf "$root/home/pi/photos"; cp -r "$PHOTOS" "$root/home/pi/photos"
    chroot "$root" chown -R pi:pi /home/pi/photos
    # The static emulators inside the root, for explicit runs (-strace, -g) of the crash study.
    cp /usr/bin/qemu-aarch64-static /usr/bin/qemu-arm-static "$root/usr/bin/" 2>/dev/null || true
}

setup_runtimes() {  # candidate runtimes for runtime_matrix.py, installed from the host (no emulated pip)
    local arch="$1" plat="" g dest
    [ "$arch" = arm64 ] || { setup_runtimes_armhf; return; }
    for g in 17 24 26 27 28 31 34 35 36; do plat="$plat --platform manylinux_2_${g}_aarch64"; done
    plat="$plat --platform manylinux2014_aarch64"
    local specs=(
        "litert-2.3.0|ai-edge-litert==2.3.0" "litert-2.2.0|ai-edge-litert==2.2.0"
        "litert-2.1.6|ai-edge-litert==2.1.6" "litert-2.0.3|ai-edge-litert==2.0.3"
        "litert-1.4.0|ai-edge-litert==1.4.0" "tflite-2.14.0|tflite-runtime==2.14.0 numpy<2"
    )
    local s name reqs
    for s in "${specs[@]}"; do
        name="${s%%|*}" reqs="${s#*|}"
        dest="$WORK/arm64/opt/rt/$name"
        [ -d "$dest" ] && continue
        log "runtime candidate $name ($reqs) -> $dest"
        # shellcheck disable=SC2086  # $plat and $reqs are word lists
        pip install -q --no-compile --disable-pip-version-check --only-binary=:all: $plat \
            --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
            --target "$dest" $reqs "opencv-python-headless<4.11"
    done
}

setup_runtimes_armhf() {  # tflite-runtime only; numpy and cv2 come from apt (see setup_root)
    local dest="$WORK/armhf/opt/rt/tflite-2.14.0"
    [ -d "$dest" ] && return
    log "runtime candidate tflite-2.14.0 (armv7l wheel) -> $dest"
    pip install -q --no-compile --disable-pip-version-check --only-binary=:all: --no-deps \
        --platform manylinux_2_34_armv7l --python-version 3.11 --implementation cp --abi cp311 \
        --target "$dest" tflite-runtime==2.14.0
}

# --- one cell ----------------------------------------------------------------------------------
MOUNTED=()
SSHD_PID=""
teardown() {
    if [ -n "$SSHD_PID" ]; then kill "$SSHD_PID" 2>/dev/null || true; SSHD_PID=""; fi
    local i
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTED[$i]}" 2>/dev/null || true; done
    MOUNTED=()
}
trap teardown EXIT
mnt() { mount "$@"; MOUNTED+=("${!#}"); }

run_cell() {  # $1: cell spec
    local cell arch cpu port cpuinfo
    IFS='|' read -r cell arch cpu port cpuinfo <<<"$1"
    local root="$WORK/$arch" out="$RESULTS/$cell" key="$WORK/keys/client"
    [ -x "$root/usr/sbin/sshd" ] || die "no $arch root; run: $0 setup"
    mkdir -p "$out"
    rm -f "$out"/*.log "$out"/*.json "$out"/*.jsonl 2>/dev/null || true
    local steps="$out/steps.jsonl"
    : > "$steps"
    log "== $cell: $arch root, QEMU_CPU=$cpu, /proc/cpuinfo of $cpuinfo, sshd on 127.0.0.1:$port"

    mnt -t proc proc "$root/proc"
    mnt --rbind /sys "$root/sys"
    mnt --bind /dev "$root/dev"
    mnt --bind /dev/pts "$root/dev/pts"
    mnt --bind "$HERE/tests/data/cpuinfo/$cpuinfo" "$root/proc/cpuinfo"

    # sshd under the CPU model; SetEnv hands QEMU_CPU to every session (sshd builds a fresh
    # environment for its children, so inheriting from sshd alone would not reach them).
    local cfg="/etc/ssh/sshd_config.matrix"
    printf 'Port %s\nListenAddress 127.0.0.1\nPidFile /run/sshd-matrix.pid\nPasswordAuthentication no\nUsePAM no\nSetEnv QEMU_CPU=%s\nSubsystem sftp /usr/lib/openssh/sftp-server\n' \
        "$port" "$cpu" > "$root$cfg"
    QEMU_CPU="$cpu" chroot "$root" /usr/sbin/sshd -f "$cfg"
    local i
    for i in $(seq 1 30); do [ -s "$root/run/sshd-matrix.pid" ] && break; sleep 1; done
    SSHD_PID="$(cat "$root/run/sshd-matrix.pid")"
    local known="$WORK/known_hosts-$cell" sshcfg="$WORK/ssh_config-$cell"
    rm -f "$known"
    printf 'Host 127.0.0.1\n  UserKnownHostsFile %s\n  LogLevel ERROR\n' "$known" > "$sshcfg"
    local SSH=(ssh -F "$sshcfg" -p "$port" -i "$key" -o IdentitiesOnly=yes -o BatchMode=yes
               -o StrictHostKeyChecking=accept-new pi@127.0.0.1)

    # step NAME LOGFILE CMD...: run, record exit status and seconds (EMULATED: meaningless).
    step() {
        local name="$1" logf="$out/$2" t0 rc
        shift 2
        log "   [$name]"
        t0=$(date +%s)
        set +e
        "$@" > "$logf" 2>&1
        rc=$?
        set -e
        printf '{"step": "%s", "rc": %d, "seconds": %d, "log": "%s"}\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" \
            "$(basename "$logf")" >> "$steps"
        log "   [$name] exit $rc ($(( $(date +%s) - t0 )) s): $(tail -n 1 "$logf" | cut -c1-160)"
        return 0
    }
    local rdir="mnist-edge-$cell" probe="/home/pi/probe_runtime.py"
    cp "$HERE/benchmarks/arm/probe_runtime.py" "$root$probe"
    step cpu-check cpu-check.log "${SSH[@]}" "echo uname -m: \$(uname -m); echo QEMU_CPU=\$QEMU_CPU; python3 $probe isa"
    step deploy deploy.log "$HERE/deploy.sh" --ssh-config "$sshcfg" --port "$port" --identity "$key" \
        --accept-new-host-key --bench --dir "$rdir" --reports "$out" pi@127.0.0.1
    # Where deploy did not switch (e.g. its venv step failed), the newest release is used for
    # the remaining steps with the venv the runtime choice asks for (see NOTES.md).
    local dev="$rdir/current/bin/device"
    if ! "${SSH[@]}" "test -e $rdir/current/bin/device" 2>/dev/null; then
        step manual-venv manual-venv.log "${SSH[@]}" "set -e; rel=\$(ls -1d $rdir/releases/2* | tail -n 1); \
            python3 -c 'import sys; sys.path.insert(0, \"'\$rel'\"); from device.platforms import choose_runtime; import platform; \
            c = choose_runtime(platform.machine(), \"%d.%d\" % sys.version_info[:2], open(\"/proc/cpuinfo\").read()); \
            print(c.reason); open(\"/tmp/reqs\", \"w\").write(\" \".join(c.requirements))'; \
            python3 -m venv --system-site-packages $rdir/venv-manual && $rdir/venv-manual/bin/pip install -q \$(cat /tmp/reqs) \
            && ln -sfn ../../venv-manual \$rel/venv && ln -sfn \$rel $rdir/manual && echo manual venv for \$rel"
        dev="$rdir/manual/bin/device"
    fi
    step info info.log "${SSH[@]}" "$dev info"
    step bench bench.log "${SSH[@]}" "$dev bench --runs 200 --warmup 10 --json bench.json && cat bench.json > /dev/null"
    "${SSH[@]}" "cat bench.json" > "$out/bench.json" 2>/dev/null || true
    step run run.log "${SSH[@]}" "clip=\$(ls -1 $rdir/releases/*/bench/clip.avi | tail -n 1); $dev run --source \$clip --quiet --output run.json"
    "${SSH[@]}" "cat run.json" > "$out/run.json" 2>/dev/null || true
    step classify classify.jsonl "${SSH[@]}" "$dev classify photos --labels photos/labels.csv --json"
    step golden golden.json "${SSH[@]}" "$dev golden --json"
    step golden-ref golden-ref.json "${SSH[@]}" "$dev golden --json --no-xnnpack"
    teardown
    log "== $cell done: $out"
}

case "${1:-}" in
    setup)
        binfmt
        mkdir -p "$WORK"
        for a in arm64 armhf; do setup_root "$a"; setup_runtimes "$a"; done
        log "setup done in $WORK" ;;
    run)
        binfmt
        shift
        [ $# -gt 0 ] || set -- $(for c in "${CELLS[@]}"; do echo "${c%%|*}"; done)
        for want in "$@"; do
            found=""
            for c in "${CELLS[@]}"; do [ "${c%%|*}" = "$want" ] && found="$c"; done
            [ -n "$found" ] || die "unknown cell $want (see: $0 cells)"
            run_cell "$found"
        done ;;
    cells) for c in "${CELLS[@]}"; do echo "$c"; done ;;
    *) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
