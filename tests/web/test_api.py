"""``camwire web`` as a real process over real HTTP: who may do what (web.auth), a bad start refused
in one line, a reload that checks the file first, and files outside the snapshots never served.
The sink's real event log and snapshot store write what the console reads. A refused file as the
console tells it: tests/web/test_config_banner.py."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, free_port

TOKEN = "s3cret-console-token"


def start_web(tmp: Path, *argv: str, token: str | None = None, **popen: Any) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "CAMWIRE_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}
    env.pop("CAMWIRE_WEB_TOKEN", None)
    if token:
        env["CAMWIRE_WEB_TOKEN"] = token
    log = open(tmp / "web.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "camwire", "web", "--port", str(port), *argv],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, **popen)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if call(port, "GET", "/api/whoami")[0] == 200:
                return proc, port
        except OSError:
            pass
        assert proc.poll() is None, (tmp / "web.log").read_text()
        time.sleep(0.1)  # a server starting has nothing to await but its port
    raise AssertionError("the console never answered")


def call(port: int, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
         source: str | None = None) -> tuple[int, Any, http.client.HTTPResponse]:
    """One request on a connection of its own (from the loopback address ``source``, if given)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30,
                                      source_address=(source, 0) if source else None)
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    raw = response.read()
    conn.close()
    try:
        return response.status, json.loads(raw), response
    except ValueError:
        return response.status, raw, response


@pytest.fixture
def stopped():
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=15)


def test_a_console_reachable_from_other_hosts_needs_a_token(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "camwire", "web", "--bind", "0.0.0.0", "--port", str(free_port())],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "CAMWIRE_WEB_TOKEN": ""})
    assert done.returncode == 2
    line = done.stderr.strip().splitlines()[-1]
    assert "--bind 0.0.0.0" in line and "token" in line and "Traceback" not in done.stderr


def test_without_a_token_this_host_may_read_and_reload(tmp_path: Path, stopped) -> None:
    proc, port = start_web(tmp_path, "--data-dir", str(tmp_path), "--events", str(tmp_path / "events.jsonl"))
    stopped.append(proc)
    status, body, _ = call(port, "GET", "/api/cameras")
    assert status == 200 and body["cameras"] == []
    assert body["switches"] == {"settable": False,  # a camera's switches need the token, like every change
                                "why": 'changes need a token: set [web] token ("${CAMWIRE_WEB_TOKEN}") and log in'}
    assert call(port, "POST", "/api/cameras/door/switches", body={"switch": "detect", "on": False})[0] == 403
    # a reload only re-reads the owner's file: allowed on loopback (here there is no file to read)
    status, body, _ = call(port, "POST", "/api/reload")
    assert status == 409 and "--config" in body["error"]
    assert call(port, "POST", "/api/reload", headers={"Origin": "http://evil.example"})[0] == 403
    # a review mark only says what someone looked at: allowed too (here no sink to keep it: said so)
    status, body, _ = call(port, "POST", "/api/review/reviewed", body={"ids": ["x"], "reviewed": True})
    assert status == 503 and "--sink" in body["error"]
    assert call(port, "GET", "/api/whoami")[1] == {"auth_required": False, "logged_in": True, "can_write": False}


def test_the_token_guards_everything_but_the_page(tmp_path: Path, stopped) -> None:
    config = tmp_path / "camwire.toml"
    config.write_text(f"""
[sink]
events = "{tmp_path / 'events.jsonl'}"
data_dir = "{tmp_path / 'data'}"

[web]
token = "${{CAMWIRE_WEB_TOKEN}}"

[cameras.door]
url = "{tmp_path / 'door.mp4'}"
""")
    (tmp_path / "data" / "snapshots" / "door").mkdir(parents=True)
    (tmp_path / "data" / "snapshots" / "door" / "a.jpg").write_bytes(b"\xff\xd8jpeg")
    (tmp_path / "data" / "status.db").write_bytes(b"not for the web")
    proc, port = start_web(tmp_path, "--config", str(config), token=TOKEN)
    stopped.append(proc)

    assert call(port, "GET", "/")[0] == 200  # the page itself holds nothing secret
    for path in ("/api/cameras", "/api/events", "/api/system", "/media/snapshots/door/a.jpg"):
        assert call(port, "GET", path)[0] == 401, path
        assert call(port, "GET", path, headers={"Authorization": "Bearer wrong"})[0] == 401, path
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    status, body, _ = call(port, "GET", "/api/cameras", headers=bearer)
    assert status == 200 and [c["camera"] for c in body["cameras"]] == ["door"]

    # the browser's way: a login sets a cookie that is not the token
    assert call(port, "POST", "/api/login", {"token": "wrong"})[0] == 401
    status, _, response = call(port, "POST", "/api/login", {"token": TOKEN})
    cookie = response.getheader("Set-Cookie")
    assert status == 200 and "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    session = {"Cookie": cookie.split(";")[0]}
    assert call(port, "GET", "/media/snapshots/door/a.jpg", headers=session)[1] == b"\xff\xd8jpeg"
    # nothing beside the snapshots, however the path is spelt (a path with a .. in it is no name: 400)
    for path in ("/media/status.db", "/media/snapshots/../status.db", "/media/snapshots/%2e%2e/status.db",
                 "/media/../camwire.toml"):
        assert call(port, "GET", path, headers=session)[0] in (400, 404), path
    # a change from another site's page is refused, even with the session
    status, body, _ = call(port, "POST", "/api/reload", headers={**session, "Origin": "http://evil.example"})
    assert status == 403 and "another site" in body["error"]

    # a reload checks the file first: a typo is refused with its line, and nothing is signalled
    config.write_text(config.read_text() + "\n[cameras.yard]\nurl = 5\n")
    status, body, _ = call(port, "POST", "/api/reload", headers=bearer)
    lines = config.read_text().splitlines()
    assert status == 400 and body["error"].startswith(f"{config}:{lines.index('url = 5') + 1}:")
    proc.terminate()
    assert proc.wait(timeout=15) == 0
    assert TOKEN not in (tmp_path / "web.log").read_text()


