"""Sources that can never work, and ones that only fail for now: real extractor processes, and
what they send received on a PULL socket bound here."""

from __future__ import annotations

import http.server
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from camwire.sink.store.status_db import read_status
from camwire.common import wire
from conftest import Pull, free_port, tcp, wait_log
from camwire.common.daemon import EXIT_SOURCE_FAILED


@pytest.fixture
def pull(zctx):
    return Pull(zctx)


def failed(msg: wire.Message) -> bool:
    return isinstance(msg, wire.Status) and msg.state == "failed"


def readable(reason: str | None) -> bool:
    return bool(reason) and "Errno" not in reason and not any(w.isdigit() and len(w) > 4 for w in reason.split())


@pytest.mark.parametrize("make_source, says", [
    (lambda tmp: str(tmp / "no-such-clip.mp4"), "No such file or directory"),
    (lambda tmp: str(tmp), "Is a directory"),
    (lambda tmp: str(write_text(tmp / "notes.mp4", "root:x:0:0:root:/root:/bin/bash\n" * 50)), "Invalid data"),
], ids=["missing", "directory", "not-a-video"])
def test_a_file_that_can_never_work_fails_and_the_process_exits_3(daemons, pull, tmp_path: Path, make_source,
                                                                  says: str) -> None:
    source = make_source(tmp_path)
    daemons.start("extractor", "extractor", "--camera", "door", "--source", source, "--push", pull.addr)
    status = pull.until(failed)
    assert status.camera == "door" and says in status.reason and readable(status.reason)
    assert status.attempts == 1 and says in status.last_error
    eos = pull.until(lambda m: isinstance(m, wire.Eos))  # the sink and the recorder can drain it
    assert eos.camera == "door" and eos.sent == 0
    assert daemons.wait("extractor") == EXIT_SOURCE_FAILED
    assert not [s for s in pull.statuses() if s.state == "offline"]  # failed, not merely offline
    stats = daemons.stats("extractor")["door"]
    assert sum(stats["source_errors"].values()) == 1


def test_a_protocol_typo_fails_and_is_retried_on_the_long_backoff(daemons, pull) -> None:
    daemons.start("extractor", "extractor", "--camera", "door", "--source", "rstp://user:secret@10.0.0.5/stream1",
                  "--push", pull.addr, "--failed-retry", "1s")
    first = pull.until(failed)
    assert "Protocol not found" in first.reason and readable(first.reason) and "secret" not in first.last_error
    again = pull.until(lambda m: failed(m) and m.attempts >= 2)  # a live camera: tried again, never exits
    assert "Protocol not found" in again.reason
    assert daemons.procs["extractor"].poll() is None
    assert daemons.stop("extractor") == 0


def test_http_404_and_401_fail(daemons, pull, tmp_path: Path) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(401 if self.path.startswith("/private") else 404)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            daemons.start("extractor", "extractor", "--camera", "yard", "--source", f"{base}/live.ts",
                          "--source", f"{base}/private/live.ts", "--push", pull.addr)
            status = pull.until(failed)  # both sources, one round: failed only when every one can never work
            assert "404 Not Found" in status.reason or "401 Unauthorized" in status.reason
            assert readable(status.reason) and status.attempts == 1
            assert daemons.stop("extractor") == 0
        finally:
            server.shutdown()
    errors = daemons.stats("extractor")["yard"]["source_errors"]
    assert errors == {"HTTPNotFoundError": 1, "HTTPUnauthorizedError": 1}


def test_a_refused_connection_is_offline_and_retried_with_backoff(daemons, pull) -> None:
    daemons.start("extractor", "extractor", "--camera", "gate", "--source", f"rtsp://127.0.0.1:{free_port()}/x",
                  "--push", pull.addr, "--open-timeout", "2")
    offline = pull.until(lambda m: isinstance(m, wire.Status) and m.state == "offline" and m.attempts >= 3)
    assert offline.reason and readable(offline.reason)
    assert not any(failed(s) for s in pull.statuses())  # it may come back: never "failed"
    assert daemons.stop("extractor") == 0


