"""picamera2/picamera2.py: the Picamera2 calls a frame source makes, with picamera2's own logic
(line numbers are 0.3.36's, commit 3e6dff0, unless a tag is named).  Where releases differ, the
double follows the release named in its dist-info (see ``_version``).

Reproduced, not simplified: the event loop thread (NullPreview, previews/null_preview.py
l. 12-29) that runs ``process_requests`` (l. 1411-1493) when libcamera completes a request;
the job queue (``dispatch_functions`` l. 1508-1537) in which a capture waits for a frame and a
``stop()`` queues behind it (l. 1394-1405); ``close()`` stopping the preview first (l. 704-735);
keeping only the newest completed request (l. 1246-1253, 1478-1479); the init sequence's
exceptions (l. 314-376); sensor-mode scoring (l. 1044-1083); the configuration written back
from libcamera's validate() (l. 1130-1157, 1207-1214).
"""

from __future__ import annotations

import atexit
import logging
import os
import selectors
import threading
import time
from functools import partial

from . import _libcamera as lc
from ._version import VERSION
from .job import Job
from .request import CompletedRequest

_log = logging.getLogger(__name__)


class NullPreview:
    """previews/null_preview.py: the thread that drives the camera when no window is shown."""

    def thread_func(self, picam2):
        sel = selectors.DefaultSelector()
        sel.register(picam2.notifyme_r, selectors.EVENT_READ, self.handle_request)
        self._started.set()
        while not self._abort.is_set():
            events = sel.select(0.2)
            for key, _ in events:
                picam2.notifymeread.read()
                key.data(picam2)

    def __init__(self):
        self._abort = threading.Event()
        self._started = threading.Event()
        self.picam2 = None

    def start(self, picam2):
        self.picam2 = picam2
        picam2.attach_preview(self)
        self._started.clear()
        self._abort.clear()
        self.thread = threading.Thread(target=self.thread_func, args=(picam2,), daemon=True)
        self.thread.start()
        self._started.wait()

    def handle_request(self, picam2):
        picam2.process_requests(self)

    def render_request(self, completed_request):
        pass

    def stop(self):
        self._abort.set()
        self.thread.join()
        self.picam2.detach_preview()
        self.picam2 = None


