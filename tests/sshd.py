"""A real, throwaway OpenSSH server on 127.0.0.1 for the deploy tests.

It needs root (sshd switches to the login users) and Debian's openssh-server; `.ci/run` installs
it.  Local users stand in for Pis (`mnistedge-pi` by default; the fleet and hostile-target tests
add more), all reached with one throwaway client key and checked against one throwaway host key.
A user's home is emptied at the start of a session, except `.cache` (pip's wheel cache: a
re-deployed Pi has one too).  A user can be given a ForceCommand (a fake or hostile target).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
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

    @property
    def dest(self) -> str:
        return f"{self.user}@127.0.0.1"

    def ssh(self, command: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ssh", "-F", str(self.config), "-p", str(self.port), "-i", str(self.key),
                               "-o", "BatchMode=yes", self.dest, command],
                              capture_output=True, text=True, timeout=120)


@dataclass
class Server:
    port: int
    proc: subprocess.Popen
    log: Path
    targets: dict = field(default_factory=dict)    # user -> Target

    def target(self, user: str = USER) -> Target:
        return self.targets[user]


def ensure_user(name: str) -> Path:
    """A local login user with an empty home (but pip's cache), reachable by key only."""
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", name], check=True)
        pw = pwd.getpwnam(name)
    # useradd leaves the password "locked" ("!"), and sshd without PAM refuses locked accounts
    # even for key logins; "*" means "no password", which is what a key-only Pi user has.
    subprocess.run(["usermod", "-p", "*", name], check=True)
    home = Path(pw.pw_dir)
    for child in home.iterdir():
        if child.name not in (".cache", ".ssh", ".bashrc", ".profile", ".bash_logout"):
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    shutil.rmtree(home / ".cache" / "mnist-edge", ignore_errors=True)
    return home


def start(tmp: Path, users: tuple = (USER,), force_commands: dict | None = None) -> Server:
    """Start sshd on a free port for ``users``; ``force_commands`` maps a user to a command
    that runs instead of whatever the client asked (it sees SSH_ORIGINAL_COMMAND)."""
    force_commands = force_commands or {}
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / "hostkey")], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / "client")], check=True)
    homes = {}
    for user in users:
        home = homes[user] = ensure_user(user)
        pw = pwd.getpwnam(user)
        ssh_dir = home / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text((tmp / "client.pub").read_text())
        for p in (ssh_dir, ssh_dir / "authorized_keys"):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        os.chmod(ssh_dir / "authorized_keys", 0o600)
    port = free_port()
    matches = "".join(f"Match User {u}\n  ForceCommand {c}\n" for u, c in force_commands.items())
    (tmp / "sshd_config").write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {tmp / 'hostkey'}
PidFile {tmp / 'sshd.pid'}
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers {' '.join(users)}
UsePAM no
StrictModes no
MaxStartups 50
Subsystem sftp internal-sftp
{matches}""")
    Path("/run/sshd").mkdir(exist_ok=True)
    log = tmp / "sshd.log"
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(tmp / "sshd_config")],
                            stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    hostpub = (tmp / "hostkey.pub").read_text().split()
    (tmp / "known_hosts").write_text(f"[127.0.0.1]:{port} {hostpub[0]} {hostpub[1]}\n")
    (tmp / "ssh_config").write_text(f"Host 127.0.0.1\n  UserKnownHostsFile {tmp / 'known_hosts'}\n"
                                    "  LogLevel ERROR\n")
    server = Server(port, proc, log, {u: Target(port, tmp / "client", tmp / "ssh_config", homes[u], u)
                                      for u in users})
    for _ in range(100):
        if proc.poll() is not None:
            break
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return server
        time.sleep(0.1)
    proc.terminate()
    raise RuntimeError(f"sshd did not come up: {log.read_text()[-2000:]}")


def stop(server: Server) -> None:
    server.proc.terminate()
    server.proc.wait(timeout=10)
