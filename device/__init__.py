"""mnist-edge device side: runs an INT8 MNIST model on a Raspberry Pi and measures every frame.

Imports only numpy, one TFLite interpreter runtime (see :mod:`device.runtime`) and, lazily,
OpenCV / picamera2.  Never TensorFlow (when a light runtime exists) and never ``host``.
"""

import os as _os

__version__ = "0.2.0"

# OpenCV reads these once, at its first use; set before any module imports cv2.
# - Its own log lines ("[ WARN:0] ... readHeader") would bury our one-line messages: the
#   device reports unreadable images and frames itself.
# - Its ceiling on decoded image size (default 1 gigapixel) is lowered to what a Pi can hold;
#   device.sources.images checks the headers it can parse against the same figure.
MAX_IMAGE_PIXELS = 40_000_000
_os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")
_os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))


def _quiet_interrupts_at_start_up() -> None:
    """Ctrl-C before ``main()`` is running (while Python compiles and imports the CLI) would
    print a KeyboardInterrupt traceback.  When this process is one of our commands (``device``
    / ``host``, or ``python -m device.cli`` / ``host.cli``), print one line instead; the exit is
    still by SIGINT, as the shell expects.  Imported as a library, nothing changes."""
    import sys

    orig = getattr(sys, "orig_argv", None) or []
    module = orig[orig.index("-m") + 1] if "-m" in orig[:-1] else ""
    ours = module.split(".")[0] in ("device", "host") \
        or _os.path.basename(sys.argv[0] if sys.argv else "") in ("device", "host")
    if not ours:
        return
    previous = sys.excepthook

    def hook(kind, value, tb):
        if issubclass(kind, KeyboardInterrupt):
            print("interrupted", file=sys.stderr)
            return
        previous(kind, value, tb)

    sys.excepthook = hook


_quiet_interrupts_at_start_up()
