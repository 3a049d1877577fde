#!/usr/bin/env bash
# deploy.sh: ship the mnist-edge device side and a model to a Raspberry Pi (or any Linux box)
# over SSH, into a new release folder, smoke-test it there, and only then switch `current`.
#
#   ./deploy.sh [options] user@host
#
# Remote layout (under --dir, default ~/mnist-edge):
#   releases/<UTC timestamp>-<short sha>/   device/ (package + model), bin/device, venv -> ...
#   venvs/<deps hash>/                       one venv per dependency set, shared by releases
#   current -> releases/...                  switched atomically (rename of a symlink)
#   reports/                                 results written by --bench and the service
set -euo pipefail

usage() {
    cat <<'EOF'
usage: ./deploy.sh [options] user@host

Ship the device side and the model to a Raspberry Pi over SSH, atomically.

options:
  --port N                SSH port (default 22)
  --identity KEY          SSH private key
  --model PATH            .tflite to ship, with its manifest beside it (default: the shipped model)
  --dir DIR               remote root (default ~/mnist-edge)
  --bench                 after installing, run `device bench` and a short replay `device run`
                          on the target and copy the result JSON to reports/<host>/ here
  --gate                  run that benchmark before switching, and switch only when the
                          target's p99 per-frame total is within --budget-ms
  --budget-ms MS          per-frame budget for --gate (default 5)
  --service               install and enable a systemd user unit running `device run --camera`
  --rollback              switch `current` back to the previous release and exit
  --keep N                releases to keep (default 3)
  --reports DIR           where --bench results land here (default ./reports)
  --ssh-config FILE       use this ssh_config (ssh -F), e.g. for a jump host
  --accept-new-host-key   trust an unknown host key on first contact (accept-new, never "no")
  --dry-run               say what would be done, change nothing
  -h, --help              this help
EOF
}

DIED=0
# die MESSAGE [STATUS]: one line on stderr; past the preflight it also says which step failed.
die() {
    local where=""
    case "$STEP" in start|preflight|package|rollback) ;; *) where=" [step $STEP; current on $TARGET unchanged]" ;; esac
    echo "deploy: error: $1$where" >&2
    DIED=1
    exit "${2:-1}"
}
say() { echo "deploy: $*"; }
STEP="start"
step() { STEP="$1"; say "[$1] ${2:-}"; }

PORT=22 IDENTITY="" MODEL="" RDIR="" BENCH=0 GATE=0 BUDGET=5 SERVICE=0 ROLLBACK=0 KEEP=3
ACCEPT_NEW=0 DRY=0 TARGET="" REPORTS="" SSH_CONFIG=""
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"

while [ $# -gt 0 ]; do
    case "$1" in
        --port) PORT="${2:?--port needs a number}"; shift 2 ;;
        --identity) IDENTITY="${2:?--identity needs a key file}"; shift 2 ;;
        --model) MODEL="${2:?--model needs a path}"; shift 2 ;;
        --dir) RDIR="${2:?--dir needs a path}"; shift 2 ;;
        --bench) BENCH=1; shift ;;
        --gate) GATE=1; shift ;;
        --budget-ms) BUDGET="${2:?--budget-ms needs a number}"; shift 2 ;;
        --service) SERVICE=1; shift ;;
        --rollback) ROLLBACK=1; shift ;;
        --keep) KEEP="${2:?--keep needs a number}"; shift 2 ;;
        --reports) REPORTS="${2:?--reports needs a folder}"; shift 2 ;;
        --ssh-config) SSH_CONFIG="${2:?--ssh-config needs a file}"; shift 2 ;;
        --accept-new-host-key) ACCEPT_NEW=1; shift ;;
        --dry-run) DRY=1; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) usage >&2; die "unknown option $1" 2 ;;
        *) [ -z "$TARGET" ] || die "one target only (got $TARGET and $1)" 2; TARGET="$1"; shift ;;
    esac
