"""Run inside an emulated (or real) ARM root with the target's python3: what this CPU executes.

    python3 probe_runtime.py isa                      # which optional instructions run here
    python3 probe_runtime.py RUNTIME xnnpack|ref      # load a runtime step by step, golden set

Stdlib + the device side only.  Prints ``STAGE <name>`` before each step (flushed), so when a
runtime kills the process the caller knows the last step reached; the last line is
``RESULT <json>``.  ``isa`` executes one instruction per feature in a forked child (an
instruction the CPU model lacks raises SIGILL there), which shows that the CPU model asked
for (``QEMU_CPU``) is the one running, independent of what /proc/cpuinfo claims.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import sys

# One instruction + ret per optional feature (AArch64, little endian; encodings from
# aarch64-linux-gnu-as -march=armv8.2-a+dotprod).
AARCH64_PROBES = {
    "asimddp (SDOT, ARMv8.2 dot product)": bytes.fromhex("2094824e" "c0035fd6"),
    "atomics (LDADDAL, ARMv8.1 LSE)": bytes.fromhex("0100e1b8" "c0035fd6"),
}


def stage(name: str) -> None:
    print(f"STAGE {name}", flush=True)


def _run_code(code: bytes) -> str:
    """Execute ``code`` as ``int f(int *p)`` in a child process: "ok" or the signal name."""
    import ctypes
    import mmap

    pid = os.fork()
    if pid == 0:
        buf = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        buf.write(code)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
        fn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)(addr)
        cell = ctypes.c_int(1)
        fn(ctypes.addressof(cell))
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return signal.Signals(os.WTERMSIG(status)).name
    return "ok" if os.WEXITSTATUS(status) == 0 else f"exit {os.WEXITSTATUS(status)}"


def hwcaps() -> dict:
    """AT_HWCAP as the (emulated) kernel hands it to this process, via glibc's LD_SHOW_AUXV."""
    import subprocess

    out = subprocess.run(["/bin/true"], env={**os.environ, "LD_SHOW_AUXV": "1"}, capture_output=True, text=True).stdout
    caps = {}
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("AT_HWCAP", "AT_HWCAP2", "AT_PLATFORM", "AT_PAGESZ"):
            caps[key.strip()] = value.strip()
    return caps


def isa() -> dict:
    res = {"machine": platform.machine(), "uname": os.uname().machine, "hwcap": hwcaps(),
           "qemu_cpu_env": os.environ.get("QEMU_CPU"), "pointer_bits": 64 if sys.maxsize > 2**32 else 32}
    if res["pointer_bits"] == 64 and platform.machine() == "aarch64":
        res["instructions"] = {name: _run_code(code) for name, code in AARCH64_PROBES.items()}
    return res


def probe(runtime: str, xnnpack: bool) -> dict:
    import time

    res: dict = {"runtime": runtime, "xnnpack": xnnpack}
    stage("import")
    from device.runtime import DEFAULT_MODEL, Model, load_backend

    backend = load_backend(runtime)
    res["version"] = backend.version
    import numpy

    res["numpy"] = numpy.__version__
    mod = backend.module
    kwargs = {"model_content": DEFAULT_MODEL.read_bytes(), "num_threads": 1}
    if not xnnpack:
        resolver = getattr(mod, "OpResolverType", None) or mod.experimental.OpResolverType
        kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    stage("construct")
    interp = mod.Interpreter(**kwargs)
    stage("allocate")
    interp.allocate_tensors()
    stage("invoke")
    d = interp.get_input_details()[0]
    interp.set_tensor(d["index"], numpy.zeros(d["shape"], d["dtype"]))
    interp.invoke()
    stage("golden")
    from device.golden import check

    t0 = time.monotonic()
    r = check(Model(DEFAULT_MODEL, xnnpack=xnnpack, runtime=runtime))
    res["golden_seconds"] = round(time.monotonic() - t0, 1)
    res["golden"] = {k: r[k] for k in ("status", "identical", "images", "mnist", "photos",
                                       "outputs_identical", "differ") if k in r}
    stage("done")
    return res


def main(argv: list[str]) -> int:
    if argv[:1] == ["isa"]:
        out = isa()
    elif len(argv) == 2 and argv[1] in ("xnnpack", "ref"):
        out = probe(argv[0], argv[1] == "xnnpack")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    print("RESULT " + json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
