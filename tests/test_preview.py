"""The live preview without a browser: its access rules (token, Host, fixed routes, POST
rules), its streams (MJPEG parts and SSE events decoded as a client would), the publisher's
drop-don't-queue behaviour, and bad --preview input (one line, exit 2, before capture).
The real-browser test is tests/test_preview_browser.py."""

import base64
import http.client
import json
import re
import socket
import threading
import time

import cv2
import numpy as np
import pytest

from device.cli import main
from device.collection import Collection
from device.preview import PreviewHub, PreviewServer
from device.runtime import Model
from device.sources.video import VideoFile
from device.step import Step
from device.synth import load_sample, make_clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    x, y = load_sample()
    path = tmp_path_factory.mktemp("clip") / "clip.avi"
    make_clip(x, y, path, n_digits=12, hold=2, seed=5)
    return path


@pytest.fixture(scope="module")
def records(clip):
    """(frame, record) pairs of the clip through the shipped model."""
    step = Step(Model())
    with VideoFile(str(clip)) as src:
        return [(f, step(f.image, f.index)) for f in src.frames()]


@pytest.fixture
def served(tmp_path):
    """Start a preview: served(host="0.0.0.0", token=None) -> (server, hub)."""
    started = []

    def start(host="0.0.0.0", token=None, fps=30.0):
        hub = PreviewHub(5.0, fps=fps, stats_every_s=0.1)
        server = PreviewServer(host, 0, hub, Collection(tmp_path / "col"), token=token)
        server.__enter__()
        hub.start()
        started.append(server)
        return server, hub

    yield start
    for s in started:
        s.close()


