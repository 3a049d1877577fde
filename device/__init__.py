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
