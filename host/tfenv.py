"""Import this before TensorFlow.

* tfmot 0.8 needs Keras 2 (tf_keras), not the Keras 3 that TensorFlow 2.21 ships, and
  TF_USE_LEGACY_KERAS must be set before TensorFlow is imported.
* glibc hands every allocation over 128 KB (an activation batch) to mmap and back, so each
  training step pays for fresh zeroed pages: measured here, a third of `host train-qat`'s CPU
  time was kernel time.  Raising the mmap and trim thresholds keeps those buffers in the heap
  (kernel time 29 s -> 4 s on a 180-step run).
* TensorFlow talks a lot on a machine without a GPU: absl's "log messages before
  InitializeLog" banner, the oneDNN notice, "Could not find cuda drivers", a cuInit *error*
  (logged at E level, so TF_CPP_MIN_LOG_LEVEL cannot hide it), the CPU-instructions notice,
  each up to twice (two shared libraries); the HDF5 "legacy format" warning on every save;
  the converter's statistics line and warning on every INT8 conversion.  A user reads that as
  something being wrong.  The C++ messages go straight to file descriptor 2, so the import
  (and a conversion) runs with fd 2 read through a pipe, and only lines matching
  :data:`NOISE` are dropped: anything else (a real error, a GPU that *is* found) still
  reaches stderr.  ``MNIST_EDGE_TF_VERBOSE=1`` shows everything.
"""

import ctypes
import ctypes.util
import logging
import os
import re
import sys
import threading
import warnings

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

VERBOSE = bool(os.environ.get("MNIST_EDGE_TF_VERBOSE"))
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3

# Start-up messages that say nothing is wrong, one line each (the CPU-instructions notice
# takes two).  Matched line by line: a line next to them is never dropped with them.
NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called"
    r"|oneDNN custom operations are on"
    r"|Could not find cuda drivers on your machine"
    r"|failed call to cuInit"
    r"|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|TF-TRT Warning: Could not find TensorRT"
    r"|This TensorFlow binary is optimized to use available CPU instructions"
    r"|^To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags"
    # The TFLite converter's own chatter on every full-INT8 conversion.
    r"|^fully_quantize: \d+, inference_type: \d+, input_inference_type: ")


def _tune_malloc() -> None:
    name = ctypes.util.find_library("c")
    if not name:
        return
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return
    mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)
    mallopt(_M_TRIM_THRESHOLD, 1024 * 1024 * 1024)
    mallopt(_M_TOP_PAD, 256 * 1024 * 1024)


def filter_noise(lines):
    """The lines of ``lines`` that are not noise."""
    return (line for line in lines if not NOISE.search(line))


class quiet_stderr:
    """``with quiet_stderr():`` file descriptor 2 is a pipe; a thread forwards every line that
    is not noise to the real stderr as it comes (a crash inside still shows what led to it)."""

    def __enter__(self):
        self.active = not VERBOSE
        if not self.active:
            return self
        sys.stderr.flush()
        self.saved = os.dup(2)
        rd, wr = os.pipe()
        os.dup2(wr, 2)
        os.close(wr)
        self.reader = threading.Thread(target=self._forward, args=(rd,), daemon=True)
        self.reader.start()
        return self

    def _forward(self, rd: int) -> None:
        with os.fdopen(rd, "rb") as pipe:
            lines = (raw.decode(errors="replace") for raw in pipe)
            for line in filter_noise(lines):
                os.write(self.saved, line.encode())

    def __exit__(self, *exc):
        if not self.active:
            return False
        sys.stderr.flush()
        os.dup2(self.saved, 2)   # closes the pipe's last write end: the reader sees EOF
        self.reader.join(timeout=5)
        os.close(self.saved)
        return False


def _load_quietly() -> None:
    if not VERBOSE and "tensorflow" not in sys.modules:
        with quiet_stderr():
            import tensorflow as tf

            # Device discovery is where the cuInit error is logged: do it now, in the filter.
            tf.config.list_physical_devices()
    if VERBOSE:
        return
    # Python-side warnings with nothing for the user to do: the .h5 files are this project's
    # deliberate format (tfmot's QAT models round-trip through it).
    warnings.filterwarnings("ignore", message=r"You are saving your model as an HDF5 file",
                            category=UserWarning)
    # The converter asks for input statistics a representative dataset makes unnecessary.
    warnings.filterwarnings("ignore", message=r"Statistics for quantized inputs were expected",
                            category=UserWarning)
    logging.getLogger("absl").addFilter(
        lambda rec: "compiled metrics have yet to be built" not in rec.getMessage())


_tune_malloc()
_load_quietly()
