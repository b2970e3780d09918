"""The console's event lists in a real browser (Debian's chromium, driven by Playwright: nothing
downloads a browser) against a real ``camwire web`` reading a sink's events file: a tracked
object's row says when it appeared (its first_seen, not its newest phase's time), how long it
stayed ("for 3 min 5 s", or "for 12 s so far" while it has not ended) and whether it is
stationary; a type the page does not know (suggested_mask) is a plain row. Both lists are
checked: the events page and a camera's page. The browser runs in UTC, so the times it shows are
known here."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec

from camwire.common import wire
from camwire.common.ids import event_id
from console import needs_chromium, start_console

pytestmark = needs_chromium
T0 = 1_790_000_000.0

def obj(phase: str, first: float, last: float, label: str, **kw) -> wire.Event:
    """A tracked object's phase, as sink.tracking writes it."""
    oid = event_id(int(first * 1e9), "yard", "object")
    eid = oid if phase == "start" else event_id(int(last * 1e9), "yard", "object")
    return wire.Event(id=eid, type="object", camera="yard", ts=last, object_id=oid, phase=phase, label=label,
                      score=0.8, top_score=0.9, first_seen=first, last_seen=last, box=(5, 5, 50, 50), **kw)


def append(path: Path, *events: wire.Event) -> None:
    with open(path, "ab") as f:  # as sink.store.eventlog writes: one JSON line each
        f.write(b"".join(msgspec.json.encode(e) + b"\n" for e in events))


def utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def start_web(daemons, tmp: Path, events: Path) -> str:
    """``camwire web`` over the events file, read from this host without a token; its URL once it answers."""
    config = tmp / "camwire.toml"
    config.write_text(f'[sink]\nevents = "{events}"\ndata_dir = "{tmp / "data"}"\n\n'
                      f'[cameras.yard]\nurl = "{tmp / "yard.mp4"}"\n')
    return start_console(daemons, "--config", str(config))


def rows(page, scope: str) -> list[str]:
    return page.locator(f"{scope} .event").evaluate_all("els => els.map(e => e.dataset.id)")


def test_an_object_row_says_when_it_appeared_and_how_long_it_stayed(tmp_path: Path, browser, daemons) -> None:
    events = tmp_path / "events.jsonl"
    car = [obj("start", T0 + 10.6, T0 + 10.6, "car"), obj("update", T0 + 10.6, T0 + 60, "car"),
           obj("end", T0 + 10.6, T0 + 195.6, "car")]  # stayed 3 min 5 s; its newest line is at 195.6 s
    motion = wire.Event(id=event_id(int((T0 + 100) * 1e9), "yard", "motion_start"), type="motion_start",
                        camera="yard", ts=T0 + 100)  # after the car appeared, before it left
    person = [obj("start", T0 + 300, T0 + 300, "person"),
              obj("update", T0 + 300, T0 + 312.4, "person", stationary=True, changes=["stationary"])]  # still there
    mask = wire.Event(id=event_id(int((T0 + 400) * 1e9), "yard", "suggested_mask"), type="suggested_mask",
                      camera="yard", ts=T0 + 400, label="person", box=(600, 80, 630, 200))
    append(events, car[0], car[1], motion, person[0], car[2], person[1], mask)
    url = start_web(daemons, tmp_path, events)
    page = browser.new_page(viewport={"width": 1280, "height": 800}, timezone_id="UTC")
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    for route, scope in (("#/events", ".view"), ("#/camera/yard", ".camera-events")):
        page.goto(f"{url}/{route}")
        mask_row = page.locator(f'{scope} .event[data-id="{mask.id}"]')
        mask_row.wait_for(timeout=30_000)
        # newest first by when each began: the car appeared before the motion, though it left after
        assert rows(page, scope) == [mask.id, person[1].id, motion.id, car[2].id], route

        gone = page.locator(f'{scope} .event[data-id="{car[2].id}"]')
        assert gone.locator(".ev-at").inner_text() == utc(T0 + 10.6)  # appeared, not its end's 195.6 s
        assert gone.locator(".ev-for").inner_text() == "for 3 min 5 s"
        assert gone.get_attribute("data-stationary") == "false" and gone.locator(".ev-stationary").count() == 0

        here = page.locator(f'{scope} .event[data-id="{person[1].id}"]')
        assert here.locator(".ev-at").inner_text() == utc(T0 + 300)
        assert here.locator(".ev-for").inner_text() == "for 12 s so far"
        assert here.get_attribute("data-stationary") == "true" and here.locator(".ev-stationary").inner_text()

        # a type the page knows nothing of: a plain row, its time its own
        assert mask_row.locator(".ev-type").inner_text() == "suggested_mask"
        assert mask_row.locator(".ev-label").inner_text() == "person"
        assert mask_row.locator(".ev-at").inner_text() == utc(T0 + 400) and mask_row.locator(".ev-for").count() == 0

    # the person leaves: the list's refresh replaces its row, which now says how long it stayed
    left = obj("end", T0 + 300, T0 + 340, "person", stationary=True)
    append(events, left)
    ended = page.locator(f'.camera-events .event[data-id="{left.id}"]')
    ended.wait_for(timeout=30_000)
    assert ended.locator(".ev-for").inner_text() == "for 40 s" and ended.locator(".ev-at").inner_text() == utc(T0 + 300)
    assert rows(page, ".camera-events") == [mask.id, left.id, motion.id, car[2].id]  # one row for the person

    ended.click()  # the detail pane says the same
    sub = page.locator(".event-detail .detail-sub")
    sub.wait_for()
    assert f"appeared {utc(T0 + 300)}" in sub.inner_text() and "for 40 s" in sub.inner_text()
    assert errors == [] and page.locator("#banner .banner-msg").count() == 0
