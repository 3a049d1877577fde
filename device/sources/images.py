"""Image files as a source (``--source DIR | GLOB | FILE``), and the safe image reader that
``device classify`` uses too.

Safety first, because a folder is whatever a user (or anyone with write access) put there:
* only regular files are opened: a FIFO named ``x.png`` would block ``open()`` forever;
* a name is taken literally when such a file exists, so ``scan[1].png`` is a file, not a glob;
* an image's pixel count is read from its header before decoding: a 442 KB PNG can declare
  20000x20000 pixels and take 1.2 GB to decode (a Pi has 0.5-8 GB).  Larger than
  :data:`MAX_PIXELS`: a JPEG is decoded at 1/2, 1/4 or 1/8 scale by libjpeg (cheap); other
  formats are refused with a message.  OpenCV's own ceiling (``OPENCV_IO_MAX_IMAGE_PIXELS``,
  set in ``device/__init__.py``) is the same figure for the formats whose header we do not parse.

A folder or glob leaves out ``*.input.png``: in a sample collection (:mod:`device.collection`)
those are the 28x28 model inputs saved beside each camera crop, not camera images.
"""

from __future__ import annotations

import glob as globmod
import os
import stat
import struct
import time
from pathlib import Path

import numpy as np

from device import MAX_IMAGE_PIXELS
from device.errors import UsageError
from device.sources.base import Replay, opencv

MODEL_INPUT_SUFFIX = ".input.png"
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".pnm"}
MAX_PIXELS = MAX_IMAGE_PIXELS  # a 12 MP camera photo is 12 M; 40 M decodes to 120 MB of BGR
HEADER_BYTES = 256 * 1024      # JPEG's size marker can follow up to 64 KB of EXIF and more


class ImageRefused(Exception):
    """An image file this reader will not decode; the message says why (one line)."""


def is_regular(path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _listed(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTS and not name.lower().endswith(MODEL_INPUT_SUFFIX)


def list_images(spec: str) -> list[str] | None:
    """A folder (its image files, sorted), an existing file (taken literally, even with glob
    characters in its name), or a glob.  None when ``spec`` is none of these; UsageError when
    it names a folder or glob without images.  Non-regular entries (FIFOs, devices) are left
    out of folders and globs."""
    p = Path(spec)
    if p.is_dir():
        files = sorted(str(f) for f in p.iterdir() if _listed(f.name) and is_regular(f))
    elif p.exists() or p.is_symlink():
        if p.suffix.lower() not in IMAGE_EXTS:
            return None
        files = [str(p)]
    elif any(ch in spec for ch in "*?["):
        files = sorted(f for f in globmod.glob(spec) if _listed(Path(f).name) and is_regular(f))
    else:
        return None
    if not files:
        raise UsageError(f"{spec}: no images ({', '.join(sorted(IMAGE_EXTS))}) found")
    return files


def image_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from the first bytes of a PNG, JPEG, GIF, BMP, WebP or PNM file, or
    None when the format is not one of these or the header is not within ``head``."""
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24:
        return struct.unpack(">II", head[16:24])
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        return struct.unpack("<HH", head[6:10])
    if head[:2] == b"BM" and len(head) >= 26:
        w, h = struct.unpack("<ii", head[18:26])
        return abs(w), abs(h)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and len(head) >= 30:
        chunk = head[12:16]
        if chunk == b"VP8X":
            w = int.from_bytes(head[24:27], "little") + 1
            h = int.from_bytes(head[27:30], "little") + 1
            return w, h
        if chunk == b"VP8L":
            bits = int.from_bytes(head[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8 ":
            w, h = struct.unpack("<HH", head[26:30])
            return w & 0x3FFF, h & 0x3FFF
    if head[:2] == b"\xff\xd8":
        return _jpeg_size(head)
    if head[:1] == b"P" and head[1:2] in b"123456":
        tokens = []
        for line in head[2:512].split(b"\n"):
            tokens += line.split(b"#")[0].split()
            if len(tokens) >= 2:
                try:
                    return int(tokens[0]), int(tokens[1])
                except ValueError:
                    return None
    return None


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 < len(head):
        if head[i] != 0xFF:
            return None
        marker = head[i + 1]
        if marker == 0xFF:          # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = struct.unpack(">H", head[i + 2:i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", head[i + 5:i + 9])
            return w, h
        i += 2 + length
    return None


def read_image(path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an image file to BGR uint8, safely (see the module docstring).

    Raises ImageRefused (one line: why) for a non-regular file, an oversized image or an
    undecodable one."""
    cv2 = opencv()
    if not is_regular(path):
        raise ImageRefused("not a regular file")
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_BYTES)
    except OSError as exc:
        raise ImageRefused(exc.strerror or str(exc)) from None
    size = image_size(head)
    flag = cv2.IMREAD_COLOR
    if size is not None and size[0] * size[1] > max_pixels:
        if head[:2] != b"\xff\xd8":
            raise ImageRefused(f"{size[0]}x{size[1]} pixels is above the {max_pixels / 1e6:.0f} MP "
                               "limit; downscale it first")
        factor = next((k for k in (2, 4, 8) if size[0] * size[1] / (k * k) <= max_pixels), None)
        if factor is None:
            raise ImageRefused(f"{size[0]}x{size[1]} pixels is above the {max_pixels / 1e6:.0f} MP "
                               "limit even at 1/8 scale; downscale it first")
        flag = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                8: cv2.IMREAD_REDUCED_COLOR_8}[factor]
    if _may_have_alpha(head):
        # Transparent pixels usually hold black (0, 0, 0, 0): read without the alpha channel, a
        # dark digit drawn on a transparent background would be dark on black.  Seen on white,
        # as a viewer shows it.
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is not None and img.ndim == 3 and img.shape[2] in (2, 4):
            return _over_white(img)
    img = cv2.imread(str(path), flag)
    if img is None:
        raise ImageRefused("not a readable image")
    return img


