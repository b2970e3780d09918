"""The truth about camwire.toml in the console (issue 25), against real daemons started from one file:
a typo saved is refused by every daemon with its FILE:LINE (they keep the last good file), and the
console says so above every page, in a real browser (Debian's chromium, driven by Playwright:
nothing downloads a browser), until the file is fixed; ``GET /api/config`` answers the same. On a
loopback bind with no token, the Reload button works (it only makes the daemons read the owner's
own file again); with a token it needs the token, as every other call does."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from camwire.web.auth import change_allowed
from console import needs_chromium
from conftest import free_port, tcp
from test_api import TOKEN, call, start_web

BEARER = {"Authorization": f"Bearer {TOKEN}"}
WAIT_MS = 30_000  # what a page element is awaited for (it only fails the test)
playwright = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def stopped():
    procs: list = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=15)


def good_config(tmp: Path, **web: str) -> str:
    sockets = "\n".join(f'{name} = "{tcp()}"' for name in ("results", "events"))
    extra = "".join(f"{k} = {v}\n" for k, v in web.items())
    return f"""[sockets]
{sockets}

[sink]
events = "{tmp / 'events.jsonl'}"
data_dir = "{tmp / 'data'}"

[web]
{extra}
[cameras.yard]
url = "{tmp / 'yard.mp4'}"
fps = 5
"""


def with_typo(text: str) -> tuple[str, int]:
    """The file with ``fps = 5`` mistyped as ``fps = 5,`` (TOML refuses it), and that line's number."""
    lines = text.splitlines()
    at = lines.index("fps = 5")
    lines[at] = "fps = 5,"
    return "\n".join(lines) + "\n", at + 1


def web_url(daemons, name: str, config: Path, tmp: Path) -> str:
    """``camwire web --config`` on a free loopback port, no token; its URL once it answers."""
    port = free_port()
    proc = daemons.start(name, "web", "--config", str(config), "--port", str(port))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if call(port, "GET", "/api/whoami")[0] == 200:
                return f"http://127.0.0.1:{port}"
        except OSError:
            pass
        assert proc.poll() is None, (tmp / f"{name}.log").read_text()[-3000:]
        time.sleep(0.1)  # a server starting has nothing to await but its port
    raise AssertionError("the console never answered")


def log_line(log: Path, predicate, timeout: float = 30.0) -> dict[str, Any]:
    """The first JSON log line of a daemon matching ``predicate``, once it is written."""
    deadline = time.monotonic() + timeout
    while True:
        for line in log.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if predicate(entry):
                return entry
        assert time.monotonic() < deadline, f"no such line in {log.name}: {log.read_text()[-2000:]}"
        time.sleep(0.1)  # a log file has no change notification to await


def config_answer(port: int, predicate, timeout: float = 30.0) -> dict[str, Any]:
    """``GET /api/config`` once its answer matches ``predicate``."""
    deadline = time.monotonic() + timeout
    while not predicate(answer := call(port, "GET", "/api/config", headers=BEARER)[1]):
        assert time.monotonic() < deadline, f"/api/config never matched; last: {answer}"
        time.sleep(0.1)  # a file watcher has nothing to await but its next look
    return answer


def test_a_reload_without_a_token_is_for_loopback_alone() -> None:
    assert change_allowed("/api/reload", False, "127.0.0.1")
    assert change_allowed("/api/reload", False, "::1")
    assert change_allowed("/api/reload", True, "0.0.0.0")  # with the token (the guard checked it first)
    assert not change_allowed("/api/reload", False, "0.0.0.0")  # never started so: check_bind refuses it
    assert not change_allowed("/api/login-free-write", False, "127.0.0.1")  # any other write needs a token


