"""A real, throwaway OpenSSH server on 127.0.0.1 for the deploy tests.

It needs root (sshd switches to the login user) and Debian's openssh-server; `.ci/run` installs
it.  A local user stands in for `pi`; its home is wiped at the start of a session.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

USER = "mnistedge-pi"
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def available() -> str | None:
    """None when a test server can run here, else why not."""
    if os.geteuid() != 0:
        return "the SSH deploy tests need root (to run sshd and add a user)"
    if not Path(SSHD).exists() or not shutil.which("ssh-keygen"):
        return "openssh-server is not installed (apt install openssh-server)"
    return None


@dataclass
class Target:
    port: int
    key: Path          # client private key
    config: Path       # ssh_config with the throwaway known_hosts
    home: Path
    user: str = USER
    proc: subprocess.Popen | None = None

    @property
    def dest(self) -> str:
        return f"{self.user}@127.0.0.1"

    def ssh(self, command: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ssh", "-F", str(self.config), "-p", str(self.port), "-i", str(self.key),
                               "-o", "BatchMode=yes", self.dest, command],
                              capture_output=True, text=True, timeout=120)


def _ensure_user(tmp: Path) -> Path:
    try:
        pw = pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", USER], check=True)
        pw = pwd.getpwnam(USER)
    # useradd leaves the password "locked" ("!"), and sshd without PAM refuses locked accounts
    # even for key logins; "*" means "no password", which is what a key-only Pi user has.
    subprocess.run(["usermod", "-p", "*", USER], check=True)
    home = Path(pw.pw_dir)
    for child in ("mnist-edge", ".cache"):
        shutil.rmtree(home / child, ignore_errors=True)
    return home


def start(tmp: Path) -> Target:
    home = _ensure_user(tmp)
    pw = pwd.getpwnam(USER)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / "hostkey")], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / "client")], check=True)
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text((tmp / "client.pub").read_text())
    for p in (ssh_dir, ssh_dir / "authorized_keys"):
        os.chown(p, pw.pw_uid, pw.pw_gid)
    os.chmod(ssh_dir / "authorized_keys", 0o600)
    port = free_port()
    (tmp / "sshd_config").write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {tmp / 'hostkey'}
PidFile {tmp / 'sshd.pid'}
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers {USER}
UsePAM no
StrictModes no
MaxStartups 50
""")
    Path("/run/sshd").mkdir(exist_ok=True)
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(tmp / "sshd_config")],
                            stdout=subprocess.DEVNULL, stderr=open(tmp / "sshd.log", "w"))
    hostpub = (tmp / "hostkey.pub").read_text().split()
    (tmp / "known_hosts").write_text(f"[127.0.0.1]:{port} {hostpub[0]} {hostpub[1]}\n")
    (tmp / "ssh_config").write_text(f"Host 127.0.0.1\n  UserKnownHostsFile {tmp / 'known_hosts'}\n"
                                    "  LogLevel ERROR\n")
    target = Target(port, tmp / "client", tmp / "ssh_config", home, proc=proc)
    for _ in range(100):
        if target.ssh("true").returncode == 0:
            return target
        time.sleep(0.1)
    proc.terminate()
    raise RuntimeError(f"sshd did not come up: {(tmp / 'sshd.log').read_text()[-2000:]}")


def stop(target: Target) -> None:
    if target.proc is not None:
        target.proc.terminate()
        target.proc.wait(timeout=10)
