"""picamera2/request.py: the parts a frame source uses (0.3.36 line numbers).

``MappedArray`` maps the buffer without a copy and, for YUV420, shapes it as
(h * 3 / 2, stride) with the row padding left in (l. 53-84, ``_make_array_shared`` l. 319-324);
``CompletedRequest`` counts uses and hands the buffer back to the camera when the last is
released (l. 106-152), after which the sensor writes the next frame into the same memory.
"""

from __future__ import annotations


class CompletedRequest:
    def __init__(self, request, picam2):
        self.request = request
        self.ref_count = 1
        self.lock = picam2.request_lock
        self.picam2 = picam2
        self.stop_count = picam2.stop_count
        self.configure_count = picam2.configure_count
        self.config = self.picam2.camera_config.copy()
        self.stream_map = self.picam2.stream_map.copy()

    def acquire(self) -> None:
        with self.lock:
            if self.ref_count == 0:
                raise RuntimeError("CompletedRequest: acquiring lock with ref_count 0")
            self.ref_count += 1

    def release(self) -> None:
        # l. 113-152: back to libcamera unless the camera was stopped since.
        with self.lock:
            self.ref_count -= 1
            if self.ref_count < 0:
                raise RuntimeError("CompletedRequest: lock now has negative ref_count")
            elif self.ref_count == 0:
                if self.picam2.camera and self.stop_count == self.picam2.stop_count and self.picam2.started:
                    self.request.reuse()
                    self.picam2.camera.queue_request(self.request)
                self.request = None
                self.config = {}
                self.stream_map = {}

    def get_metadata(self) -> dict:
        assert self.request is not None
        return dict(self.request.metadata)


class MappedArray:
    def __init__(self, request: CompletedRequest, stream: str, reshape: bool = True, write: bool = True):
        self.__request = request
        self.__stream = stream
        self.__reshape = reshape
        self.__array = None

    def __enter__(self) -> "MappedArray":
        req = self.__request
        if req.request is None:   # a released request has no buffer (l. 34: assert)
            raise AssertionError("MappedArray of a released request")
        array = req.request.buffers[req.stream_map[self.__stream]]   # shared, no copy
        if self.__reshape:
            config = req.config[self.__stream]
            w, h = config["size"]
            stride = config["stride"]
            if config["format"] not in ("YUV420", "YVU420"):
                raise RuntimeError("the double maps YUV420 streams only")
            array = array.reshape((h * 3 // 2, stride))
        self.__array = array
        return self

    def __exit__(self, *exc) -> None:
        self.__array = None

    @property
    def array(self):
        return self.__array