def test_ten_wrong_tokens_from_one_address_lock_it_out_for_a_while(tmp_path: Path, stopped) -> None:
    proc, port = start_web(tmp_path, "--events", str(tmp_path / "events.jsonl"), token=TOKEN)
    stopped.append(proc)
    guesses = [call(port, "POST", "/api/login", {"token": f"guess{i}"})[0] for i in range(5)]
    guesses += [call(port, "GET", "/api/events", headers={"Authorization": f"Bearer guess{i}"})[0] for i in range(5)]
    assert guesses == [401] * 10  # a guess in a header counts as one in the form
    assert call(port, "POST", "/api/login", {"token": TOKEN})[0] == 429  # even the right one, for now
    assert call(port, "GET", "/api/cameras", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 429


def test_no_other_site_reads_the_console_through_a_browser(tmp_path: Path, stopped) -> None:
    """Without a token anyone on this host may read, but not a page of another site that the
    operator's browser opened: its requests carry its Origin (the live WebSocket's too), or, after
    DNS rebinding, its own host name."""
    proc, port = start_web(tmp_path, "--events", str(tmp_path / "events.jsonl"))
    stopped.append(proc)
    assert call(port, "GET", "/api/cameras", headers={"Origin": f"http://127.0.0.1:{port}"})[0] == 200
    for headers in ({"Origin": "http://evil.example"}, {"Origin": f"http://127.0.0.1:{port + 1}"},
                    {"Host": f"evil.example:{port}"}):
        assert call(port, "GET", "/api/cameras", headers=headers)[0] == 403, headers
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    assert call(port, "GET", "/api/live", headers={**upgrade, "Origin": "http://evil.example"})[0] == 403
    assert call(port, "GET", "/api/live", headers={**upgrade, "Origin": f"http://127.0.0.1:{port}"})[0] == 101


def test_a_new_token_ends_the_sessions_of_the_old(tmp_path: Path, stopped) -> None:
    config = tmp_path / "camwire.toml"
    config.write_text(f'[sink]\nevents = "{tmp_path / "events.jsonl"}"\n\n[web]\ntoken = "first-token"\n')
    proc, port = start_web(tmp_path, "--config", str(config))
    stopped.append(proc)
    status, _, response = call(port, "POST", "/api/login", {"token": "first-token"})
    session = {"Cookie": response.getheader("Set-Cookie").split(";")[0]}
    assert status == 200 and call(port, "GET", "/api/cameras", headers=session)[0] == 200
    config.write_text(config.read_text().replace("first-token", "second-token"))  # the file watcher reloads it
    deadline = time.monotonic() + 30
    while call(port, "GET", "/api/cameras", headers={"Authorization": "Bearer second-token"})[0] != 200:
        assert time.monotonic() < deadline, "the new token was never taken"
        time.sleep(0.2)  # a file watcher has nothing to await but its next look
    assert call(port, "GET", "/api/cameras", headers=session)[0] == 401


def test_the_console_shows_motion_as_the_sink_holds_it(tmp_path: Path, stopped) -> None:
    """A camera's motion comes from the sink's live record as status.db keeps it (written here by
    the sink's own StatusBook), not worked out again from the events file, which says nothing."""
    from camwire.common import wire
    from camwire.sink.camera_status import StatusBook
    from camwire.sink.cameras import LiveCameras

    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "events.jsonl").write_text("")
    cameras = LiveCameras()
    book = StatusBook(data / "status.db", cameras=cameras)
    for name in ("moving", "still"):
        book.on_status(wire.Status(camera=name, state="online", ts_ns=time.time_ns()))
    cameras.at("moving").motion = True
    book.flush(force=True)
    book.close()
    proc, port = start_web(tmp_path, "--data-dir", str(data), "--events", str(tmp_path / "events.jsonl"))
    stopped.append(proc)
    status, body, _ = call(port, "GET", "/api/cameras")
    assert status == 200
    motion = {c["camera"]: c["motion"] for c in body["cameras"]}
    assert motion == {"moving": True, "still": False}
