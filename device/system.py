"""What machine this is, and how much memory this process uses (Linux /proc, /sys)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace").strip().strip("\x00")
    except OSError:
        return None


def memory_kb() -> dict:
    """Current and peak resident set size of this process, in KiB (VmRSS, VmHWM)."""
    out = {"rss_kb": None, "peak_rss_kb": None}
    text = _read("/proc/self/status") or ""
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            out["rss_kb"] = int(line.split()[1])
        elif line.startswith("VmHWM:"):
            out["peak_rss_kb"] = int(line.split()[1])
    return out


def cpu_model() -> str | None:
    text = _read("/proc/cpuinfo") or ""
    for key in ("model name", "Model", "Hardware", "Processor"):
        for line in text.splitlines():
            if line.split(":")[0].strip() == key:
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def cpu_signature() -> str | None:
    """x86 family/model/stepping, or ARM implementer/part: tells two CPUs with the same
    marketing name apart (their float kernels, and so trained weights, can differ)."""
    text = _read("/proc/cpuinfo") or ""
    fields = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = (p.strip() for p in line.split(":", 1))
            fields.setdefault(k, v)
    keys = [k for k in ("cpu family", "model", "stepping", "CPU implementer", "CPU part") if k in fields]
    if not keys:
        return None
    sig = " ".join(f"{k.replace('cpu ', '').replace('CPU ', '')} {fields[k]}" for k in keys)
    flags = fields.get("flags", "")
    return sig + (" avx512" if "avx512f" in flags.split() else "")


def throttling() -> dict | None:
    """The Pi firmware's throttled flags (under-voltage, capping, throttling), where readable."""
    for path in ("/sys/devices/platform/soc/soc:firmware/get_throttled",
                 "/sys/devices/platform/soc/soc:firmware/raspberrypi-hwmon/throttled"):
        raw = _read(path)
        if raw:
            try:
                v = int(raw, 16)
            except ValueError:
                continue
            return {"raw": hex(v), "under_voltage_now": bool(v & 0x1),
                    "freq_capped_now": bool(v & 0x2), "throttled_now": bool(v & 0x4),
                    "throttled_since_boot": bool(v & 0x40000)}
    return None


def machine_info() -> dict:
    """Board, CPU, governor, temperature: recorded in every result file."""
    temp = _read("/sys/class/thermal/thermal_zone0/temp")
    governor = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    freq = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq")
    board = _read("/proc/device-tree/model")
    return {
        "hostname": platform.node(),
        "board": board,
        "is_raspberry_pi": bool(board and "Raspberry Pi" in board),
        "arch": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "os": _os_name(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_signature": cpu_signature(),
        "cpus": os.cpu_count(),
        "governor": governor,
        "cpu_freq_mhz": int(freq) / 1000 if freq and freq.isdigit() else None,
        "temperature_c": int(temp) / 1000 if temp and temp.lstrip("-").isdigit() else None,
        "throttling": throttling(),
        "emulated": emulated(platform.machine(), cpu_model(), kernel_cpu_type()),
    }


def kernel_cpu_type() -> str | None:
    """The CPU type the running kernel was built for ("x86", "aarch64", ...), from sysfs, which
    no chroot-level /proc/cpuinfo replacement changes."""
    text = _read("/sys/devices/system/cpu/modalias") or ""
    return text.split("type:", 1)[1].split(",", 1)[0].split(":", 1)[0] if "type:" in text else None


def emulated(arch: str, cpu: str | None, kernel_cpu: str | None = None) -> bool:
    """True under user-mode emulation (qemu-user running ARM code on an x86 host): the kernel
    still describes the host's x86 CPU (in /proc/cpuinfo unless something replaced it, and in
    sysfs).  Timings there mean nothing."""
    x86_cpu = bool(cpu) and any(k in cpu for k in ("AMD", "Intel", "EPYC", "Xeon"))
    return arch.lower() in ("aarch64", "arm64", "armv7l", "armv6l") and (x86_cpu or kernel_cpu == "x86")


def _os_name() -> str | None:
    text = _read("/etc/os-release") or ""
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return None


def machine_slug(info: dict | None = None) -> str:
    """A short folder-safe name for a machine: board or CPU plus hostname."""
    info = info or machine_info()
    base = info.get("board") or info.get("cpu") or info.get("arch") or "machine"
    text = f"{base}-{info.get('hostname') or ''}".lower()
    slug = "".join(c if c.isalnum() else "-" for c in text)
    return "-".join(p for p in slug.split("-") if p)[:60]


def warnings_for(info: dict) -> list[str]:
    """Things that make timings unrepresentative, as pycoral's benchmarks warn."""
    out = []
    if info.get("emulated"):
        out.append(f"this is {info.get('arch')} code under emulation on a {info.get('cpu')} host: "
                   "timings mean nothing, only correctness does")
    if info.get("governor") and info["governor"] != "performance":
        out.append(f"CPU governor is {info['governor']!r}, not 'performance': timings vary with "
                   "frequency scaling")
    t = info.get("throttling")
    if t and (t["throttled_now"] or t["under_voltage_now"]):
        out.append(f"the Pi reports throttling / under-voltage ({t['raw']}): use a 3A supply and "
                   "cooling")
    return out
