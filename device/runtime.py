"""The only module that imports a TFLite interpreter, and the model wrapper built on it.

Backends, in order: ``ai_edge_litert`` (LiteRT), ``tflite_runtime`` (the only one with armv7l
wheels), then ``tensorflow.lite`` as a last resort on a workstation.  The numpy-only adapters
(``quantize``, ``dequantize``) take tensor details as arguments, as pycoral's do, so they are
testable on their own.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device.errors import UsageError
from device.manifest import load_manifest, manifest_path_for, sha256_bytes

BACKENDS = (
    ("ai-edge-litert", "ai_edge_litert.interpreter", "ai_edge_litert"),
    ("tflite-runtime", "tflite_runtime.interpreter", "tflite_runtime"),
    ("tensorflow", "tensorflow.lite", "tensorflow"),
)

INPUT_SHAPE = (1, 28, 28, 1)
DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "model.tflite"

_backend_cache: dict = {}


@dataclass(frozen=True)
class Backend:
    name: str
    version: str
    module: object  # the interpreter module (has Interpreter, maybe OpResolverType)


def available_backends() -> list[dict]:
    """Which runtimes can be imported here, without importing TensorFlow (it is only probed)."""
    out = []
    for name, _, pkg in BACKENDS:
        spec = importlib.util.find_spec(pkg)
        out.append({"name": name, "installed": spec is not None, "version": dist_version(name)})
    return out


def dist_version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def load_backend(prefer: str | None = None) -> Backend:
    """Import the first available runtime (or ``prefer``); raises UsageError if none is."""
    key = prefer or "auto"
    if key in _backend_cache:
        return _backend_cache[key]
    candidates = [b for b in BACKENDS if prefer in (None, b[0])]
    if not candidates:
        names = ", ".join(b[0] for b in BACKENDS)
        raise UsageError(f"unknown runtime {prefer!r}; choose one of: {names}")
    for name, modname, pkg in candidates:
        if importlib.util.find_spec(pkg) is None:
            continue
        try:
            module = importlib.import_module(modname)
        except ImportError as exc:
            # Installed but broken (a wheel for another CPU, numpy 2 under a numpy-1 build...):
            # say so, rather than fall back to a heavier runtime and hide the cause.
            if isinstance(exc.__context__, KeyboardInterrupt):
                raise exc.__context__ from None
            raise UsageError(f"{name} is installed but cannot be imported ({exc}); reinstall it "
                             f"or choose another with --runtime") from None
        backend = Backend(name, dist_version(name) or getattr(module, "__version__", "?"), module)
        _backend_cache[key] = backend
        return backend
    raise UsageError("no TFLite runtime found: pip install ai-edge-litert "
                     "(or tflite-runtime==2.14.0 'numpy<2' on 32-bit Raspberry Pi OS)")


def is_tflite(data: bytes) -> bool:
    """A FlatBuffer TFLite file carries the identifier "TFL3" at bytes 4..8."""
    return len(data) >= 8 and data[4:8] == b"TFL3"


def quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    """Float input -> the tensor's dtype, with the tensor's own scale and zero point."""
    dtype = detail["dtype"]
    scale, zero_point = detail["quantization"]
    if dtype == np.float32 or scale == 0:
        return x.astype(dtype, copy=False)
    info = np.iinfo(dtype)
    q = np.rint(x / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, detail: dict) -> np.ndarray:
    """Tensor output -> float32, with the tensor's own scale and zero point (int64 before the
    subtraction so uint8 - zero_point cannot wrap)."""
    scale, zero_point = detail["quantization"]
    if q.dtype == np.float32 or scale == 0:
        return q.astype(np.float32, copy=False)
    return (scale * (q.astype(np.int64) - zero_point)).astype(np.float32)


def _tensor_info(detail: dict) -> dict:
    scale, zp = detail["quantization"]
    return {"dtype": np.dtype(detail["dtype"]).name, "shape": [int(v) for v in detail["shape"]],
            "scale": float(scale), "zero_point": int(zp)}


@contextlib.contextmanager
def _quiet_stderr():
    """Hold back the runtime's "INFO: Created TensorFlow Lite XNNPACK delegate" line (printed
    by C++ on file descriptor 2 at every build, so Python's logging cannot filter it); any
    other line it prints (a warning, an error) is passed on."""
    try:
        fd = sys.stderr.fileno()
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):  # no real stderr (captured): nothing to hide
        yield
        return
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), fd)
        try:
            yield
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode(errors="replace").splitlines():
                if not line.startswith("INFO: Created TensorFlow Lite"):
                    print(line, file=sys.stderr)


class Model:
    """One loaded ``.tflite`` with its interpreter, built once.

    Args:
        path: the model file (default: the shipped model, which must have its manifest); its
            manifest (same name, ``.json``) is checked when present.  A user model without
            one runs, recorded as ``verified: "unverified"``.
        threads: interpreter threads.
        xnnpack: False builds the interpreter without default delegates (no XNNPACK).
        verify: check the sha256 against the manifest beside the model.
        runtime: force one backend by name (default: the first available).

    Raises:
        UsageError: missing / corrupt / non-TFLite / wrongly-shaped model, or a sha256 mismatch.
    """

    def __init__(self, path: str | os.PathLike | None = None, threads: int = 1, xnnpack: bool = True,
                 verify: bool = True, runtime: str | None = None):
        t_load = time.perf_counter_ns()
        self.path = Path(path) if path else DEFAULT_MODEL
        self.shipped = path is None or self.path.resolve() == DEFAULT_MODEL
        if threads < 1:
            raise UsageError(f"--threads must be >= 1 (got {threads})")
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read model {self.path}: {exc.strerror}; pass --model "
                             "PATH to a .tflite file (e.g. from `host train-qat`)") from None
        if not is_tflite(data):
            raise UsageError(f"{self.path} is not a TFLite model (no TFL3 identifier); pass a "
                             ".tflite file made by `host train-qat` or `host convert`")
        self.sha256 = sha256_bytes(data)
        self.bytes = len(data)
        self.manifest = None
        self.verified = "unverified"
        mpath = manifest_path_for(self.path)
        if mpath.is_file():
            self.manifest = load_manifest(mpath)
            if verify:
                if self.manifest.get("sha256") != self.sha256:
                    raise UsageError(f"{self.path} does not match its manifest {mpath.name} (sha256 "
                                     f"{self.sha256[:12]} != {str(self.manifest.get('sha256'))[:12]}); "
                                     "re-copy the model or regenerate the manifest")
                self.verified = "manifest"
        elif self.shipped and verify:
            # The shipped model is only ever run as the file its manifest describes: without
            # the manifest a damaged or replaced file would run unnoticed.
            raise UsageError(f"the shipped model's manifest {mpath} is missing, so {self.path.name} "
                             "cannot be verified; reinstall mnist-edge (or deploy again)")
        self.threads = threads
        self.xnnpack = xnnpack
        self.backend = load_backend(runtime)
        t0 = time.perf_counter_ns()
        self.interpreter = self._build(data)
        self.interpreter_init_ms = (time.perf_counter_ns() - t0) / 1e6
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise UsageError(f"{self.path} has {len(inputs)} inputs and {len(outputs)} outputs; "
                             "an MNIST model has one of each")
        self.input = inputs[0]
        self.output = outputs[0]
        if tuple(int(v) for v in self.input["shape"]) != INPUT_SHAPE:
            raise UsageError(f"{self.path} takes input shape {[int(v) for v in self.input['shape']]}, not "
                             f"{list(INPUT_SHAPE)}; it is not an MNIST 28x28 grayscale model")
        if int(np.prod(self.output["shape"])) != 10:
            raise UsageError(f"{self.path} outputs shape {[int(v) for v in self.output['shape']]}, not 10 "
                             "class scores")
        self._in_index = self.input["index"]
        self._out_index = self.output["index"]
        # A dynamic batch dimension (-1 in the signature, as Keras exports it) lets several
        # digits of a frame go through one invoke.
        signature = self.input.get("shape_signature")
        self.batchable = signature is not None and len(signature) == 4 and int(signature[0]) == -1
        self._batch = 1
        self.load_ms = (time.perf_counter_ns() - t_load) / 1e6

    def _build(self, data: bytes):
        mod = self.backend.module
        kwargs = {"model_content": data, "num_threads": self.threads}
        if not self.xnnpack:
            resolver = getattr(mod, "OpResolverType", None) or getattr(
                getattr(mod, "experimental", None), "OpResolverType", None)
            if resolver is None:
                raise UsageError(f"{self.backend.name} cannot disable XNNPACK; drop --no-xnnpack")
            kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            with _quiet_stderr():
                interp = mod.Interpreter(**kwargs)
                interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UsageError(f"{self.path} could not be loaded by {self.backend.name}: {first}; "
                             "the file is corrupt or truncated, re-copy or regenerate it") from None
        return interp

    # -- the named steps of one inference ---------------------------------------------------
    def set_input(self, x: np.ndarray) -> None:
        """``x``: float32 in [0, 1], shape (28, 28) or (1, 28, 28, 1), white digit on black."""
        if self._batch != 1:
            self._resize(1)
        self.interpreter.set_tensor(self._in_index, quantize(x.reshape(INPUT_SHAPE), self.input))

    def _resize(self, n: int) -> None:
        # Re-planning the tensors costs a few microseconds; it happens only when N changes.
        self.interpreter.resize_tensor_input(self._in_index, [n, *INPUT_SHAPE[1:]])
        self.interpreter.allocate_tensors()
        self._batch = n

    def invoke(self) -> None:
        self.interpreter.invoke()

    def scores(self) -> np.ndarray:
        """The 10 class scores as float32 probabilities."""
        return dequantize(self.interpreter.get_tensor(self._out_index), self.output).reshape(10)

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.set_input(x)
        self.invoke()
        return self.scores()

    def predict_batch(self, images) -> np.ndarray:
        """Scores (N, 10) for N images (N, 28, 28[, 1]) float in [0, 1] in one invoke, the
        input tensor resized to a batch of N.  A model with a fixed batch of one gets one
        invoke per image.  ``benchmarks/scenes.py`` measures both ways."""
        n = len(images)
        if n <= 1 or not self.batchable:
            return self.predict_many(images)
        if self._batch != n:
            self._resize(n)
        x = np.asarray(images, dtype=np.float32).reshape(n, *INPUT_SHAPE[1:])
        self.interpreter.set_tensor(self._in_index, quantize(x, self.input))
        self.interpreter.invoke()
        return dequantize(self.interpreter.get_tensor(self._out_index), self.output).reshape(n, 10)

    def predict_many(self, images: np.ndarray) -> np.ndarray:
        """Scores for N images (N, 28, 28[, 1]) float in [0, 1], one invoke each as on the Pi."""
        out = np.empty((len(images), 10), dtype=np.float32)
        for i, img in enumerate(images):
            out[i] = self.predict(img)
        return out

    def describe(self) -> dict:
        """Everything a result file records about the model and the runtime."""
        return {
            "path": str(self.path), "sha256": self.sha256, "bytes": self.bytes,
            "arch": (self.manifest or {}).get("arch"),
            "input": _tensor_info(self.input), "output": _tensor_info(self.output),
            "runtime": self.backend.name, "runtime_version": self.backend.version,
            "threads": self.threads, "xnnpack": self.xnnpack, "verified": self.verified,
        }

    def timing(self) -> dict:
        """``model_load_ms``: everything ``Model()`` took (read, verify, importing the runtime
        for the first model of the process, build, checks); ``interpreter_init_ms``: the
        interpreter's construction and tensor allocation alone."""
        return {"model_load_ms": self.load_ms, "interpreter_init_ms": self.interpreter_init_ms}
