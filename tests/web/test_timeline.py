"""The recordings timeline (issue 25) against real daemons: a real extractor plays a clip into a
real recorder process over ZeroMQ, stops (the camera's outage), and plays it again; ``camwire web``
reads the recorder's folder; Debian's chromium looks at it.

- the API: exactly the outage is a gap; the preview still is a JPEG 240 px wide of the key frame
  at or before the time asked (one still for a whole group of pictures), 404 where nothing is
  recorded, 400 for a bad time or camera;
- the page: one gap drawn and counted, none before the recording began; the zoom buttons, presets
  and wheel change the visible span and the axis relabels (HH:MM:SS at minute scale); hovering
  shows a preview that loads; a drag selects (24-hour local times in the fields), Play loads that
  range; a bad time typed is refused on its field. The browser runs in a zone 5:30 from UTC, so
  "local" is not UTC by accident.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import cv2
import numpy as np
import pytest

from camwire.sample import make_sample_clip
from conftest import Daemons, tcp
from console import needs_chromium, start_console

CLIP_S = 6
FPS = 25
OUTAGE_S = 4.0  # how long the camera is away: well over web.recordings.TOUCH_S
ZONE = "Asia/Kolkata"
LOCAL_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")


@dataclass
class Recorded:
    url: str
    root: Path
    first: tuple[float, float]  # the recorded ranges, epoch s
    second: tuple[float, float]


def get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type", "")


def rows(root: Path) -> list[dict]:
    """The recorder's segments, oldest first; none while it has not made its index."""
    try:
        with sqlite3.connect(f"file:{root / 'index.db'}?mode=ro", uri=True) as db:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute("SELECT * FROM segments ORDER BY start_ns")]
    except sqlite3.OperationalError:  # not there yet, or being created
        return []


def wait_closed(root: Path, frames: int, timeout: float = 60.0) -> list[dict]:
    """The segments once they hold ``frames`` frames in all and every one is closed (an Eos closes
    the last)."""
    deadline = time.monotonic() + timeout
    while True:
        segs = rows(root)
        if sum(s["frames"] or 0 for s in segs) >= frames and all(s["closed"] for s in segs):
            return segs
        assert time.monotonic() < deadline, segs
        time.sleep(0.1)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory):
    """door: CLIP_S s recorded, OUTAGE_S s of nothing, CLIP_S s more (segments of 2 s, a key frame
    every second); the console on that folder."""
    tmp = tmp_path_factory.mktemp("timeline")
    clip = tmp / "door.mp4"
    make_sample_clip(clip, seconds=CLIP_S, gop=FPS)
    root = tmp / "rec"
    daemons = Daemons(tmp)
    try:
        frontend, publish = tcp(), tcp()
        daemons.start("ventilator", "ventilator", "--frontend", frontend, "--backend", tcp())
        daemons.start("recorder", "recorder", "--subscribe", publish, "--dir", str(root), "--segment", "2")

        def play(name: str) -> None:
            # every frame to the recorder; hardly any to the ventilator (no workers here to serve them)
            daemons.start(name, "extractor", "--camera", "door", "--source", str(clip), "--push", frontend,
                          "--every", "1000", "--realtime", "--publish", publish, "--publish-enc", "passthrough",
                          "--publish-wait", "30")
            assert daemons.wait(name, timeout=60) == 0, (tmp / f"{name}.log").read_text()[-3000:]

        play("extractor-1")
        first = wait_closed(root, CLIP_S * FPS)
        # the camera is away: nothing is recorded while the wall clock runs on (the outage itself)
        while time.time_ns() < max(s["end_ns"] for s in first) + OUTAGE_S * 1e9:
            time.sleep(0.1)
        play("extractor-2")
        segs = wait_closed(root, 2 * CLIP_S * FPS)
        cut = len(first)
        spans = [(min(s["start_ns"] for s in part) / 1e9, max(s["end_ns"] for s in part) / 1e9)
                 for part in (segs[:cut], segs[cut:])]
        url = start_console(daemons, "--recordings", str(root), "--events", str(tmp / "events.jsonl"),
                            "--data-dir", str(tmp / "data"))
        yield Recorded(url, root, spans[0], spans[1])
    finally:
        daemons.stop_all()


