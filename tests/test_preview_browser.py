"""The live preview in a real headless browser (Debian's chromium driven by Selenium through
chromium-driver), against a real `device run --preview` process replaying a clip of changing
digits on a LAN bind (so the token path is the one exercised): the page loads through the
printed token URL, the frame is a picture with the digit box drawn, the prediction changes as
the replay plays, a label button writes a sample, and requests without the token are refused.

Skipped where Selenium or chromium-driver is missing, except under CI (CI=true), where that is
a failure: CI installs them (.ci/run)."""

import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from benchmarks.screenshot import FLAGS, chromium
from device.synth import load_sample, make_clip
from tests.conftest import ROOT

CHROMEDRIVER = shutil.which("chromedriver")


def _need(ok: bool, what: str):
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(f"{what} is missing on CI")
        pytest.skip(f"{what} is missing")


@pytest.fixture(scope="module")
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _need(False, "selenium (pip install -e '.[dev]')")
    _need(chromium() is not None, "chromium (apt install chromium)")
    _need(CHROMEDRIVER is not None, "chromedriver (apt install chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium()
    profile = tempfile.mkdtemp(prefix="mnist-edge-preview-chromium-")
    for flag in [*FLAGS, f"--user-data-dir={profile}", "--window-size=1200,1000"]:
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def device_preview(tmp_path_factory):
    """A `device run --preview 0.0.0.0:0` process on a looping real-time replay: (url, collection)."""
    work = tmp_path_factory.mktemp("preview")
    x, y = load_sample()
    clip = work / "clip.avi"
    make_clip(x, y, clip, n_digits=12, hold=6, seed=11, size=(320, 240))   # a new digit every 0.2 s
    collection = work / "collection"
    proc = subprocess.Popen([sys.executable, "-m", "device.cli", "run", "--source", str(clip), "--realtime",
                             "--loop", "--preview", "0.0.0.0:0", "--collection", str(collection),
                             "--no-output", "--quiet"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(l) for l in proc.stdout], daemon=True).start()
    url, seen = None, []
    deadline = time.monotonic() + 60
    while url is None and time.monotonic() < deadline and proc.poll() is None:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        seen.append(line)
        m = re.match(r"preview: (http://127\.0\.0\.1:\d+/\?token=[A-Za-z0-9_-]+)$", line.strip())
        url = m.group(1) if m else None
    try:
        assert url, "".join(seen)
        yield url, collection
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _wait(predicate, timeout=15, every=0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    return predicate()


def test_page_shows_the_live_replay_and_saves_a_labelled_sample(browser, device_preview):
    from selenium.webdriver.common.by import By

    url, collection = device_preview
    base = url.split("?")[0]
    # Without the token, neither a plain client nor the browser gets anything.
    for path in ("", "events", "stream.mjpg"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(base + path, timeout=10)
        assert err.value.code == 403
    browser.get(base)
    assert "a valid token is required" in browser.find_element(By.TAG_NAME, "body").text

    browser.get(url)
    assert browser.current_url == base                       # the token went into a cookie
    assert browser.title == "mnist-edge live preview"
    assert _wait(lambda: browser.find_element(By.ID, "conn").text == "live")

    # The prediction changes as the replay plays.
    seen = set()
    end = time.monotonic() + 6
    while time.monotonic() < end and len(seen) < 4:
        seen.add(browser.find_element(By.ID, "prediction").text)
        time.sleep(0.1)
    assert len(seen - {"\u2013"}) >= 3, seen

    # The frame is a picture, and one of them shows the digit's box (drawn in green or orange).
    frame = browser.find_element(By.ID, "frame")
    assert browser.execute_script("return arguments[0].naturalWidth", frame) > 0

    def boxed():
        shot = cv2.imdecode(np.frombuffer(frame.screenshot_as_png, np.uint8), cv2.IMREAD_COLOR).astype(int)
        b, g, r = shot[..., 0], shot[..., 1], shot[..., 2]
        coloured = ((g - np.maximum(b, r) > 60) | ((r - b > 120) & (g - b > 60))).mean()
        return shot.std() > 5 and coloured > 0.002

    assert _wait(boxed, timeout=10, every=0.2)

    # A label button saves the frame shown (retry if a blank frame was on screen).
    def saved():
        if browser.find_element(By.ID, "reason").text:       # no digit on screen now
            return False
        browser.find_element(By.ID, "label-3").click()
        status = _wait(lambda: browser.find_element(By.ID, "status").text, timeout=5)
        return status.startswith("saved") and status

    status = _wait(saved, timeout=15, every=0.3)
    assert status, browser.find_element(By.ID, "status").text
    rows = (collection / "labels.csv").read_text().splitlines()
    assert rows[0] == "file,label,prediction,confidence,source,created"
    name, label = rows[1].split(",")[:2]
    assert label == "3" and name in status
    crop = cv2.imread(str(collection / name), cv2.IMREAD_UNCHANGED)
    inp = cv2.imread(str(collection / name.replace(".png", ".input.png")), cv2.IMREAD_UNCHANGED)
    assert crop is not None and crop.size > 0 and inp.shape == (28, 28) and inp.max() > 200