def test_the_api_tells_a_refused_file_until_a_good_one_loads(tmp_path: Path, stopped) -> None:
    config = tmp_path / "camwire.toml"
    good = good_config(tmp_path, token='"${CAMWIRE_WEB_TOKEN}"')
    config.write_text(good)
    proc, port = start_web(tmp_path, "--config", str(config), token=TOKEN)
    stopped.append(proc)
    assert call(port, "GET", "/api/config")[0] == 401  # what the file says is behind the token too
    assert call(port, "GET", "/api/config", headers=BEARER)[1] == {
        "ok": True, "file": str(config), "error": None, "line": None, "since": None}
    assert call(port, "POST", "/api/reload")[0] == 401  # a token set: a reload needs it, loopback or not

    broken, line = with_typo(good)
    config.write_text(broken)  # the skeleton's watcher loads it, and refuses it
    answer = config_answer(port, lambda a: not a["ok"])
    assert answer["error"].startswith(f"{config}:{line}: ") and answer["line"] == line
    assert answer["file"] == str(config) and answer["since"] <= time.time()
    # the daemon logged the same refusal, at the same line
    refusal = log_line(tmp_path / "web.log", lambda e: e.get("event") == "config refused; the running config stays")
    assert (refusal["file"], refusal["line"]) == (str(config), line)
    # a reload's check finds the same, and signals nothing
    status, body, _ = call(port, "POST", "/api/reload", headers=BEARER)
    assert status == 400 and body["error"] == answer["error"]
    # another mistake (the TOML parses; a camera has no key fpss): its own reason, refused since the first
    config.write_text(good.replace("fps = 5", "fpss = 5"))
    again = config_answer(port, lambda a: a["error"] != answer["error"])
    assert not again["ok"] and "fpss" in again["error"] and again["since"] == answer["since"]

    config.write_text(good)  # fixed: put back as it was, the running config's own bytes
    fixed = config_answer(port, lambda a: a["ok"])
    assert fixed == {"ok": True, "file": str(config), "error": None, "line": None, "since": None}
    status, body, _ = call(port, "POST", "/api/reload", headers=BEARER)
    assert status == 200 and body["ok"]


@needs_chromium
def test_a_typo_shows_on_every_page_until_it_is_fixed(tmp_path: Path, browser, daemons) -> None:
    config = tmp_path / "camwire.toml"
    good = good_config(tmp_path)
    config.write_text(good)
    daemons.start("sink", "sink", "--config", str(config))  # a daemon of the same file, refusing it too
    url = web_url(daemons, "web", config, tmp_path)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    expect = playwright.expect
    page.goto(f"{url}/#/live")
    shown = page.locator(".config-banner")
    expect(shown).to_have_attribute("data-ok", "true", timeout=WAIT_MS)
    expect(shown).to_be_hidden()

    broken, line = with_typo(good)
    config.write_text(broken)
    where = f"{config}:{line}: "
    expect(shown).to_be_visible(timeout=WAIT_MS)
    expect(shown).to_have_attribute("data-ok", "false")
    expect(shown.locator(".config-error")).to_have_text(re.compile("^" + re.escape(where)))
    error = shown.locator(".config-error").inner_text()
    for daemon in ("web", "sink"):  # each daemon refused it at the same line, and kept running
        refusal = log_line(tmp_path / f"{daemon}.log",
                           lambda e: e.get("event") == "config refused; the running config stays")
        assert (refusal["file"], refusal["line"]) == (str(config), line), daemon
        assert daemons.procs[daemon].poll() is None, daemon
    for route in ("#/events", "#/recordings", "#/system", "#/camera/yard", "#/live"):
        page.goto(f"{url}/{route}")
        expect(shown).to_be_visible(timeout=WAIT_MS)
        expect(shown.locator(".config-error")).to_have_text(error)
        assert shown.locator("button").count() == 0, route  # not to be dismissed: the file is what is wrong

    # the Reload button says the same, and signals no one
    page.goto(f"{url}/#/system")
    page.locator("button.reload").click()
    result = page.locator(".reload-result")
    expect(result).to_have_attribute("data-ok", "false", timeout=WAIT_MS)
    expect(result).to_have_text(error)

    config.write_text(good.replace("fps = 5", "fps = 4"))  # fixed
    expect(shown).to_be_hidden(timeout=WAIT_MS)
    expect(shown).to_have_attribute("data-ok", "true")
    page.goto(f"{url}/#/events")
    expect(page.locator("#view[data-route=events]")).to_be_attached()
    expect(shown).to_be_hidden()
    assert errors == []


@needs_chromium
def test_reload_from_the_console_on_loopback_needs_no_token(tmp_path: Path, browser, daemons) -> None:
    config = tmp_path / "camwire.toml"
    config.write_text(good_config(tmp_path))
    sink = daemons.start("sink", "sink", "--config", str(config))
    url = web_url(daemons, "web", config, tmp_path)
    web = daemons.procs["web"]
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    expect = playwright.expect
    page.goto(f"{url}/#/system")
    expect(page.locator("#login")).to_be_hidden(timeout=WAIT_MS)  # no token: no login
    page.locator("button.reload").click()
    result = page.locator(".reload-result")
    expect(result).to_have_attribute("data-ok", "true", timeout=WAIT_MS)
    for name, proc in (("web", web), ("sink", sink)):  # every daemon of this file on this host
        expect(result).to_contain_text(f"{name} (pid {proc.pid})")
        log_line(tmp_path / f"{name}.log", lambda e: e.get("event") == "reloading" and e.get("signal") is True)
    assert page.locator("#banner .banner-msg").count() == 0