def request(server, method, path, headers=None, body=None, host=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.putrequest(method, path, skip_host=True)
    conn.putheader("Host", host or f"127.0.0.1:{server.port}")
    for k, v in (headers or {}).items():
        conn.putheader(k, v)
    if body is not None:
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    r = conn.getresponse()
    data = r.read() if r.getheader("Content-Type", "").split(";")[0] not in (
        "text/event-stream", "multipart/x-mixed-replace") else b""
    conn.close()
    return r, data


ROUTES = [("GET", "/"), ("GET", "/events"), ("GET", "/stream.mjpg"), ("POST", "/label"), ("GET", "/nope"),
          ("GET", "/../../etc/passwd"), ("GET", "/%2e%2e/etc/passwd"), ("GET", "//etc/passwd"),
          ("GET", "/page.html"), ("HEAD", "/"), ("PUT", "/label"), ("DELETE", "/")]


def test_every_route_refuses_a_missing_or_wrong_token_on_a_lan_bind(served):
    server, _ = served("0.0.0.0")
    assert not server.loopback and re.fullmatch(r"[A-Za-z0-9_-]{32}", server.token)
    assert all(u.endswith(f":{server.port}/?token={server.token}") for u in server.urls())
    wrong = "x" * len(server.token)
    for method, path in ROUTES:
        for headers in ({}, {"X-Preview-Token": wrong}, {"Cookie": f"{server.cookie}={wrong}"}):
            r, _ = request(server, method, path, headers)
            assert r.status == 403, (method, path, headers)
        r, _ = request(server, method, path + ("&" if "?" in path else "?") + f"token={wrong}")
        assert r.status == 403
    # No file is ever served: with the token, anything but the fixed routes is 404.
    good = {"X-Preview-Token": server.token}
    for path in ("/nope", "/../../etc/passwd", "/%2e%2e/etc/passwd", "//etc/passwd", "/page.html",
                 "/device/preview/page.html"):
        r, body = request(server, "GET", path, good)
        assert r.status == 404 and b"root:" not in body
    assert request(server, "PUT", "/label", good)[0].status == 405


def test_the_token_moves_from_the_url_into_a_strict_cookie(served):
    server, _ = served("0.0.0.0", token="a-token-that-is-long-enough")
    r, _ = request(server, "GET", f"/?token={server.token}")
    assert r.status == 303 and r.getheader("Location") == "/"
    cookie = r.getheader("Set-Cookie")
    assert cookie.startswith(f"{server.cookie}={server.token};") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    r, page = request(server, "GET", "/", {"Cookie": cookie.split(";")[0]})
    assert r.status == 200 and b"<title>mnist-edge live preview</title>" in page
    assert "default-src 'none'" in r.getheader("Content-Security-Policy")
    assert server.token.encode() not in page


def test_a_loopback_bind_needs_no_token_but_answers_only_to_loopback_names(served):
    server, _ = served("127.0.0.1")
    assert server.loopback and server.token is None and server.urls() == [f"http://127.0.0.1:{server.port}/"]
    for host in (f"127.0.0.1:{server.port}", "localhost:9000", "[::1]:8080", "localhost"):
        assert request(server, "GET", "/", host=host)[0].status == 200, host
    for host in ("evil.example:80", f"attacker.test:{server.port}", "127.0.0.1.evil.test"):
        assert request(server, "GET", "/", host=host)[0].status == 403, host


def _feed(hub, records, seconds, stop):
    """The loop's side: hand records to the hub as fast as they come, for ``seconds``."""
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end and not stop.is_set():
        frame, rec = records[n % len(records)]
        hub(frame, rec)
        n += 1
        time.sleep(0.0005)
    return n


def _read_sse(server, headers, count, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    conn.request("GET", "/events", headers=headers)
    r = conn.getresponse()
    assert r.status == 200 and r.getheader("Content-Type") == "text/event-stream"
    events, buf = [], b""
    while len([e for e in events if e[0] == "frame"]) < count:
        buf += r.fp.read1(65536)
        while b"\n\n" in buf:
            block, buf = buf.split(b"\n\n", 1)
            fields = dict(line.split(": ", 1) for line in block.decode().splitlines() if ": " in line)
            if "event" in fields:
                events.append((fields["event"], json.loads(fields["data"])))
    conn.close()
    return events


def _read_mjpeg(server, headers, count):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/stream.mjpg", headers=headers)
    r = conn.getresponse()
    assert r.getheader("Content-Type") == "multipart/x-mixed-replace; boundary=frame"
    assert r.fp.readline() == b"--frame\r\n"
    jpegs = []
    while len(jpegs) < count:
        head = {}
        while (line := r.fp.readline()) != b"\r\n":
            k, v = line.decode().split(": ", 1)
            head[k] = v.strip()
        assert head["Content-Type"] == "image/jpeg"
        jpegs.append(r.fp.read(int(head["Content-Length"])))
        assert r.fp.read(len(b"\r\n--frame\r\n")) == b"\r\n--frame\r\n"
    conn.close()
    return jpegs


def test_streams_carry_the_latest_frame_and_drop_the_rest(served, records):
    server, hub = served("0.0.0.0", fps=20)
    auth = {"X-Preview-Token": server.token}
    stop = threading.Event()
    fed = []
    feeder = threading.Thread(target=lambda: fed.append(_feed(hub, records, 4.0, stop)))
    feeder.start()
    try:
        events = _read_sse(server, auth, 8)
        jpegs = _read_mjpeg(server, auth, 3)
    finally:
        stop.set()
        feeder.join()
    frames = [e for kind, e in events if kind == "frame"]
    stats = [e for kind, e in events if kind == "stats"]
    seqs = [f["seq"] for f in frames]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    with_digit = [f for f in frames if f["digits"]]
    assert with_digit, frames
    d = with_digit[0]["digits"][0]
    png = base64.b64decode(d["input"].split(",", 1)[1])
    inp = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert inp.shape == (28, 28) and inp.max() > 200 and 0 <= d["digit"] <= 9 and len(d["box"]) == 4
    assert stats and stats[-1]["frames"] > 0 and set(stats[-1]["stages"]) >= {"preprocess", "inference", "total"}
    assert stats[-1]["fps"] > 0 and 0 <= stats[-1]["within_budget"] <= 1 and stats[-1]["rss_mb"] > 10
    for jpeg in jpegs:
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.std() > 5          # a picture, not a blank
    # Latest wins: at most fps frames a second were encoded, out of hundreds handed over.
    deadline = time.monotonic() + 2
    while hub.frames < fed[0] and time.monotonic() < deadline:  # the publisher counts as it drains
        time.sleep(0.05)
    assert hub.frames == fed[0] and hub.published <= 20 * 4.5 + 2 and fed[0] > 4 * hub.published


def test_idle_connections_beyond_the_cap_are_turned_away(served):
    from device.preview.server import MAX_CONNECTIONS

    server, _ = served("0.0.0.0")
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        extra.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert extra.recv(100) == b""        # closed without an answer
        extra.close()
    finally:
        for s in idle:
            s.close()
    time.sleep(0.3)
    assert request(server, "GET", "/", {"X-Preview-Token": server.token})[0].status == 200


def test_draw_handles_gray_and_colour_frames(records):
    from device.preview.hub import draw

    frame, rec = next((f, r) for f, r in records if r.digits)
    for img in (frame.image, cv2.cvtColor(frame.image, cv2.COLOR_GRAY2BGR)):
        out = draw(img, rec, width=480)
        assert out.shape == (*img.shape[:2], 3) and not np.array_equal(out[..., 1], out[..., 0])
    big = cv2.resize(frame.image, None, fx=8, fy=8)
    assert draw(big, rec, width=480).shape[1] == 480


def test_nothing_is_encoded_while_nobody_watches(served, records):
    server, hub = served("127.0.0.1", fps=30)
    for frame, rec in records:
        hub(frame, rec)
    time.sleep(0.3)
    assert hub.frames == len(records) and hub.published == 0


def test_label_button_saves_the_frame_the_page_showed(served, records, tmp_path):
    server, hub = served("127.0.0.1", fps=30)
    digit_rec = next((f, r) for f, r in records if r.digits)
    blank_rec = next((f, r) for f, r in records if not r.digits)
    json_ct = {"Content-Type": "application/json"}

    def post(doc, headers=json_ct, raw=None):
        r, body = request(server, "POST", "/label", headers, raw if raw is not None else json.dumps(doc).encode())
        return r.status, body

    with hub.viewer():
        hub(*digit_rec)
        deadline = time.monotonic() + 5
        while hub.published < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        seq_digit = hub.published
        hub(*blank_rec)
        while hub.published < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert post({"seq": seq_digit, "label": "7"}, headers={"Content-Type": "text/plain"})[0] == 415
    assert post({"seq": seq_digit, "label": "7"}, headers={**json_ct, "Origin": "http://evil.example"})[0] == 403
    assert post({"seq": seq_digit, "label": "77"})[0] == 400
    assert post({"seq": "1", "label": "7"})[0] == 400
    assert post(None, raw=b"{" + b" " * 2000 + b"}")[0] == 413
    assert post({"seq": 999, "label": "7"})[0] == 409
    status, body = post({"seq": seq_digit + 1, "label": "none"})
    assert status == 409 and b"no digit" in body
    status, body = post({"seq": seq_digit, "label": "7"}, headers={**json_ct, "Origin": f"http://127.0.0.1:{server.port}"})
    assert status == 200, body
    reply = json.loads(body)
    folder = tmp_path / "col"
    saved = cv2.imread(str(folder / reply["saved"].replace(".png", ".input.png")), cv2.IMREAD_GRAYSCALE)
    expected = np.rint(digit_rec[1].digits[0].input * 255).astype(np.uint8)
    assert np.array_equal(saved, expected)
    assert (folder / "labels.csv").read_text().splitlines()[1].split(",")[1:3] == ["7", str(digit_rec[1].prediction)]


def test_run_prints_a_token_url_for_a_lan_bind(clip, capsys, monkeypatch, tmp_path):
    assert main(["run", "--source", str(clip), "--no-output", "--quiet", "--preview", "0.0.0.0:0",
                 "--collection", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    urls = re.findall(r"^preview: (http://\S+)$", out, re.M)
    assert len(urls) == 2 and all(re.search(r":\d+/\?token=[A-Za-z0-9_-]{32}$", u) for u in urls)
    assert "keep the token private" in out
    monkeypatch.setenv("MNIST_EDGE_PREVIEW_TOKEN", "from-the-environment-0123")
    assert main(["run", "--source", str(clip), "--no-output", "--quiet", "--preview", "0.0.0.0:0",
                 "--collection", str(tmp_path / "c")]) == 0
    assert "?token=from-the-environment-0123" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--preview", "http://x:80"], "takes PORT or HOST:PORT"),
    (["--preview", "host:port"], "port 'port' is not a number"),
    (["--preview", "127.0.0.1:70000"], "not a number 0-65535"),
    (["--preview", "[::1"], "takes PORT or HOST:PORT"),
    (["--preview", "no-such-host.invalid:8080"], "cannot resolve 'no-such-host.invalid'"),
    (["--preview", "192.0.2.1:8080"], "192.0.2.1 is not an address of this machine"),
    (["--preview", "0.0.0.0:0", "--preview-token", "short"], "--preview-token must be at least 16"),
    (["--preview-token", "a-token-that-is-long-enough"], "--preview-token needs --preview"),
])
def test_bad_preview_input_is_one_line_and_exit_2(clip, tmp_path, capsys, argv, message):
    out = tmp_path / "r.json"
    try:
        code = main(["run", "--source", str(clip), "--output", str(out), "--collection", str(tmp_path / "c"), *argv])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    captured = capsys.readouterr()
    assert len(captured.err.strip().splitlines()) == 1 and message in captured.err, captured.err
    assert "frame" not in captured.out and not out.exists()


def test_a_port_in_use_is_one_line_and_exit_2_before_capture(clip, tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = tmp_path / "r.json"
        assert main(["run", "--source", str(clip), "--output", str(out), "--preview", str(port),
                     "--collection", str(tmp_path / "c")]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == (f"device: error: --preview 127.0.0.1:{port}: port {port} is in use; "
                                    "choose another port or stop what uses it")
    assert captured.out == "" and not out.exists()
