"""Which TFLite runtime a target can run, decided from what the target is.

Standard library only, and Python 3.9 compatible: ``device/release.py`` runs this with the
target's system ``python3`` before any venv exists, and ``device info`` uses it to say why this
runtime was chosen.  Inputs are plain text read on the target (``uname -m``, ``/proc/cpuinfo``)
so the logic is testable with recorded texts of real boards (``tests/data/cpuinfo/``).

Rules, each with its evidence (``benchmarks/results/arm-emulated/NOTES.md``: every candidate
under QEMU's cortex-a53, cortex-a72, cortex-a76 and cortex-a7 models, golden set compared):
  * aarch64 with a 64-bit userland: ai-edge-litert 2.3.0.  It loads and gives predictions
    identical to x86 on the golden set on all three Pi cores (A53 and A72: ARMv8.0, no LSE
    atomics, no dot product; A76: both); its kernels are picked at run time from the CPU's
    features.  Exception: a /proc/cpuinfo without ARM processor entries (qemu-user 7.2 shows
    the x86 host's) makes the cpuinfo library inside LiteRT 2.x write past an array in
    ``cpuinfo_arm_linux_init`` (SIGSEGV while building the interpreter); 1.4.0's copy copes,
    so such a target gets 1.4.0.
  * 32-bit userland (armv7l, or aarch64 kernel with 32-bit Pi OS on it, the default on a Pi 4
    and 5): tflite-runtime 2.14.0, the last release with armv7l wheels (Python <= 3.11, needs
    NEON).  numpy and OpenCV come from apt: PyPI has no armv7l wheels of either, and piwheels
    (Pi OS's extra index) has none of opencv-python-headless for Python 3.11.
  * armv6l (Pi 1, Zero, Zero W): refused, no runtime publishes ARMv6 wheels.
  * x86_64: ai-edge-litert, newest.
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
    system_packages: list = field(default_factory=list)  # apt packages the venv relies on


PY_VERSION = re.compile(r"^3\.(\d{1,2})$")
LITERT_ARM = "2.3.0"          # shown on A53, A72, A76 (emulated), golden-identical to x86
LITERT_NO_ARM_CPUINFO = "1.4.0"
TFLITE_ARMV7 = "2.14.0"
# Features a 32-bit process sees in /proc/cpuinfo (ARM hwcap names); an AArch64 one sees
# "fp asimd ...".  On a 64-bit kernel a 32-bit process gets the compat view, so the text
# alone tells a 32-bit userland from a 64-bit one.
ARM32_FEATURES = {"half", "thumb", "fastmult", "vfp", "edsp", "vfpv3", "vfpv4", "tls"}


def userland_bits(machine: str, cpu: CpuInfo, pointer_bits=None) -> int:
    """64 or 32: what the target's Python and wheels are.  ``uname -m`` says aarch64 for 32-bit
    Pi OS on a Pi 4 or 5 (their default kernel is 64-bit), so it cannot decide alone."""
    if pointer_bits in (32, 64):
        return pointer_bits
    if machine in ("armv7l", "armv6l", "armv8l"):
        return 32
    if machine in ("aarch64", "arm64") and cpu.features & ARM32_FEATURES:
        return 32
    return 64


def choose_runtime(machine: str, python: str, cpuinfo_text: str = "", picamera2: bool = False,
                   pointer_bits=None) -> Choice:
    """The runtime and pip requirements for a target.

    Args:
        machine: ``uname -m`` of the target (aarch64, armv7l, x86_64, ...).
        python: the target's ``python3`` version as ``3.N``.
        cpuinfo_text: the target's ``/proc/cpuinfo``.
        picamera2: apt's python3-picamera2 is installed or installable there.
        pointer_bits: 32 or 64 if known (``python3 -c 'import struct; print(struct.calcsize("P") * 8)'``).

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
    if machine in ("aarch64", "arm64") and userland_bits(machine, cpu, pointer_bits) == 64:
        if minor < 10:
            raise Unsupported(f"ai-edge-litert needs Python >= 3.10 on {machine} (target has {python})")
        if cpu.implementer is None:
            return Choice("ai-edge-litert", [numpy, f"ai-edge-litert=={LITERT_NO_ARM_CPUINFO}", opencv],
                          f"{machine}, but /proc/cpuinfo has no ARM processor entries (emulation?): "
                          f"ai-edge-litert {LITERT_NO_ARM_CPUINFO}, as 2.x crashes reading such a "
                          f"cpuinfo{cam}")
        have = [f for f in ("atomics", "asimddp") if f in cpu.features]
        feats = "+".join(have) if have else "ARMv8.0 (no LSE atomics, no dot product)"
        return Choice("ai-edge-litert", [numpy, f"ai-edge-litert=={LITERT_ARM}", opencv],
                      f"{machine} ({cores}, {feats}): ai-edge-litert {LITERT_ARM}, golden-identical "
                      f"on emulated A53, A72 and A76{cam}")
    if machine == "x86_64":
        if minor < 10:
            raise Unsupported(f"ai-edge-litert needs Python >= 3.10 on {machine} (target has {python})")
        return Choice("ai-edge-litert", [numpy, "ai-edge-litert", opencv], f"x86_64: ai-edge-litert{cam}")
    if machine == "armv6l" or (cpu.parts and set(cpu.parts) <= {0xB76}):
        raise Unsupported(f"{machine} ({cores}): no TFLite runtime has ARMv6 wheels; use a Pi Zero 2 W, "
                          "Pi 3 or newer")
    if machine in ("armv7l", "armv8l", "aarch64", "arm64"):
        kernel = " on a 64-bit kernel" if machine in ("aarch64", "arm64") else ""
        if minor > 11:
            raise Unsupported(f"tflite-runtime {TFLITE_ARMV7} (the only 32-bit ARM runtime) needs Python "
                              f"<= 3.11 (target has {python})")
        if cpu.features and not {"neon", "asimd"} & cpu.features:
            raise Unsupported(f"{machine} ({cores}) has no NEON; tflite-runtime's armv7l wheels need it")
        return Choice("tflite-runtime", ["numpy<2", f"tflite-runtime=={TFLITE_ARMV7}"],
                      f"32-bit userland{kernel} ({cores}): tflite-runtime {TFLITE_ARMV7}, the last "
                      "release with armv7l wheels; numpy and OpenCV from apt (no armv7l wheels on "
                      "PyPI or piwheels)", system_packages=["python3-numpy", "python3-opencv"])
    raise Unsupported(f"unsupported architecture {machine!r} (aarch64, armv7l or x86_64)")


def this_machine() -> Choice:
    """The choice for the machine this runs on (for ``device info``); raises Unsupported."""
    import importlib.util
    import platform
    import struct
    import sys

    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        text = ""
    return choose_runtime(platform.machine(), "%d.%d" % sys.version_info[:2], text,
                          importlib.util.find_spec("picamera2") is not None,
                          struct.calcsize("P") * 8)
