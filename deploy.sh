#!/usr/bin/env bash
# deploy.sh: ship the mnist-edge device side and a model to one Raspberry Pi (or any Linux box)
# over SSH, into a new release folder, smoke-test it there, and only then switch `current`.
#
#   ./deploy.sh [options] user@host
#
# This file is the single-host front: options, ssh plumbing, preflight, transfer, printing.
# The release itself (payload check, runtime choice by CPU, venv, smoke test with the golden
# check, bench, atomic switch, keep N, rollback, systemd) is device/release.py, run ON the
# target with its system python3; the fleet playbook runs the very same steps.
#
# Nothing the target prints is trusted.  Its answers are JSON that release.py validates here
# (strict patterns, one line naming a bad value); its messages are shown with control
# characters replaced; no target value reaches arithmetic, eval, a printf format or a command
# line.  User values reach the target's shell only single-quoted (shq).
set -euo pipefail

usage() {
    cat <<'EOF'
usage: ./deploy.sh [options] user@host

Ship the device side and the model to a Raspberry Pi over SSH, atomically.

options:
  --port N                SSH port (default 22)
  --identity KEY          SSH private key
  --model PATH            .tflite to ship, with its manifest beside it (default: the shipped model)
  --dir DIR               remote root (default mnist-edge, relative to the remote home)
  --bench                 after installing, run `device bench` and a short replay `device run`
                          on the target and copy the result JSON to reports/<host>/ here
  --gate                  run that benchmark before switching, and switch only when the
                          target's p99 per-frame total is within --budget-ms
  --budget-ms MS          per-frame budget for --gate (default 5)
  --service               install and enable a systemd user unit running `device run --camera`
  --preview [HOST:]PORT   with --service: serve the live preview (127.0.0.1 unless HOST; reach it
                          with ssh -L PORT:127.0.0.1:PORT; a LAN bind such as 0.0.0.0:8080 is
                          protected by a token kept in the target's ROOT/preview.env)
  --rollback              switch `current` back to the previous good release and exit
  --keep N                good releases to keep, current included (default 3)
  --reports DIR           where --bench results land here (default ./reports)
  --ssh-config FILE       use this ssh_config (ssh -F), e.g. for a jump host
  --accept-new-host-key   trust an unknown host key on first contact (accept-new, never "no")
  --dry-run               connect and check the target (read-only), say what would be done, change nothing
  -h, --help              this help
EOF
}

say() { printf 'deploy: %s\n' "$*"; }
STEP="start" NOTE="" DIED=0 CTL="" MUXDIR=""
step() { STEP="$1"; say "[$1] ${2:-}"; }
# die MESSAGE [STATUS]: one line on stderr (past the transfer it says what `current` is); the
# EXIT trap then cleans up.
die() {
    printf 'deploy: error: %s%s\n' "$1" "${NOTE:+ [step $STEP; $NOTE]}" >&2
    DIED=1
    exit "${2:-1}"
}
# shq WORD: WORD single-quoted for a POSIX shell (the target's login shell).
shq() { printf "'%s'" "${1//\'/\'\\\'\'}"; }
# sanitize: text from the target made safe for a terminal (no escape sequences), live.
sanitize() { LC_ALL=C sed -u -e 's/[^[:print:][:blank:]]/?/g' -e '/^release: error: /d'; }

PORT=22 IDENTITY="" MODEL="" RDIR="mnist-edge" BENCH=0 GATE=0 BUDGET=5 SERVICE=0 ROLLBACK=0
KEEP=3 ACCEPT_NEW=0 DRY=0 TARGET="" REPORTS="" SSH_CONFIG="" PREVIEW=""
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RELPY="$HERE/device/release.py"
PYTHON="${PYTHON:-python3}"

while [ $# -gt 0 ]; do
    case "$1" in
        --port=*|--identity=*|--model=*|--dir=*|--budget-ms=*|--keep=*|--reports=*|--ssh-config=*|--preview=*)
            set -- "${1%%=*}" "${1#*=}" "${@:2}"; continue ;;
        --port|--identity|--model|--dir|--budget-ms|--keep|--reports|--ssh-config|--preview)
            if [ $# -lt 2 ]; then
                case "$1" in
                    --port) die "--port needs a number, e.g. --port 22" 2 ;;
                    --budget-ms|--keep) die "$1 needs a number" 2 ;;
                    *) die "$1 needs a value" 2 ;;
                esac
            fi
            case "$1" in
                --port) PORT="$2" ;; --identity) IDENTITY="$2" ;; --model) MODEL="$2" ;;
                --dir) RDIR="$2" ;; --budget-ms) BUDGET="$2" ;; --keep) KEEP="$2" ;;
                --reports) REPORTS="$2" ;; --ssh-config) SSH_CONFIG="$2" ;; --preview) PREVIEW="$2" ;;
            esac
            shift 2 ;;
        --bench) BENCH=1; shift ;;
        --gate) GATE=1; shift ;;
        --service) SERVICE=1; shift ;;
        --rollback) ROLLBACK=1; shift ;;
        --accept-new-host-key) ACCEPT_NEW=1; shift ;;
        --dry-run) DRY=1; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) usage >&2; die "unknown option $1" 2 ;;
        *) [ -z "$TARGET" ] || die "one target only (got $TARGET and $1)" 2; TARGET="$1"; shift ;;
    esac