def _may_have_alpha(head: bytes) -> bool:
    """Can this PNG or WebP file have an alpha channel (from its header)?  (A 32-bit BMP's
    fourth channel is often unused and zero: BMPs are read as opaque.)"""
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) > 25:
        idat = head.find(b"IDAT")
        return head[25] in (4, 6) or b"tRNS" in head[:idat if idat > 0 else len(head)]
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and len(head) > 20:
        return (head[12:16] == b"VP8X" and bool(head[20] & 0x10)) or head[12:16] == b"VP8L"
    return False


def _over_white(img: np.ndarray) -> np.ndarray:
    """BGRA or gray+alpha (8 or 16 bits) -> BGR uint8 composited over white."""
    cv2 = opencv()
    top = float(np.iinfo(img.dtype).max)
    alpha = img[..., -1:].astype(np.float32) / top
    colour = img[..., :-1].astype(np.float32)
    out = colour * alpha + top * (1.0 - alpha)
    if img.dtype != np.uint8:
        out *= 255.0 / top
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return cv2.cvtColor(out, cv2.COLOR_GRAY2BGR) if out.shape[2] == 1 else out


class ImageFiles(Replay):
    """A folder, glob or list of image files, one frame each (in name order)."""

    kind = "images"

    def __init__(self, spec: str, realtime: bool = False, loop: bool = False, fps: float = 30.0,
                 files: list[str] | None = None):
        super().__init__(realtime, loop, fps)
        self.spec = spec
        self.files = files if files is not None else list_images(spec)
        if self.files is None:
            raise UsageError(f"--source {spec}: no such file, folder or matching images")
        self.refused: dict[str, str] = {}

    def one_pass(self):
        for f in self.files:
            t0 = time.perf_counter_ns()
            try:
                img = read_image(f)
            except ImageRefused as exc:
                if str(exc) == "not a readable image":
                    self.unreadable += 1
                else:
                    self.skipped += 1
                self.refused[os.path.basename(f)] = str(exc)
                continue
            yield img, os.path.basename(f), time.perf_counter_ns() - t0

    def frame_count(self) -> int | None:
        return len(self.files)

    def describe(self) -> dict:
        return {**super().describe(), "spec": str(self.spec), "files": len(self.files),
                "decode": "bgr"}
