"""ELF LOAD segment alignment of every shared library in the wheels we ship to a Pi.

A Raspberry Pi 5 runs Pi OS's 64-bit kernel with 16 KB pages (``kernel_2712.img``).  The
loader maps each PT_LOAD segment at a page boundary, so a library whose segments are aligned
to less than the page size fails to load there ("ELF load command address/offset not page-
aligned") even though it runs on a Pi 4 or under QEMU (4 KB pages).  Emulation cannot show
this; the program headers can (same check as ``readelf -lW``: the ``Align`` column of every
LOAD line).

    python -m benchmarks.arm.page_alignment WHEEL_OR_DIR... [--json OUT]

Prints one line per wheel (smallest LOAD alignment over its libraries, how many libraries are
below 16 KB) and writes the per-library table as JSON.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import zipfile
from pathlib import Path

PT_LOAD = 1
PAGE_16K = 16384


def load_alignments(data: bytes) -> list[int]:
    """p_align of every PT_LOAD program header of an ELF image (32 or 64 bit, either endian)."""
    if data[:4] != b"\x7fELF":
        raise ValueError("not an ELF file")
    is64 = data[4] == 2
    end = "<" if data[5] == 1 else ">"
    if is64:
        phoff, = struct.unpack_from(end + "Q", data, 0x20)
        phentsize, phnum = struct.unpack_from(end + "HH", data, 0x36)
    else:
        phoff, = struct.unpack_from(end + "I", data, 0x1C)
        phentsize, phnum = struct.unpack_from(end + "HH", data, 0x2A)
    out = []
    for i in range(phnum):
        off = phoff + i * phentsize
        p_type, = struct.unpack_from(end + "I", data, off)
        if p_type != PT_LOAD:
            continue
        # Elf64_Phdr: type, flags, offset, vaddr, paddr, filesz, memsz, align (last, 8 bytes);
        # Elf32_Phdr: type, offset, vaddr, paddr, filesz, memsz, flags, align (last, 4 bytes).
        align, = struct.unpack_from(end + ("Q" if is64 else "I"), data, off + phentsize - (8 if is64 else 4))
        out.append(align)
    return out


def elf_machine(data: bytes) -> str:
    machine, = struct.unpack_from(("<" if data[5] == 1 else ">") + "H", data, 0x12)
    return {0xB7: "aarch64", 0x28: "arm", 0x3E: "x86_64"}.get(machine, hex(machine))


def scan_wheel(path: Path) -> dict:
    libs = []
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            name = info.filename
            if not (name.endswith(".so") or ".so." in name.rsplit("/", 1)[-1]):
                continue
            data = z.read(info)
            if data[:4] != b"\x7fELF":
                continue
            aligns = load_alignments(data)
            libs.append({"lib": name, "machine": elf_machine(data), "bytes": len(data),
                         "load_align": sorted(set(aligns)), "min_align": min(aligns) if aligns else None})
    below = [l for l in libs if l["min_align"] is not None and l["min_align"] < PAGE_16K]
    return {"wheel": path.name, "libraries": len(libs),
            "min_align": min((l["min_align"] for l in libs if l["min_align"]), default=None),
            "below_16k": [l["lib"] for l in below], "ok_16k_pages": not below, "libs": libs}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="+", help="wheels or folders of wheels")
    ap.add_argument("--json", metavar="OUT", help="write the per-library table here")
    args = ap.parse_args(argv)
    wheels = []
    for p in map(Path, args.paths):
        wheels += sorted(p.glob("*.whl")) if p.is_dir() else [p]
    if not wheels:
        print("no wheels given", file=sys.stderr)
        return 2
    rows = [scan_wheel(w) for w in wheels]
    for r in rows:
        verdict = "ok for 16 KB pages" if r["ok_16k_pages"] else f"{len(r['below_16k'])} lib(s) below 16 KB"
        print(f"{r['wheel']}: {r['libraries']} libs, smallest LOAD align {r['min_align']:#x} -> {verdict}"
              if r["min_align"] else f"{r['wheel']}: no ELF libraries")
        for lib in r["below_16k"][:8]:
            print(f"    {lib}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
