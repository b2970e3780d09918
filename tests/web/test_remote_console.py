"""A console with none of the sink's or the recorder's files: everything it shows comes over the
daemons' ``serve`` sockets (common.serve), as from another host. ``camwire run`` is the "data
host" (its sink and recorder serve on loopback TCP); the console and the commands run from a
folder of their own with a camwire.toml that names the daemons and nothing on disk. A third
address that nobody serves stands for a host that is down: it is named, and the rest still works.
Another test (tests/pipeline/test_hosts.py) does the same across network namespaces with CURVE.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest

from console import needs_chromium, start_console
from processes import free_port

ROOT = Path(__file__).resolve().parents[2]
CLIP = ROOT / "camwire" / "media" / "people-walking-30s.mp4"


def _get(url: str, timeout: float = 30) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def _json(url: str, data: bytes | None = None) -> Any:
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())


def _until(what: str, fn: Callable[[], Any], timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.5)  # polling a state that is not there yet, not waiting for time to pass
    raise AssertionError(f"not within {timeout:.0f}s: {what}")


@pytest.fixture
def data_host(tmp_path: Path, daemons) -> dict[str, Any]:
    """``camwire run`` with a looping clip, the built-in model, a sink and a recorder that serve."""
    host = tmp_path / "data-host"
    host.mkdir()
    sink_serve, recorder_serve = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    config = host / "camwire.toml"
    config.write_text(f'''[classifier]
detector = "onnx"

[sink]
events = "{host / 'events.jsonl'}"
data_dir = "{host / 'data'}"
serve = "{sink_serve}"

[recorder]
dir = "{host / 'recordings'}"
serve = "{recorder_serve}"
segment = "5s"
pre = "2s"
post = "2s"

[run]
workers = 1

[cameras.walk]
url = "{CLIP}"
realtime = true
loop = true
fps = 3
record = true
''')
    daemons.start("run", "run", "--config", str(config))
    return {"config": config, "sink": sink_serve, "recorder": recorder_serve}


@needs_chromium
def test_a_console_with_no_files_shows_what_the_daemons_serve(tmp_path: Path, daemons, data_host, browser,
                                                               monkeypatch) -> None:
    down = f"tcp://127.0.0.1:{free_port()}"  # nobody serves here: a host that is down
    here = tmp_path / "console-host"
    here.mkdir()
    config = here / "camwire.toml"
    config.write_text(f'[web]\ndaemons = ["sink={data_host["sink"]}", "recorder={data_host["recorder"]}", '
                      f'"recorder={down}"]\n')
    temp = tmp_path / "console-tmp"  # its $TMPDIR: no data dir to cache clips beside
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    url = start_console(daemons, "--config", str(config))
    monkeypatch.delenv("TMPDIR")

    # the camera's state and the workers, from the sink's status.db on the other "host"
    cameras = _until("the camera online", lambda: [c for c in _json(url + "/api/cameras")["cameras"]
                                                   if c["camera"] == "walk" and c["state"] == "online"])
    assert cameras[0]["status_stale"] is False

    # an object's event, its snapshot, and its kept clip remuxed where the recording is
    def kept_object() -> dict | None:
        page = _json(url + "/api/events?type=object&limit=50")
        return next((e for e in page["events"] if e.get("clip_url") and e.get("snapshot_url")), None)

    event = _until("an object with a kept clip", kept_object, timeout=180)
    status, kind, body = _get(url + event["snapshot_url"])
    assert status == 200 and kind == "image/jpeg" and body[:2] == b"\xff\xd8"

    def clip() -> bytes | None:
        status, kind, body = _get(url + event["clip_url"], timeout=150)
        return body if status == 200 and kind == "video/mp4" else None

    mp4 = _until("the kept clip", clip, timeout=120)
    assert mp4[4:8] == b"ftyp"
    [cache] = temp.glob("camwire-web-*")  # remuxed into a temporary folder of its own ...
    assert list(cache.glob("*.mp4"))

    # the timeline: the recorder's ranges, and a still and a range clip from within one
    ranges = _until("a recorded range", lambda: _json(url + "/api/recordings?camera=walk")["cameras"].get("walk"))
    start, end = ranges["ranges"][0]
    assert end > start
    status, kind, still = _get(f"{url}/api/recordings/walk/preview.jpg?ts={start + 1:.1f}")
    assert status == 200 and still[:2] == b"\xff\xd8", still[:200]
    status, kind, body = _get(f"{url}/api/recordings/walk/clip.mp4?start={start:.1f}&end={min(end, start + 4):.1f}",
                              timeout=150)
    assert status == 200 and body[4:8] == b"ftyp", body[:200]

    # which daemons answer: the one that does not is named with its address
    system = _json(url + "/api/system")
    by_address = {d["address"]: d for d in system["daemons"]}
    assert by_address[data_host["sink"]]["reachable"] and by_address[data_host["recorder"]]["reachable"]
    assert not by_address[down]["reachable"] and down in by_address[down]["error"]
    assert any(w["name"] for w in system["workers"])

    # a reload reaches every daemon listed; each says what came of it
    answers = {a["address"]: a for a in _json(url + "/api/reload", b"{}")["daemons"]}
    assert answers[data_host["sink"]]["outcome"] == "applied"
    assert answers[data_host["recorder"]]["outcome"] == "applied"
    assert answers[down]["outcome"] == "unreachable"

    # typos saved on the data host, one in each daemon's section: each refuses its own, with
    # the file and the line (a daemon checks what it reads, not the others' sections)
    text = data_host["config"].read_text()
    lines = text.splitlines()
    typos = {"sink": ('serve = "' + data_host["sink"] + '"', 'gone_after = "soon"'),
             "recorder": ('segment = "5s"', 'segment = "5 parsecs"')}
    for before, after in typos.values():
        text = text.replace(before, f"{before}\n{after}" if "gone_after" in after else after)
    data_host["config"].write_text(text)
    where = {daemon: text.splitlines().index(after) + 1 for daemon, (_, after) in typos.items()}
    assert where["recorder"] == lines.index('segment = "5s"') + 2  # moved one down by the sink's typo
    answers = {a["address"]: a for a in _json(url + "/api/reload", b"{}")["daemons"]}
    for daemon in ("sink", "recorder"):
        refused = answers[data_host[daemon]]
        assert refused["outcome"] == "refused" and refused["line"] == where[daemon], refused
        assert refused["file"] == str(data_host["config"])
    line = where["recorder"]

    # the same from the command line, from the console's folder
    out = subprocess.run([sys.executable, "-m", "camwire", "reload", "--config", str(config)], cwd=here,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert f"refused at {data_host['config']}:{line}" in out.stdout or f"camwire.toml:{line}" in out.stdout, out.stdout
    assert "unreachable" in out.stdout
    status = subprocess.run([sys.executable, "-m", "camwire", "status", "--config", str(config), "--json"], cwd=here,
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert [c["camera"] for c in shown["cameras"]] == ["walk"] and shown["sink"]["stale"] is False

    # a console on the data host itself, listing the same daemons: it reads their files here and
    # asks neither of them again (each one's hello names its files), so nothing counts twice
    host_dir = data_host["config"].parent
    config_here = host_dir / "console.toml"
    config_here.write_text(f'[sink]\nevents = "{host_dir / "events.jsonl"}"\ndata_dir = "{host_dir / "data"}"\n\n'
                           f'[recorder]\ndir = "{host_dir / "recordings"}"\n\n' + config.read_text())
    daemons.start("web-here", "web", "--config", str(config_here), "--port", str(port_here := free_port()))
    url_here = f"http://127.0.0.1:{port_here}"

    def read_here() -> list | None:
        try:
            rows = _json(url_here + "/api/system")["daemons"]
        except (urllib.error.URLError, ConnectionError):
            return None
        return rows if sum(bool(d.get("read_here")) for d in rows) == 2 else None

    rows = _until("the console on the data host knowing its own sink and recorder", read_here)
    assert {d["address"] for d in rows if d.get("read_here")} == {data_host["sink"], data_host["recorder"]}
    assert [c["camera"] for c in _json(url_here + "/api/cameras")["cameras"]] == ["walk"]

    # and in the browser: the system page names the host that does not answer, and a reload
    # lists each daemon's answer with the refused line
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{url}/#/system")
    row = page.locator("table.sys-daemons tr", has_text=down)
    expect(row.locator("[data-reachable=false]")).to_contain_text("unreachable", timeout=30_000)
    expect(page.locator("table.sys-daemons tr", has_text=data_host["sink"]).locator("[data-reachable=true]")) \
        .to_have_text("answering")
    page.locator("button.reload").click()
    result = page.locator(".reload-result")
    expect(result).to_have_attribute("data-ok", "false", timeout=90_000)
    expect(result.locator("li[data-outcome=refused]", has_text=data_host["recorder"])) \
        .to_contain_text(f"{data_host['config']}:{line}")
    expect(result.locator("li[data-outcome=unreachable]")).to_contain_text(down)
    page.close()
    assert daemons.stop("web") == 0
    assert not list(temp.iterdir())  # ... which went with it
