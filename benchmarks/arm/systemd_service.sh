#!/usr/bin/env bash
# `./deploy.sh --service` against a real systemd: a Debian bookworm root booted with
# `systemd-nspawn --boot` (systemd as PID 1 in the container, journald, logind, the user
# manager started by pam_systemd on SSH login), sshd inside on 127.0.0.1:$PORT (the container
# shares the host's network).  Native x86_64: this is about systemd, not the CPU.
#
#   sudo benchmarks/arm/systemd_service.sh [setup|run]
#
# Checks, each recorded with its outcome in benchmarks/results/systemd-nspawn/steps.jsonl:
#   deploy --service --bench      the unit is installed, enabled and started
#   camera-unit                   as deployed (device run --camera, no camera here): it fails,
#                                 is restarted, and says why in the journal
#   replay-unit                   a drop-in replaces ExecStart with a looping replay of the
#                                 deployed clip: active (running), `device run` in the cgroup
#   kill-restart                  SIGKILL of the main process: systemd restarts it (new PID)
#   journal                       its output is in `journalctl --user -u mnist-edge`
#   rollback                      a second release, then deploy.sh --rollback: the service
#                                 restarts on the previous release
#   linger                        what deploy's `loginctl enable-linger` achieved over SSH;
#                                 with linger on, the service survives logout and a reboot
#   analyze-verify                systemd-analyze verify of the unit deploy wrote
# Not a CI test (root, a container boot); ~5 min.
# shellcheck disable=SC2016  # remote commands are single-quoted on purpose: they expand on the target
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="${ARM_WORK:-/var/tmp/mnist-edge-arm}"
ROOT="$WORK/amd64-systemd"
PORT="${PORT:-2310}"
OUT="$HERE/benchmarks/results/systemd-nspawn"
KEY="$WORK/keys/client"
[ "$(id -u)" = 0 ] || { echo "run as root (debootstrap, systemd-nspawn)" >&2; exit 2; }
log() { echo "[$(date -u +%H:%M:%S)] $*"; }

setup() {
    if [ ! -x "$ROOT/lib/systemd/systemd" ]; then
        log "debootstrap bookworm amd64 with systemd -> $ROOT"
        debootstrap --arch=amd64 --include=systemd,systemd-sysv,dbus,dbus-user-session,libpam-systemd,openssh-server,python3,python3-venv,python3-pip,rsync,sudo,ca-certificates,procps \
            bookworm "$ROOT" http://deb.debian.org/debian > "$WORK/debootstrap-amd64.log" 2>&1
    fi
    echo mnist-edge-pi > "$ROOT/etc/hostname"
    printf 'Port %s\nListenAddress 127.0.0.1\nPasswordAuthentication no\n' "$PORT" > "$ROOT/etc/ssh/sshd_config.d/matrix.conf"
    cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
    cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/" 2>/dev/null || true
    chroot "$ROOT" update-ca-certificates >/dev/null 2>&1 || true
    chroot "$ROOT" id pi >/dev/null 2>&1 || chroot "$ROOT" useradd -m -s /bin/bash pi
    chroot "$ROOT" usermod -p '*' pi
    mkdir -p "$WORK/keys"
    [ -f "$KEY" ] || ssh-keygen -q -t ed25519 -N '' -f "$KEY"
    install -d -m 700 "$ROOT/home/pi/.ssh"
    install -m 600 "$KEY.pub" "$ROOT/home/pi/.ssh/authorized_keys"
    chroot "$ROOT" chown -R pi:pi /home/pi/.ssh
    # Start from no linger, as a fresh Pi OS user is.
    rm -f "$ROOT/var/lib/systemd/linger/pi"
}

NSPAWN_PID=""
leader() { pgrep -P "$NSPAWN_PID" | head -n 1; }
in_ct() { nsenter -t "$(leader)" -m -u -i -p -- "$@"; }   # as root inside the container
boot() {
    systemd-nspawn -D "$ROOT" --boot --machine=mnist-edge-pi --register=no --keep-unit \
        --console=pipe > "$OUT/container-console.log" 2>&1 &
    NSPAWN_PID=$!
    for _ in $(seq 1 60); do
        if [ -n "$(leader)" ] && in_ct systemctl is-system-running 2>/dev/null | grep -qE 'running|degraded'; then
            log "container up: systemd $(in_ct systemctl --version | head -n 1 | cut -d' ' -f2) is PID 1, $(in_ct systemctl is-system-running)"
            return 0
        fi
        sleep 1
    done
    echo "container did not boot; see $OUT/container-console.log" >&2
    exit 1
}
poweroff() {
    [ -n "$NSPAWN_PID" ] || return 0
    in_ct systemctl poweroff 2>/dev/null || true
    wait "$NSPAWN_PID" 2>/dev/null || true
    NSPAWN_PID=""
}
trap poweroff EXIT

