"""The web console in a real browser (Debian's chromium, driven by Playwright: nothing downloads a
browser), against real daemons started from one camwire.toml as the units start them: a camera
over RTSP from a real GStreamer server and a file camera played at its own pace, a worker with
tests/pipeline/shapes_worker.py's ``shapes`` detector (it finds the sample clips' yellow box and
blue disc, as a model finds objects), the sink, the recorder and ``camwire web``.

What a user would check, each against the pixels or the video: the login refuses a wrong token;
the grid shows every camera with an image that changes; the box of a detection is drawn where
the detected object is; an object's row in the events list says when it appeared and how long it
stayed; an event's clip plays (its currentTime moves); a recorded range downloads
as a playable file; a dead RTSP server turns its tile offline with the reason; the yard, not
recorded (record = false), is live all the same. The screenshots of
the grid and the events page go to $CAMWIRE_SCREENSHOTS when it is set (the README's are made so).
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

import av
import cv2
import numpy as np
import pytest

from camwire.sample import background, make_sample_clip
from conftest import ROOT, free_port, tcp
from rtsp import RtspServer, needs_rtsp

CHROMIUM = "/usr/bin/chromium"
TOKEN = "correct horse battery staple"
SHAPES_WORKER = ROOT / "tests" / "pipeline" / "shapes_worker.py"
W, H, FPS = 640, 360, 10
BOX = (400, 60, 480, 120)  # the yard's parked yellow box (x1, y1, x2, y2): the shapes detector finds it

pytestmark = [needs_rtsp, pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                             reason="Debian's chromium is not installed: run `make debs`")]
playwright = pytest.importorskip("playwright.sync_api")


def yard_clip(path: Path, seconds: int) -> None:
    """A still street with a yellow box parked at BOX and a blue disc rolling along the bottom."""
    base = background(W, H)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.time_base = Fraction(1, FPS)
        stream.options = {"preset": "veryfast", "crf": "20", "bframes": "0", "g": str(2 * FPS)}
        for i in range(seconds * FPS):
            img = base.copy()
            cv2.rectangle(img, BOX[:2], BOX[2:], (20, 220, 250), -1)
            cv2.circle(img, (W - int(i * 8 % W), H * 3 // 4), 25, (200, 40, 40), -1)
            frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def write_config(tmp: Path, rtsp_url: str, yard: Path, port: int) -> Path:
    sockets = {name: tcp() for name in ("frontend", "backend", "results", "events", "frames", "detections")}
    config = tmp / "camwire.toml"
    config.write_text(f"""
[sockets]
{chr(10).join(f'{k} = "{v}"' for k, v in sockets.items())}

[extractor]
publish_enc = "passthrough"
open_timeout = "3s"
read_timeout = "3s"

[sink]
events = "{tmp / 'events.jsonl'}"
data_dir = "{tmp / 'data'}"
gone_after = "1s"
update_every = "1s"

[recorder]
dir = "{tmp / 'rec'}"
segment = "2s"
pre = "1s"
post = "1s"
keep_types = "object"

[web]
port = {port}
token = "${{CAMWIRE_WEB_TOKEN}}"

[rules]                 # the shapes are a "box" and a "disc", no people; the yard's box is parked
labels = ["*"]
stationary_after = 0

[cameras.door]
url = "{rtsp_url}"
detect = "always"

[cameras.yard]
url = "{yard}"
realtime = true
detect = "always"
record = false
""")
    return config


class Console:
    """The daemons of one host, each started from the file as its unit would start it
    (conftest.Daemons: stopped at teardown), and the console's HTTP API."""

    def __init__(self, daemons, config: Path, port: int) -> None:
        self.daemons, self.config, self.port = daemons, config, port

    def start_all(self) -> None:
        cfg = ("--config", str(self.config))
        for name in ("sink", "ventilator", "recorder", "web"):
            self.daemons.start(name, name, *cfg)
        # the file's [classifier] knows no "shapes"; the worker's own flag names it
        log = open(self.daemons.tmp / "worker.log", "wb")
        self.daemons.procs["worker"] = subprocess.Popen(
            [sys.executable, str(SHAPES_WORKER), "classifier", *cfg, "--detector", "shapes"],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "CAMWIRE_LOG_FORMAT": "json"}, cwd=ROOT)
        self.daemons.start("extractor", "extractor", *cfg)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, path: str, token: str | None = TOKEN, method: str = "GET") -> tuple[int, Any]:
        request = urllib.request.Request(self.url + path, method=method,
                                         headers={"Authorization": f"Bearer {token}"} if token else {})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")


