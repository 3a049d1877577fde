"""Frame sources: one file per kind behind one protocol (:mod:`device.sources.base`).

* :class:`~device.sources.images.ImageFiles` - a folder, glob or image file (``--source``);
* :class:`~device.sources.video.VideoFile` - a recorded clip (``--source clip.avi``);
* :class:`~device.sources.v4l2.V4L2Camera` - a USB / V4L2 camera (``--camera-index N``,
  ``--source /dev/videoN``);
* :class:`~device.sources.picam.PiCameraSource` - the Pi camera module via picamera2
  (``--camera``), imported only when asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

from device.errors import SourceError, UsageError
from device.sources.base import Frame, Source

__all__ = ["Frame", "Source", "SourceError", "SourceSpec", "open_source"]


@dataclass(frozen=True)
class SourceSpec:
    """The source flags of ``device run`` (exactly one of camera / camera_index / source)."""
    camera: bool = False
    camera_index: int | None = None
    source: str | None = None
    realtime: bool = False
    loop: bool = False
    fast_decode: bool = True
    lores: tuple = (320, 240)
    fps: float = 30.0            # the Pi camera's fixed frame rate


def open_source(spec: SourceSpec) -> Source:
    """The source the flags ask for (not yet opened: use it as a context manager)."""
    chosen = [spec.camera, spec.camera_index is not None, spec.source is not None]
    if sum(chosen) != 1:
        raise UsageError("give exactly one of --camera, --camera-index N or --source FILE|DIR|GLOB")
    if spec.camera:
        from device.sources.picam import PiCameraSource

        return PiCameraSource(spec.lores, spec.fps)
    if spec.camera_index is not None:
        from device.sources.v4l2 import V4L2Camera

        return V4L2Camera(spec.camera_index)
    if spec.source.startswith("/dev/video"):
        from device.sources.v4l2 import V4L2Camera

        return V4L2Camera(spec.source)
    from device.sources.images import ImageFiles, list_images

    files = list_images(spec.source)
    if files is not None:
        return ImageFiles(spec.source, spec.realtime, spec.loop, files=files)
    from device.sources.video import VideoFile

    return VideoFile(spec.source, spec.realtime, spec.loop, fast_decode=spec.fast_decode)
