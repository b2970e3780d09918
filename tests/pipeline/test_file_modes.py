"""What camwire writes is not world-readable by default (--umask 0027: files 0640, folders 0750),
and its metrics listen on this host only unless --metrics-bind says otherwise."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT, free_port, scrape


def test_everything_a_run_writes_is_0640_or_0750(tmp_path: Path, sample_clip: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "camwire", "run", "--camera", f"door={sample_clip}",
                           "--detector", "covered", "--workers", "1", "--once",
                           "--events", str(out / "events.jsonl"), "--data-dir", str(out / "data"),
                           "--record", str(out / "ring"), "--segment", "4", "--keep-types", "camera_covered"],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    files = [p for p in out.rglob("*") if p.is_file()]
    kinds = {p.suffix for p in files}
    assert {".jsonl", ".jpg", ".json", ".db", ".mkv"} <= kinds, kinds  # events, snapshots, status, index, video
    loose = {str(p.relative_to(out)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files
             if stat.S_IMODE(p.stat().st_mode) & 0o027}
    assert not loose, loose
    folders = {str(p.relative_to(out)): oct(stat.S_IMODE(p.stat().st_mode)) for p in out.rglob("*")
               if p.is_dir() and stat.S_IMODE(p.stat().st_mode) & 0o027}
    assert not folders, folders


def listening(port: int) -> set[str]:
    """The local addresses a TCP socket of this machine listens on at ``port`` (from /proc)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, hexport = local.split(":")
        if state == "0A" and int(hexport, 16) == port:  # 0A: LISTEN
            found.add(".".join(str(int(addr[i:i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


def test_metrics_listen_on_this_host_only_by_default(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "CAMWIRE_LOG_FORMAT": "json"}
    proc = subprocess.Popen([sys.executable, "-m", "camwire", "ventilator", "--frontend", f"tcp://127.0.0.1:{free_port()}",
                             "--backend", f"tcp://127.0.0.1:{free_port()}", "--metrics-port", str(port)],
                            cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not listening(port) and time.monotonic() < deadline:
            assert proc.poll() is None
            time.sleep(0.1)  # a listening socket is kernel state: poll it
        assert listening(port) == {"127.0.0.1"}
        # the server listens before the daemon has registered its own gauges: await them
        while "camwire_ventilator_workers" not in scrape(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "camwire_ventilator_workers" in scrape(port)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