@pytest.fixture
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required"])
        yield b
        b.close()


def wait_api(console: Console, path: str, predicate, timeout: float = 60.0) -> Any:
    """GET ``path`` until ``predicate(body)`` holds: the API is the state waited on (no sleeps)."""
    deadline = time.monotonic() + timeout
    body = None
    while time.monotonic() < deadline:
        try:
            status, body = console.api(path)
        except (urllib.error.URLError, ConnectionError):
            status = None  # not listening yet
        if status == 200 and predicate(body):
            return body
        time.sleep(0.25)  # an HTTP API has nothing to await but its next answer
    raise AssertionError(f"{path} never matched; last: {json.dumps(body)[:2000]}")


def stayed(seconds: float) -> str:
    """How the console words an ended object's stay: "for 12 s", "for 3 min 5 s"."""
    s = math.floor(seconds + 0.5)  # as the page rounds (Math.round)
    if s < 1:
        return "for under 1 s"
    return f"for {s} s" if s < 60 else f"for {s // 60} min {s % 60} s" if s % 60 else f"for {s // 60} min"


def pixels(png: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)


def test_console_in_a_real_browser(tmp_path: Path, browser, daemons, monkeypatch) -> None:
    monkeypatch.setenv("CAMWIRE_WEB_TOKEN", TOKEN)
    door_clip, yard_path = tmp_path / "door.mp4", tmp_path / "yard.mp4"
    make_sample_clip(door_clip, seconds=120, fps=FPS, width=W, height=H, gop=2 * FPS, covered=None)
    yard_clip(yard_path, seconds=120)
    rtsp = RtspServer(free_port(), door_clip)
    rtsp.start()
    port = free_port()
    console = Console(daemons, write_config(tmp_path, rtsp.url, yard_path, port), port)
    shots = Path(os.environ["CAMWIRE_SCREENSHOTS"]) if os.environ.get("CAMWIRE_SCREENSHOTS") else tmp_path
    try:
        console.start_all()
        wait_api(console, "/api/cameras", lambda b: {c["camera"]: c["state"] for c in b["cameras"]}
                 == {"door": "online", "yard": "online"})

        # a wrong token is refused, by the API and by the page's login form
        assert console.api("/api/cameras", token="wrong")[0] == 401
        assert console.api("/api/reload", token="wrong", method="POST")[0] == 401
        assert console.api("/api/cameras", token=None)[0] == 401
        page = browser.new_page(viewport={"width": 1280, "height": 800}, timezone_id="UTC")  # times read here
        page.goto(console.url + "/")
        page.fill("input.token", "wrong")
        page.keyboard.press("Enter")
        page.get_by_text("wrong token").wait_for()
        page.fill("input.token", TOKEN)
        page.keyboard.press("Enter")

        # the grid: every camera, each with an image that changes
        for camera in ("door", "yard"):
            page.locator(f'.tile[data-camera="{camera}"] .state[data-state="online"]').wait_for(timeout=30_000)
        images = {c: page.locator(f'.tile[data-camera="{c}"] .live-image') for c in ("door", "yard")}
        first = {}
        for camera, image in images.items():
            page.wait_for_function("el => el.dataset.seq !== undefined", arg=image.element_handle(), timeout=30_000)
            first[camera] = image.screenshot()
        for camera, image in images.items():
            page.wait_for_function("([el, seq]) => el.dataset.seq !== seq",
                                   arg=[image.element_handle(), image.get_attribute("data-seq")], timeout=30_000)
            assert not np.array_equal(pixels(image.screenshot()), pixels(first[camera])), f"{camera} did not change"
        page.screenshot(path=str(shots / "console-grid.png"))

        # the box is drawn where the detection is: green edges round the parked yellow box
        shot = pixels(images["yard"].screenshot())
        _n, _labels, blobs, _centres = cv2.connectedComponentsWithStats(cv2.inRange(shot, (0, 170, 200), (90, 255, 255)))
        assert len(blobs) > 1, "the parked box is not in the yard's tile"
        x1, y1, bw, bh, _area = blobs[1:][np.argmax(blobs[1:, 4])]  # the box; the street has yellowish specks
        x2, y2 = x1 + bw - 1, y1 + bh - 1
        green = cv2.inRange(shot, (0, 180, 0), (110, 255, 110))
        rows = slice(y1 + 2, y2 - 1)
        assert green[rows, max(0, x1 - 6):x1 + 1].any(axis=1).mean() > 0.8  # the left edge, beside the box
        assert green[rows, x2:x2 + 7].any(axis=1).mean() > 0.8  # the right edge
        assert green[y2:y2 + 7, x1 + 2:x2 - 1].any(axis=0).mean() > 0.8  # the bottom edge
        assert not green[y1 + 6:y2 - 5, x1 + 6:x2 - 5].any()  # and not over the box itself

        # an event opens and its clip plays
        done = wait_api(console, "/api/events?camera=door&type=object",
                        lambda b: any(e["phase"] == "end" and e["clip_url"] for e in b["events"]), timeout=90)
        event = next(e for e in done["events"] if e["phase"] == "end" and e["clip_url"])
        page.goto(console.url + "/#/events")
        row = page.locator(f'.event[data-id="{event["id"]}"]')
        row.wait_for(timeout=30_000)
        # its row: when it appeared (not when it ended) and how long it stayed
        appeared = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(event["first_seen"]))
        assert event["first_seen"] < event["ts"] and row.locator(".ev-at").inner_text() == appeared
        assert row.locator(".ev-for").inner_text() == stayed(event["duration"])
        assert event["duration"] == event["last_seen"] - event["first_seen"]
        page.screenshot(path=str(shots / "console-events.png"))
        row.click()
        clip = page.locator("video.clip")
        clip.wait_for()
        page.wait_for_function("el => el.currentTime > 0.5", arg=clip.element_handle(), timeout=30_000)

        # a recorded range downloads as a playable file
        recorded = wait_api(console, "/api/recordings?camera=door",
                            lambda b: any(e - s >= 4 for s, e in b["cameras"].get("door", {}).get("ranges", [])))
        start, end = next((s, e) for s, e in recorded["cameras"]["door"]["ranges"] if e - s >= 4)
        page.goto(console.url + f"/#/recordings?camera=door&start={start + 1:.3f}&end={start + 4:.3f}")
        with page.expect_download() as download:
            page.locator("a.download").click()
        saved = tmp_path / "range.mp4"
        download.value.save_as(saved)
        with av.open(str(saved)) as container:
            assert container.streams.video[0].codec_context.name == "h264"
            frames = sum(1 for _ in container.decode(video=0))
        # copied, never re-encoded: it starts at the key frame before start (the clip has one every
        # 2 s; an RTSP server may send more or fewer), so it holds the 3 s asked for and may hold more
        assert 2.5 * FPS <= frames <= 8 * FPS

        # the camera dies: its tile says offline, and why
        page.goto(console.url + "/#/live")
        page.locator('.tile[data-camera="door"] .state[data-state="online"]').wait_for()
        rtsp.stop()
        page.locator('.tile[data-camera="door"] .state[data-state="offline"]').wait_for(timeout=60_000)
        reason = page.locator('.tile[data-camera="door"] .reason').inner_text()
        _status, cameras = console.api("/api/cameras")
        door = next(c for c in cameras["cameras"] if c["camera"] == "door")
        assert door["state"] == "offline" and door["reason"] and reason.strip() == door["reason"]

        # a reload checks the file and signals every daemon of this file on this host
        status, body = console.api("/api/reload", method="POST")
        assert status == 200 and {d["daemon"] for d in body["signalled"]} >= {"sink", "ventilator", "recorder",
                                                                               "extractor", "web"}
    finally:
        rtsp.stop()
    for name in ("web", "extractor", "worker", "recorder", "ventilator", "sink"):  # each stops cleanly
        assert daemons.stop(name) == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
    # the yard is live but not recorded (record = false): the recorder took the door alone
    with sqlite3.connect(tmp_path / "rec" / "index.db") as db:
        assert {c for (c,) in db.execute("SELECT DISTINCT camera FROM segments")} == {"door"}
    if shots != tmp_path:
        assert (shots / "console-grid.png").exists()