done
[ -n "$TARGET" ] || { usage >&2; die "give the target as user@host" 2; }
[[ "$PORT" =~ ^[0-9]+$ ]] || die "--port must be a number" 2
[[ "$KEEP" =~ ^[0-9]+$ && "$KEEP" -ge 2 ]] || die "--keep must be a number >= 2" 2
[[ "$BUDGET" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--budget-ms must be a number" 2
[ -z "$IDENTITY" ] || [ -r "$IDENTITY" ] || die "--identity $IDENTITY is not readable" 2
MODEL="${MODEL:-$HERE/device/models/model.tflite}"
[ -r "$MODEL" ] || die "--model $MODEL not found" 2
MANIFEST="${MODEL%.tflite}.json"
[ -r "$MANIFEST" ] || die "$MANIFEST (the model's manifest) not found; make it with host train-qat" 2
HOSTNAME_PART="${TARGET#*@}"
[[ "$HOSTNAME_PART" =~ ^[A-Za-z0-9._:-]+$ ]] || die "bad host name in $TARGET" 2
REPORTS="${REPORTS:-$HERE/reports}"
[ -z "$SSH_CONFIG" ] || [ -r "$SSH_CONFIG" ] || die "--ssh-config $SSH_CONFIG is not readable" 2
RDIR="${RDIR:-mnist-edge}"   # relative to the remote home unless absolute
RDIR="${RDIR#\~/}"

# --- ssh plumbing ----------------------------------------------------------------------------
CTL="$(mktemp -d "${TMPDIR:-/tmp}/mnist-edge-deploy.XXXXXX")"
cleanup() {
    ssh -o ControlPath="$CTL/mux" -O exit "$TARGET" >/dev/null 2>&1 || true
    rm -rf "$CTL"
}
SSH_OPTS=(-p "$PORT" -o BatchMode=yes -o ConnectTimeout=8 -o ServerAliveInterval=10
          -o ControlMaster=auto -o ControlPath="$CTL/mux" -o ControlPersist=120)
[ -n "$SSH_CONFIG" ] && SSH_OPTS=(-F "$SSH_CONFIG" "${SSH_OPTS[@]}")
[ -n "$IDENTITY" ] && SSH_OPTS+=(-i "$IDENTITY" -o IdentitiesOnly=yes)
[ "$ACCEPT_NEW" = 1 ] && SSH_OPTS+=(-o StrictHostKeyChecking=accept-new)

# rsh CMD...: run on the target; every argument is quoted for the remote shell.
rsh() {
    local q="" a
    for a in "$@"; do q+=" $(printf '%q' "$a")"; done
    # shellcheck disable=SC2029  # expanded here on purpose: already quoted with %q
    ssh "${SSH_OPTS[@]}" "$TARGET" "cd && mkdir -p $(printf '%q' "$RDIR") && cd $(printf '%q' "$RDIR") && ${q# }"
}
# rscript: run a bash script given on stdin on the target, in the remote root.
rscript() {
    # shellcheck disable=SC2029  # expanded here on purpose: already quoted with %q
    ssh "${SSH_OPTS[@]}" "$TARGET" "cd && mkdir -p $(printf '%q' "$RDIR") && bash -s -- $(printf '%q ' "$RDIR" "$@")"
}

fail_hint() {
    local rc=$?
    [ $rc -eq 0 ] || [ "$DIED" = 1 ] && return
    echo "deploy: error: step '$STEP' failed (exit $rc); \`current\` on $TARGET was not changed" >&2
}
trap 'fail_hint; cleanup' EXIT

# --- preflight -------------------------------------------------------------------------------
step preflight "connecting to $TARGET (port $PORT)"
if ! PRE="$(ssh "${SSH_OPTS[@]}" "$TARGET" 'uname -m; . /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-unknown}"; python3 -c "import sys; print(\"%d.%d\" % sys.version_info[:2])" 2>/dev/null || echo none; df -Pk "$HOME" | awk "NR==2 {print \$4}"; command -v rsync >/dev/null && echo rsync || echo tar; (apt-cache policy python3-picamera2 2>/dev/null | grep -q "Candidate: [0-9]") && echo picam || echo nopicam; dpkg -s python3-picamera2 >/dev/null 2>&1 && echo picam-installed || echo picam-missing' 2>"$CTL/ssh.err")"; then
    err="$(tr '\n' ' ' < "$CTL/ssh.err")"
    case "$err" in
        *"Host key verification failed"*|*"No ED25519 host key"*|*"host key for"*)
            die "the host key of $HOSTNAME_PART is unknown or changed; check it, then add it to known_hosts or pass --accept-new-host-key" 2 ;;
        *"Connection refused"*) die "$HOSTNAME_PART refused SSH on port $PORT (is sshd running? right --port?)" 2 ;;
        *"timed out"*|*"No route"*|*"not known"*|*"resolve"*)
            die "cannot reach $HOSTNAME_PART:$PORT ($err)" 2 ;;
        *"Permission denied"*) die "$TARGET refused the key (Permission denied); pass --identity KEY or run ssh-copy-id" 2 ;;
        *) die "ssh to $TARGET failed: $err" 2 ;;
    esac
