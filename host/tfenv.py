"""Import this before TensorFlow.

* tfmot 0.8 needs Keras 2 (tf_keras), not the Keras 3 that TensorFlow 2.21 ships, and
  TF_USE_LEGACY_KERAS must be set before TensorFlow is imported.
* glibc hands every allocation over 128 KB (an activation batch) to mmap and back, so each
  training step pays for fresh zeroed pages: measured here, a third of `host train-qat`'s CPU
  time was kernel time.  Raising the mmap and trim thresholds keeps those buffers in the heap
  (kernel time 29 s -> 4 s on a 180-step run).
"""

import ctypes
import ctypes.util
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


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


_tune_malloc()