class Picamera2:
    _cameras_in_use: set = set()   # libcamera's per-camera "acquired" state, process-wide here

    @staticmethod
    def global_camera_info() -> list:
        cfg = lc.config()
        if cfg.get("cameras", 1) == 0:
            return []
        return [{"Model": "imx219", "Location": 2, "Rotation": 0, "Id": lc.CAMERA_ID, "Num": 0}]

    def __init__(self, camera_num=0, tuning=None, allocator=None):
        cfg = self._cfg = lc.config()
        self.notifyme_r, self.notifyme_w = os.pipe2(os.O_NONBLOCK)
        self.notifymeread = os.fdopen(self.notifyme_r, "rb")
        self._preview = None
        self.is_open = False
        if VERSION >= (0, 3, 17):
            camera_num = self.global_camera_info()[camera_num]["Num"]   # l. 344: IndexError
        self.camera_idx = camera_num
        self.request_lock = threading.Lock()
        self._requestslock = threading.Lock()
        self._requests = []
        self._reset_flags()
        try:
            self._open_camera()
        except Exception as e:
            _log.error("Camera __init__ sequence did not complete.")
            raise RuntimeError("Camera __init__ sequence did not complete.") from e   # l. 366-368
        atexit.register(self.close)
        if cfg.get("dma_denied"):
            # DmaAllocator() (l. 376) opens /dev/dma_heap/*, catching FileNotFoundError only
            # (dma_heap.py l. 69-75): without the video group's rights, PermissionError.
            raise PermissionError(13, "Permission denied", "/dev/dma_heap/vidbuf_cached")

    def _reset_flags(self):
        self.camera = None
        self.camera_ctrl_info = {}
        self.camera_properties_ = {}
        self.camera_config = None
        self.libcamera_config = None
        self.streams = None
        self.stream_map = {}
        self.started = False
        self.stop_count = 0
        self.configure_count = 0
        self.frames = 0
        self._job_list = []
        self._max_queue_len = 1
        self.completed_requests = []
        self.lock = threading.Lock()
        self._event_loop_running = False
        self._preview_stopped = threading.Event()
        self.delivered = []   # the spy: (sequence, clip frame) of every request handed out

    def _open_camera(self):
        # _initialize_camera (l. 524-555) then acquire (l. 574).
        if not self.global_camera_info():
            _log.error("Camera(s) not found (Do not forget to disable legacy camera with raspi-config).")
            raise RuntimeError("Camera(s) not found (Do not forget to disable legacy camera with raspi-config).")
        lc.log("RPI", "WARN", "sdn.cpp:40", "Using legacy SDN tuning - please consider moving SDN inside rpi.denoise")
        lc.log("RPI", "INFO", "vc4.cpp:440", f"Registered camera {lc.CAMERA_ID} to Unicam device "
               "/dev/media4 and ISP device /dev/media0")
        camera = lc.Camera(self._cfg, Picamera2._cameras_in_use)
        self.sensor_resolution = lc.PIXEL_ARRAY   # the largest mode (_select_native_mode l. 626-640)
        self.sensor_format = lc.RAW_FORMAT
        self._set_mode_controls(camera.mode)
        self.camera_properties_ = {"Model": "imx219", "PixelArraySize": lc.PIXEL_ARRAY,
                                   "PixelArrayActiveAreas": [(0, 0, *lc.PIXEL_ARRAY)],
                                   "ColorFilterArrangement": 0, "Location": 2, "Rotation": 0}
        self.camera = camera
        camera.acquire()
        self.is_open = True

    def _set_mode_controls(self, mode):
        # camera_controls: name -> (min, max, default); ScalerCrop's max is the mode's crop.
        self.camera_ctrl_info = {
            "FrameDurationLimits": (int(1e6 / mode["fps"]), lc.FRAME_DURATION_MAX_US, int(1e6 / mode["fps"])),
            "ScalerCrop": ((0, 0, 0, 0), mode["crop"], mode["crop"]),
            "ExposureTime": (1, 66666, 20000), "AnalogueGain": (1.0, 10.6, 1.0),
            "NoiseReductionMode": (0, 4, 0)}

    @property
    def camera_properties(self):
        return {} if self.camera is None else self.camera_properties_

    @property
    def camera_controls(self):
        return dict(self.camera_ctrl_info)

    # -- previews / event loop ---------------------------------------------------------------
    def attach_preview(self, preview):
        if self._preview:
            raise RuntimeError("Preview is already running")
        self._preview = preview
        self._event_loop_running = True

    def detach_preview(self):
        self._preview = None
        self._event_loop_running = False
        self._preview_stopped.set()

    def start_preview(self, preview=None):
        if self._event_loop_running:
            raise RuntimeError("An event loop is already running")
        self._preview_stopped.clear()
        NullPreview().start(self)

    def stop_preview(self):
        if self._preview is None:
            raise RuntimeError("No preview specified.")
        self._preview.stop()
        self._preview_stopped.wait()

    def close(self):
        atexit.unregister(self.close)
        if self._preview:
            self.stop_preview()
        if not self.is_open:
            return
        self.stop()
        self.camera.release()
        self.is_open = False
        self.camera = None
        self.camera_config = {}
        self.notifymeread.close()
        os.close(self.notifyme_w)

    # -- configuration ------------------------------------------------------------------------
    @staticmethod
    def align_stream(stream_config, optimal=True):
        size = stream_config["size"]
        stream_config["size"] = (size[0] - size[0] % 2, size[1] - size[1] % 2)   # optimal=False

    def create_preview_configuration(self, main={}, lores=None, raw={}, transform=None,
                                     colour_space=None, buffer_count=4, controls={},
                                     display="main", encode="main", queue=True, sensor={}):
        # l. 777-826
        if self.camera is None:
            raise RuntimeError("Camera not opened")
        main = {"format": "XBGR8888", "size": (640, 480), "preserve_ar": True, **main}
        self.align_stream(main, optimal=False)
        if lores is not None:
            lores = {"format": "YUV420", "size": main["size"], "preserve_ar": False, **lores}
            self.align_stream(lores, optimal=False)
        if raw is not None:
            raw = {"format": self.sensor_format, "size": main["size"], **raw}
        controls = {"NoiseReductionMode": 1, "FrameDurationLimits": (100, 83333)} | controls
        return {"use_case": "preview", "transform": transform, "colour_space": colour_space,
                "buffer_count": buffer_count, "queue": queue, "main": main, "lores": lores,
                "raw": raw, "controls": controls, "sensor": sensor, "display": display,
                "encode": encode}

    def _choose_mode(self, camera_config):
        # l. 1044-1083: the raw stream's size (or main's) against every mode, as libcamera scores.
        sensor = camera_config.get("sensor") or {}
        if sensor.get("output_size") is not None:
            output_size = sensor["output_size"]
        elif camera_config.get("raw") is not None and "size" in camera_config["raw"]:
            output_size = camera_config["raw"]["size"]
        else:
            output_size = camera_config["main"]["size"]

        def score_mode(mode):
            ar = output_size[0] / output_size[1]
            mode_ar = mode["size"][0] / mode["size"][1]

            def score_format(desired, actual):
                score = desired - actual
                return -score / 4 if score < 0 else score * 2

            score = score_format(output_size[0], mode["size"][0])
            score += score_format(output_size[1], mode["size"][1])
            score += 1500 * score_format(ar, mode_ar)
            return score   # one bit depth here: the 500 * |depth difference| term is 0

        return min(lc.MODES, key=score_mode)

    def configure(self, camera_config=None):
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        camera_config = dict(camera_config)
        for name in ("main", "lores", "raw"):
            if camera_config.get(name) is not None:
                camera_config[name] = dict(camera_config[name])
        main, lores = camera_config["main"], camera_config["lores"]
        if lores is not None:   # check_camera_config l. 984-991
            if lores["size"][0] > main["size"][0] or lores["size"][1] > main["size"][1]:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
            if not lores["format"].startswith("YUV") and not lores["format"].startswith("YVU"):
                raise RuntimeError("lores stream must be YUV")
        for k in camera_config["controls"]:
            if k not in self.camera_ctrl_info:   # controls.py l. 32-33
                raise RuntimeError(f"Control {k} is not advertised by libcamera")
        mode = self._choose_mode(camera_config)
        align = lc.Y_STRIDE_ALIGN[self._cfg.get("platform", "vc4")]
        # libcamera's validate() adjusts; picamera2 writes the result back (l. 1130-1135, 1210-1211).
        if lores is not None:
            if self._cfg.get("lores_adjust"):
                lores["size"] = tuple(self._cfg["lores_adjust"])
                _log.info("Camera configuration has been adjusted!")
            lores["stride"] = -(-lores["size"][0] // align) * align
            lores["framesize"] = lores["stride"] * lores["size"][1] * 3 // 2
        main["stride"] = -(-main["size"][0] * 4 // (align // 2)) * (align // 2)
        if camera_config["raw"] is not None:
            camera_config["raw"].update(format=mode["format"], size=mode["size"])
        camera_config["sensor"] = {"bit_depth": 10, "output_size": mode["size"]}
        lc.log("Camera", "INFO", "camera.cpp:1202", "configuring streams: (0) {}x{}-XBGR8888 (1) {}"
               .format(*main["size"], "{}x{}-YUV420".format(*lores["size"]) if lores else "-"))
        self.camera.mode = mode
        self._set_mode_controls(mode)   # controls are re-read after configure (l. 1222-1229)
        self.stream_map = {"main": "main", "lores": "lores" if lores else None,
                           "raw": "raw" if camera_config["raw"] is not None else None}
        self._max_queue_len = 1 if camera_config["queue"] and camera_config["buffer_count"] > 1 else 0
        self.camera_config = camera_config
        self.controls = dict(camera_config["controls"])
        self.configure_count += 1
        # The scene in the lores buffers; main and raw are not read by anything the double serves.
        if lores is not None:
            self.camera.scene = lc.Scene(self._cfg.get("clip"), *lores["size"], lores["stride"])
            self.camera.crop = _fit(mode["crop"], main["size"])

    def camera_configuration(self):
        return self.camera_config

    def stream_configuration(self, name="main"):
        return self.camera_config[name]

    # -- running -----------------------------------------------------------------------------
    def start(self, config=None, show_preview=False):
        if config is not None:
            self.configure(config)
        if not self.camera_config:
            raise RuntimeError("Camera has not been configured")
        if show_preview is not None and not self._event_loop_running:
            self.start_preview(show_preview)
        self.start_()

    def start_(self):
        if self.started:
            return
        cam = self.camera
        cam.on_complete = self._handle_request
        lores = self.camera_config["lores"]
        cam.start(self.controls.get("FrameDurationLimits"))
        for _ in range(self.camera_config["buffer_count"]):   # _make_requests l. 1108-1128
            buf = {"lores": bytearray(lores["framesize"])} if lores else {}
            cam.queue_request(lc.Request(self.camera_idx, {k: _np(v) for k, v in buf.items()}))
        self.started = True

    def _handle_request(self, req):
        # CameraManager.handle_request (l. 129-143): into _requests, then wake the event loop.
        with self._requestslock:
            self._requests.append(CompletedRequest(req, self))
        os.write(self.notifyme_w, b"\x00")

    def stop_(self, request=None):
        if self.started:
            self.stop_count += 1
            self.camera.stop()
            self.started = False
            with self._requestslock:
                unseen, self._requests = self._requests, []
            for r in unseen:
                r.release()
            while self.completed_requests:
                self.completed_requests.pop(0).release()
        return (True, None)

    def stop(self):
        if not self.started:
            return
        if self._preview is not None and self._event_loop_running:
            self.dispatch_functions([self.stop_], wait=True, immediate=True)   # l. 1400-1403
        else:
            self.stop_()

    def process_requests(self, display):
        with self._requestslock:
            requests, self._requests = self._requests, []
        self.frames += len(requests)
        with self.lock:
            for req in requests:
                req.acquire()
            self.completed_requests += requests
            display_request = None
            if requests:
                display_request = requests[-1]
                display_request.acquire()
            finished_jobs = []
            while self._job_list:
                if self._job_list[0].execute():
                    finished_jobs.append(self._job_list.pop(0))
                else:
                    break
            for req in requests:
                req.release()
            while len(self.completed_requests) > self._max_queue_len:
                self.completed_requests.pop(0).release()
        if display_request is not None:
            display.render_request(display_request)
            display_request.release()
        for job in finished_jobs:
            job.signal()

    def _run_process_requests(self):
        os.write(self.notifyme_w, b"\x00")

    def dispatch_functions(self, functions, wait, signal_function=None, immediate=False):
        if wait is None:
            wait = signal_function is None
        timeout = None
        if VERSION >= (0, 3, 20):   # before, a number was only "true": wait forever
            timeout = None if wait is True else wait
        with self.lock:
            only_job = not self._job_list
            job = Job(functions, signal_function)
            self._job_list.append(job)
            if only_job and (self.completed_requests or immediate):
                self._run_process_requests()
        if not wait:
            return job
        return job.get_result(timeout=timeout) if VERSION >= (0, 3, 17) else job.get_result()

    if VERSION >= (0, 3, 17):
        def wait(self, job, timeout=None):
            return job.get_result(timeout=timeout)
    else:
        def wait(self, job):
            return job.get_result()

    def wait_for_timestamp_(self, timestamp_ns):
        # l. 1552-1563
        if not timestamp_ns:
            return (True, None)
        while self.completed_requests:
            md = self.completed_requests[0].get_metadata()
            if md["SensorTimestamp"] - 1000 * md["ExposureTime"] >= timestamp_ns:
                return (True, None)
            self.completed_requests.pop(0).release()
        return (False, None)

    def capture_request_(self):
        # l. 1831-1835: the oldest held request, i.e. the newest frame (only one is kept).
        if not self.completed_requests:
            return (False, None)
        req = self.completed_requests.pop(0)
        self._spy(req)
        return (True, req)

    def _spy(self, req):
        entry = (req.request.sequence, req.request.clip_frame)
        self.delivered.append(entry)
        if self._cfg.get("log"):
            with open(self._cfg["log"], "a") as f:
                f.write(f"{entry[0]} {entry[1]}\n")

    if VERSION >= (0, 3, 15):   # flush: CHANGELOG 0.3.15
        def capture_request(self, wait=None, signal_function=None, flush=None):
            if flush is True:
                flush = time.monotonic_ns()
            functions = [partial(self.wait_for_timestamp_, flush), self.capture_request_]
            return self.dispatch_functions(functions, wait, signal_function)
    else:
        def capture_request(self, wait=None, signal_function=None):
            return self.dispatch_functions([self.capture_request_], wait, signal_function)

    if VERSION >= (0, 3, 20):
        def cancel_all_and_flush(self):
            # l. 1354-1366
            with self.lock:
                for job in self._job_list:
                    job.cancel()
                self._job_list = []

        def captured_request(self, wait=None, flush=None):
            return _captured(self.capture_request(wait=wait, flush=flush))
    elif VERSION >= (0, 3, 19):
        def captured_request(self):
            return _captured(self.capture_request())


def _captured(request):
    import contextlib

    @contextlib.contextmanager
    def cm():
        try:
            yield request
        finally:
            request.release()
    return cm()


def _fit(crop, size):
    """The largest rectangle of ``size``'s aspect ratio centred in ``crop`` (preserve_ar)."""
    x, y, w, h = crop
    if w * size[1] > h * size[0]:
        nw = h * size[0] // size[1]
        return (x + (w - nw) // 2, y, nw, h)
    nh = w * size[1] // size[0]
    return (x, y + (h - nh) // 2, w, nh)


def _np(buf):
    import numpy as np

    return np.frombuffer(buf, np.uint8)
