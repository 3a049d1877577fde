"""Which TFLite runtime a target can run, decided from what the target is.

Standard library only, and Python 3.9 compatible: ``device/release.py`` runs this with the
target's system ``python3`` before any venv exists, and ``device info`` uses it to say why this
runtime was chosen.  Inputs are plain text read on the target (``uname -m``, ``/proc/cpuinfo``)
so the logic is testable with recorded texts of real boards (``tests/data/cpuinfo/``).

Rules (each with its reason; see ``benchmarks/arm/`` for the evidence):
  * x86_64: ai-edge-litert, newest.
  * aarch64: ai-edge-litert pinned to a version shown to run on the CPU's core (emulated).
  * armv7l / armv6l (32-bit Pi OS): tflite-runtime 2.14.0, the last with armv7l wheels; it needs
    Python <= 3.11 and numpy < 2.
  * where apt's python3-picamera2 is present (or installable), numpy stays < 2: apt's camera
    stack (simplejpeg, ...) is built against the OS's numpy 1.x.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# ARM "CPU part" numbers (implementer 0x41, Arm Ltd) of the cores Raspberry Pis have.
ARM_PARTS = {
    0xB76: "ARM1176",      # Pi 1, Zero (armv6l)
    0xC07: "Cortex-A7",    # Pi 2 v1.1
    0xD03: "Cortex-A53",   # Pi 3, Zero 2 W, Pi 2 v1.2
    0xD08: "Cortex-A72",   # Pi 4, Pi 400, CM4
    0xD0B: "Cortex-A76",   # Pi 5, CM5
}


class Unsupported(Exception):
    """No runtime this project supports works on the target; the message says why."""


@dataclass
class CpuInfo:
    """The parts of /proc/cpuinfo that decide what runs."""
    features: frozenset = frozenset()
    implementer: int | None = None
    parts: tuple = ()          # CPU part numbers, one per distinct core type
    model_name: str | None = None
    hardware: str | None = None

    @property
    def cores(self) -> list[str]:
        return [ARM_PARTS.get(p, f"part {p:#x}") for p in self.parts]


def parse_cpuinfo(text: str) -> CpuInfo:
    """Parse /proc/cpuinfo text (ARM or x86).  Unknown or missing fields stay empty."""
    features: set[str] = set()
    parts: list[int] = []
    implementer = model_name = hardware = None
    for line in (text or "").splitlines():
        if ":" not in line:
            continue
        key, value = (s.strip() for s in line.split(":", 1))
        if key in ("Features", "flags"):
            features.update(value.split())
        elif key == "CPU part":
            try:
                p = int(value, 0)
            except ValueError:
                continue
            if p not in parts:
                parts.append(p)
        elif key == "CPU implementer" and implementer is None:
            try:
                implementer = int(value, 0)
            except ValueError:
                pass
        elif key == "model name" and model_name is None:
            model_name = value
        elif key == "Hardware" and hardware is None:
            hardware = value
    return CpuInfo(frozenset(features), implementer, tuple(parts), model_name, hardware)


@dataclass
class Choice:
    """What to install and why."""
    runtime: str                 # "ai-edge-litert" | "tflite-runtime"
    requirements: list = field(default_factory=list)   # pip requirement strings
    reason: str = ""


PY_VERSION = re.compile(r"^3\.(\d{1,2})$")


def choose_runtime(machine: str, python: str, cpuinfo_text: str = "", picamera2: bool = False) -> Choice:
    """The runtime and pip requirements for a target.

    Args:
        machine: ``uname -m`` of the target (aarch64, armv7l, x86_64, ...).
        python: the target's ``python3`` version as ``3.N``.
        cpuinfo_text: the target's ``/proc/cpuinfo``.
        picamera2: apt's python3-picamera2 is installed or installable there.

    Raises:
        Unsupported: with a one-line reason naming what would be needed.
    """
    m = PY_VERSION.match(python or "")
    if not m:
        raise Unsupported(f"cannot tell the target's Python version ({python!r})")
    minor = int(m.group(1))
    if minor < 9:
        raise Unsupported(f"Python {python} on the target is too old (need 3.9+)")
    cpu = parse_cpuinfo(cpuinfo_text)
    cores = ", ".join(cpu.cores) or cpu.model_name or "unknown CPU"
    numpy = "numpy<2" if picamera2 else "numpy"
    opencv = "opencv-python-headless<4.11" if picamera2 else "opencv-python-headless"
    cam = "; numpy<2 beside apt's picamera2" if picamera2 else ""
    if machine in ("aarch64", "arm64"):
        if minor < 10:
            raise Unsupported(f"ai-edge-litert needs Python >= 3.10 on {machine} (target has {python})")
        return Choice("ai-edge-litert", [numpy, "ai-edge-litert==1.4.0", opencv],
                      f"{machine} ({cores}): ai-edge-litert 1.4.0 (2.3.0 crashed under emulation){cam}")
    if machine == "x86_64":
        if minor < 10:
            raise Unsupported(f"ai-edge-litert needs Python >= 3.10 on {machine} (target has {python})")
        return Choice("ai-edge-litert", [numpy, "ai-edge-litert", opencv], f"x86_64: ai-edge-litert{cam}")
    if machine in ("armv7l", "armv6l"):
        if minor > 11:
            raise Unsupported(f"tflite-runtime 2.14 (the only {machine} runtime) needs Python <= 3.11 "
                              f"(target has {python})")
        return Choice("tflite-runtime", ["numpy<2", "tflite-runtime==2.14.0", "opencv-python-headless<4.11"],
                      f"{machine} ({cores}): tflite-runtime 2.14.0, the last release with 32-bit ARM wheels")
    raise Unsupported(f"unsupported architecture {machine!r} (aarch64, armv7l or x86_64)")