def test_the_outage_is_the_one_gap_and_previews_are_key_frames(recorded: Recorded) -> None:
    (a0, a1), (b0, b1) = recorded.first, recorded.second
    status, body, _ = get(f"{recorded.url}/api/recordings?camera=door&since={a0 - 600}&until={time.time() + 60}")
    ranges = json.loads(body)["cameras"]["door"]["ranges"]
    assert status == 200 and len(ranges) == 2, ranges  # the segments of each run touch: one range each
    assert ranges[0] == pytest.approx([a0, a1], abs=0.01) and ranges[1] == pytest.approx([b0, b1], abs=0.01)
    assert b0 - a1 >= OUTAGE_S - 0.1

    base = f"{recorded.url}/api/recordings/door/preview.jpg"
    status, jpeg, kind = get(f"{base}?ts={a0 + 2.3}")
    assert status == 200 and kind == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (135, 240, 3)  # 640x360 scaled to 240 wide
    # any time of that second shows its key frame (2 s): the same still, decoded once
    assert get(f"{base}?ts={a0 + 2.9}")[1] == jpeg and get(f"{base}?ts={a0 + 3.1}")[1] != jpeg
    for ts in (a0 - 30, (a1 + b0) / 2, b1 + 30):  # before, in the gap, after
        assert get(f"{base}?ts={ts}")[0] == 404, ts
    for query in ("ts=soon", "ts=nan", "", "ts=1e300", "ts=-5"):  # beyond any index: refused, not a 500
        status, body, _ = get(f"{base}?{query}")
        assert status == 400 and b"ts" in body, query
    assert get(f"{recorded.url}/api/recordings/a%20b/preview.jpg?ts={a0 + 1}")[0] == 400


