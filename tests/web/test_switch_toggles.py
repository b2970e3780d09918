"""A camera's switches from its page in a real browser (Debian's chromium, driven by Playwright:
nothing downloads a browser), against real daemons started from one camwire.toml: a looping file
camera (test_console's yard: a parked yellow box, a blue disc rolling across it again and again), a
worker with tests/pipeline/shapes_worker.py's ``shapes`` detector (it finds both as a model finds
objects), the sink and ``camwire web``, which sends what it changes to the sink (web.sink_link).

Detection off: its objects end, no new one is made while the camera's frames keep coming (the
live image goes on), and the grid's tile says "detect off"; on again: new objects. The API
refuses a switch or camera that is not one, and a write without the token; with the sink gone,
the toggles are greyed out with why, and a change is answered 503."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from conftest import ROOT, free_port, tcp
from console import needs_chromium, screenshot
from test_console import wait_api, yard_clip

pytestmark = needs_chromium
TOKEN = "correct horse battery staple"
SHAPES_WORKER = ROOT / "tests" / "pipeline" / "shapes_worker.py"
PASS = 64  # frames test_console's disc takes to roll across: a new object each time while detection is on


def write_config(tmp: Path, clip: Path, port: int) -> Path:
    sockets = {name: tcp() for name in ("frontend", "backend", "results", "events", "frames", "detections")}
    config = tmp / "camwire.toml"
    config.write_text("\n".join([
        "[sockets]", *[f'{k} = "{v}"' for k, v in sockets.items()], "",
        "[sink]", f'events = "{tmp / "events.jsonl"}"', f'data_dir = "{tmp / "data"}"', 'gone_after = "1s"', "",
        "[web]", f"port = {port}", 'token = "${CAMWIRE_WEB_TOKEN}"', "",
        "[rules]", 'labels = ["*"]', "stationary_after = 0", "",  # the shapes are no people
        "[cameras.yard]", f'url = "{clip}"', "realtime = true", "loop = true", 'detect = "always"', ""]))
    return config


class Site:
    """The daemons (conftest.Daemons: stopped at teardown) and the console's HTTP API."""

    def __init__(self, daemons, config: Path, port: int) -> None:
        self.daemons, self.config, self.url = daemons, config, f"http://127.0.0.1:{port}"

    def start(self) -> None:
        cfg = ("--config", str(self.config))
        for name in ("sink", "ventilator", "web"):
            self.daemons.start(name, name, *cfg)
        log = open(self.daemons.tmp / "worker.log", "wb")  # the file's [classifier] knows no "shapes"
        self.daemons.procs["worker"] = subprocess.Popen(
            [sys.executable, str(SHAPES_WORKER), "classifier", *cfg, "--detector", "shapes"],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "CAMWIRE_LOG_FORMAT": "json"}, cwd=ROOT)
        self.daemons.start("extractor", "extractor", *cfg)

    def api(self, path: str, body: Any = None, token: str | None = TOKEN) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        request = urllib.request.Request(self.url + path, data=data, headers=headers,
                                         method="POST" if body is not None else "GET")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def until(self, path: str, predicate, timeout: float = 60.0) -> Any:
        """GET ``path`` until ``predicate(body)`` holds: the API is the state waited on."""
        return wait_api(self, path, predicate, timeout)

    def object_ids(self) -> set[str]:
        return {e["object_id"] for e in self.api("/api/events?camera=yard&type=object&limit=500")[1]["events"]}


def test_detection_off_and_on_from_the_camera_page(tmp_path: Path, browser, daemons, monkeypatch) -> None:
    monkeypatch.setenv("CAMWIRE_WEB_TOKEN", TOKEN)
    clip = tmp_path / "yard.mp4"
    yard_clip(clip, seconds=20)
    port = free_port()
    site = Site(daemons, write_config(tmp_path, clip, port), port)
    site.start()
    site.until("/api/events?camera=yard&type=object", lambda b: len(b["events"]) >= 1)
    cameras = site.until("/api/cameras", lambda b: b["switches"]["settable"])
    assert cameras["cameras"][0]["switches"] == {"detect": True, "record": True, "snapshots": True}

    # the API's refusals: no token, a switch or a camera that is not one
    assert site.api("/api/cameras/yard/switches", {"switch": "detect", "on": False}, token=None)[0] == 401
    assert site.api("/api/cameras/yard/switches", {"switch": "zoom", "on": False})[0] == 400
    assert site.api("/api/cameras/yard/switches", {"switch": "detect", "on": "no"})[0] == 400
    assert site.api("/api/cameras/gate/switches", {"switch": "detect", "on": False}) == (
        400, {"error": "no camera named 'gate'"})

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(site.url + "/#/camera/yard")
    page.fill("input.token", TOKEN)
    page.keyboard.press("Enter")
    detect = page.locator('.switches .switch[data-switch="detect"]')
    page.locator('.switches[data-settable="true"] .switch[data-switch="detect"][data-on="true"]').wait_for(
        timeout=30_000)
    image = page.locator(".tile .live-image")
    page.wait_for_function("el => el.dataset.seq !== undefined", arg=image.element_handle(), timeout=30_000)

    # off: the page shows it once the sink has; the events say who
    detect.click()
    page.locator('.switch[data-switch="detect"][data-on="false"]:not([data-pending])').wait_for(timeout=30_000)
    told = site.until("/api/events?camera=yard&type=camera_switch", lambda b: len(b["events"]) == 1)["events"][0]
    assert told["reason"] == "detect=off by console 127.0.0.1"
    before = site.object_ids()  # indexed up to the switch: every object made before it
    seq = int(image.get_attribute("data-seq"))
    # frames keep coming for more than a crossing of the disc; no object is made of them
    page.wait_for_function("([el, seq]) => Number(el.dataset.seq) >= seq", arg=[image.element_handle(),
                                                                               seq + PASS + 10],
                           timeout=60_000)
    assert site.object_ids() <= before
    results = site.api("/api/system")[1]["cameras"][0]["results"]
    site.until("/api/system", lambda b: b["cameras"][0]["results"] > results)  # its results still come
    screenshot(page, "camera-switches")
    page.goto(site.url + "/#/live")
    page.locator('.tile[data-camera="yard"] .switch-off-badge[data-switch="detect"]').wait_for(timeout=30_000)

    # on again: the disc makes objects again
    page.goto(site.url + "/#/camera/yard")
    page.locator('.switch[data-switch="detect"][data-on="false"]').wait_for(timeout=30_000)
    detect.click()
    page.locator('.switch[data-switch="detect"][data-on="true"]:not([data-pending])').wait_for(timeout=30_000)
    site.until("/api/events?camera=yard&type=object&limit=500",
               lambda b: {e["object_id"] for e in b["events"]} - before, timeout=60)
    assert [e["reason"] for e in site.api("/api/events?camera=yard&type=camera_switch")[1]["events"]] == [
        "detect=on by console 127.0.0.1", "detect=off by console 127.0.0.1"]  # newest first

    # the sink gone: the toggles are greyed out with why, and a change is answered 503
    assert daemons.stop("sink") == 0
    why = site.until("/api/cameras", lambda b: not b["switches"]["settable"])["switches"]["why"]
    assert "sink is not connected" in why
    status, body = site.api("/api/cameras/yard/switches", {"switch": "snapshots", "on": False})
    assert status == 503 and "not connected" in body["error"]
    page.locator('.switches[data-settable="false"] .switch[data-switch="detect"]:disabled').wait_for(timeout=30_000)
    assert "sink is not connected" in page.locator(".switches").get_attribute("title")
    assert errors == []
