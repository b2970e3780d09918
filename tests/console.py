"""The console for the tests: a ``camwire web`` started on a free port and awaited until it
answers, and Debian's chromium to look at it (nothing downloads a browser: conftest's ``browser``
fixture drives it through Playwright)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from processes import free_port

CHROMIUM = "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason="Debian's chromium is not installed: run `make debs`")


def start_console(daemons, *argv: str) -> str:
    """``camwire web ARGV`` on a free port, read from this host without a token (started by
    conftest.Daemons, so stopped by its fixture); its URL once it answers."""
    port = free_port()
    proc = daemons.start("web", "web", *argv, "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/api/whoami", timeout=5) as response:
                if response.status == 200:
                    return url
        except (urllib.error.URLError, ConnectionError):
            pass
        assert proc.poll() is None, (daemons.tmp / "web.log").read_text()[-3000:]
        time.sleep(0.1)  # a server starting has nothing to await but its port
    raise AssertionError("the console never answered")


SCREENSHOTS_ENV = "CAMWIRE_SCREENSHOTS"


def screenshot(page, name: str) -> None:
    """The page as the test left it, saved as NAME.png under $CAMWIRE_SCREENSHOTS when that is set
    (the README's pictures come from the tests: `make screenshots`); nothing otherwise."""
    import os

    folder = os.environ.get(SCREENSHOTS_ENV)
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"))