@needs_chromium
def test_zoom_scrub_select_and_play(recorded: Recorded, browser) -> None:
    a0, b1 = recorded.first[0], recorded.second[1]
    page = browser.new_page(viewport={"width": 1280, "height": 900}, timezone_id=ZONE)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    since, until = a0 - 60, b1 + 60
    page.goto(f"{recorded.url}/#/recordings?camera=door&since={since:.0f}&until={until:.0f}")
    row = page.locator('.timeline[data-camera="door"]')
    row.locator(".range").nth(1).wait_for(timeout=30_000)
    # the gap is the outage and nothing else: not the minute before the recorder began
    assert row.locator(".range").count() == 2 and row.locator(".gap").count() == 1
    assert " 1 gap" in row.locator(".tl-sum").inner_text()
    box = page.locator(".timeline-box")

    def visible() -> float:
        return float(box.get_attribute("data-to")) - float(box.get_attribute("data-from"))

    def labels() -> list[str]:
        return page.locator(".axis-label").all_inner_texts()

    # zoom: the buttons halve and double the span, the presets set it, the wheel zooms round the pointer
    wide, wide_labels = visible(), labels()
    page.click("button.zoom-in")
    assert visible() == pytest.approx(wide / 2, rel=1e-3) and labels() != wide_labels
    page.click("button.zoom-out")
    assert visible() == pytest.approx(wide, rel=1e-3)
    page.click('button.span[data-span="600"]')
    assert visible() == pytest.approx(600, rel=1e-3)
    page.click('button.span[data-span="60"]')
    assert visible() == pytest.approx(60, rel=1e-3)
    assert labels() and all(re.fullmatch(r"\d\d:\d\d:\d\d", t) for t in labels()), labels()
    track = row.locator(".track")
    rect = track.bounding_box()
    page.mouse.move(rect["x"] + rect["width"] * 0.5, rect["y"] + rect["height"] / 2)
    page.mouse.wheel(0, 300)
    page.wait_for_function("el => Number(el.dataset.span) > 60", arg=box.element_handle())

    # the first run across the view, from its start to a minute on
    page.goto(f"{recorded.url}/#/recordings?camera=door&since={a0 - 5:.3f}&until={a0 + 55:.3f}")
    page.reload()  # a hash change alone keeps the mounted page
    row.locator(".range").first.wait_for(timeout=30_000)
    rect = track.bounding_box()
    frm, to = float(box.get_attribute("data-from")), float(box.get_attribute("data-to"))
    x_of = lambda ts: rect["x"] + (ts - frm) / (to - frm) * rect["width"]  # noqa: E731
    y = rect["y"] + rect["height"] / 2

    # hovering: the still of the key frame under the pointer, with its time
    page.mouse.move(x_of(a0 + 1.5), y)
    img = row.locator(".preview img")
    img.wait_for(state="visible", timeout=30_000)
    page.wait_for_function("el => el.complete && el.naturalWidth === 240", arg=img.element_handle(), timeout=30_000)
    assert LOCAL_TIME.match(row.locator(".preview .at").inner_text())

    # a drag selects, scrubbing the preview along; the fields say the ends in 24-hour local time
    page.mouse.down()
    page.mouse.move(x_of(a0 + 3.0), y, steps=5)
    first_src = img.get_attribute("src")
    page.mouse.move(x_of(a0 + 4.5), y, steps=5)
    page.wait_for_function("([el, src]) => el.getAttribute('src') !== src && el.complete && el.naturalWidth > 0",
                           arg=[img.element_handle(), first_src], timeout=30_000)
    page.mouse.up()
    assert row.locator(".selection").count() == 1
    zone = ZoneInfo(ZONE)
    start_text, end_text = page.input_value("input.sel-start"), page.input_value("input.sel-end")
    assert LOCAL_TIME.match(start_text) and LOCAL_TIME.match(end_text)
    start = datetime.strptime(start_text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=zone).timestamp()
    end = datetime.strptime(end_text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=zone).timestamp()
    pixel = (to - frm) / rect["width"]
    assert abs(start - (a0 + 1.5)) <= 1 + 2 * pixel and abs(end - (a0 + 4.5)) <= 1 + 2 * pixel

    # Play loads the selected range: it starts at the key frame at or before its start
    page.click("button.play")
    video = page.locator("video.range-video")
    page.wait_for_function("el => el.readyState >= 1 && el.duration > 0", arg=video.element_handle(), timeout=30_000)
    assert "/api/recordings/door/clip.mp4?start=" in video.get_attribute("src")
    selected = float(page.evaluate("() => new URL(document.querySelector('video.range-video').src).searchParams.get('end')")) - \
        float(page.evaluate("() => new URL(document.querySelector('video.range-video').src).searchParams.get('start')"))
    duration = video.evaluate("el => el.duration")
    assert selected - 0.1 <= duration <= selected + 1 + 0.1, (selected, duration)
    assert page.locator("a.download").get_attribute("href").endswith("&download=1")

    # a time typed: a bad one is refused on its field, a good one moves the selection
    page.fill("input.sel-start", "2026-02-30 25:00:00")
    page.locator("input.sel-start").dispatch_event("change")
    assert "YYYY-MM-DD HH:MM:SS" in page.locator("input.sel-start").evaluate("el => el.validationMessage")
    good = datetime.fromtimestamp(a0 + 2, zone).strftime("%Y-%m-%d %H:%M:%S")
    page.fill("input.sel-start", good)
    page.locator("input.sel-start").dispatch_event("change")
    assert page.locator("input.sel-start").evaluate("el => el.validationMessage") == ""
    assert page.input_value("input.sel-start") == good and page.locator(".sel-length").inner_text()

    # the events page's filters are the same 24-hour text fields
    page.goto(f"{recorded.url}/#/events")
    page.reload()
    since_field = page.locator("input.f-since")
    assert since_field.get_attribute("type") == "text"
    since_field.fill("21/11/2026 3pm")
    since_field.dispatch_event("change")
    assert "24-hour" in since_field.evaluate("el => el.validationMessage")
    assert not errors, errors