done
[ -n "$TARGET" ] || { usage >&2; die "give the target as user@host" 2; }
# user@host (or an ssh_config alias); never starting with '-', which ssh would take as an option.
[[ "$TARGET" =~ ^([A-Za-z0-9_][A-Za-z0-9._-]*@)?[A-Za-z0-9][A-Za-z0-9._:%-]*$ ]] \
    || die "bad target $TARGET (expected user@host)" 2
# host:PORT as scp and URLs write it (one colon: an IPv6 address has several).
if [[ "$TARGET" =~ ^([^:]*):([0-9]+)$ ]]; then
    die "bad target $TARGET: give the port with --port ${BASH_REMATCH[2]} (target ${BASH_REMATCH[1]})" 2
fi
HOST="${TARGET#*@}"
# (arithmetic only on values that matched digits-only patterns)
{ [[ "$PORT" =~ ^[0-9]{1,5}$ ]] && (( 10#$PORT >= 1 && 10#$PORT <= 65535 )); } || die "--port must be a number 1-65535" 2
{ [[ "$KEEP" =~ ^[0-9]{1,3}$ ]] && (( 10#$KEEP >= 2 )); } || die "--keep must be a number >= 2" 2
[[ "$BUDGET" =~ ^[0-9]{1,6}([.][0-9]{1,6})?$ && "$BUDGET" =~ [1-9] ]] || die "--budget-ms must be a number > 0" 2
[ -z "$PREVIEW" ] || [ "$SERVICE" = 1 ] || die "--preview goes with --service (on the Pi: device run --camera --preview PORT)" 2
[ -z "$PREVIEW" ] || [[ "$PREVIEW" =~ ^([0-9.]{7,15}:|localhost:)?[0-9]{1,5}$ ]] \
    || die "--preview takes PORT or IPV4:PORT (e.g. 8080 or 0.0.0.0:8080)" 2
[ -z "$IDENTITY" ] || [ -r "$IDENTITY" ] || die "--identity $IDENTITY is not readable" 2
[ -z "$SSH_CONFIG" ] || [ -r "$SSH_CONFIG" ] || die "--ssh-config $SSH_CONFIG is not readable" 2
MODEL="${MODEL:-$HERE/device/models/model.tflite}"
REPORTS="${REPORTS:-$HERE/reports}"
RPATH="${RDIR#\~/}"     # for rsync/tar/cat: relative to the remote home unless absolute

# --- ssh plumbing ----------------------------------------------------------------------------
cleanup() {
    if [ -S "$MUXDIR/mux" ]; then
        ssh -o ControlPath="$MUXDIR/mux" -O exit "$TARGET" >/dev/null 2>&1 || true
    fi
    [ -z "$CTL" ] || rm -rf "$CTL"
    [ -z "$MUXDIR" ] || rm -rf "$MUXDIR"
}
on_exit() {
    local rc=$?
    set +e
    if [ "$rc" -ne 0 ] && [ "$DIED" = 0 ]; then
        printf 'deploy: error: step %s failed (exit %s)%s\n' "$STEP" "$rc" "${NOTE:+; $NOTE}" >&2
    fi
    cleanup
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
TMP="${TMPDIR:-/tmp}"
[[ "$TMP" != *[[:space:]\'\"\\]* ]] || TMP=/tmp     # the rsync -e wrapper path must split cleanly
CTL="$(mktemp -d "$TMP/mnist-edge-deploy.XXXXXX")"
# The control socket's path must fit a unix socket (107 bytes; ssh adds 17 while creating it).
MUXDIR="$CTL"
[ "${#CTL}" -le 80 ] || MUXDIR="$(mktemp -d /tmp/mnist-edge-ssh.XXXXXX)"

SSH_OPTS=(-p "$PORT" -o BatchMode=yes -o ConnectTimeout=8 -o ServerAliveInterval=10
          -o ControlMaster=auto -o ControlPath="$MUXDIR/mux" -o ControlPersist=120)
[ -z "$SSH_CONFIG" ] || SSH_OPTS=(-F "$SSH_CONFIG" "${SSH_OPTS[@]}")
[ -z "$IDENTITY" ] || SSH_OPTS+=(-i "$IDENTITY" -o IdentitiesOnly=yes)
[ "$ACCEPT_NEW" = 0 ] || SSH_OPTS+=(-o StrictHostKeyChecking=accept-new)
{   # rsync's -e takes one command line: a wrapper holding the options, quoted once
    printf '#!/bin/sh\nexec ssh'
    for o in "${SSH_OPTS[@]}"; do printf ' %s' "$(shq "$o")"; done
    printf ' "$@"\n'
} > "$CTL/ssh"
chmod +x "$CTL/ssh"

# rsh WORD...: run a command on the target; every word is single-quoted for its shell.
rsh() {
    local cmd="" w
    for w in "$@"; do cmd+="${cmd:+ }$(shq "$w")"; done
    # shellcheck disable=SC2029  # expanded here on purpose: every word is quoted by shq
    ssh "${SSH_OPTS[@]}" "$TARGET" "$cmd"
}
# rstep STEP ARG...: a release step on the target, run by the target's python3 from this
# checkout's release.py (on stdin).  Its one JSON answer goes to $CTL/answer.json, its
# messages to our stderr, sanitised.  Returns the step's exit status.
rstep() {
    local rc
    set +e
    rsh python3 - "$1" "--root=$RDIR" "${@:2}" < "$RELPY" 2>&1 >"$CTL/answer.json" | sanitize >&2
    rc=${PIPESTATUS[0]}
    set -e
    return "$rc"
}
# answer KEY: a field of the last step's answer, validated and printable (release.py field).
answer() { "$PYTHON" "$RELPY" field "$CTL/answer.json" "$1" 2>/dev/null || true; }
# remote STEP ARG...: rstep, and die with the target's one-line reason when it fails.
remote() {
    local rc=0 why
    rstep "$@" || rc=$?
    [ "$rc" = 0 ] && return 0
    case "$rc" in
        255) die "lost the SSH connection to $HOST during step $STEP" ;;
        127) die "python3 is not installed on $HOST (sudo apt install python3 python3-venv)" ;;
    esac
    why="$(answer error)"
    die "${why:-step $1 failed on $HOST (exit $rc)}"
}
# send DIR REMOTE_DIR [RSYNC_OPTION...]: copy a folder's content to the target.
send() {
    local src="$1" dest="$2"
    shift 2
    rsh mkdir -p -- "$dest" || die "cannot create $dest on $HOST"
    # (not to an IPv6 address: rsync would read its ':' as host:path)
    if [ "$XFER" = rsync ] && [[ "$HOST" != *:* ]] && command -v rsync >/dev/null; then
        # -s: the remote path travels in rsync's protocol, never through the remote shell.
        rsync -a -s "$@" -e "$CTL/ssh" "$src/" "$TARGET:$dest/" || die "rsync to $HOST failed"
    else
        tar -C "$src" -czf - . | rsh tar -xzf - -C "$dest" || die "tar over ssh to $HOST failed"
    fi
}
# local_error FILE: the one-line reason in a local release.py run's stderr.
local_error() { sed -n 's/^release: error: //p' "$1" | head -n 1; }

# --- connect (every mode) --------------------------------------------------------------------
# status: read-only; run first so that a refused port, an unknown host key or a missing python3
# gives one line before anything is sent.
preflight() {
    local rc
    step preflight "connecting to $TARGET (port $PORT)"
    set +e
    rsh python3 - status "--root=$RDIR" ${CONTENT:+"--content=$CONTENT"} < "$RELPY" 2>"$CTL/ssh.err" \
        | head -c 1000000 > "$CTL/status.json"
    rc=${PIPESTATUS[0]}
    set -e
    [ "$rc" = 0 ] && return 0
    local err
    err="$(sanitize < "$CTL/ssh.err" | tr '\n' ' ' | cut -c1-300)"
    case "$err" in
        *"Host key verification failed"*|*"No ED25519 host key"*|*"host key for"*)
            die "the host key of $HOST is unknown or changed; check it, then add it to known_hosts or pass --accept-new-host-key" 2 ;;
        *"Connection refused"*) die "$HOST refused SSH on port $PORT (is sshd running? right --port?)" 2 ;;
        *"timed out"*|*"No route"*|*"not known"*|*"resolve"*) die "cannot reach $HOST:$PORT ($err)" 2 ;;
        *"Permission denied"*) die "$TARGET refused the key (Permission denied); pass --identity KEY or run ssh-copy-id" 2 ;;
    esac
    [ "$rc" != 127 ] || die "python3 is not installed on $HOST (sudo apt install python3 python3-venv)" 2
    [ "$rc" = 255 ] && die "ssh to $TARGET failed: $err" 2
    die "the preflight on $HOST failed (exit $rc): ${err:-no message}" 2
}

if [ "$ROLLBACK" = 1 ]; then
    CONTENT="" preflight
    step rollback "switching current back to the previous good release"
    [ "$DRY" = 0 ] || { say "dry run: would switch current on $TARGET back to the previous good release"; exit 0; }
    NOTE="\`current\` on $HOST was not changed"
    remote rollback
    say "current on $HOST: $(answer previous) -> $(answer current) (service: $(answer service))"
    exit 0
fi

# --- payload (here), then preflight --------------------------------------------------------
step package "device side + model"
"$PYTHON" "$RELPY" pack "--model=$MODEL" "--out=$CTL/payload" "--root=$RDIR" >"$CTL/pack.json" 2>"$CTL/pack.err" \
    || { why="$(local_error "$CTL/pack.err")"; [ -n "$why" ] || cat "$CTL/pack.err" >&2; die "${why:-could not build the payload}" 2; }
RELEASE="$("$PYTHON" "$RELPY" field "$CTL/pack.json" release)"
CONTENT="$("$PYTHON" "$RELPY" field "$CTL/pack.json" content)"
MODEL_SHA="$("$PYTHON" "$RELPY" field "$CTL/pack.json" model_sha256)"

preflight
if ! "$PYTHON" "$RELPY" check "$CTL/status.json" --content "$CONTENT" >"$CTL/facts" 2>"$CTL/check.err"; then
    why="$(local_error "$CTL/check.err")"
    [ -n "$why" ] || { cat "$CTL/check.err" >&2; why="internal error while checking the target's answer"; }
    die "$why" 2
fi
SHOW="" RUNTIME="" REQS="" XFER=tar UP_TO_DATE=no CURRENT=""
while IFS= read -r line; do      # values are printable ASCII, checked by release.py check
    case "$line" in
        display=*) SHOW="${line#display=}" ;;
        runtime=*) RUNTIME="${line#runtime=}" ;;
        requirements=*) REQS="${line#requirements=}" ;;
        transfer=rsync) XFER=rsync ;;
        up_to_date=yes) UP_TO_DATE=yes ;;
        current=*) CURRENT="${line#current=}" ;;
    esac