fi
mapfile -t P <<<"$PRE"
ARCH="${P[0]}" OS="${P[1]}" PYV="${P[2]}" FREE_KB="${P[3]}" XFER="${P[4]}" PICAM="${P[5]}" PICAM_INST="${P[6]}"
say "target: $ARCH, $OS, Python $PYV, $((FREE_KB / 1024)) MB free, transfer by $XFER"
[ "$PYV" != none ] || die "python3 is not installed on $HOSTNAME_PART (sudo apt install python3 python3-venv)"
PYMINOR="${PYV#3.}"
if [ "${PYV%%.*}" != 3 ] || [ "$PYMINOR" -lt 9 ]; then die "Python $PYV on the target is too old (need 3.9+)"; fi
[ "$FREE_KB" -ge 400000 ] || die "only $((FREE_KB / 1024)) MB free on $HOSTNAME_PART; 400 MB needed"

# Dependencies by what the target is: never TensorFlow.
case "$ARCH" in
    aarch64|arm64|x86_64)
        [ "$PYMINOR" -ge 10 ] || die "ai-edge-litert needs Python >= 3.10 on $ARCH (target has $PYV)"
        LITERT="ai-edge-litert"
        # ai-edge-litert 2.3.0's aarch64 wheel segfaults while constructing the interpreter on
        # our emulated Pi (qemu-user 7.2, bookworm arm64); 1.4.0 runs there (see
        # benchmarks/results/arm64-qemu/).  Pin it on ARM until a newer one is shown to work.
        [ "$ARCH" = x86_64 ] || LITERT="ai-edge-litert==1.4.0"
        if [ "$PICAM_INST" = picam-installed ] || [ "$PICAM" = picam ]; then
            # apt's picamera2 stack (simplejpeg, ...) is built against the OS's numpy 1.x; a
            # numpy 2 in the venv would shadow it and break `import picamera2`.
            DEPS="numpy<2 $LITERT opencv-python-headless<4.11"
        else
            DEPS="numpy $LITERT opencv-python-headless"
        fi ;;
    armv7l|armv6l)
        [ "$PYMINOR" -le 11 ] || die "tflite-runtime 2.14 (the only armv7l runtime) needs Python <= 3.11 (target has $PYV)"
        DEPS="numpy<2 tflite-runtime==2.14.0 opencv-python-headless<4.11" ;;
    *) die "unsupported architecture $ARCH (aarch64, armv7l or x86_64)" ;;
esac
DEPS_HASH="$(printf '%s %s %s' "$ARCH" "$PYV" "$DEPS" | sha256sum | cut -c1-12)"

# --- rollback --------------------------------------------------------------------------------
if [ "$ROLLBACK" = 1 ]; then
    step rollback "switching current back to the previous release"
    [ "$DRY" = 1 ] && { say "dry run: would switch current to the previous release"; exit 0; }
    rscript <<'EOS'
