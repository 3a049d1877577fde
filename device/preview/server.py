"""The live preview's HTTP server: the standard library's ``ThreadingHTTPServer``.

Why the standard library: the device side installs numpy, OpenCV and an interpreter runtime and
nothing else, and a Pi Zero has little room.  What the page needs is plain HTTP: an MJPEG
stream (``multipart/x-mixed-replace``), Server-Sent Events for JSON, one POST; each open stream
is one daemon thread blocked in :meth:`PreviewHub.wait`, and at most ``MAX_VIEWERS`` are open.

Security (the process holds a camera; a LAN is not a trusted place):
* it binds 127.0.0.1 unless told otherwise; any other address requires a token (generated with
  :mod:`secrets` unless ``--preview-token`` gives one), printed as a URL like Jupyter's;
* every request, whatever its path or method, is checked first: the token from the query
  (``?token=``), the ``X-Preview-Token`` header or the cookie the page gets on its first visit,
  compared in constant time; wrong or missing: 403;
* on a loopback bind without a token, the Host header must name the loopback (a page on
  another site cannot reach the preview by DNS rebinding);
* fixed routes only (``/``, ``/stream.mjpg``, ``/events``, ``POST /label``): nothing is served
  from the file system, so there is no path to traverse;
* ``POST /label`` takes only ``application/json`` (a cross-site form cannot send it without a
  CORS preflight, which this server never grants) from its own origin, at most 1 KB; the
  cookie is ``SameSite=Strict; HttpOnly``.
"""

from __future__ import annotations

import errno
import hmac
import ipaddress
import json
import secrets
import socket
import socketserver
import threading
import time
from dataclasses import replace
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlsplit

from device.collection import LABELS, Collection
from device.errors import UsageError
from device.preview.hub import Busy, PreviewHub

TOKEN_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
MIN_TOKEN = 16
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
HEARTBEAT_S = 15
MAX_BODY = 1024
MAX_CONNECTIONS = 32


def hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_token(token: str) -> str:
    if len(token) < MIN_TOKEN or not set(token) <= TOKEN_CHARS:
        raise UsageError(f"--preview-token must be at least {MIN_TOKEN} characters of A-Z a-z 0-9 - _ "
                         "(python3 -c 'import secrets; print(secrets.token_urlsafe(24))' makes one)")
    return token


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True   # a restart may bind while old connections linger in TIME_WAIT

    def __init__(self, *args, **kwargs):
        # One thread per connection, at most MAX_CONNECTIONS: a flood of idle connections (no
        # token needed to open one) is turned away instead of exhausting a Pi's threads.
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(*args, **kwargs)

    def server_bind(self):
        # HTTPServer.server_bind looks up the FQDN of the address: a DNS wait on a Pi offline.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class PreviewServer:
    """The preview, bound at construction (so a taken port fails before capture starts).

    Raises UsageError (one line) when ``host`` cannot be resolved or the port bound."""

    def __init__(self, host: str, port: int, hub: PreviewHub, collection: Collection | None = None,
                 token: str | None = None, flag: str = "--preview"):
        self.hub, self.collection = hub, collection
        where = f"{flag} {hostport(host, port)}"
        try:
            family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                       flags=socket.AI_PASSIVE)[0]
        except socket.gaierror as exc:
            raise UsageError(f"{where}: cannot resolve {host!r} ({exc.strerror}); "
                             "give an address such as 127.0.0.1 or 0.0.0.0") from None
        self.loopback = ipaddress.ip_address(addr[0].split("%")[0]).is_loopback
        self.token = check_token(token) if token else (None if self.loopback else secrets.token_urlsafe(24))
        server_cls = type("PreviewHTTPServer", (_Server,), {"address_family": family})
        try:
            self.httpd = server_cls(addr[:2], Handler)
        except OSError as exc:
            hint = {errno.EADDRINUSE: f"port {port} is in use; choose another port or stop what uses it",
                    errno.EADDRNOTAVAIL: f"{host} is not an address of this machine",
                    errno.EACCES: "ports below 1024 need root; use a port such as 8080"}.get(exc.errno, exc.strerror)
            raise UsageError(f"{where}: {hint}") from None
        self.httpd.preview = self
        self.host, self.port = addr[0], self.httpd.server_address[1]
        self.cookie = f"mnist_edge_preview_{self.port}"
        self.page = resources.files("device.preview").joinpath("page.html").read_bytes()
        self._thread: threading.Thread | None = None

    def urls(self) -> list[str]:
        """Where to open the page (with the token, when there is one)."""
        q = f"/?token={self.token}" if self.token else "/"
        hosts = [self.host]
        if self.host in ("0.0.0.0", "::"):
            hosts = [socket.gethostname(), "127.0.0.1"]
        return [f"http://{hostport(h, self.port)}{q}" for h in hosts]

    def start(self) -> "PreviewServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="preview-http", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self.hub.close()
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread = None
        self.httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
        return False

    # -- access ------------------------------------------------------------------------------
    def refusal(self, headers, query: str) -> str | None:
        """Why a request may not proceed (None: it may)."""
        if self.token is None:
            host = (headers.get("Host") or "").strip().lower()
            name = host[1:host.find("]")] if host.startswith("[") else host.rpartition(":")[0] or host
            if host and name not in LOOPBACK_NAMES:
                return "this preview answers only to localhost (or start it with a token)"
            return None
        given = [v for v in parse_qs(query).get("token", [])[:1]]
        given.append(headers.get("X-Preview-Token") or "")
        try:
            morsel = SimpleCookie(headers.get("Cookie") or "").get(self.cookie)
        except CookieError:
            morsel = None
        given.append(morsel.value if morsel else "")
        want = self.token.encode()
        if any(g and hmac.compare_digest(g.encode("utf-8", "replace"), want) for g in given):
            return None
        return "a valid token is required (open the URL the device printed)"

    def label(self, seq: int, label: str) -> tuple[int, dict]:
        """Save the first digit of published frame ``seq`` with ``label``: (HTTP status, reply)."""
        if self.collection is None:
            return 409, {"error": "no collection folder: start the device with --collection DIR"}
        samples = self.hub.samples(seq)
        if samples is None:
            return 409, {"error": "that frame is no longer held; press again"}
        if not samples:
            return 409, {"error": "no digit was found in that frame: nothing to save"}
        try:
            name = self.collection.add([replace(samples[0], label=label)])[0]
        except OSError as exc:
            return 507, {"error": f"cannot save: {exc.strerror or exc}"}
        c = self.collection
        return 200, {"saved": name, "label": label, "samples": len(c), "mb": round(c.bytes_used() / 1e6, 3),
                     "max_mb": round(c.max_bytes / 1e6, 2)}


