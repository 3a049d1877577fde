"""``device info``: what this machine is and what the device side can use on it."""

from __future__ import annotations

import glob
import importlib.util

from device.runtime import DEFAULT_MODEL, available_backends
from device.system import machine_info, warnings_for


def picamera2_state() -> str:
    """'0.3.x' when picamera2 imports, else the one-line reason (not installed, or installed
    but broken, e.g. numpy 2 shadowing apt's numpy 1.x)."""
    from device.errors import UsageError
    from device.sources.picam import _import_picamera2

    if importlib.util.find_spec("picamera2") is None:
        return "no (sudo apt install python3-picamera2; a venv made with --system-site-packages)"
    try:
        _, version = _import_picamera2()
    except UsageError as exc:
        return f"broken: {exc}"
    return version or "yes (version unknown)"


def cameras() -> dict:
    return {"v4l2": sorted(glob.glob("/dev/video*")), "picamera2": picamera2_state(),
            "opencv_installed": importlib.util.find_spec("cv2") is not None}


def runtime_choice() -> str:
    """What deploy would install here, and why (device.platforms decides for both)."""
    from device.platforms import Unsupported, this_machine

    try:
        c = this_machine()
    except Unsupported as exc:
        return f"none: {exc}"
    apt = f"; apt: {' '.join(c.system_packages)}" if c.system_packages else ""
    return f"{c.runtime} (pip: {' '.join(c.requirements)}{apt}): {c.reason}"


def info_lines() -> list[str]:
    m = machine_info()
    lines = [f"board:        {m['board'] or '(not a Raspberry Pi / no device tree)'}",
             f"architecture: {m['arch']}  ({m['os'] or m['system']}, Python {m['python']})",
             f"cpu:          {m['cpu']} x{m['cpus']}",
             f"governor:     {m['governor'] or 'unknown'}"
             + (f" @ {m['cpu_freq_mhz']:.0f} MHz" if m['cpu_freq_mhz'] else ""),
             f"temperature:  {m['temperature_c'] if m['temperature_c'] is not None else 'unknown'}"
             + (" C" if m['temperature_c'] is not None else "")]
    if m["throttling"]:
        lines.append(f"throttling:   {m['throttling']['raw']}")
    for b in available_backends():
        state = f"{b['version']}" if b["installed"] else "not installed"
        lines.append(f"runtime:      {b['name']:<16}{state}")
    lines.append(f"runtime choice: {runtime_choice()}")
    cams = cameras()
    lines.append(f"cameras:      V4L2 {', '.join(cams['v4l2']) or 'none'}; OpenCV "
                 f"{'yes' if cams['opencv_installed'] else 'no'}")
    lines.append(f"picamera2:    {cams['picamera2']}")
    lines.append(f"model:        {DEFAULT_MODEL} ({'present' if DEFAULT_MODEL.is_file() else 'missing'})")
    lines += [f"warning:      {w}" for w in warnings_for(m)]
    return lines
