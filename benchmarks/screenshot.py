"""Render an HTML report in a real browser (headless Chromium) and check the picture is not blank.

    python -m benchmarks.screenshot benchmarks/report.html [--png report.png] [--height 4000]

Chromium is Debian's ``chromium`` package (``apt install chromium``).  Each call uses a fresh
profile folder and the flags that keep a headless browser from reaching the network.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from device.errors import UsageError

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--disable-dev-shm-usage"]


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(page: Path, png: Path, width: int = 1200, height: int = 3000, timeout: float = 90) -> Path:
    """Take a ``width`` x ``height`` screenshot of ``page`` into ``png``."""
    exe = chromium()
    if exe is None:
        raise UsageError("no Chromium found: sudo apt install chromium")
    page, png = Path(page).resolve(), Path(png).resolve()
    if not page.is_file():
        raise UsageError(f"{page}: no such HTML file")
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="mnist-edge-chromium-") as profile:
        proc = subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                               f"--screenshot={png}", page.as_uri()],
                              capture_output=True, text=True, timeout=timeout)
    if not png.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"Chromium wrote no screenshot (exit {proc.returncode}): {' | '.join(tail)}")
    return png


def ink_stats(png: Path) -> dict:
    """How much of the picture is not background: the share of pixels that differ from the
    most common colour, and the number of distinct colours."""
    import cv2

    img = cv2.imread(str(png), cv2.IMREAD_COLOR)
    if img is None:
        raise RuntimeError(f"{png} is not a readable image")
    flat = img.reshape(-1, 3)
    colours, counts = np.unique(flat, axis=0, return_counts=True)
    background = colours[np.argmax(counts)]
    differs = np.any(flat != background, axis=1)
    return {"width": img.shape[1], "height": img.shape[0], "non_background": float(differs.mean()),
            "colours": int(len(colours)), "background": background.tolist()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("page", help="the HTML file")
    ap.add_argument("--png", help="output PNG (default: beside the page)")
    ap.add_argument("--width", type=int, default=1200)
    ap.add_argument("--height", type=int, default=3000)
    args = ap.parse_args(argv)
    try:
        png = screenshot(Path(args.page), Path(args.png or Path(args.page).with_suffix(".png")),
                         args.width, args.height)
    except UsageError as exc:
        print(f"screenshot: error: {exc}", file=sys.stderr)
        return 2
    stats = ink_stats(png)
    print(f"{png}: {stats['width']}x{stats['height']}, {stats['non_background']:.1%} non-background, "
          f"{stats['colours']} colours")
    return 0 if stats["non_background"] > 0.01 else 1


if __name__ == "__main__":
    sys.exit(main())
