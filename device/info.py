"""``device info``: what this machine is and what the device side can use on it."""

from __future__ import annotations

import glob
import importlib.util

from device.runtime import DEFAULT_MODEL, available_backends
from device.system import machine_info, warnings_for


def cameras() -> dict:
    return {"v4l2": sorted(glob.glob("/dev/video*")),
            "picamera2_installed": importlib.util.find_spec("picamera2") is not None,
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
    lines.append(f"cameras:      picamera2 {'yes' if cams['picamera2_installed'] else 'no'}; "
                 f"V4L2 {', '.join(cams['v4l2']) or 'none'}; OpenCV "
                 f"{'yes' if cams['opencv_installed'] else 'no'}")
    lines.append(f"model:        {DEFAULT_MODEL} ({'present' if DEFAULT_MODEL.is_file() else 'missing'})")
    lines += [f"warning:      {w}" for w in warnings_for(m)]
    return lines
