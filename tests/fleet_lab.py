"""A fleet of "Pis" on this machine for the fleet playbook's tests and benchmark: local users of
one throwaway OpenSSH server on 127.0.0.1 (tests/sshd.py), an Ansible inventory that reaches
them with the standard variables and host key checking on, and a wheel folder the targets'
pip installs from (no download per target: on a real fleet, a local index or wheelhouse does
the same, see fleet/roles/mnist_edge/defaults/main.yml ``pip_env``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from device import release
from device.fsio import atomic_write_json
from tests import sshd
from tests.conftest import ROOT, SHIPPED

PLAYBOOKS = ROOT / "fleet"


def wheelhouse() -> Path:
    """The wheels this machine's targets install (the runtime choice's requirements), in a
    folder every local user can read.  pip's cache on the workstation makes this quick."""
    facts = release.gather_facts(tempfile.gettempdir())
    reqs = release.choose(facts).requirements
    d = Path(tempfile.mkdtemp(prefix="mnist-edge-wheels-", dir="/var/tmp"))
    d.chmod(0o755)
    # The targets run the system python3: download for its version and platform.
    py = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
    r = subprocess.run([py, "-m", "pip", "--version"], capture_output=True)
    pip = [py, "-m", "pip"] if r.returncode == 0 else [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "download", "-q", "--disable-pip-version-check", "-d", str(d), *reqs],
                   check=True, timeout=900)
    for f in d.iterdir():
        f.chmod(0o644)
    return d


@dataclass
class Fleet:
    server: sshd.Server
    hosts: dict            # inventory name -> (user, board)
    tmp: Path
    wheels: Path

    def inventory(self, budgets: dict | None = None, **group_vars) -> Path:
        """An inventory grouping the hosts by board (group ``pis``, children per board), with
        ``budget_ms`` per host from ``budgets`` (default: generous, this VM is shared)."""
        budgets = budgets or {}
        target = next(iter(self.server.targets.values()))
        boards: dict = {}
        for name, (user, board) in self.hosts.items():
            hv = {"ansible_host": "127.0.0.1", "ansible_port": self.server.port, "ansible_user": user,
                  "ansible_ssh_private_key_file": str(target.key)}
            if name in budgets:
                hv["budget_ms"] = budgets[name]
            boards.setdefault(board, {"vars": {"board": board}, "hosts": {}})["hosts"][name] = hv
        inv = {"pis": {"vars": {
            "ansible_ssh_common_args": f"-o UserKnownHostsFile={self.tmp / 'known_hosts'}",
            "ansible_python_interpreter": "/usr/bin/python3",
            "budget_ms": 1000, "bench_runs": 100,
            "pip_env": {"PIP_FIND_LINKS": str(self.wheels), "PIP_NO_INDEX": "1"},
            **group_vars}, "children": boards}}
        path = self.tmp / "inventory.json"          # JSON is YAML: the yaml inventory plugin reads it
        path.write_text(json.dumps(inv, indent=1))
        return path

    def root(self, name: str) -> Path:
        return self.server.targets[self.hosts[name][0]].home / "mnist-edge"

    def current(self, name: str) -> str | None:
        try:
            return os.path.basename(os.readlink(self.root(name) / "current"))
        except OSError:
            return None

    def snapshot(self, name: str) -> dict:
        """Every path under a host's root with its size and mtime: "untouched" means equal."""
        top = self.root(name)
        out = {}
        for dirpath, dirnames, filenames in os.walk(top):
            for n in dirnames + filenames:
                p = Path(dirpath) / n
                st = p.lstat()
                out[str(p.relative_to(top))] = (st.st_size, st.st_mtime_ns)
        return out


def other_release(folder: Path, note: str) -> str:
    """The shipped model with another manifest: another release (another content hash) with
    the same golden expectations."""
    folder.mkdir(parents=True)
    shutil.copy(SHIPPED, folder / "model.tflite")
    man = json.loads(SHIPPED.with_suffix(".json").read_text())
    atomic_write_json(folder / "model.json", {**man, "note": note})
    return str(folder / "model.tflite")


def start(tmp: Path, hosts: dict) -> Fleet:
    """sshd with one local user per host (``hosts``: inventory name -> board)."""
    users = {name: f"mnistedge-{name}" for name in hosts}
    server = sshd.start(tmp, users=tuple(users.values()))
    return Fleet(server, {n: (users[n], b) for n, b in hosts.items()}, tmp, wheelhouse())


def stop(fleet: Fleet) -> None:
    """End the ssh masters Ansible left (ControlPersist) for this fleet, then sshd."""
    for sock in (fleet.tmp / "cp").glob("*"):
        subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "dummy"], capture_output=True, timeout=30)
    sshd.stop(fleet.server)
    shutil.rmtree(fleet.wheels, ignore_errors=True)


def playbook(fleet: Fleet, book: str, inventory: Path, *args: str, forks: int = 5,
             timeout: float = 900) -> subprocess.CompletedProcess:
    """ansible-playbook as a user runs it, from the checkout; its ssh control sockets in the
    fleet's folder so that stop() can end them."""
    env = {**os.environ, "ANSIBLE_SSH_CONTROL_PATH_DIR": str(fleet.tmp / "cp"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_RETRY_FILES_ENABLED": "0",
           "ANSIBLE_LOCAL_TEMP": str(fleet.tmp / "ansible-local"),
           "XDG_CACHE_HOME": str(fleet.tmp / "cache")}
    env.pop("ANSIBLE_CONFIG", None)
    ansible = Path(sys.executable).with_name("ansible-playbook")
    return subprocess.run([str(ansible), "-i", str(inventory), "-f", str(forks), str(PLAYBOOKS / book), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def recap(out: str) -> dict:
    """PLAY RECAP lines as {host: {ok: n, changed: n, failed: n, ...}}."""
    res = {}
    lines = out.split("PLAY RECAP", 1)[-1].splitlines()[1:]
    for line in lines:
        if ":" not in line or "=" not in line:
            continue
        host, counts = line.split(":", 1)
        res[host.strip()] = {k: int(v) for k, v in (c.split("=") for c in counts.split())}
    return res