set -euo pipefail
cd && cd "$1"
cur="$(readlink current 2>/dev/null || true)"; cur="${cur##*/}"
[ -n "$cur" ] || { echo "deploy: error: no current release to roll back from" >&2; exit 3; }
prev=""
for r in $(ls -1 releases | sort); do [ "$r" = "$cur" ] && break; [ -e "releases/$r/OK" ] && prev="$r"; done
[ -n "$prev" ] || { echo "deploy: error: no release older than $cur to roll back to" >&2; exit 3; }
ln -sfn "releases/$prev" current.new && mv -T current.new current
echo "deploy: current: $cur -> $prev"
if systemctl --user is-enabled mnist-edge.service >/dev/null 2>&1; then systemctl --user restart mnist-edge.service; fi
EOS
    exit 0
fi

# --- payload ---------------------------------------------------------------------------------
step package "device side + model"
MODEL_SHA="$(sha256sum "$MODEL" | cut -d' ' -f1)"
"$PYTHON" - "$MODEL_SHA" "$MANIFEST" <<'EOP' || die "the manifest does not match $MODEL (sha256); regenerate it" 2
import json, sys
sys.exit(0 if json.load(open(sys.argv[2])).get("sha256") == sys.argv[1] else 1)
EOP
PAY="$CTL/payload"
mkdir -p "$PAY/device/models" "$PAY/bin"
(cd "$HERE" && tar -cf - --exclude='__pycache__' --exclude='models/*' device) | tar -xf - -C "$PAY"
cp "$MODEL" "$PAY/device/models/model.tflite"
cp "$MANIFEST" "$PAY/device/models/model.json"
cat > "$PAY/bin/device" <<'EOW'
#!/bin/sh
# The device CLI of this release, with this release's venv and code.
here="$(cd "$(dirname "$0")/.." && pwd -P)"
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" exec "$here/venv/bin/python" -m device.cli "$@"
EOW
chmod +x "$PAY/bin/device"
CONTENT_HASH="$( (cd "$PAY" && find . -type f ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum; echo "$DEPS") | sha256sum | cut -c1-12)"
GIT_SHA="$(git -C "$HERE" rev-parse --short HEAD 2>/dev/null || echo nogit)"
RELEASE="$(date -u +%Y%m%dT%H%M%SZ)-$GIT_SHA-$CONTENT_HASH"
printf '{"release": "%s", "git": "%s", "content": "%s", "model_sha256": "%s", "deps": "%s", "deployed_from": "%s"}\n' \
    "$RELEASE" "$GIT_SHA" "$CONTENT_HASH" "$MODEL_SHA" "$DEPS" "$(hostname)" > "$PAY/RELEASE.json"
if [ "$BENCH" = 1 ] || [ "$GATE" = 1 ]; then
    CLIP_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/mnist-edge/bench-clip-s0.avi"
    if [ ! -s "$CLIP_CACHE" ] || [ ! -s "$CLIP_CACHE.labels.json" ]; then
        mkdir -p "$(dirname "$CLIP_CACHE")"
        (cd "$HERE" && "$PYTHON" -m device.cli make-clip "$CLIP_CACHE" --digits 60 --hold 2 --seed 0) >/dev/null \
            || die "could not make the benchmark clip (needs numpy and opencv here: pip install -e '.[device]')"
    fi
    mkdir -p "$PAY/bench"
    cp "$CLIP_CACHE" "$PAY/bench/clip.avi"; cp "$CLIP_CACHE.labels.json" "$PAY/bench/clip.avi.labels.json"
fi

if [ "$DRY" = 1 ]; then
    say "dry run: would create releases/$RELEASE in ~/$RDIR on $TARGET"
    say "dry run: dependencies: $DEPS (venv venvs/$DEPS_HASH, --system-site-packages)"
    say "dry run: model $(basename "$MODEL") sha256 ${MODEL_SHA:0:12}, smoke test, then switch current"
    exit 0
