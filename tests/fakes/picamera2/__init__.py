"""A test double of picamera2 (github.com/raspberrypi/picamera2), built from its source for the
calls a frame source makes: see ``picamera2.py`` (the Picamera2 class), ``request.py``,
``job.py`` and ``_libcamera.py`` (an IMX219 camera module, its sensor thread and log).

The tests put the folder holding this package on sys.path / PYTHONPATH, beside a
``picamera2-X.Y.Z.dist-info`` that says which release it plays.

``FAKE_PICAMERA2={"broken_import": true}`` reproduces the import failure of apt's picamera2
under a venv's numpy 2: picamera2/__init__.py imports encoders -> jpeg_encoder -> simplejpeg,
whose extension was built against numpy 1.x (picamera2 issues #1088, #1211).
"""

from ._libcamera import config as _config

if _config().get("broken_import"):
    raise ValueError("numpy.dtype size changed, may indicate binary incompatibility. Expected 96 "
                     "from C header, got 88 from PyObject")

from .picamera2 import Picamera2  # noqa: E402
from .request import CompletedRequest, MappedArray  # noqa: E402

__all__ = ["Picamera2", "CompletedRequest", "MappedArray"]