class Handler(BaseHTTPRequestHandler):
    server_version = "mnist-edge-preview"
    sys_version = ""
    timeout = 30          # a client that stalls mid-request or mid-stream is dropped

    def log_message(self, *args):  # the device's stdout is its live line, not an access log
        pass

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_HEAD(self):
        self._handle("HEAD")

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD

    def _handle(self, method: str) -> None:
        preview: PreviewServer = self.server.preview
        url = urlsplit(self.path)
        why = preview.refusal(self.headers, url.query)
        if why:
            return self._reply(403, why)
        route = {"/": self._page, "/stream.mjpg": self._mjpeg, "/events": self._events,
                 "/label": self._label}.get(url.path)
        if route is None:
            return self._reply(404, "no such page")
        if method != ("POST" if url.path == "/label" else "GET"):
            return self._reply(405, "method not allowed")
        try:
            route(preview, url)
        except Busy as exc:
            self._reply(503, str(exc))
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the viewer went away

    def _reply(self, code: int, body, ctype: str = "text/plain; charset=utf-8", headers=()) -> None:
        data = body if isinstance(body, bytes) else (json.dumps(body) if isinstance(body, dict) else body + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self._common_headers(headers)
        self.wfile.write(data)

    def _common_headers(self, headers=()) -> None:
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()

    def _page(self, preview: PreviewServer, url) -> None:
        if preview.token and "token" in parse_qs(url.query):
            # The token moves into a cookie and out of the address bar (and the history).
            cookie = f"{preview.cookie}={preview.token}; Path=/; HttpOnly; SameSite=Strict"
            return self._reply(303, "see /", headers=[("Location", "/"), ("Set-Cookie", cookie)])
        self._reply(200, preview.page, "text/html; charset=utf-8", headers=[
            ("Content-Security-Policy", "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
             "script-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'"),
            ("X-Frame-Options", "DENY")])

    def _stream(self, preview: PreviewServer, ctype: str, kinds: tuple, head: bytes, part) -> None:
        """Send ``part(bytes)`` for each newer item of ``kinds`` until the run ends or the viewer
        leaves; ``part(None)`` (a heartbeat) after ``HEARTBEAT_S`` without one, so a viewer that
        vanished is noticed (the write fails) even when the camera has stalled."""
        hub = preview.hub
        with hub.viewer():
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self._common_headers([("Connection", "close")])
            self.wfile.write(head)
            version, sent, last_write = 0, {}, time.monotonic()
            while True:
                got = hub.wait(version, HEARTBEAT_S)
                if got is None:
                    return
                version, items = got
                out = []
                for k in kinds:
                    if k in items and sent.get(k) != items[k][0]:
                        sent[k] = items[k][0]
                        out.append(part(items[k][1]))
                if not out and time.monotonic() - last_write >= HEARTBEAT_S:
                    out.append(part(None))
                if out:
                    self.wfile.write(b"".join(out))
                    self.wfile.flush()
                    last_write = time.monotonic()

    def _mjpeg(self, preview: PreviewServer, url) -> None:
        # Each part ends with the next boundary: a browser shows a part when it sees the boundary
        # after it, so the frame appears now rather than when the next one arrives.
        last = [b""]

        def part(jpeg):
            jpeg = last[0] = last[0] if jpeg is None else jpeg
            if not jpeg:
                return b""
            return (b"Content-Type: image/jpeg\r\nContent-Length: " + str(len(jpeg)).encode()
                    + b"\r\n\r\n" + jpeg + b"\r\n--frame\r\n")

        self._stream(preview, "multipart/x-mixed-replace; boundary=frame", ("jpeg",), b"--frame\r\n", part)

    def _events(self, preview: PreviewServer, url) -> None:
        self._stream(preview, "text/event-stream", ("frame", "stats"), b"retry: 2000\n\n",
                     lambda data: b": ping\n\n" if data is None else data)

    def _label(self, preview: PreviewServer, url) -> None:
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return self._reply(415, "send application/json")
        origin = self.headers.get("Origin")
        if origin and urlsplit(origin).netloc.lower() != (self.headers.get("Host") or "").lower():
            return self._reply(403, "cross-origin request refused")
        try:
            n = int(self.headers.get("Content-Length") or -1)
        except ValueError:
            n = -1
        if not 0 < n <= MAX_BODY:
            return self._reply(413 if n > MAX_BODY else 411, f"send a JSON body of at most {MAX_BODY} bytes")
        try:
            doc = json.loads(self.rfile.read(n))
            seq, label = doc["seq"], str(doc["label"])
            if not isinstance(seq, int) or label not in LABELS or not label:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            return self._reply(400, {"error": 'send {"seq": <frame seq>, "label": "0".."9" or "none"}'},
                               "application/json")
        code, reply = preview.label(seq, label)
        self._reply(code, reply, "application/json")