fi

# Same content already current: nothing to ship.
CUR_CONTENT="$(rsh sh -c 'cat current/RELEASE.json 2>/dev/null' | sed -n 's/.*"content": "\([0-9a-f]*\)".*/\1/p' || true)"
if [ "$CUR_CONTENT" = "$CONTENT_HASH" ] && [ "$GATE" = 0 ]; then
    say "up to date: the current release on $TARGET already has this code, model and dependency set"
    SKIP_INSTALL=1
else
    SKIP_INSTALL=0
fi

if [ "$SKIP_INSTALL" = 0 ]; then
    # --- transfer ----------------------------------------------------------------------------
    step transfer "releases/$RELEASE"
    rsh mkdir -p releases venvs reports "releases/.incoming-$RELEASE"
    if [ "$XFER" = rsync ] && command -v rsync >/dev/null; then
        rsync -a --delete -e "ssh $(printf '%q ' "${SSH_OPTS[@]}")" "$PAY/" "$TARGET:$RDIR/releases/.incoming-$RELEASE/"
    else
        tar -C "$PAY" -czf - . | rsh tar -xzf - -C "releases/.incoming-$RELEASE"
    fi
    rsh mv "releases/.incoming-$RELEASE" "releases/$RELEASE"

    step verify "model sha256 on the target"
    REMOTE_SHA="$(rsh sha256sum "releases/$RELEASE/device/models/model.tflite" | cut -d' ' -f1)"
    [ "$REMOTE_SHA" = "$MODEL_SHA" ] || die "model sha256 on the target ($REMOTE_SHA) differs from the local one ($MODEL_SHA)"

    # --- dependencies ------------------------------------------------------------------------
    if [ "$PICAM_INST" != picam-installed ]; then
        if [ "$PICAM" = picam ]; then
            if rsh sudo -n true 2>/dev/null; then
                step picamera2 "sudo apt install python3-picamera2"
                rsh sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-picamera2 >/dev/null \
                    || say "warning: python3-picamera2 did not install; --camera will not work (USB cameras will)"
            else
                say "warning: python3-picamera2 is not installed and sudo needs a password; run 'sudo apt install python3-picamera2' on the Pi for --camera"
            fi
        else
            say "warning: this OS offers no python3-picamera2; --camera is unavailable (USB cameras and bench still work)"
        fi
    fi
    step venv "venvs/$DEPS_HASH: $DEPS"
    # shellcheck disable=SC2086  # DEPS is a list of requirement words
    rscript "$DEPS_HASH" "$RELEASE" $DEPS <<'EOS'
set -euo pipefail
cd && cd "$1"; hash="$2"; rel="$3"; shift 3
v="venvs/$hash"
if [ ! -x "$v/bin/python" ] || [ ! -e "$v/.complete" ]; then
    rm -rf "$v"
    # --system-site-packages: picamera2 and libcamera come from apt, outside the venv.
    python3 -m venv --system-site-packages "$v"
    "$v/bin/python" -m pip install -q --disable-pip-version-check "$@"
    touch "$v/.complete"
fi
ln -sfn "../../$v" "releases/$rel/venv"
if "$v/bin/python" -c "import tensorflow" 2>/dev/null; then
    echo "deploy: warning: TensorFlow is importable in the target venv (from system site-packages); the device side does not use it"
fi
EOS

    # --- smoke test --------------------------------------------------------------------------
    step smoke-test "device info, device bench"
    rsh "releases/$RELEASE/bin/device" info >/dev/null
    rsh "releases/$RELEASE/bin/device" bench --runs 50 --warmup 5 >/dev/null
fi

NEWREL="$RELEASE"
[ "$SKIP_INSTALL" = 1 ] && NEWREL="$(rsh readlink current)" && NEWREL="${NEWREL##*/}"