done < "$CTL/facts"
say "$SHOW"
say "runtime: $RUNTIME"

if [ "$DRY" = 1 ]; then
    if [ "$UP_TO_DATE" = yes ]; then
        say "dry run: up to date: $CURRENT on $TARGET already has this code, model and dependency set"
    else
        say "dry run: would send releases/$RELEASE to $RPATH on $TARGET (transfer by $XFER)"
        say "dry run: dependencies: $REQS (venv with --system-site-packages)"
        say "dry run: model $(basename "$MODEL") sha256 ${MODEL_SHA:0:12}; smoke test (info, bench, golden), then switch current"
    fi
    exit 0
fi

# --- release ---------------------------------------------------------------------------------
NEWREL="$RELEASE"
if [ "$UP_TO_DATE" = yes ]; then
    say "up to date: the current release on $TARGET ($CURRENT) already has this code, model and dependency set"
    NEWREL="$CURRENT"
else
    NOTE="\`current\` on $HOST was not changed"
    step transfer "incoming/$RELEASE"
    send "$CTL/payload" "$RPATH/incoming/$RELEASE" --delete
    step install "verify the payload, choose the runtime, venv"
    remote install "--payload=incoming/$RELEASE"
    step smoke-test "device info, device bench, device golden"
    remote smoke "--release=$RELEASE"
