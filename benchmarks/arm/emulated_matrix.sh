#!/usr/bin/env bash
# The emulated Raspberry Pi board matrix: the real ./deploy.sh and the device verbs on the CPUs
# Pis really have, under qemu-user (QEMU_CPU = cortex-a53 / cortex-a72 / cortex-a76 in a Debian
# bookworm arm64 root; cortex-a7 in an armhf root for 32-bit Pi OS).  Pi OS is bookworm-based.
#
#   sudo benchmarks/arm/emulated_matrix.sh setup            # roots, users, keys, runtimes (~20 min)
#   sudo benchmarks/arm/emulated_matrix.sh run [CELL...]    # default: every cell, one at a time
#   sudo benchmarks/arm/emulated_matrix.sh parity [CELL...] # today's code, no deploy (after run)
#   sudo benchmarks/arm/emulated_matrix.sh cells            # list the cells
#
#   ONLY="cpu-check deploy deployed" limits a run to those step groups, in place ("choice", a
#   venv of its own from device.platforms, and "apt", the 32-bit cell without apt's OpenCV,
#   run only when ONLY names them).
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
    if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || [ ! -e /proc/sys/fs/binfmt_misc/qemu-arm ]; then
        die "qemu binfmt handlers missing: apt-get install qemu-user-static binfmt-support"
    fi
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
        "litert-2.3.0|ai-edge-litert==2.3.0" "litert-2.3.0-np1|ai-edge-litert==2.3.0 numpy<2"
        "litert-2.2.0|ai-edge-litert==2.2.0"
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
    local steps="$out/steps.jsonl"
    if [ -z "${ONLY:-}" ]; then   # a full run starts clean; ONLY=... re-runs some steps in place
        rm -f "$out"/*.log "$out"/*.json "$out"/*.jsonl 2>/dev/null || true
        : > "$steps"
    fi
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
    # The three arm64 cells share the root: a pid file left by the previous cell would be read
    # as this sshd's, and this one would outlive the cell.
    rm -f "$root/run/sshd-matrix.pid"
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
    want() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }
    # The device verbs with one release's device CLI; $2 tags the result files.
    device_steps() {
        local dev="$1" t="$2"
        step "info$t" "info$t.log" "${SSH[@]}" "$dev info"
        step "bench$t" "bench$t.log" "${SSH[@]}" "$dev bench --runs 200 --warmup 10 --json bench$t.json"
        "${SSH[@]}" "cat bench$t.json" > "$out/bench$t.json" 2>/dev/null || true
        step "run$t" "run$t.log" "${SSH[@]}" "clip=\$(ls -1 $rdir/bench/clip.avi $rdir/releases/*/bench/clip.avi 2>/dev/null | head -n 1); \
            $dev run --source \$clip --quiet --output run$t.json --frames-out run-frames$t.jsonl"
        "${SSH[@]}" "cat run$t.json" > "$out/run$t.json" 2>/dev/null || true
        "${SSH[@]}" "cat run-frames$t.jsonl" > "$out/run-frames$t.jsonl" 2>/dev/null || true
        step "classify$t" "classify$t.jsonl" "${SSH[@]}" "$dev classify photos --labels photos/labels.csv --json"
        step "golden$t" "golden$t.json" "${SSH[@]}" "$dev golden --json"
        step "golden$t-ref" "golden$t-ref.json" "${SSH[@]}" "$dev golden --json --no-xnnpack"
    }
    local rdir="mnist-edge-$cell" probe="/home/pi/probe_runtime.py"
    cp "$HERE/benchmarks/arm/probe_runtime.py" "$root$probe"
    want cpu-check && step cpu-check cpu-check.log "${SSH[@]}" "echo uname -m: \$(uname -m); echo QEMU_CPU=\$QEMU_CPU; python3 $probe isa"
    want deploy && step deploy deploy.log "$HERE/deploy.sh" --ssh-config "$sshcfg" --port "$port" --identity "$key" \
        --accept-new-host-key --bench --dir "$rdir" --reports "$out" pi@127.0.0.1
    # What deploy.sh (as it is) installed, where it switched.
    if want deployed && "${SSH[@]}" "test -e $rdir/current/bin/device" 2>/dev/null; then
        device_steps "$rdir/current/bin/device" ""
    fi
    # What device.platforms chooses for this target, in a venv of its own: a copy of the newest
    # release with a venv made from the choice (pip requirements; apt packages are in the root
    # already, see setup_root).  Since deploy installs through device/release.py, which calls
    # the same choose_runtime, this only repeats "deployed": it runs when ONLY names it.
    if [[ " ${ONLY:-} " == *" choice "* ]]; then
        step choice-venv choice-venv.log "${SSH[@]}" "set -e; rel=\$(ls -1d $rdir/releases/2* | tail -n 1); \
            python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import platform, struct; \
from device.platforms import choose_runtime; \
c = choose_runtime(platform.machine(), \"%d.%d\" % sys.version_info[:2], open(\"/proc/cpuinfo\").read(), pointer_bits=struct.calcsize(\"P\") * 8); \
print(c.reason); open(\"/tmp/reqs\", \"w\").write(\" \".join(c.requirements))' \$rel; \
            rm -rf $rdir/choice $rdir/venv-choice; python3 -m venv --system-site-packages $rdir/venv-choice; \
            $rdir/venv-choice/bin/pip install -q --disable-pip-version-check \$(cat /tmp/reqs); \
            cp -a \$rel $rdir/choice; ln -sfn ../venv-choice $rdir/choice/venv; echo choice venv: \$(cat /tmp/reqs)"
        device_steps "$rdir/choice/bin/device" "-choice"
    fi
    # A 32-bit target without apt's OpenCV (fresh Pi OS Lite): deploy must try `sudo -n apt-get`
    # and, when sudo cannot run without a password, refuse in one line naming the command,
    # before any venv or release.  (Under qemu-user without binfmt's C flag the setuid sudo
    # never gets root, so only the refusal can be shown here.)  python3-opencv is put back
    # from apt's cache afterwards.  Runs only when ONLY names it.
    if [[ " ${ONLY:-} " == *" apt "* ]] && [ "$arch" = armhf ]; then
        chroot "$root" apt-get remove -y -q python3-opencv > "$out/apt-remove.log" 2>&1
        step sudo-check sudo-check.log "${SSH[@]}" "sudo -n true && echo sudo ok || echo sudo -n: not usable"
        step deploy-no-opencv deploy-no-opencv.log "$HERE/deploy.sh" --ssh-config "$sshcfg" --port "$port" \
            --identity "$key" --dir "$rdir-no-opencv" pi@127.0.0.1
        step no-opencv-state no-opencv-state.log "${SSH[@]}" "ls -A $rdir-no-opencv $rdir-no-opencv/venvs $rdir-no-opencv/releases 2>&1; rm -rf $rdir-no-opencv"
        chroot "$root" apt-get install -y -q --no-install-recommends python3-opencv > "$out/apt-restore.log" 2>&1 \
            || die "could not put python3-opencv back: $out/apt-restore.log"
    fi
    teardown
    log "== $cell done: $out"
}