SSHCFG="$WORK/ssh_config-systemd"
SSH=(ssh -F "$SSHCFG" -p "$PORT" -i "$KEY" -o IdentitiesOnly=yes -o BatchMode=yes
     -o StrictHostKeyChecking=accept-new pi@127.0.0.1)
DEPLOY=("$HERE/deploy.sh" --ssh-config "$SSHCFG" --port "$PORT" --identity "$KEY" --accept-new-host-key)
STEPS="$OUT/steps.jsonl"
record() {  # record NAME ok|FAILED DETAIL
    printf '{"step": "%s", "outcome": "%s", "detail": "%s"}\n' "$1" "$2" "$(printf '%s' "$3" | tr '"\n' "' ")" >> "$STEPS"
    log "[$1] $2: $3"
}
unit_prop() { "${SSH[@]}" "systemctl --user show mnist-edge -p $1 --value"; }
main_cmdline() { "${SSH[@]}" 'pid=$(systemctl --user show mnist-edge -p MainPID --value); tr "\0" " " < /proc/$pid/cmdline'; }
wait_active() {  # until the unit is active with a main PID other than $1
    for _ in $(seq 1 40); do
        if [ "$(unit_prop ActiveState)" = active ] && [ "$(unit_prop MainPID)" != "${1:-0}" ] && [ "$(unit_prop MainPID)" != 0 ]; then return 0; fi
        sleep 1
    done
    return 1
}

