#!/usr/bin/env python3
"""The release steps of mnist-edge: one implementation, run on the target by deploy.sh (one Pi)
and by the fleet playbook (many).

Runs with the target's *system* python3 before any venv exists, so: standard library only,
Python >= 3.9, no prompts, nothing taken from the caller's environment.  It works the same run as
a file (``python3 ROOT/incoming/NAME/device/release.py STEP ...``, Ansible's ``command:``) or fed
on stdin (``ssh pi python3 - STEP ... < device/release.py``, Ansible's ``script:``); only
``install`` needs the rest of the payload (it imports ``device.platforms`` and
``device.manifest`` from the payload it installs).

One self-contained file on purpose: fed on stdin it cannot import its siblings, so only
``install`` (which has the payload on disk) and the workstation steps import ``device.*``.

Every step prints human lines on stderr and exactly ONE JSON object on stdout, always with
``step``, ``ok`` and ``changed``; exit status 0 = done (or nothing to do), 1 = the step ran and
failed (smoke test, gate, pip, systemd), 2 = refused before changing anything (bad arguments,
a payload that does not verify, an unsupported target, an unsafe path).

Target steps (``--root``: the remote root, relative to $HOME unless absolute):
  status    what the target is (facts) and runs (current release); with ``--content H``,
            ``up_to_date`` says whether a payload of content hash H would change anything
  install   verify a transferred payload (content hash, model sha256 vs manifest), choose the
            runtime from the target's CPU (device.platforms), create or reuse a venv for that
            dependency set, and make the payload ``releases/NAME``
  smoke     device info, a short device bench and ``device golden`` on a release
  bench     device bench + a replay device run into reports/; ``--gate`` exits 1 over budget
  switch    make a smoke-tested release current (atomic symlink), keep N good ones, drop
            failed releases, unused venvs and stale incoming payloads; restart the service
  rollback  current back to the previous good release (``--from NAME``: only if NAME is current)
  service   the systemd user unit, daemon-reload, enable, restart; linger and video group

Workstation steps (same file, so the format of the target's answers and their validation live
side by side):
  pack      build a payload from this checkout and a model (JSON: release name, content hash)
  check     validate a target's ``status`` answer (untrusted) and print shell-safe key=value
            lines for deploy.sh
  field     print fields of a step's JSON answer, sanitised, one per line

Layout under the root:
  releases/NAME/    device/ (package + model), bin/device, venv -> ../../venvs/KEY, RELEASE.json,
                    SMOKE.json (smoke result), OK (switched to once: a good release)
  venvs/KEY/        one venv per (machine, python, requirements), shared by releases
  incoming/NAME/    payloads on their way in
  current -> releases/NAME
  reports/          bench/run results and the service's results
  bench/clip.avi    the replay clip for ``bench``
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    # Run as a file, the script's folder (device/) heads sys.path; fed on stdin, the working
    # directory does.  Neither may shadow the standard library imported below: drop both, and
    # put the package root (the folder above device/) first, so `import device...` works.
    _here = os.path.dirname(os.path.abspath(__file__)) if os.path.isfile(globals().get("__file__") or "") else None
    sys.path[:] = [p for p in sys.path if p not in ("", ".") and os.path.abspath(p) != _here]
    if _here:
        sys.path.insert(0, os.path.dirname(_here))

import argparse  # noqa: E402  (after the sys.path fix above)
import hashlib  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

RELEASE_FORMAT = 1        # RELEASE.json; 1: release, content, git, model_sha256, ... + install fields
NAME_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z-[A-Za-z0-9]{1,40}-[0-9a-f]{12}")
CONTENT_RE = re.compile(r"[0-9a-f]{12}")
UNIT = "mnist-edge.service"
MIN_FREE_KB = 400_000
# The /proc/cpuinfo keys device.platforms.parse_cpuinfo reads; `status` sends only these lines
# (not clock speeds that change every second), so the facts key is stable and the answer small.
CPUINFO_KEYS = ("Features", "flags", "CPU implementer", "CPU part", "model name", "Hardware")
STEP_TIMEOUT = 900        # seconds for one tool run on the target (pip on a Pi Zero is slow)


class Refused(Exception):
    """Nothing was changed: the inputs are wrong (exit 2)."""
    code = 2

    def __init__(self, msg: str, **data):
        super().__init__(msg)
        self.data = data


class Failed(Refused):
    """The step ran and failed (exit 1); ``data`` says what did change (e.g. ``current``)."""
    code = 1


def say(msg: str) -> None:
    print(f"release: {msg}", file=sys.stderr, flush=True)


# --- paths ---------------------------------------------------------------------------------

def check_root(root: str) -> str:
    """The absolute root, or Refused.  systemd cannot run a program whose path has quotes or a
    backslash (\"Executable name contains special characters\"), and the unit runs
    ROOT/current/bin/device: such roots are refused for every step, not just for the service."""
    if not root or any(ord(c) < 32 or ord(c) == 127 for c in root):
        raise Refused(f"bad root {ascii(root)}: empty or has control characters")
    if any(c in root for c in "\"'\\"):
        raise Refused(f"root {ascii(root)} has a quote or backslash; systemd cannot run a program "
                      "from such a path: choose another --dir")
    if root.startswith("~") and not root.startswith("~/"):
        raise Refused(f"root {ascii(root)}: only ~/ is understood (relative paths are under $HOME)")
    path = os.path.expanduser(root)
    return os.path.normpath(path if os.path.isabs(path) else os.path.join(os.path.expanduser("~"), path))


class Root:
    """The folders of a root, and the names in it that can be trusted."""

    def __init__(self, root: str):
        self.path = check_root(root)
        self.releases = os.path.join(self.path, "releases")
        self.venvs = os.path.join(self.path, "venvs")
        self.incoming = os.path.join(self.path, "incoming")
        self.reports = os.path.join(self.path, "reports")
        self.current = os.path.join(self.path, "current")

    def release(self, name: str, must_exist: bool = True) -> str:
        if not NAME_RE.fullmatch(name or ""):
            raise Refused(f"bad release name {ascii(name)}")
        path = os.path.join(self.releases, name)
        if must_exist and not os.path.isdir(path):
            raise Refused(f"no release {name} under {self.path}")
        return path

    def current_name(self) -> str | None:
        try:
            target = os.readlink(self.current)
        except OSError:
            return None
        name = os.path.basename(target)
        return name if NAME_RE.fullmatch(name) and os.path.isdir(os.path.join(self.releases, name)) else None

    def names(self) -> list:
        try:
            return sorted(n for n in os.listdir(self.releases) if NAME_RE.fullmatch(n))
        except OSError:
            return []

    def good(self, name: str) -> bool:
        return os.path.exists(os.path.join(self.releases, name, "OK"))

    def lock(self):
        """One mutating step at a time on a root (two deploys racing would mix releases)."""
        import fcntl

        os.makedirs(self.path, exist_ok=True)
        fd = os.open(os.path.join(self.path, ".lock"), os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise Failed(f"another release step is running on {self.path}; try again when it ends")
        return fd

    def point_current(self, name: str) -> None:
        """Switch `current` atomically: a new symlink renamed over the old one."""
        tmp = os.path.join(self.path, f".current.{os.getpid()}")
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(os.path.join("releases", name), tmp)
        os.replace(tmp, self.current)
        fd = os.open(self.path, os.O_RDONLY)   # the rename survives a power cut (SD cards)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_json(path: str, what: str) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise Refused(f"cannot read {what} {path}: {exc}") from None
    if not isinstance(data, dict):
        raise Refused(f"{what} {path} is not a JSON object")
    return data


def write_json(path: str, obj: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def content_hash(folder: str) -> str:
    """Hash of a payload: every file's path, executable bit and bytes, except what install adds
    (RELEASE.json's install fields, SMOKE.json, OK, the venv link) and bytecode."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        rel_dir = os.path.relpath(dirpath, folder)
        for fn in sorted(filenames):
            rel = os.path.normpath(os.path.join(rel_dir, fn))
            if rel in ("RELEASE.json", "SMOKE.json", "OK", "venv") or fn.endswith(".pyc"):
                continue
            p = os.path.join(dirpath, fn)
            with open(p, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            h.update(f"{rel}\0{os.access(p, os.X_OK):d}\0{digest}\n".encode())
    return h.hexdigest()[:12]


# --- facts ---------------------------------------------------------------------------------

def _run(cmd: list, timeout: float = 20) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None


def picamera2_state() -> str:
    """installed | available (apt has it) | absent.  apt's camera stack is built against the
    OS's numpy 1.x, so either of the first two keeps numpy < 2 in the venv."""
    import importlib.util

    if apt_installed("python3-picamera2") or importlib.util.find_spec("picamera2"):
        return "installed"
    r = _run(["apt-cache", "policy", "python3-picamera2"])
    if r and r.returncode == 0 and re.search(r"Candidate: [0-9]", r.stdout):
        return "available"
    return "absent"


def decisive_cpuinfo(text: str) -> str:
    """The lines of /proc/cpuinfo that the runtime choice reads, each once, in order."""
    return "\n".join(dict.fromkeys(ln for ln in text.splitlines() if ln.split(":", 1)[0].strip() in CPUINFO_KEYS))


def gather_facts(root: str) -> dict:
    """Raw facts about this machine; the workstation validates every one (see check_status)."""
    os_name = "unknown"
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    os_name = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    probe = root
    while not os.path.isdir(probe):
        probe = os.path.dirname(probe)
    st = os.statvfs(probe)
    try:
        with open("/proc/cpuinfo", errors="replace") as f:
            cpuinfo = decisive_cpuinfo(f.read())
    except OSError:
        cpuinfo = ""
    return {"machine": os.uname().machine, "python": "%d.%d" % sys.version_info[:2],
            "pointer_bits": struct.calcsize("P") * 8,     # a 32-bit Pi OS on a 64-bit kernel says aarch64
            "os": os_name, "free_kb": st.f_bavail * st.f_frsize // 1024,
            "rsync": shutil.which("rsync") is not None, "picamera2": picamera2_state(),
            "cpuinfo": cpuinfo}


def facts_key(facts: dict) -> str:
    """What decides the dependency set besides the code: same code + same key = same choice."""
    decisive = [facts["machine"], facts["python"], facts["pointer_bits"], facts["picamera2"] != "absent",
                facts["cpuinfo"]]
    return hashlib.sha256(json.dumps(decisive).encode()).hexdigest()[:16]


def choose(facts: dict):
    """device.platforms.choose_runtime on a target's facts (the workstation's validated copy, or
    the target's own); raises Refused with its reason."""
    from device.platforms import Unsupported, choose_runtime

    try:
        return choose_runtime(facts["machine"], facts["python"], facts["cpuinfo"],
                              facts["picamera2"] != "absent", facts["pointer_bits"])
    except Unsupported as exc:
        raise Refused(printable(str(exc), 300)) from None


# --- target steps --------------------------------------------------------------------------

def current_release(root: Root, key: str, content: str | None) -> tuple:
    """(what `current` is, whether a payload of ``content`` would change nothing): same code,
    model and facts key, and a complete venv."""
    cur = root.current_name()
    if not cur:
        return None, False
    rel = root.release(cur)
    try:
        meta = read_json(os.path.join(rel, "RELEASE.json"), "release record")
    except Refused:
        meta = {}
    current = {"release": cur, "content": meta.get("content"), "runtime": meta.get("runtime"),
               "requirements": meta.get("requirements"), "model_sha256": meta.get("model_sha256"),
               "facts_key": meta.get("facts_key"),
               "venv_ok": os.path.exists(os.path.join(rel, "venv", ".complete"))}
    up = bool(content and current["content"] == content and current["facts_key"] == key and current["venv_ok"])
    return current, up


def step_status(root: Root, content: str | None = None) -> dict:
    facts = gather_facts(root.path)
    key = facts_key(facts)
    current, up = current_release(root, key, content)
    return {"changed": False, "root": root.path, "facts": facts, "facts_key": key,
            "current": current, "up_to_date": up,
            "releases": [{"release": n, "good": root.good(n)} for n in root.names()],
            "service": os.path.exists(unit_path())}


def run_tool(cmd: list, what: str, timeout: float = STEP_TIMEOUT, **kw) -> subprocess.CompletedProcess:
    """Run a tool with its output kept off our stdout (that carries the one JSON answer);
    on failure show its last lines and raise Failed naming ``what``."""
    try:
        r = subprocess.run([str(c) for c in cmd], stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        raise Failed(f"{what} did not finish within {timeout:.0f} s") from None
    except OSError as exc:
        raise Failed(f"{what} could not start: {exc}") from None
    if r.returncode != 0:
        tail = [ln for ln in (r.stderr + "\n" + r.stdout).splitlines() if ln.strip()][-12:]
        for ln in tail:
            print(f"  | {ln}", file=sys.stderr)
        raise Failed(f"{what} failed (exit {r.returncode}): {tail[-1].strip() if tail else 'no output'}",
                     exit_status=r.returncode)
    return r


def venv_key(facts: dict, requirements: list) -> str:
    return hashlib.sha256(json.dumps([facts["machine"], facts["python"], facts["pointer_bits"],
                                      sorted(requirements)]).encode()).hexdigest()[:12]


def ensure_venv(root: Root, facts: dict, requirements: list) -> tuple:
    """(key, created): one venv per dependency set, with --system-site-packages so apt's
    picamera2/libcamera are importable; complete only once pip succeeded (``.complete``)."""
    key = venv_key(facts, requirements)
    v = os.path.join(root.venvs, key)
    if os.path.exists(os.path.join(v, ".complete")) and os.path.exists(os.path.join(v, "bin", "python")):
        return key, False
    shutil.rmtree(v, ignore_errors=True)
    os.makedirs(root.venvs, exist_ok=True)
    say(f"venv venvs/{key}: {' '.join(requirements)} (pip; minutes on a Pi)")
    try:
        run_tool([sys.executable, "-m", "venv", "--system-site-packages", v], "python3 -m venv")
    except Failed as exc:
        raise Failed(f"{exc}; on Debian / Pi OS: sudo apt install python3-venv") from None
    run_tool([os.path.join(v, "bin", "python"), "-m", "pip", "install", "-q", "--no-input",
              "--disable-pip-version-check", *requirements], f"pip install {' '.join(requirements)}")
    open(os.path.join(v, ".complete"), "w").close()
    return key, True


def apt_installed(package: str) -> bool:
    r = _run(["dpkg-query", "-W", "-f=${Status}", package])
    return bool(r and r.returncode == 0 and "install ok installed" in r.stdout)


def apt_install(packages: list) -> bool:
    """apt-get install when sudo needs no password; never prompts.  True when installed."""
    r = _run(["sudo", "-n", "true"])
    if not (r and r.returncode == 0):
        return False
    say(f"sudo apt-get install {' '.join(packages)}")
    r = _run(["sudo", "-n", "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q",
              *packages], timeout=STEP_TIMEOUT)
    return bool(r and r.returncode == 0)


def step_install(root: Root, payload: str) -> dict:
    payload = os.path.normpath(os.path.join(root.path, payload))
    meta = read_json(os.path.join(payload, "RELEASE.json"), "payload record")
    name = meta.get("release")
    dest = root.release(name, must_exist=False)
    if meta.get("content") != content_hash(payload):
        raise Refused(f"payload {payload} does not match its content hash (incomplete transfer?); send it again")
    sys.path.insert(0, payload)      # the code being installed decides, not whatever ran before
    from device.errors import UsageError
    from device.manifest import load_manifest, sha256_file

    model = os.path.join(payload, "device", "models", "model.tflite")
    try:
        manifest = load_manifest(os.path.join(payload, "device", "models", "model.json"))
    except UsageError as exc:
        raise Refused(str(exc)) from None
    sha = sha256_file(model)
    if not (sha == manifest.get("sha256") == meta.get("model_sha256")):
        raise Refused(f"the model in {payload} (sha256 {sha[:12]}) does not match its manifest "
                      f"({str(manifest.get('sha256'))[:12]}); not installed")
    facts = gather_facts(root.path)
    choice = choose(facts)
    say(f"model sha256 {sha[:12]} verified; runtime: {choice.reason}")
    fd = root.lock()
    try:
        current, up = current_release(root, facts_key(facts), meta["content"])
        if up:
            shutil.rmtree(payload, ignore_errors=True)
            say(f"up to date: {current['release']} has this content and dependency set")
            return {"changed": False, "release": current["release"], "up_to_date": True}
        missing = [p for p in choice.system_packages if not apt_installed(p)]
        if missing and not apt_install(missing):
            raise Refused(f"this target needs {' '.join(missing)} from apt ({choice.runtime} has no pip "
                          f"wheels of them here) and sudo needs a password: run 'sudo apt install "
                          f"{' '.join(missing)}' on it, then deploy again")
        if facts["picamera2"] == "available":
            if apt_install(["python3-picamera2"]):
                facts["picamera2"] = "installed"
            else:
                say("warning: python3-picamera2 is not installed; run 'sudo apt install python3-picamera2' "
                    "for --camera (USB cameras work without it)")
        key, created = ensure_venv(root, facts, choice.requirements)
        if os.path.lexists(dest):
            if root.current_name() == name:
                raise Refused(f"{name} is the current release; cannot install over it")
            shutil.rmtree(dest)
        os.makedirs(root.releases, exist_ok=True)
        shutil.move(payload, dest)
        os.symlink(os.path.join("..", "..", "venvs", key), os.path.join(dest, "venv"))
        meta.update(runtime=choice.runtime, requirements=choice.requirements,
                    system_packages=choice.system_packages, reason=choice.reason,
                    facts_key=facts_key(facts), venv=f"venvs/{key}", machine=facts["machine"],
                    python=facts["python"], installed_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        write_json(os.path.join(dest, "RELEASE.json"), meta)
        tf = _run([os.path.join(dest, "venv", "bin", "python"), "-c",      # find, not import: seconds
                   "import importlib.util, sys; sys.exit(importlib.util.find_spec('tensorflow') is None)"])
        if tf and tf.returncode == 0:
            say("warning: TensorFlow is importable in the venv (system site-packages); the device side does not use it")
        say(f"installed releases/{name} (venv venvs/{key}{', new' if created else ', reused'})")
        return {"changed": True, "release": name, "runtime": choice.runtime,
                "requirements": choice.requirements, "system_packages": choice.system_packages,
                "reason": choice.reason,
                "venv": f"venvs/{key}", "venv_created": created, "picamera2": facts["picamera2"]}
    finally:
        os.close(fd)


def _device(rel: str, *args, what: str, timeout: float = STEP_TIMEOUT) -> subprocess.CompletedProcess:
    return run_tool([os.path.join(rel, "bin", "device"), *args], what, timeout=timeout)


def step_smoke(root: Root, name: str) -> dict:
    """A release goes live only if its runtime loads, runs and computes what the host computed."""
    rel = root.release(name)
    checks = {}
    try:
        _device(rel, "info", what="device info")
        checks["info"] = "ok"
        r = _device(rel, "bench", "--runs", "50", "--warmup", "5", "--json", "-", what="device bench")
        inf = json.loads(r.stdout)["stages"]["inference"]
        checks["bench"] = {"p50_ms": inf["p50"], "p99_ms": inf["p99"]}
        say(f"smoke: device bench ok, inference p50 {inf['p50']:.3f} ms, p99 {inf['p99']:.3f} ms")
        try:
            r = _device(rel, "golden", "--json", what="device golden")
        except Failed as exc:
            if exc.data.get("exit_status") != 1:
                raise
            raise Failed(f"device golden: predictions differ from the reference on this target's "
                         f"runtime ({exc}); not switching") from None
        g = json.loads(r.stdout)
        checks["golden"] = {k: g.get(k) for k in ("status", "images", "identical", "reason", "runtime")}
        if g.get("status") not in ("identical", "unverified"):
            raise Failed(f"device golden: status {g.get('status')!r}")
        say("smoke: golden " + (f"{g.get('identical')}/{g.get('images')} identical predictions"
                                if g["status"] == "identical" else f"unverified ({g.get('reason')})"))
    except Failed as exc:
        write_json(os.path.join(rel, "SMOKE.json"), {"ok": False, "checks": checks, "error": str(exc)})
        raise Failed(f"smoke test of {name}: {exc}", release=name, checks=checks) from None
    write_json(os.path.join(rel, "SMOKE.json"), {"ok": True, "checks": checks})
    return {"changed": False, "release": name, "checks": checks}


def smoke_golden(rel: str) -> dict | None:
    """The golden check the smoke test recorded for a release (status, images, identical)."""
    try:
        g = read_json(os.path.join(rel, "SMOKE.json"), "smoke result").get("checks", {}).get("golden")
    except (Refused, AttributeError):
        return None
    return {k: g.get(k) for k in ("status", "images", "identical")} if isinstance(g, dict) else None


def step_bench(root: Root, name: str, clip: str, budget_ms: float, runs: int, gate: bool,
               golden_identical: bool = False) -> dict:
    rel = root.release(name)
    clip = os.path.normpath(os.path.join(root.path, clip))
    if not os.path.isfile(clip):
        raise Refused(f"no benchmark clip at {clip}; send one first (deploy.sh --bench does)")
    os.makedirs(root.reports, exist_ok=True)
    out = {"bench": f"reports/bench-{name}.json", "run": f"reports/run-{name}.json"}
    _device(rel, "bench", "--runs", str(runs), "--json", os.path.join(root.path, out["bench"]),
            what="device bench")
    _device(rel, "run", "--source", clip, "--quiet", "--budget-ms", repr(budget_ms),
            "--output", os.path.join(root.path, out["run"]), what="device run (replay)")
    total = read_json(os.path.join(root.path, out["run"]), "run result")["stages"]["total"]
    res = {"changed": False, "release": name, "results": out, "frames": total.get("count"),
           "p50_ms": total["p50"], "p99_ms": total["p99"], "budget_ms": budget_ms,
           "within_budget": total["p99"] <= budget_ms, "golden": smoke_golden(rel)}
    say(f"bench: p99 per-frame total {total['p99']:.3f} ms (p50 {total['p50']:.3f}) against {budget_ms} ms")
    if gate and not res["within_budget"]:
        raise Failed(f"gate: p99 per-frame total is {total['p99']:.3f} ms, over the {budget_ms:g} ms budget",
                     **res)
    golden = res["golden"] or {}
    if gate and golden_identical and golden.get("status") != "identical":
        # The fleet's gate: a model without golden expectations proves nothing about a board.
        raise Failed(f"gate: golden-set predictions not shown identical on this target (smoke test: "
                     f"{golden.get('status', 'no golden check')}); make the model with host train-qat / convert",
                     **res)
    return res


def step_switch(root: Root, name: str, keep: int) -> dict:
    rel = root.release(name)
    smoke = os.path.join(rel, "SMOKE.json")
    if not (os.path.exists(smoke) and read_json(smoke, "smoke result").get("ok") is True):
        raise Refused(f"{name} has not passed the smoke test; run `smoke` before `switch`")
    fd = root.lock()
    try:
        prev = root.current_name()
        open(os.path.join(rel, "OK"), "w").close()
        changed = prev != name
        if changed:
            root.point_current(name)
            say(f"current: {prev or '(none)'} -> {name}")
        res = {"changed": changed, "current": name, "previous": prev, **_prune(root, name, keep)}
    finally:
        os.close(fd)
    if changed:
        res["service"] = _restart_service(res)
    return res


def _prune(root: Root, current: str, keep: int) -> dict:
    """Keep the newest ``keep`` good releases (current included); drop older good ones, failed
    or refused ones, stale incoming payloads and the venvs no release uses any more."""
    removed, kept = [], 0
    for n in sorted(root.names(), reverse=True):
        if n == current or (root.good(n) and kept < keep - 1):
            kept += n != current
            continue
        shutil.rmtree(os.path.join(root.releases, n), ignore_errors=True)
        removed.append(n)
    if os.path.isdir(root.incoming):
        for n in os.listdir(root.incoming):
            shutil.rmtree(os.path.join(root.incoming, n), ignore_errors=True)
    used = {os.path.basename(os.readlink(os.path.join(root.releases, n, "venv")))
            for n in root.names() if os.path.islink(os.path.join(root.releases, n, "venv"))}
    venvs = [v for v in (os.listdir(root.venvs) if os.path.isdir(root.venvs) else []) if v not in used]
    for v in venvs:
        shutil.rmtree(os.path.join(root.venvs, v), ignore_errors=True)
    if removed or venvs:
        say(f"removed releases {', '.join(removed) or '-'}; unused venvs {', '.join(venvs) or '-'}")
    return {"removed": removed, "venvs_removed": venvs}


def step_rollback(root: Root, from_name: str | None, dry_run: bool = False) -> dict:
    """``dry_run`` (Ansible's --check): the same choice, answered with ``would_change`` and
    nothing changed."""
    fd = None if dry_run else root.lock()
    try:
        cur = root.current_name()
        if from_name is not None:
            root.release(from_name, must_exist=False)     # validates the name
            if cur != from_name:
                say(f"current is {cur or '(none)'}, not {from_name}: nothing to roll back")
                return {"changed": False, "current": cur, "previous": None, "would_change": False}
        if not cur:
            raise Failed("no current release to roll back from")
        older = [n for n in root.names() if n < cur and root.good(n)]
        if not older:
            raise Failed(f"no good release older than {cur} to roll back to")
        if dry_run:
            say(f"dry run: current would go {cur} -> {older[-1]}")
            return {"changed": False, "current": older[-1], "previous": cur, "would_change": True}
        root.point_current(older[-1])
        say(f"current: {cur} -> {older[-1]}")
        res = {"changed": True, "current": older[-1], "previous": cur}
    finally:
        if fd is not None:
            os.close(fd)
    res["service"] = _restart_service(res)
    return res


# --- the systemd user service -------------------------------------------------------------

def unit_path() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "systemd", "user", UNIT)


def exec_line(argv: list) -> str:
    """``ExecStart=`` value for argv, quoted as systemd parses it (systemd.service(5), "Command
    lines"; systemd.syntax(7), "Quoting").  Every word is double-quoted, so spaces and ``;`` stay
    inside their word; ``%`` is doubled (specifiers are expanded in every word, the program's
    too); in arguments ``\\`` and ``"`` are C-escaped and ``$`` doubled (variables are expanded in
    arguments).  The program's path takes neither variables nor escapes: systemd refuses quotes and
    backslashes there, and so does :func:`check_root`."""
    for a in argv:
        if any(ord(c) < 32 or ord(c) == 127 for c in a):
            raise Refused(f"cannot put {ascii(a)} in a systemd unit: control characters")
    prog = argv[0]
    if not os.path.isabs(prog) or any(c in prog for c in "\"'\\"):
        raise Refused(f"systemd cannot run {ascii(prog)}: it needs an absolute path without quotes or backslashes")
    words = ['"' + prog.replace("%", "%%") + '"']
    words += ['"' + a.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$") + '"'
              for a in argv[1:]]
    return " ".join(words)


PREVIEW_RE = re.compile(r"(?:(127\.0\.0\.1|localhost|0\.0\.0\.0|[0-9]{1,3}(?:\.[0-9]{1,3}){3}):)?([0-9]{1,5})")


def check_preview(addr: str | None) -> tuple | None:
    """``[HOST:]PORT`` for the service's live preview -> (host, port), or Refused."""
    if not addr:
        return None
    m = PREVIEW_RE.fullmatch(addr)
    if not m or not 1 <= int(m.group(2)) <= 65535:
        raise Refused(f"bad --preview {ascii(addr)}: give PORT or IPV4:PORT (e.g. 8080 or 0.0.0.0:8080)")
    return (m.group(1) or "127.0.0.1", int(m.group(2)))


def preview_env(root: Root) -> str:
    """ROOT/preview.env: the LAN preview's token, made once (mode 0600) and kept across
    releases and restarts, so an open page reconnects; read by systemd, never on a command line
    (``ps`` and ``systemctl show`` would show it)."""
    import secrets

    path = os.path.join(root.path, "preview.env")
    if not os.path.exists(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"MNIST_EDGE_PREVIEW_TOKEN={secrets.token_urlsafe(24)}\n")
    return path


def unit_text(root: Root, preview: tuple | None = None) -> str:
    # --checkpoint-s: a service never "ends", so its results file is rewritten every minute
    # for deploy.sh --bench, the fleet report and the preview to read.
    argv = [os.path.join(root.current, "bin", "device"), "run", "--camera", "--quiet",
            "--output", os.path.join(root.reports, "service-results.json"), "--checkpoint-s", "60"]
    env_file = ""
    if preview:
        host, port = preview
        # Collections live outside releases/, so a new release keeps what was collected.
        argv += ["--preview", f"{host}:{port}", "--collection", os.path.join(root.path, "collection")]
        if host not in ("127.0.0.1", "localhost"):
            env_file = f"EnvironmentFile={preview_env(root)}\n"
    return f"""[Unit]
Description=mnist-edge: recognise digits from the camera

[Service]
ExecStart={exec_line(argv)}
{env_file}Environment=PYTHONUNBUFFERED=1
Restart=on-failure
RestartSec=5
# Exit 2 is a usage error (bad option, no camera): restarting every 5 s cannot fix it.
RestartPreventExitStatus=2

[Install]
WantedBy=default.target
"""


def _systemctl(*args, timeout: float = 60) -> subprocess.CompletedProcess | None:
    env = dict(os.environ)
    runtime = f"/run/user/{os.getuid()}"
    if not env.get("XDG_RUNTIME_DIR") and os.path.isdir(runtime):   # e.g. from cron or Ansible's become
        env["XDG_RUNTIME_DIR"] = runtime
    try:
        return subprocess.run(["systemctl", "--user", *args], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _restart_service(res: dict) -> str:
    """After a switch or rollback: a running service must run the new `current`."""
    if not os.path.exists(unit_path()):
        return "not installed"
    r = _systemctl("is-enabled", UNIT)
    if not (r and r.returncode == 0):
        return "not enabled"
    r = _systemctl("restart", UNIT)
    if not (r and r.returncode == 0):
        raise Failed(f"current now points to {res['current']}, but the service did not restart: "
                     f"{(r.stderr.strip() if r else 'systemctl not runnable')[:200]}", **res)
    say(f"service {UNIT} restarted")
    return "restarted"


def service_checks() -> dict:
    """Linger (without it a user unit stops at logout and does not start at boot) and the video
    group (the camera's DMA heaps); each with the command that fixes it."""
    import grp
    import pwd

    user = pwd.getpwuid(os.getuid()).pw_name
    out = {"user": user, "linger": None, "video_group": None, "hints": []}
    r = _run(["loginctl", "show-user", user, "--property=Linger", "--value"])
    if r and r.returncode == 0 and r.stdout.strip() in ("yes", "no"):
        out["linger"] = r.stdout.strip() == "yes"
    if out["linger"] is not True:
        r = _run(["loginctl", "enable-linger", user])        # allowed for oneself by default polkit rules
        if r and r.returncode == 0:
            out["linger"] = True
            say(f"enabled linger for {user}: the service starts at boot and survives logout")
        else:
            out["hints"].append(f"sudo loginctl enable-linger {user}  (else the service stops at logout "
                                "and does not start at boot)")
    try:
        video = grp.getgrnam("video")
        out["video_group"] = user in video.gr_mem or pwd.getpwnam(user).pw_gid == video.gr_gid
        if not out["video_group"]:
            out["hints"].append(f"sudo usermod -aG video {user}  (camera access; then reboot)")
    except KeyError:
        pass
    for h in out["hints"]:
        say(f"to do: {h}")
    return out


def step_service(root: Root, preview: str | None = None) -> dict:
    if not root.current_name():
        raise Refused(f"no current release under {root.path}; deploy one first")
    text = unit_text(root, check_preview(preview))
    checks = service_checks()
    path = unit_path()
    old = open(path).read() if os.path.exists(path) else None
    changed = old != text
    if changed:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path))
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        say(f"wrote {path}")
    res = {"changed": changed, "unit": path, **checks}

    def need(*args):
        r = _systemctl(*args)
        if not (r and r.returncode == 0):
            why = (r.stderr.strip().splitlines() or ["no output"])[-1] if r else "systemctl not runnable"
            raise Failed(f"systemctl --user {' '.join(args)} failed: {why[:200]}; the user's systemd "
                         f"manager must be running (a login session, or: sudo loginctl enable-linger "
                         f"{checks['user']})", **res)
        return r

    if changed:
        need("daemon-reload")
    enabled = _systemctl("is-enabled", UNIT)
    if not (enabled and enabled.returncode == 0):
        need("enable", UNIT)
        res["changed"] = True
    active = _systemctl("is-active", UNIT)
    if res["changed"] or not (active and active.returncode == 0):
        need("restart", UNIT)
        res["changed"] = True
    say(f"service {UNIT} enabled and running; logs: journalctl --user -u mnist-edge -f")
    return res


# --- workstation steps ---------------------------------------------------------------------

WRAPPER = """#!/bin/sh
# The device CLI of this release, with this release's venv and code.  Not `python -m`: that puts
# the working directory first on sys.path, and a `device/` folder there would run instead.
here="$(cd "$(dirname "$0")/.." && pwd -P)"
exec "$here/venv/bin/python" -c 'import sys; sys.path[0] = sys.argv.pop(1); from device.cli import main; sys.exit(main())' "$here" "$@"
"""


def step_pack(model: str, out: str, root: str | None) -> dict:
    """A payload: the device package of this checkout, the model and its manifest, bin/device,
    RELEASE.json.  The release name sorts by time; its content hash makes re-sends no-ops."""
    if root is not None:
        check_root(root)      # refuse a --dir the target would refuse, before connecting
    from device.errors import UsageError
    from device.manifest import load_manifest, sha256_file

    manifest_path = os.path.splitext(model)[0] + ".json"
    if not os.path.isfile(model):
        raise Refused(f"--model {model} not found")
    if not os.path.isfile(manifest_path):
        raise Refused(f"{manifest_path} (the model's manifest) not found; make it with host train-qat")
    try:
        manifest = load_manifest(manifest_path)
    except UsageError as exc:
        raise Refused(str(exc)) from None
    sha = sha256_file(model)
    if manifest.get("sha256") != sha:
        raise Refused(f"the manifest {manifest_path} does not match {model} (sha256); regenerate it")
    pkg = os.path.dirname(os.path.abspath(__file__))
    if os.path.isdir(out) and os.listdir(out):
        if not os.path.exists(os.path.join(out, "RELEASE.json")):
            raise Refused(f"--out {out} is a non-empty folder that is not a payload; not overwriting it")
        shutil.rmtree(out)
    shutil.copytree(pkg, os.path.join(out, "device"), dirs_exist_ok=True,
                    ignore=lambda d, names: [n for n in names if n == "__pycache__" or n.endswith(".pyc")
                                             or d == os.path.join(pkg, "models")])
    models = os.path.join(out, "device", "models")
    os.makedirs(models, exist_ok=True)
    shutil.copyfile(model, os.path.join(models, "model.tflite"))
    shutil.copyfile(manifest_path, os.path.join(models, "model.json"))
    os.makedirs(os.path.join(out, "bin"))
    with open(os.path.join(out, "bin", "device"), "w") as f:
        f.write(WRAPPER)
    os.chmod(os.path.join(out, "bin", "device"), 0o755)
    content = content_hash(out)
    r = _run(["git", "-C", os.path.dirname(pkg), "rev-parse", "--short", "HEAD"])
    git = r.stdout.strip() if r and r.returncode == 0 and re.fullmatch(r"[0-9a-f]{4,40}", r.stdout.strip()) else "nogit"
    name = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{git}-{content}"
    meta = {"format": RELEASE_FORMAT, "release": name, "content": content, "git": git,
            "model_sha256": sha, "model": os.path.basename(model), "packed_on": os.uname().nodename}
    write_json(os.path.join(out, "RELEASE.json"), meta)
    return {"changed": True, "payload": out, **meta}


def shown(value, limit: int = 60) -> str:
    """A value from the target, safe to print: ASCII with escapes, bounded."""
    s = ascii(value)
    return s if len(s) <= limit else s[:limit] + "...'"


def printable(text: str, limit: int = 120) -> str:
    """Display text from the target: control characters and non-ASCII become '?'."""
    return "".join(c if " " <= c <= "~" else "?" for c in str(text))[:limit]


def check_status(doc, content: str) -> list:
    """Validate a target's ``status`` answer, decide with the workstation's code, and return
    ``key=value`` lines whose values are printable ASCII without newlines.  Raises Refused
    naming the first bad value.  Nothing the target said is used unchecked."""
    def bad(field, value, expected):
        raise Refused(f"the target answered {field} = {shown(value)}, expected {expected}; refusing to deploy")

    if not isinstance(doc, dict) or not isinstance(doc.get("facts"), dict):
        bad("status", doc, "a JSON object with facts")
    f = doc["facts"]
    machine, python, free_kb = f.get("machine"), f.get("python"), f.get("free_kb")
    if not (isinstance(machine, str) and re.fullmatch(r"[a-z0-9_]{1,20}", machine)):
        bad("machine", machine, "an architecture name (uname -m)")
    if not (isinstance(python, str) and re.fullmatch(r"3\.[0-9]{1,2}", python)):
        bad("python", python, "a version 3.N")
    if not (type(free_kb) is int and 0 <= free_kb < 2 ** 53):
        bad("free_kb", free_kb, "a number of KB")
    if not (type(f.get("pointer_bits")) is int and f["pointer_bits"] in (32, 64)):
        bad("pointer_bits", f.get("pointer_bits"), "32 or 64")
    if type(f.get("rsync")) is not bool:
        bad("rsync", f.get("rsync"), "true or false")
    if f.get("picamera2") not in ("installed", "available", "absent"):
        bad("picamera2", f.get("picamera2"), "installed, available or absent")
    if not (isinstance(f.get("cpuinfo"), str) and len(f["cpuinfo"]) <= 65536):
        bad("cpuinfo", f.get("cpuinfo"), "text of at most 64 KB")
    if not isinstance(f.get("os"), str):
        bad("os", f.get("os"), "text")
    if type(doc.get("up_to_date")) is not bool:
        bad("up_to_date", doc.get("up_to_date"), "true or false")
    cur = doc.get("current")
    if cur is not None:
        if not (isinstance(cur, dict) and isinstance(cur.get("release"), str) and NAME_RE.fullmatch(cur["release"])):
            bad("current.release", cur.get("release") if isinstance(cur, dict) else cur, "a release name")
    choice = choose(f)
    if free_kb < MIN_FREE_KB:
        raise Refused(f"only {free_kb // 1024} MB free on the target; {MIN_FREE_KB // 1000} MB needed")
    transfer = "rsync" if f["rsync"] else "tar"
    return [f"display=target: {machine}, {printable(f['os'], 80)}, Python {python}, "
            f"{free_kb // 1024} MB free, transfer by {transfer}",
            f"runtime={printable(choice.reason, 300)}",
            f"requirements={printable(' '.join(choice.requirements), 300)}"
            + "".join(f" +apt {p}" for p in choice.system_packages),
            f"transfer={transfer}",
            f"up_to_date={'yes' if doc['up_to_date'] and cur and content else 'no'}",
            f"current={cur['release'] if cur else ''}"]


def field_lines(doc, keys: list) -> list:
    """Values of a step's (untrusted) JSON answer as single printable lines; missing: empty."""
    out = []
    for key in keys:
        v = doc
        for part in key.split("."):
            v = v.get(part) if isinstance(v, dict) else None
        if isinstance(v, bool):
            out.append("yes" if v else "no")
        elif isinstance(v, (int, float)) and v == v and abs(v) < 1e15:
            out.append(f"{v:.6g}" if isinstance(v, float) else str(v))
        elif isinstance(v, str):
            out.append(printable(v, 300))
        else:
            out.append("")
    return out


# The fleet's records (fleet/deploy.yml and rollback.yml write them for ``host report``): the
# steps' answers come from the target, so every value is checked here as ``check`` does; a
# malformed one is recorded as missing, never trusted, and the record is still written.

def _answer(raw) -> dict:
    try:
        d = json.loads(raw) if isinstance(raw, str) and raw.strip() else None
    except ValueError:
        return {}
    return d if isinstance(d, dict) else {}


def _release_name(v):
    return v if isinstance(v, str) and NAME_RE.fullmatch(v) else None


def _ms(v):
    return float(v) if type(v) in (int, float) and v == v and 0 <= v < 1e9 else None


def _count(v):
    return v if type(v) is int and 0 <= v < 2 ** 53 else None


def _text(v, limit=300):
    return printable(v, limit) if isinstance(v, str) else None


def _step_error(step, error) -> str:
    error = error or "failed"
    return error if error.startswith(f"{step}:") else f"{step}: {error}"


def fleet_outcome(doc: dict) -> dict:
    """A host's outcome from the playbook's facts (trusted: host, board, rollout, release,
    failed_step, error) and the target's answers (untrusted, raw stdout of each step).

    switched: the new release is current.  kept: current unchanged and nothing failed (up to
    date; or a rollback with nothing older).  rolled back: the new release was installed,
    failed on this host (smoke, gate or a later step) and its previous release is current (the
    failure came before the switch, or ``rollback --from`` switched back); with rollback.yml,
    current went back one release.  failed: the new release was not installed (the target was
    refused, the transfer or pip failed: nothing changed), or there is no previous release to
    fall back to, or the rollback itself failed."""
    a = {k: _answer(v) for k, v in (doc.get("answers") or {}).items()}
    status, switch, rollback, bench, smoke, install = (a.get(k, {}) for k in
                                                       ("status", "switch", "rollback", "bench", "smoke", "install"))
    cur_before = status.get("current") if isinstance(status.get("current"), dict) else {}
    before = _release_name(cur_before.get("release"))
    failed_step = _text(doc.get("failed_step"), 60)
    error = (_text(a.get("failed", {}).get("error")) or _text(doc.get("error"))
             or _text(a.get("bench", {}).get("error")))
    rb_ok = rollback.get("ok") is True
    rb_cur = _release_name(rollback.get("current"))
    out = {"previous": before, "current": before, "failed_step": failed_step}
    if doc.get("action") == "rollback":
        if rb_ok and rollback.get("changed") is True:
            out.update(outcome="rolled back", current=rb_cur, previous=_release_name(rollback.get("previous")),
                       detail=f"fleet/rollback.yml: current {rollback.get('previous')} -> {rb_cur}")
        elif rb_ok:
            out.update(outcome="kept", current=rb_cur or before, detail="fleet/rollback.yml: nothing to roll back")
        else:
            out.update(outcome="failed", detail=f"fleet/rollback.yml: {error or _text(rollback.get('error'))}")
    elif failed_step is None and status.get("up_to_date") is True:
        out.update(outcome="kept", detail=f"up to date: {before} has this code, model and dependency set")
    elif failed_step is None and switch.get("ok") is True:
        out.update(outcome="switched", current=_release_name(switch.get("current")),
                   detail=f"current {before or '(none)'} -> {_release_name(switch.get('current'))}")
    elif install.get("ok") is not True:
        out.update(outcome="failed", detail=f"{_step_error(failed_step or 'deploy', error)}; nothing installed, "
                                            f"current stays {before or '(none)'}")
    elif rb_ok and rb_cur:
        how = (f"current switched back to {rb_cur}" if rollback.get("changed") is True
               else f"the new release never went live; current stays {rb_cur}")
        out.update(outcome="rolled back", current=rb_cur, detail=f"{_step_error(failed_step, error)}; {how}")
    else:
        why = ("no previous release to fall back to" if rb_ok else
               f"rollback failed: {_text(rollback.get('error')) or 'not run'}")
        out.update(outcome="failed", current=rb_cur if rb_ok else None,
                   detail=f"{_step_error(failed_step or 'deploy', error)}; {why}")
    golden = bench.get("golden") if isinstance(bench.get("golden"), dict) else None
    if golden is None:
        checks = smoke.get("checks") if isinstance(smoke.get("checks"), dict) else {}
        golden = checks.get("golden") if isinstance(checks.get("golden"), dict) else {}
    out["gate"] = {"p50_ms": _ms(bench.get("p50_ms")), "p99_ms": _ms(bench.get("p99_ms")),
                   "frames": _count(bench.get("frames")),
                   "within_budget": bench.get("within_budget") if type(bench.get("within_budget")) is bool else None,
                   "golden": {"status": golden.get("status") if golden.get("status") in
                              ("identical", "different", "unverified") else None,
                              "identical": _count(golden.get("identical")), "images": _count(golden.get("images"))}}
    results = bench.get("results") if isinstance(bench.get("results"), dict) else {}
    out["results"] = {k: os.path.basename(v) for k, v in results.items()
                      if k in ("bench", "run") and isinstance(v, str)
                      and re.fullmatch(rf"reports/{k}-{NAME_RE.pattern}\.json", v)}
    facts = status.get("facts") if isinstance(status.get("facts"), dict) else {}
    out["machine"] = {k: v for k, v in (("arch", _text(facts.get("machine"), 20)), ("os", _text(facts.get("os"), 80)),
                                          ("python", _text(facts.get("python"), 10))) if v}
    out["runtime"] = _text(install.get("runtime"), 40) or _text(cur_before.get("runtime"), 40)
    return out


def write_record(kind: str, doc, path: str) -> dict:
    """Write ``reports/fleet/HOST/outcome.json`` or ``reports/fleet/rollout.json`` through
    device.schema (the one reader and writer of result files)."""
    from device import schema

    if not isinstance(doc, dict):
        raise Refused("record: stdin must be a JSON object")
    try:
        if kind == "rollout":
            rec = schema.FleetRollout(**{k: doc[k] for k in ("rollout", "action", "hosts", "canary", "batches",
                                                              "release", "content", "model_sha256") if k in doc})
        else:
            o = fleet_outcome(doc)
            if o["outcome"] == "kept" and os.path.exists(path):
                # Nothing was measured this time: the figures of the run that made it current stay.
                try:
                    old = schema.load(path, expect=("fleet_outcome",))
                    if old.current == o["current"] and old.gate:
                        o.update(gate=old.gate, results=old.results)
                except schema.UsageError:
                    pass
            budget = doc.get("budget_ms")
            rec = schema.FleetOutcome(host=str(doc.get("host")), rollout=str(doc.get("rollout")),
                                      action=str(doc.get("action")), board=_text(doc.get("board"), 40),
                                      release=_release_name(doc.get("release")),
                                      budget_ms=float(budget) if type(budget) in (int, float) else None, **o)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        rec.write(path)
    except (TypeError, schema.SchemaError) as exc:
        raise Refused(f"record: {exc}") from None
    return {"changed": True, "path": path, **({"outcome": rec.outcome} if kind == "outcome" else {})}


# --- command line --------------------------------------------------------------------------

class _ArgError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """Bad arguments become one JSON answer like every other refusal, not argparse's exit."""

    def error(self, message):
        raise _ArgError(message)


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="release.py", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = ap.add_subparsers(dest="step", required=True)

    def step(name, help, root=True):
        p = sub.add_parser(name, help=help, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        if root:
            p.add_argument("--root", default="mnist-edge", help="remote root (relative to $HOME)")
        return p

    step("status", "facts and current release").add_argument("--content", help="content hash to compare")
    step("install", "verify a payload and make it a release").add_argument(
        "--payload", required=True, help="the transferred payload folder (relative to the root)")
    step("smoke", "smoke-test a release").add_argument("--release", required=True)
    p = step("bench", "bench a release into reports/")
    p.add_argument("--release", required=True)
    p.add_argument("--clip", default="bench/clip.avi", help="replay clip (relative to the root)")
    p.add_argument("--budget-ms", type=float, default=5.0)
    p.add_argument("--runs", type=int, default=500)
    p.add_argument("--gate", action="store_true", help="exit 1 when the p99 per-frame total is over budget")
    p.add_argument("--golden-identical", action="store_true",
                   help="with --gate: also exit 1 unless the smoke test found every golden prediction identical")
    p = step("switch", "make a release current")
    p.add_argument("--release", required=True)
    p.add_argument("--keep", type=int, default=3, help="good releases to keep, current included")
    p = step("rollback", "back to the previous good release")
    p.add_argument("--from", dest="from_name", help="only if this release is current (safe to repeat)")
    p.add_argument("--dry-run", action="store_true", help="say where current would go; change nothing")
    step("service", "install and start the systemd user unit").add_argument(
        "--preview", metavar="[HOST:]PORT", help="serve the live preview (127.0.0.1 unless HOST; "
        "any other bind is protected by a token kept in ROOT/preview.env)")
    p = step("pack", "(workstation) build a payload", root=False)
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--root", help="also refuse a root the target steps would refuse")
    p = step("check", "(workstation) validate a status answer", root=False)
    p.add_argument("answer", help="the status answer (JSON file)")
    p.add_argument("--content", required=True, help="content hash of the payload to ship")
    p = step("record", "(workstation) write a fleet record for host report", root=False)
    p.add_argument("kind", choices=("outcome", "rollout"), help="one host's outcome, or the rollout itself")
    p.add_argument("--out", required=True, help="the record file (JSON in, on stdin)")
    p = step("field", "(workstation) print fields of a step answer", root=False)
    p.add_argument("answer")
    p.add_argument("keys", nargs="+")
    return ap


def run(args) -> dict:
    s = args.step
    if s == "pack":
        return step_pack(args.model, args.out, args.root)
    if s in ("check", "field"):
        try:
            if args.answer == "-":      # Ansible passes a registered answer on stdin
                doc = json.loads(sys.stdin.read(4_000_000))
            else:
                with open(args.answer, errors="replace") as f:
                    doc = json.loads(f.read(4_000_000))
        except (OSError, ValueError) as exc:
            raise Refused(f"the target's answer is not JSON ({printable(exc, 80)}); refusing") from None
        lines = check_status(doc, args.content) if s == "check" else field_lines(doc, args.keys)
        return {"lines": lines}
    if s == "record":
        try:
            doc = json.loads(sys.stdin.read(16_000_000))
        except ValueError as exc:
            raise Refused(f"record: stdin is not JSON ({printable(exc, 80)})") from None
        return write_record(args.kind, doc, args.out)
    root = Root(args.root)
    if s == "status":
        if args.content is not None and not CONTENT_RE.fullmatch(args.content):
            raise Refused(f"bad --content {ascii(args.content)}")
        return step_status(root, args.content)
    if s == "install":
        return step_install(root, args.payload)
    if s == "smoke":
        return step_smoke(root, args.release)
    if s == "bench":
        if not (0 < args.budget_ms < 1e6) or args.runs < 1:
            raise Refused("--budget-ms must be > 0 and --runs >= 1")
        return step_bench(root, args.release, args.clip, args.budget_ms, args.runs, args.gate,
                          args.golden_identical)
    if s == "switch":
        if args.keep < 1:
            raise Refused("--keep must be >= 1")
        return step_switch(root, args.release, args.keep)
    if s == "rollback":
        return step_rollback(root, args.from_name, args.dry_run)
    return step_service(root, args.preview)


def main(argv=None) -> int:
    step = None
    try:
        args = build_parser().parse_args(argv)
        step = args.step
        res = run(args)
        ok, code = True, 0
    except _ArgError as exc:
        res, ok, code = {"error": str(exc)}, False, 2
    except Refused as exc:
        res, ok, code = {**exc.data, "error": str(exc)}, False, exc.code
    except OSError as exc:        # disk full, permissions: the machine's state, not a bug
        res, ok, code = {"error": f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")}, False, 1
    except Exception as exc:      # a bug: keep the traceback, and still answer in JSON
        import traceback

        traceback.print_exc()
        res, ok, code = {"error": f"internal error: {exc!r}"}, False, 1
    if not ok:
        print(f"release: error: {res['error']}", file=sys.stderr)
    if step in ("check", "field"):
        if ok:
            print("\n".join(res["lines"]))
    else:
        res.setdefault("changed", False)
        print(json.dumps({"step": step, "ok": ok, **res}))
    return code


if __name__ == "__main__":
    sys.exit(main())
