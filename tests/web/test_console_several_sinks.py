"""A console in front of two sinks (``[web] sink = [...]``, listed as the workers list them):
a camera's switch reaches the sink that owns it (common.sinks) and no other, and a review mark
reaches every sink. Real sinks and a real console over ipc; what each sink kept (its events file,
its reviews.db) is the state checked. With one sink stopped, its own cameras' switches are the
ones greyed out (``switches_away``), not every camera's."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

from camwire.common.sinks import sink_of
from camwire.sink.store.reviews import FILE as REVIEWS_FILE, read_reviewed
from conftest import cameras_for
from console import start_console

TOKEN = "a token for two sinks"


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def get(url: str) -> dict:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def until_ok(url: str, body: dict, timeout: float = 60.0) -> None:
    """POST until it is answered 200: 503 while the console's link to that sink is not up yet."""
    deadline = time.monotonic() + timeout
    while (answer := post(url, body))[0] != 200:
        assert answer[0] == 503 and time.monotonic() < deadline, answer
        time.sleep(0.1)  # an HTTP API has nothing to await but its next answer


def switches_told(events: Path) -> set[str]:
    if not events.exists():
        return set()
    rows = [json.loads(line) for line in events.read_text().splitlines()]
    return {e["camera"] for e in rows if e["type"] == "camera_switch"}


def test_a_switch_goes_to_its_cameras_sink_and_a_review_mark_to_every_sink(tmp_path: Path, daemons, browser,
                                                                           monkeypatch) -> None:
    sinks = sorted(f"ipc://{tmp_path}/results{i}" for i in range(2))
    cameras = cameras_for(sinks, 3)  # each sink owns three, whatever the tmp path
    owner = {camera: sinks.index(sink_of(camera, sinks)) for camera in cameras}
    config = tmp_path / "camwire.toml"  # one file for all, as on a site: the sinks know every camera
    config.write_text("[web]\ntoken = \"${CAMWIRE_WEB_TOKEN}\"\n"
                      f"sink = [\"{sinks[1]}\", \"{sinks[0]}\"]\n\n"  # the order written does not matter
                      + "".join(f'[cameras.{c}]\nurl = "{tmp_path / c}.mp4"\n\n' for c in cameras))
    for i, addr in enumerate(sinks):
        daemons.start(f"sink{i}", "sink", "--config", str(config), "--bind", addr,
                      "--events", str(tmp_path / f"events{i}.jsonl"), "--data-dir", str(tmp_path / f"data{i}"))
    monkeypatch.setenv("CAMWIRE_WEB_TOKEN", TOKEN)
    url = start_console(daemons, "--config", str(config))
    monkeypatch.delenv("CAMWIRE_WEB_TOKEN")

    for camera in cameras:
        until_ok(f"{url}/api/cameras/{camera}/switches", {"switch": "detect", "on": False})
    deadline = time.monotonic() + 60
    while [switches_told(tmp_path / f"events{i}.jsonl") for i in range(2)] != \
            [{c for c in cameras if owner[c] == i} for i in range(2)]:
        assert time.monotonic() < deadline, [switches_told(tmp_path / f"events{i}.jsonl") for i in range(2)]
        time.sleep(0.1)  # a file another process writes: nothing to await but its next line

    until_ok(f"{url}/api/review/reviewed", {"ids": ["obj-1", "obj-2"]})
    deadline = time.monotonic() + 60
    while not all(read_reviewed(tmp_path / f"data{i}" / REVIEWS_FILE, ["obj-1", "obj-2"]) == {"obj-1", "obj-2"}
                  for i in range(2)):
        assert time.monotonic() < deadline, "a sink never kept the review marks"
        time.sleep(0.1)
    # one sink away: its cameras' switches greyed out, naming it; the other's still settable
    assert daemons.stop("sink1") == 0
    deadline = time.monotonic() + 60
    while True:
        answer = get(f"{url}/api/cameras")
        away = {c["camera"]: c["switches_away"] for c in answer["cameras"]}
        if all(bool(away[c]) == (owner[c] == 1) for c in cameras):
            break
        assert time.monotonic() < deadline, away
        time.sleep(0.1)  # an HTTP API has nothing to await but its next answer
    assert answer["switches"]["settable"] and all(sinks[1] in away[c] for c in cameras if owner[c] == 1)
    # ... and so on the camera pages, in a real browser
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{url}/#/camera/{next(c for c in cameras if owner[c] == 1)}")
    page.fill("input.token", TOKEN)
    page.keyboard.press("Enter")
    page.locator('.switches[data-settable="false"] .switch[data-switch="detect"]:disabled').wait_for(timeout=30_000)
    assert sinks[1] in page.locator(".switches").get_attribute("title")
    page.goto(f"{url}/#/camera/{next(c for c in cameras if owner[c] == 0)}")
    page.locator('.switches[data-settable="true"] .switch[data-switch="detect"]:enabled').wait_for(timeout=30_000)
    assert errors == []
    page.close()
    assert daemons.stop("sink0") == 0
    assert daemons.stop("web") == 0
