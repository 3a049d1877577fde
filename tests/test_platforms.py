"""Runtime choice from what a target reports, with /proc/cpuinfo texts recorded on real boards
(tests/data/cpuinfo/README.md says where each comes from)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from device.platforms import (LITERT_ARM, LITERT_NO_ARM_CPUINFO, TFLITE_ARMV7, Unsupported,
                              choose_runtime, parse_cpuinfo)
from tests.conftest import ROOT

DATA = Path(__file__).parent / "data" / "cpuinfo"


def cpuinfo(name: str) -> str:
    return (DATA / name).read_text()


@pytest.mark.parametrize("name,core,features", [
    ("pi3bplus-a53-aarch64.txt", "Cortex-A53", "ARMv8.0"),
    ("pi4b-a72-aarch64.txt", "Cortex-A72", "ARMv8.0"),
    ("pi5-a76-aarch64.txt", "Cortex-A76", "atomics+asimddp"),
])
def test_64bit_pis_get_the_litert_shown_on_their_core(name, core, features):
    c = choose_runtime("aarch64", "3.11", cpuinfo(name))
    assert c.runtime == "ai-edge-litert"
    assert f"ai-edge-litert=={LITERT_ARM}" in c.requirements and "numpy" in c.requirements
    assert core in c.reason and features in c.reason
    assert c.system_packages == []


def test_parse_reads_the_core_and_features():
    cpu = parse_cpuinfo(cpuinfo("pi5-a76-aarch64.txt"))
    assert cpu.implementer == 0x41 and cpu.parts == (0xD0B,) and cpu.cores == ["Cortex-A76"]
    assert {"atomics", "asimddp"} <= cpu.features
    assert not {"atomics", "asimddp"} & parse_cpuinfo(cpuinfo("pi4b-a72-aarch64.txt")).features


def test_picamera2_keeps_numpy_below_2():
    c = choose_runtime("aarch64", "3.11", cpuinfo("pi5-a76-aarch64.txt"), picamera2=True)
    assert "numpy<2" in c.requirements and "opencv-python-headless<4.11" in c.requirements
    assert "picamera2" in c.reason


def test_cpuinfo_without_arm_entries_gets_the_runtime_that_survives_it():
    """qemu-user 7.2 shows the x86 host's /proc/cpuinfo to ARM programs; LiteRT 2.x's cpuinfo
    library crashes on it (benchmarks/results/arm-emulated/NOTES.md)."""
    x86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2\n"
    c = choose_runtime("aarch64", "3.11", x86)
    assert f"ai-edge-litert=={LITERT_NO_ARM_CPUINFO}" in c.requirements
    assert "no ARM processor entries" in c.reason
    with pytest.raises(Unsupported, match="no wheel for Python 3.13"):
        choose_runtime("aarch64", "3.13", x86)
    assert choose_runtime("aarch64", "3.13", cpuinfo("pi5-a76-aarch64.txt")).runtime == "ai-edge-litert"


@pytest.mark.parametrize("machine,name,core", [
    ("armv7l", "pi2b-a7-armv7l.txt", "Cortex-A7"),
    ("armv7l", "pi4b-a72-armv7l.txt", "Cortex-A72"),
    # 32-bit Pi OS on a Pi 4/5 boots a 64-bit kernel: uname -m says aarch64, userland is armhf.
    ("aarch64", "a72-32bit-userland-64bit-kernel.txt", "Cortex-A72"),
])
def test_32bit_userland_gets_tflite_runtime_with_apt_numpy_and_opencv(machine, name, core):
    c = choose_runtime(machine, "3.11", cpuinfo(name))
    assert c.runtime == "tflite-runtime"
    assert c.requirements == ["numpy<2", f"tflite-runtime=={TFLITE_ARMV7}"]
    assert c.system_packages == ["python3-numpy", "python3-opencv"]
    assert core in c.reason and "32-bit userland" in c.reason
    assert ("64-bit kernel" in c.reason) == (machine == "aarch64")


def test_pointer_size_decides_when_given():
    text = cpuinfo("pi4b-a72-aarch64.txt")
    assert choose_runtime("aarch64", "3.11", text, pointer_bits=32).runtime == "tflite-runtime"
    assert choose_runtime("aarch64", "3.11", text, pointer_bits=64).runtime == "ai-edge-litert"


@pytest.mark.parametrize("machine,python,text,needle", [
    ("armv7l", "3.13", "pi2b-a7-armv7l.txt", "needs Python <= 3.11"),
    ("aarch64", "3.9", "pi4b-a72-aarch64.txt", "needs Python >= 3.10"),
    ("armv6l", "3.11", None, "no TFLite runtime has ARMv6 wheels"),
    ("armv7l", "3.11", "no-neon", "has no NEON"),
    ("riscv64", "3.11", None, "unsupported architecture 'riscv64'"),
    ("aarch64", "3.7", "pi4b-a72-aarch64.txt", "too old"),
    ("aarch64", "", "pi4b-a72-aarch64.txt", "cannot tell"),
])
def test_refusals_are_one_line(machine, python, text, needle):
    if text == "no-neon":
        text = "processor\t: 0\nFeatures\t: half thumb fastmult vfp edsp tls\nCPU implementer\t: 0x41\nCPU part\t: 0xc09\n"
    elif text:
        text = cpuinfo(text)
    with pytest.raises(Unsupported, match=needle) as exc:
        choose_runtime(machine, python, text or "")
    assert "\n" not in str(exc.value)


def test_python39_compatible_and_stdlib_only():
    """The target's system python3 runs this module before any venv exists: Debian bullseye has
    3.9, and nothing beyond the standard library is installed there."""
    src = (ROOT / "device" / "platforms.py").read_text()
    import ast

    ast.parse(src, feature_version=(3, 9))
    code = ("import sys; sys.modules['numpy'] = None; sys.modules['cv2'] = None; "
            "import importlib.util as u; s = u.spec_from_file_location('p', 'device/platforms.py'); "
            "m = u.module_from_spec(s); sys.modules['p'] = m; s.loader.exec_module(m); print(m.this_machine().runtime)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ai-edge-litert"


def test_device_code_uses_only_what_32bit_pi_os_has():
    """On a 32-bit target numpy and OpenCV are apt's (bookworm: numpy 1.24, OpenCV 4.6), not
    the wheels this machine has: a name new since then passes every test here and fails there
    (round 3's ``cv2.hasNonZero``, OpenCV >= 4.7, crashed the cheap tier on armv7l).  The names
    were listed in the emulated armhf root (benchmarks/arm/emulated_matrix.sh)."""
    have = json.loads((Path(__file__).parent / "data" / "armhf-bookworm-names.json").read_text())
    src = "\n".join(p.read_text() for p in (ROOT / "device").rglob("*.py"))
    for module, names in (("cv2", have["cv2"]), ("np", have["np"])):
        used = set(re.findall(rf"\b{module}\.([A-Za-z_]\w*)", src))
        assert used and used <= set(names), f"not in {module} on 32-bit Pi OS: {sorted(used - set(names))}"


def test_device_info_says_which_runtime_and_why(capsys):
    from device.cli import main

    assert main(["info"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("runtime choice"))
    assert "ai-edge-litert" in line and "x86_64" in line
