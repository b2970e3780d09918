"""The review page (#/review) in a real browser (Debian's chromium, driven by Playwright) against a
real ``camwire web`` that follows a sink's events file, reads a recorder's folder and sends its
marks to a real ``camwire sink``:

- objects of one camera that overlap (or are under 5 s apart) are one item; an item with a
  person (the file's alert_labels) is an alert, the rest detections, and the tabs show each;
- an item opens its clip from before its first object, with a timeline of its objects' stays and
  the camera's motion beneath;
- "Reviewed" takes an item out of the unreviewed list: the sink keeps the mark in its
  --data-dir/reviews.db, and a restarted console still knows it.

The recorder's folder is written by the recorder's own ring (recorder.ring: libx264 segments and
its SQLite index) as tests/web/test_recordings.py does, from frames of the same times as the
events. Plus the grouping itself (web.review), without I/O."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import msgspec
import numpy as np
import structlog

from camwire.common import pixels, wire
from camwire.common.counters import Counters
from camwire.common.ids import event_id
from camwire.common.logs import RepeatLimiter
from camwire.recorder.index import Index
from camwire.recorder.keep import Keeper
from camwire.recorder.retention import Limits, Retention
from camwire.recorder.ring import Encoding, Ring
from camwire.sink.store.reviews import FILE as REVIEWS
from camwire.web.review import Alerts, group, motion_spans, severity
from conftest import tcp
from console import needs_chromium, start_console

TOKEN = "review-token-1"
FPS, W, H = 10, 64, 48


def obj(camera: str, first: float, last: float, label: str, zones: tuple[str, ...] = ()) -> wire.Event:
    """A tracked object's end, as sink.tracking writes it."""
    oid = event_id(int(first * 1e9), camera, "object")
    return wire.Event(id=event_id(int(last * 1e9), camera, "object"), type="object", camera=camera, ts=last,
                      object_id=oid, phase="end", label=label, score=0.8, top_score=0.9, first_seen=first,
                      last_seen=last, box=(5, 5, 50, 50), zones=list(zones))


def motion(camera: str, kind: str, ts: float) -> wire.Event:
    return wire.Event(id=event_id(int(ts * 1e9), camera, kind), type=kind, camera=camera, ts=ts)


def record(root: Path, camera: str, t0_ns: int, seconds: int) -> None:
    """``seconds`` of a bar sliding over grey, from ``t0_ns``, through the recorder's ring."""
    index = Index(root)
    log = structlog.get_logger()
    repeats = RepeatLimiter(log)
    counters = Counters()
    keeper = Keeper(root, index, 1.0, 1.0, ("object",), counters, log, repeats)
    ring = Ring(root, index, keeper, Retention(root, index, Limits(min_free=0), counters, log, repeats),
                2.0, Encoding(gop=FPS), counters, log, repeats)
    for i in range(seconds * FPS):
        image = np.full((H, W, 3), 90, np.uint8)
        image[:, (i % W): (i % W) + 4] = 255
        header = wire.FrameHeader(camera=camera, seq=i, ts_ns=t0_ns + i * 10**9 // FPS, width=W, height=H,
                                  pts=i / FPS, enc="lz4")
        ring.on_frame(pixels.encode_frame(header, image))
    ring.on_control(wire.Eos(camera=camera, sent=seconds * FPS, last_seq=seconds * FPS - 1))
    ring.tick()
    index.close()


def marks(db: Path) -> set[str]:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return {r[0] for r in conn.execute("SELECT object_id FROM reviews WHERE user = ''")}
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return set()  # not made yet


def ids(page) -> list[str]:
    return page.locator(".review-item").evaluate_all("els => els.map(e => e.dataset.id)")


def login(page, url: str, route: str) -> None:
    page.goto(f"{url}/{route}")
    page.fill("input.token", TOKEN)
    page.keyboard.press("Enter")


