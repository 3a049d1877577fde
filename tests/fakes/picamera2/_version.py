"""Which picamera2 release this double plays: the version in its dist-info (the tests build a
site folder with ``picamera2-X.Y.Z.dist-info`` beside this package, as apt's python3-picamera2
ships one), so the adapter and the double read the same number."""

from importlib import metadata

try:
    VERSION_STR = metadata.version("picamera2")
except metadata.PackageNotFoundError:
    VERSION_STR = "0.3.36"
VERSION = tuple(int(p) for p in VERSION_STR.split(".")[:3])