# Today's code (this checkout, bind-mounted read-only at its own path) on this cell's CPU with
# the runtime, numpy and OpenCV its deploy installed (the cell's current venv: `run` first), no
# deploy: the preprocessing's outputs against x86's, byte for byte (benchmarks/preprocess_bytes.py),
# and `device golden` with XNNPACK on and off.  Results in benchmarks/results/arm64-qemu/.
parity_cell() {  # $1: cell spec
    local cell arch cpu port cpuinfo
    IFS='|' read -r cell arch cpu port cpuinfo <<<"$1"
    local root="$WORK/$arch" venv="/home/pi/mnist-edge-$cell/current/venv" out="$RESULTS/arm64-qemu" work
    work="$(cd "$HERE/.." && pwd)"
    [ -x "$root$venv/bin/python3" ] || die "$cell has no deployed venv ($root$venv): run: $0 run $cell"
    [ -s "$WORK/bytes-x86.npz" ] || (cd "$HERE" && python3 -m benchmarks.preprocess_bytes dump "$WORK/bytes-x86.npz")
    mnt -t proc proc "$root/proc"
    mnt --rbind /sys "$root/sys"
    mnt --bind /dev "$root/dev"
    mnt --bind "$HERE/tests/data/cpuinfo/$cpuinfo" "$root/proc/cpuinfo"
    mkdir -p "$root$work"
    mnt --bind -o ro "$work" "$root$work"
    rm -f "$root/tmp/bytes-$cpu.npz"
    local rc=0 t
    in_cell() { QEMU_CPU="$cpu" PYTHONDONTWRITEBYTECODE=1 chroot "$root" /bin/sh -c "cd '$HERE' && '$venv/bin/python3' $1"; }
    log "== $cell: QEMU_CPU=$cpu, $venv"
    in_cell "-m benchmarks.preprocess_bytes dump /tmp/bytes-$cpu.npz" || rc=$?
    for t in "" -ref; do
        in_cell "-m device.cli golden --json ${t:+--no-xnnpack}" > "$out/golden$t-$cpu.json" \
            || log "   golden$t exit $?: $(tail -c 300 "$out/golden$t-$cpu.json")"
    done
    teardown
    if [ "$rc" != 0 ]; then log "== $cell: the dump failed (exit $rc)"; return 0; fi
    (cd "$HERE" && python3 -m benchmarks.preprocess_bytes compare "$WORK/bytes-x86.npz" "$root/tmp/bytes-$cpu.npz" \
        --json "$out/preprocess_bytes-$cpu.json" > /dev/null) || rc=$?
    log "== $cell: preprocess_bytes compare exit $rc (0 = identical); golden: $(grep -ho '"status": "[a-z]*"' "$out/golden-$cpu.json" "$out/golden-ref-$cpu.json" | tr '\n' ' ')"
}

each_cell() {  # $1: run_cell | parity_cell, then cell names (none: every cell, one at a time)
    local fn="$1" want c found
    shift
    if [ $# -eq 0 ]; then
        for c in "${CELLS[@]}"; do set -- "$@" "${c%%|*}"; done
    fi
    for want in "$@"; do
        found=""
        for c in "${CELLS[@]}"; do [ "${c%%|*}" = "$want" ] && found="$c"; done
        [ -n "$found" ] || die "unknown cell $want (see: $0 cells)"
        "$fn" "$found"
    done
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
        each_cell run_cell "$@" ;;
    parity)
        binfmt
        shift
        rm -f "$WORK/bytes-x86.npz"   # x86's dump of today's code, made once per invocation
        each_cell parity_cell "$@" ;;
    cells) for c in "${CELLS[@]}"; do echo "$c"; done ;;
    *) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
