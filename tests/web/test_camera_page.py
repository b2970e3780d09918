"""A camera's page in a real browser (Debian's chromium, driven by Playwright: nothing downloads a
browser) against a real ``camwire web`` reading a status.db that the sink's own StatusBook wrote
from the messages a sink gets (issue 25):

- a camera back online shows no current error: the one it came back from is shown as past
  ("last error HH:MM:SS: ...", muted), and the system page's LAST ERROR is empty for it;
- a camera down shows its error as current, in the error colour;
- the page names the detectors that served the camera's results, with their workers, not the
  config's list (empty: "none" before), and what the config asks for before any result;
- a file camera read to its end says "ended" over its image, with no frame rate, not "waiting
  for video…" at the rate it was read at.

The browser runs in UTC, so the times it shows are known here."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


from camwire.common import wire
from camwire.sink.camera_status import StatusBook
from camwire.sink.cameras import LiveCameras
from camwire.sink.store.status_db import read_status
from console import needs_chromium, start_console

pytestmark = needs_chromium
T0 = 1_790_000_000.0 + 3723  # a refused connection, then the camera back a minute later

def start_web(daemons, tmp: Path, events: Path, cameras: dict[str, dict[str, Any]]) -> str:
    """``camwire web`` with a camwire.toml of these cameras, read from this host without a token;
    its URL once it answers."""
    lines = [f'[sink]\nevents = "{events}"\ndata_dir = "{tmp / "data"}"\n']
    for name, table in cameras.items():
        lines.append(f"[cameras.{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in table.items()]
    config = tmp / "camwire.toml"
    config.write_text("\n".join(lines) + "\n")
    return start_console(daemons, "--config", str(config))


def ns(ts: float) -> int:
    return int(ts * 1e9)


def clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ts))


def result(camera: str, seq: int, detector: str, worker: str) -> wire.Result:
    return wire.Result(camera=camera, seq=seq, ts_ns=time.time_ns(), width=4, height=4, detector=detector, worker=worker)


def write_status(data: Path) -> None:
    """What a sink's StatusBook writes from these messages, as the sink hands them over."""
    data.mkdir()
    book = StatusBook(data / "status.db", cameras=LiveCameras())
    refused = "Connection refused (rtsp://127.0.0.1:1/cam)"
    book.on_status(wire.Status(camera="door", state="offline", ts_ns=ns(T0 - 5), reason="stream ended",
                               last_error="stream ended (rtsp://127.0.0.1:1/cam)"))
    book.on_status(wire.Status(camera="door", state="offline", ts_ns=ns(T0), reason="stream ended", last_error=refused))
    book.on_status(wire.Status(camera="door", state="online", ts_ns=ns(T0 + 60), fps_in=25.0))
    for seq, worker in enumerate(("worker-2", "worker-1", "worker-2")):
        book.on_result(result("door", seq, "ssd", worker))
    book.on_status(wire.Status(camera="gate", state="offline", ts_ns=ns(T0 + 30), reason="Connection refused",
                               last_error=refused))
    book.on_status(wire.Status(camera="yard", state="online", ts_ns=ns(T0), fps_in=29.9))
    book.on_result(result("yard", 0, "ssd", "worker-1"))
    book.on_eos(wire.Eos(camera="yard", sent=1, last_seq=0, fps_in=29.9))
    book.flush(force=True)
    book.close()
    rows = {r["camera"]: r for r in read_status(data / "status.db")[0]}
    assert (rows["door"]["last_error"], rows["door"]["past_error"], rows["door"]["past_error_ts"]) == (None, refused, T0)
    assert (rows["door"]["detectors"], rows["door"]["workers"]) == ("ssd", "worker-1, worker-2")
    assert (rows["gate"]["last_error"], rows["gate"]["last_error_ts"]) == (refused, T0 + 30)
    assert rows["yard"]["state"] == "ended"


def test_a_camera_page_says_its_detectors_its_error_as_past_once_back_and_ended(tmp_path: Path, browser,
                                                                                 daemons) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("")
    write_status(tmp_path / "data")
    url = start_web(daemons, tmp_path, events, cameras={
        "door": {"url": "rtsp://127.0.0.1:1/cam"},
        "gate": {"url": "rtsp://127.0.0.1:2/cam", "detector": ["ssd"]},
        "yard": {"url": str(tmp_path / "yard.mp4")}})
    page = browser.new_page(viewport={"width": 1280, "height": 800}, timezone_id="UTC")
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    def info(key: str):
        dd = page.locator(f'.cam-info dd[data-key="{key}"]')
        dd.wait_for(timeout=30_000)
        return dd

    page.goto(f"{url}/#/camera/door")
    assert info("state").inner_text() == "online"
    assert info("detectors").inner_text() == "ssd (worker-1, worker-2)"  # who served it, not "none"
    past = info("last error").locator(".past-error")
    assert past.inner_text() == f"last error {clock(T0)}: Connection refused (rtsp://127.0.0.1:1/cam)"
    assert info("last error").locator(".error-text").count() == 0

    page.goto(f"{url}/#/camera/gate")
    page.locator('.tile[data-camera="gate"][data-state="offline"]').wait_for(timeout=30_000)
    now = info("last error").locator(".error-text")
    assert now.inner_text() == f"Connection refused (rtsp://127.0.0.1:1/cam) ({clock(T0 + 30)})"
    assert info("detectors").inner_text() == "ssd (no results yet)"  # what its config asks for

    page.goto(f"{url}/#/camera/yard")
    tile = page.locator('.tile[data-camera="yard"][data-state="ended"]')
    tile.wait_for(timeout=30_000)
    waiting = tile.locator(".waiting")
    assert waiting.is_visible() and waiting.inner_text() == "ended"
    assert tile.locator(".fps").inner_text() == "" and not tile.locator(".no-live").is_visible()
    assert info("fps in / used").inner_text() == "— (ended)"
    assert info("last error").inner_text() == "none"

    page.goto(f"{url}/#/system")  # the LAST ERROR column: nothing current for the camera back online
    door = page.locator("table.sys-cameras tr", has=page.locator('a[href="#/camera/door"]'))
    door.wait_for(timeout=30_000)
    assert "Connection refused" not in door.inner_text()
    gate = page.locator("table.sys-cameras tr", has=page.locator('a[href="#/camera/gate"]'))
    assert "Connection refused" in gate.inner_text()
    assert errors == [] and page.locator("#banner .banner-msg").count() == 0