def garbled(clip: Path, tmp_path: Path) -> Path:
    """A copy of ``clip`` with noise over the middle of its video data (its index, at the end, intact)."""
    data = bytearray(clip.read_bytes())
    rng = random.Random(1)
    for i in range(len(data) // 3, len(data) // 2):
        data[i] = rng.randrange(256)
    out = tmp_path / "garbled.mp4"
    out.write_bytes(bytes(data))
    return out


def test_a_corrupt_stretch_ends_the_file_without_going_back_to_its_start(daemons, pull, sample_clip: Path,
                                                                        tmp_path: Path) -> None:
    clip = garbled(sample_clip, tmp_path)
    daemons.start("extractor", "extractor", "--camera", "hall", "--source", str(clip), "--push", pull.addr)
    eos = pull.until(lambda m: isinstance(m, wire.Eos))
    seqs = pull.seqs()
    assert seqs and seqs == list(range(len(seqs)))  # from 0, once, in order: no second pass
    assert eos.last_seq == seqs[-1] < 299  # ended where it could not be read on
    assert eos.reason.startswith("ended early: ") and readable(eos.reason)  # the sink shows it as the status's reason
    assert daemons.wait("extractor") == EXIT_SOURCE_FAILED  # not all of the file was read: not a clean 0
    stats = daemons.stats("extractor")["hall"]
    assert sum(stats["ended_early"].values()) == 1 and stats["sent"] == len(seqs)


def test_a_wrong_push_address_is_warned_about(daemons, sample_clip: Path) -> None:
    nobody = tcp()  # nothing listens here
    proc = daemons.start("extractor", "extractor", "--camera", "c", "--source", str(sample_clip), "--push", nobody)
    warning = wait_log(daemons.tmp / "extractor.log", lambda r: r["event"].startswith("no answer from peer"),
                       timeout=30, proc=proc)
    assert warning["address"] == nobody and warning["level"] == "warning"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_service_retries_a_failed_camera_and_never_exits(daemons, pull, tmp_path: Path) -> None:
    config = tmp_path / "camwire.toml"
    config.write_text(f'[sockets]\nfrontend = "{pull.addr}"\n\n[extractor]\nfailed_retry = "1s"\n\n'
                      f'[cameras.door]\nurl = "{tmp_path / "not-yet.mp4"}"\n')
    daemons.start("extractor", "extractor", "--config", str(config))
    pull.until(lambda m: failed(m) and m.attempts >= 2)  # tried again on --failed-retry, still failed
    assert not any(isinstance(m, wire.Eos) for m in pull.seen)  # not given up on: no end of stream
    assert daemons.procs["extractor"].poll() is None
    assert daemons.stop("extractor") == 0


def test_a_source_variable_set_nowhere_is_refused_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CAMWIRE_NO_SUCH_VAR"}
    done = subprocess.run([sys.executable, "-m", "camwire", "extractor", "--camera", "door", "--source",
                           "${CAMWIRE_NO_SUCH_VAR}", "--push", "tcp://127.0.0.1:1"], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == "camwire extractor: error: --source: ${CAMWIRE_NO_SUCH_VAR} is not set in the environment"


def test_a_camera_given_twice_is_refused_in_one_line(tmp_path: Path) -> None:
    for names in (("door", "yard"), ("door", "door")):  # last-wins would drop one without a word
        done = subprocess.run([sys.executable, "-m", "camwire", "extractor", "--camera", names[0], "--camera",
                               names[1], "--source", str(tmp_path / "a.mp4"), "--push", "tcp://127.0.0.1:1"],
                              capture_output=True, text=True, cwd=tmp_path, timeout=60)
        assert done.returncode == 2
        assert done.stderr.strip() == (f"camwire extractor: error: --camera given 2 times ({', '.join(names)}): one "
                                       "extractor serves one camera from its flags; for several, use --config")


def test_cameras_naming_one_twice_is_refused_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "camwire.toml"
    config.write_text(f'[sockets]\nfrontend = "tcp://127.0.0.1:1"\n\n[cameras.door]\nurl = "{tmp_path / "a.mp4"}"\n\n'
                      f'[cameras.yard]\nurl = "{tmp_path / "b.mp4"}"\n')
    done = subprocess.run([sys.executable, "-m", "camwire", "extractor", "--config", str(config), "--cameras",
                           "door,yard,door"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("camwire extractor: error: ") and line.endswith("--cameras names door twice")


def test_a_file_that_ends_early_says_so_in_its_camera_s_status(pipeline_factory, sample_clip: Path,
                                                              tmp_path: Path) -> None:
    p = pipeline_factory()
    p.worker("worker-1")
    extractor = p.extractor("hall", str(garbled(sample_clip, tmp_path)), extra=("--every", "25"))
    assert extractor.wait(timeout=120) == EXIT_SOURCE_FAILED
    status = p.data_dir / "status.db"
    deadline = time.monotonic() + 60
    row = None
    while row is None or row["state"] != "ended":
        assert time.monotonic() < deadline, f"the camera's status never said ended: {row}"
        time.sleep(0.1)  # SQLite has no change notification to await
        try:
            row = next((r for r in read_status(status)[0] if r["camera"] == "hall"), None)
        except sqlite3.Error:
            row = None  # not written yet
    assert row["reason"].startswith("ended early: ") and readable(row["reason"])