@needs_chromium
def test_review_items_alerts_marks_and_clips(tmp_path: Path, browser, daemons, monkeypatch) -> None:
    t0_ns = (time.time_ns() - 600 * 10**9) // 10**9 * 10**9  # ten minutes ago, on a second
    t0 = t0_ns / 1e9
    rec = tmp_path / "rec"
    record(rec, "yard", t0_ns, 30)
    person, car = obj("yard", t0 + 8, t0 + 11, "person", ("path",)), obj("yard", t0 + 10, t0 + 14, "car")
    dog = obj("yard", t0 + 20, t0 + 22, "dog")  # 6 s after the car left: an item of its own
    events = tmp_path / "events.jsonl"
    person_start = msgspec.structs.replace(person, id=person.object_id, ts=t0 + 8, phase="start", last_seen=t0 + 8)
    events.write_bytes(b"".join(msgspec.json.encode(e) + b"\n" for e in (
        motion("yard", "motion_start", t0 + 7), person_start, person, car, motion("yard", "motion_end", t0 + 15),
        dog)))

    data, bind = tmp_path / "data", tcp()
    daemons.start("sink", "sink", "--bind", bind, "--events", str(tmp_path / "sink-events.jsonl"),
                  "--data-dir", str(data))
    config = tmp_path / "camwire.toml"
    config.write_text(f'[sink]\nevents = "{events}"\ndata_dir = "{data}"\n\n'
                      '[web]\ntoken = "${CAMWIRE_WEB_TOKEN}"\nalert_labels = ["person", "bicycle"]\n\n'
                      f'[cameras.yard]\nurl = "{tmp_path / "yard.mp4"}"\n')
    monkeypatch.setenv("CAMWIRE_WEB_TOKEN", TOKEN)
    argv = ("--config", str(config), "--sink", bind, "--recordings", str(rec))
    url = start_console(daemons, *argv)
    page = browser.new_page(viewport={"width": 1400, "height": 900}, timezone_id="UTC")
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    # all items: the person and the car are one alert, the dog a detection, newest first
    login(page, url, "#/review?severity=all")
    alert = page.locator(f'.review-item[data-id="{person.object_id}"]')
    alert.wait_for(timeout=30_000)
    page.locator(f'.review-item[data-id="{dog.object_id}"]').wait_for()
    assert ids(page) == [dog.object_id, person.object_id]
    assert alert.get_attribute("data-severity") == "alert" and alert.get_attribute("data-camera") == "yard"
    assert alert.locator(".objects .thumb").count() == 2
    assert page.locator(f'.review-item[data-id="{dog.object_id}"]').get_attribute("data-severity") == "detection"
    assert alert.locator(".ri-for").inner_text() == "6 s"  # from the person's arrival to the car's leaving
    page.locator('select.f-label option[value="dog"]').wait_for(state="attached")  # the filters' lists

    page.click('.sev-tab[data-severity="detection"]')
    page.wait_for_function("() => [...document.querySelectorAll('.review-item')].map(e => e.dataset.severity)"
                           ".join() === 'detection'")
    page.click('.sev-tab[data-severity="alert"]')
    page.wait_for_function("() => [...document.querySelectorAll('.review-item')].map(e => e.dataset.severity)"
                           ".join() === 'alert'")

    # the clip, from before the first object, and the timeline of its objects and motion
    alert.click()
    video = page.locator(f'.review-detail[data-id="{person.object_id}"] video.review-clip')
    video.wait_for()
    start = float(parse_qs(urlsplit(video.get_attribute("src")).query)["start"][0])
    assert t0 <= start <= t0 + 8 and float(video.get_attribute("data-start")) == start
    page.wait_for_function("() => document.querySelector('video.review-clip').readyState >= 1", timeout=60_000)
    assert page.locator(".clip-message").is_hidden()
    assert page.locator(".review-timeline .obj-span").count() == 2
    # each phase told where it fell: the person's start and end, the car's end
    phases = page.locator(f'.review-timeline .obj-row:has([data-object-id="{person.object_id}"]) .phase')
    assert [phases.nth(i).get_attribute("data-phase") for i in range(phases.count())] == ["start", "end"]
    assert page.locator(".review-timeline .phase").count() == 3
    assert page.locator(".review-timeline .motion-layer .span").count() == 1
    page.click(".event-detail .close")

    # marked reviewed: gone from the unreviewed list; the sink keeps the mark
    page.locator(f'.review-item[data-id="{person.object_id}"] .mark-reviewed').click()
    alert.wait_for(state="detached", timeout=30_000)
    assert marks(data / REVIEWS) == {person.object_id, car.object_id}
    page.check("input.f-reviewed")  # shown again when asked for, as reviewed
    page.locator(f'.review-item[data-id="{person.object_id}"][data-reviewed="true"]').wait_for()

    # a console started again reads the marks from the sink's data dir
    daemons.stop("web")
    url = start_console(daemons, *argv)
    login(page, url, "#/review?severity=all")
    page.locator(f'.review-item[data-id="{dog.object_id}"]').wait_for(timeout=30_000)
    assert ids(page) == [dog.object_id]
    assert errors == [] and page.locator("#banner .banner-msg").count() == 0


def test_grouping_and_severity_without_io() -> None:
    def o(camera: str, first: float, last: float, label: str, zones=()):
        return {"object_id": f"{camera}-{first}", "camera": camera, "ts": last, "first_seen": first,
                "last_seen": last, "label": label, "zones": list(zones)}

    objs = [o("a", 0, 10, "car"), o("a", 12, 13, "person", ["door"]), o("a", 30, 31, "car"),
            o("b", 5, 6, "person"), o("a", 2, 3, "dog")]
    items = group(objs)
    assert [(i.camera, i.id, i.start, i.end) for i in items] == [
        ("a", "a-30", 30, 31), ("b", "b-5", 5, 6), ("a", "a-0", 0, 13)]
    assert [len(i.objects) for i in items] == [1, 1, 3]
    assert [severity(i, Alerts()) for i in items] == ["detection", "alert", "alert"]
    in_door = Alerts.of(["person"], ["door"])
    assert [severity(i, in_door) for i in items] == ["detection", "detection", "alert"]
    assert severity(items[2], Alerts.of([], None)) == "detection"
    rows = [{"type": "motion_start", "ts": 1}, {"type": "motion_end", "ts": 4}, {"type": "motion_start", "ts": 9}]
    assert motion_spans(rows, 2, 12) == [[2, 4], [9, 12]]