run() {
    mkdir -p "$OUT"
    : > "$STEPS"
    rm -rf "$OUT/reports"
    setup
    boot
    rm -f "$WORK/known_hosts-systemd"
    printf 'Host 127.0.0.1\n  UserKnownHostsFile %s\n  LogLevel ERROR\n' "$WORK/known_hosts-systemd" > "$SSHCFG"
    "${SSH[@]}" 'rm -rf mnist-edge .config/systemd/user/mnist-edge.service*'

    log "deploy.sh --service --bench (release 1)"
    if "${DEPLOY[@]}" --service --bench --reports "$OUT/reports" pi@127.0.0.1 > "$OUT/deploy-1.log" 2>&1; then
        record deploy ok "$(tail -n 1 "$OUT/deploy-1.log")"
    else
        record deploy FAILED "$(tail -n 2 "$OUT/deploy-1.log")"
    fi
    "${SSH[@]}" 'cat .config/systemd/user/mnist-edge.service' > "$OUT/mnist-edge.service"

    # As deployed: `device run --camera`, and there is no camera in a container.
    sleep 12
    "${SSH[@]}" 'journalctl --user -u mnist-edge --no-pager -n 40' > "$OUT/journal-camera.log" 2>&1 || true
    local n
    n="$(grep -c "Scheduled restart job" "$OUT/journal-camera.log" || true)"
    if [ "${n:-0}" -ge 1 ] && grep -q "device: error" "$OUT/journal-camera.log"; then
        record camera-unit ok "no camera: the unit exits 2, is restarted every 5 s ($n restarts logged) and the journal says why: $(grep -m1 'device: error' "$OUT/journal-camera.log" | sed 's/.*device: error/device: error/' | cut -c1-90)"
    else
        record camera-unit FAILED "no restart or no reason in journal-camera.log"
    fi
    if grep -q "Stopped mnist-edge.service" "$OUT/journal-camera.log"; then
        record session-bound ok "without linger the unit lives with the user manager of an SSH session: stopped when deploy's session ended, started again by the next login (see journal-camera.log)"
    fi

    # The same unit with a replay source: a drop-in, as an operator would add one.
    "${SSH[@]}" 'mkdir -p .config/systemd/user/mnist-edge.service.d && cat > .config/systemd/user/mnist-edge.service.d/replay.conf <<EOF
[Service]
ExecStart=
ExecStart=%h/mnist-edge/current/bin/device run --source %h/mnist-edge/current/bench/clip.avi --loop --realtime --quiet --output %h/mnist-edge/reports/service-results.json
EOF
systemctl --user daemon-reload && systemctl --user restart mnist-edge'
    if wait_active 0 && main_cmdline | grep -q "device.cli run --source"; then
        record replay-unit ok "active (running): $(main_cmdline | cut -c1-160)"
    else
        record replay-unit FAILED "$(unit_prop ActiveState) $(unit_prop SubState)"
    fi

    local pid1 before
    pid1="$(unit_prop MainPID)"; before="$(unit_prop NRestarts)"
    "${SSH[@]}" "kill -9 $pid1"
    if wait_active "$pid1"; then
        record kill-restart ok "SIGKILL of PID $pid1: restarted as PID $(unit_prop MainPID) (NRestarts $before -> $(unit_prop NRestarts), RestartSec=5)"
    else
        record kill-restart FAILED "$(unit_prop ActiveState) $(unit_prop SubState) after SIGKILL"
    fi

    "${SSH[@]}" 'journalctl --user -u mnist-edge --no-pager -n 60' > "$OUT/journal-replay.log" 2>&1 || true
    if grep -q "Main process exited, code=killed, status=9/KILL" "$OUT/journal-replay.log" && grep -q "Scheduled restart job" "$OUT/journal-replay.log"; then
        record journal ok "journalctl --user -u mnist-edge shows the kill and the scheduled restart ($(wc -l < "$OUT/journal-replay.log") lines)"
    else
        record journal FAILED "see journal-replay.log"
    fi

    # Rollback: a second release (same model, its manifest marked), then --rollback.
    local m2="$WORK/model-2" rel1 rel2 after
    mkdir -p "$m2"
    cp "$HERE/device/models/model.tflite" "$m2/model.tflite"
    python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); m["note"]="release 2 of the rollback test"; json.dump(m, open(sys.argv[2],"w"), indent=2)' \
        "$HERE/device/models/model.json" "$m2/model.json"
    rel1="$("${SSH[@]}" 'basename "$(readlink mnist-edge/current)"')"
    "${DEPLOY[@]}" --service --bench --model "$m2/model.tflite" --reports "$OUT/reports" pi@127.0.0.1 > "$OUT/deploy-2.log" 2>&1 || true
    rel2="$("${SSH[@]}" 'basename "$(readlink mnist-edge/current)"')"
    wait_active 0 || true
    local on2 on1
    on2="$(main_cmdline)"
    "${DEPLOY[@]}" --rollback pi@127.0.0.1 > "$OUT/rollback.log" 2>&1 || true
    after="$("${SSH[@]}" 'basename "$(readlink mnist-edge/current)"')"
    sleep 3; wait_active 0 || true
    on1="$(main_cmdline)"
    if [ "$rel1" != "$rel2" ] && [ "$after" = "$rel1" ] && [[ "$on2" == *"$rel2"* ]] && [[ "$on1" == *"$rel1"* ]]; then
        record rollback ok "release 2 ran from $rel2; after --rollback current=$rel1 and the restarted service runs from it"
    else
        record rollback FAILED "rel1=$rel1 rel2=$rel2 after=$after; running: $on1"
    fi

    # Linger: what deploy achieved, then logout / reboot with linger on.
    local linger
    linger="$("${SSH[@]}" 'loginctl show-user pi -p Linger --value')"
    "${SSH[@]}" 'loginctl enable-linger pi' > "$OUT/linger-as-pi.log" 2>&1 || true
    record linger-by-deploy "$([ "$linger" = yes ] && echo ok || echo FAILED)" \
        "after deploy: Linger=$linger; as pi over SSH: $(tr '\n' ' ' < "$OUT/linger-as-pi.log")"
    # Without linger the user manager (and the service) stop when the last session ends.
    "${SSH[@]}" true; sleep 15
    if in_ct pgrep -u pi -f "device.cli run" > /dev/null; then
        record logout-without-linger FAILED "the service still runs after logout without linger?"
    else
        record logout-without-linger ok "no linger: after the last SSH session ended, the service was stopped with the user manager"
    fi
    in_ct loginctl enable-linger pi   # what deploy must do with sudo (see NOTES.md)
    sleep 5
    if in_ct pgrep -u pi -f "device.cli run" > /dev/null; then
        record linger-logout ok "linger on (set by root): the user manager starts without a session and runs the enabled service"
    else
        record linger-logout FAILED "linger on but the service is not running"
    fi
    poweroff
    boot
    sleep 10
    if in_ct pgrep -u pi -f "device.cli run" > /dev/null; then
        record linger-reboot ok "after a container reboot, no login: the service runs ($(in_ct pgrep -u pi -f 'device.cli run' | head -n 1))"
    else
        record linger-reboot FAILED "not running after reboot"
    fi

    if "${SSH[@]}" 'systemd-analyze --user verify .config/systemd/user/mnist-edge.service' > "$OUT/analyze-verify.log" 2>&1; then
        record analyze-verify ok "systemd-analyze verify: no complaints"
    else
        record analyze-verify FAILED "$(tr '\n' ' ' < "$OUT/analyze-verify.log" | cut -c1-200)"
    fi
    poweroff
    log "done: $STEPS"
}

case "${1:-run}" in
    setup) setup ;;
    run) run ;;
    *) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