run_bench() {  # $1: release; writes reports/ on the target, copies them here
    local rel="$1" dest
    step bench "device bench + replay run on $HOSTNAME_PART"
    rsh "releases/$rel/bin/device" bench --runs 500 --json "reports/bench-$rel.json" >/dev/null
    rsh "releases/$rel/bin/device" run --source "releases/$rel/bench/clip.avi" --quiet \
        --budget-ms "$BUDGET" --output "reports/run-$rel.json" >/dev/null
    dest="$REPORTS/$HOSTNAME_PART"
    mkdir -p "$dest"
    rsh cat "reports/bench-$rel.json" > "$dest/bench-$rel.json"
    rsh cat "reports/run-$rel.json" > "$dest/run-$rel.json"
    say "results: $dest/bench-$rel.json, $dest/run-$rel.json"
}

p99_of() {  # p99 of the per-frame total in a run result
    "$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["stages"]["total"]["p99"])' "$1"
}

if [ "$GATE" = 1 ]; then
    if [ ! -e "$PAY/bench/clip.avi" ]; then die "internal: no clip for --gate"; fi
    run_bench "$NEWREL"
    P99="$(p99_of "$REPORTS/$HOSTNAME_PART/run-$NEWREL.json")"
    if ! "$PYTHON" -c 'import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) else 1)' "$P99" "$BUDGET"; then
        STEP="gate"
        die "gate: p99 per-frame total on $HOSTNAME_PART is $P99 ms, over the $BUDGET ms budget; current not switched (release $NEWREL kept for inspection)"
    fi
    say "gate: p99 per-frame total $P99 ms <= $BUDGET ms"
fi

# --- switch ----------------------------------------------------------------------------------
if [ "$SKIP_INSTALL" = 0 ]; then
    step switch "current -> releases/$NEWREL"
    rscript "$NEWREL" "$KEEP" <<'EOS'
set -euo pipefail
cd && cd "$1"; rel="$2"; keep="$3"
touch "releases/$rel/OK"
ln -sfn "releases/$rel" current.new && mv -T current.new current
# Keep the newest $keep good releases (marked OK at their switch); drop older good ones and
# every failed or refused leftover.  Never the current one.
cur="$(readlink current)"; cur="${cur##*/}"
n=0
for r in $(ls -1 releases | sort -r); do
    [ "$r" = "$cur" ] && { n=$((n + 1)); continue; }
    if [ -e "releases/$r/OK" ] && [ "$n" -lt "$keep" ]; then n=$((n + 1)); continue; fi
    rm -rf "releases/$r"
done
for v in venvs/*; do
    [ -d "$v" ] || continue
    used=0
    for r in releases/*/venv; do [ "$(readlink "$r")" = "../../$v" ] && used=1; done
    [ "$used" = 1 ] || rm -rf "$v"
done
EOS
fi

if [ "$SERVICE" = 1 ]; then
    step service "systemd user unit mnist-edge.service"
    rscript <<'EOS' || die "could not install the service (is systemd running? try: sudo loginctl enable-linger \$USER)"
set -euo pipefail
cd && cd "$1"; root="$(pwd -P)"
mkdir -p ~/.config/systemd/user
cat > ~/.config/systemd/user/mnist-edge.service <<EOF
[Unit]
Description=mnist-edge: recognise digits from the camera
After=network.target

[Service]
ExecStart=$root/current/bin/device run --camera --quiet --output $root/reports/service-results.json
Restart=on-failure
RestartSec=5

[Install]
WantedBy=default.target
EOF
systemctl --user daemon-reload
systemctl --user enable mnist-edge.service
systemctl --user restart mnist-edge.service
loginctl enable-linger "$USER" 2>/dev/null || true
echo "deploy: service enabled; logs: journalctl --user -u mnist-edge -f"
EOS
fi

if [ "$BENCH" = 1 ] && [ "$GATE" = 0 ]; then run_bench "$NEWREL"; fi
STEP="done"
say "done: $TARGET:~/$RDIR/current -> releases/$NEWREL; run it with ~/$RDIR/current/bin/device run --camera"