fi

# bench RELEASE [--gate]: device bench + replay run on the target, results copied to
# $REPORTS/<host>/; with --gate, die (before any switch) when p99 is over the budget.
bench() {
    local rel="$1" rc=0 dest="$REPORTS/$HOST" p99 f
    step bench "device bench + replay run on $HOST"
    local clip="${XDG_CACHE_HOME:-$HOME/.cache}/mnist-edge/bench-clip-s0.avi"
    if [ ! -s "$clip" ] || [ ! -s "$clip.labels.json" ]; then
        mkdir -p "$(dirname "$clip")"
        (cd "$HERE" && "$PYTHON" -m device.cli make-clip "$clip" --digits 60 --hold 2 --seed 0) >/dev/null \
            || die "could not make the benchmark clip (needs numpy and opencv here: pip install -e '.[device]')"
    fi
    mkdir -p "$CTL/bench"
    cp "$clip" "$CTL/bench/clip.avi"
    cp "$clip.labels.json" "$CTL/bench/clip.avi.labels.json"
    send "$CTL/bench" "$RPATH/bench"
    rstep bench "--release=$rel" "--budget-ms=$BUDGET" "${@:2}" || rc=$?
    p99="$(answer p99_ms)"
    if [ -n "$p99" ]; then      # results exist (also when the gate refuses): bring them here
        mkdir -p "$dest"
        for f in bench run; do
            if ! rsh cat -- "$RPATH/reports/$f-$rel.json" > "$dest/.$f-$rel.json.part"; then
                rm -f "$dest/.$f-$rel.json.part"
                die "could not copy reports/$f-$rel.json from $HOST"
            fi
            mv "$dest/.$f-$rel.json.part" "$dest/$f-$rel.json"
        done
        say "results: $dest/bench-$rel.json, $dest/run-$rel.json"
    fi
    if [ "$rc" != 0 ]; then
        if [ "$(answer within_budget)" = no ]; then
            STEP=gate
            [ "$UP_TO_DATE" = no ] || die "gate: p99 per-frame total on $HOST is $p99 ms, over the $BUDGET ms budget; it is the current release already (nothing to switch)"
            die "gate: p99 per-frame total on $HOST is $p99 ms, over the $BUDGET ms budget; current not switched (release $rel kept for inspection)"
        fi
        [ "$rc" != 255 ] || die "lost the SSH connection to $HOST during step $STEP"
        why="$(answer error)"
        die "${why:-step bench failed on $HOST (exit $rc)}"
    fi
    [ "${2:-}" != --gate ] || say "gate: p99 per-frame total $p99 ms <= $BUDGET ms"
}

[ "$GATE" = 0 ] || bench "$NEWREL" --gate

if [ "$UP_TO_DATE" = no ]; then
    step switch "current -> releases/$NEWREL"
    if ! rstep switch "--release=$NEWREL" "--keep=$KEEP"; then
        [ "$(answer changed)" != yes ] || NOTE="\`current\` on $HOST now points to the new release $NEWREL (--rollback goes back)"
        why="$(answer error)"
        die "${why:-step switch failed on $HOST}"
    fi
fi
NOTE="\`current\` on $HOST now points to the new release $NEWREL (--rollback goes back)"
[ "$UP_TO_DATE" = no ] || NOTE="\`current\` on $HOST is $NEWREL, unchanged"

if [ "$SERVICE" = 1 ]; then
    step service "systemd user unit mnist-edge.service"
    if [ -n "$PREVIEW" ]; then remote service "--preview=$PREVIEW"; else remote service; fi
fi
[ "$BENCH" = 0 ] || [ "$GATE" = 1 ] || bench "$NEWREL"
STEP="done"
say "done: $TARGET:$RPATH/current -> releases/$NEWREL; run it with $RPATH/current/bin/device run --camera"
