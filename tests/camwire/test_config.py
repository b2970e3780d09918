"""camwire.toml: one file for every daemon, secrets from the environment, hot reload in the extractor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from camwire.cli import parse
from camwire.sample import make_sample_clip
from camwire.common.config import ConfigError, load_config
from conftest import ROOT, FrameTap, free_port, scrape, tcp, value, wait_log


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """90 s at 25 fps, small: long enough that a camera read in real time outlives a test."""
    path = tmp_path_factory.mktemp("clips") / "long.mp4"
    make_sample_clip(path, seconds=90, width=320, height=180, covered=None)
    return path


def write(path: Path, text: str) -> Path:
    """Replace the file as an editor does (a new inode), so a watcher sees one complete change."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def camera(name: str, url: str | Path, **keys) -> str:
    lines = [f"[cameras.{name}]", f'url = "{url}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in keys.items()]
    return "\n".join(lines) + "\n"


def check_config(path: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "camwire", "check-config", str(path)], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, **(env or {})})


# -- the file ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, line, words", [
    ('[cameras.a]\nurl = "x.mp4"\nfps = \n', 3, "Invalid value"),                 # TOML itself
    ('[cameras.a]\nurl = "x.mp4"\n\nzoom = 2\n', 4, "unknown key 'zoom'"),
    ('[cameras.a]\nurl = "x.mp4"\nevery = "5"\n', 3, "wrong type"),
    ('[cameras.a]\nurl = "x.mp4"\n\npixel_format = "yuv422"\n', 4, "pixel_format: one of bgr, rgb, gray, yuv420"),
    ('[cameras.a]\nurl = "x.mp4"\nfps = 5\nkeyframes = true\n', 1, "choose one"),
    ('[sockets]\nfrontend = "tcp://h:1"\n\n[cameras.a]\nurl = "rtsp://u:${NOPE_UNSET}@h/x"\n', 5, "NOPE_UNSET"),
    ('[cameras.a]\nurl = "x.mp4"\n[cameras.a.rules]\nlabels = ["car"]\nmin_confidence = 2\n', 5, "min_confidence"),
    ('[sockets]\nfrontend = "tcp://h:1"\nsideways = "tcp://h:2"\n', 3, "unknown socket"),
    ('[snik]\nevents = "e"\n', 1, "unknown section"),
])
def test_a_bad_file_is_refused_with_its_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = tmp_path / "camwire.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.line == line and words in str(err.value), str(err.value)
    assert str(err.value).startswith(f"{path}:{line}: ")


def test_a_flag_the_daemon_does_not_have_is_refused_by_check_config(tmp_path: Path) -> None:
    path = tmp_path / "camwire.toml"
    path.write_text('[sockets]\nresults = "tcp://127.0.0.1:5557"\n\n[sink]\nevents = "e.jsonl"\ncolour = "red"\n')
    done = check_config(path)
    assert done.returncode == 2
    assert f"{path}:6:" in done.stderr and "--colour" in done.stderr


def test_secrets_come_from_env_and_dotenv_and_are_masked(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("GATE_PASSWORD=from-dotenv-s3cret\nMQTT_PASSWORD=dotenv-mqtt\nHOOK_TOKEN=T0-B0-tok\n")
    path = tmp_path / "camwire.toml"
    path.write_text('[sink]\nmqtt = "mqtt://cam:${MQTT_PASSWORD}@127.0.0.1:1883"\n'
                    'webhook = "https://hooks.example.com/services/${HOOK_TOKEN}"\n\n'
                    + camera("gate", "rtsp://admin:${GATE_PASSWORD}@10.0.0.9/live", fps=2))
    cfg = load_config(path)
    assert cfg.cameras["gate"].sources == ("rtsp://admin:from-dotenv-s3cret@10.0.0.9/live",)
    assert cfg.daemon_defaults("sink")["mqtt"] == "mqtt://cam:dotenv-mqtt@127.0.0.1:1883"
    done = check_config(path, env={"GATE_PASSWORD": "from-env-wins"})  # the environment wins over .env
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["cameras"]["gate"] == {"sources": ["rtsp://admin:***@10.0.0.9/live"], "sampling": "fps=2",
                                        "realtime": False, "loop": False, "record": True, "publish": None,
                                        "metrics_port": None, "detector": [], "detect": "motion", "masks": [],
                                        "zones": {}, "detect_size": None, "pixel_format": None,
                                        "weight": 1.0}
    assert shown["daemons"]["sink"]["webhook"] == "https://hooks.example.com/services/***"
    assert cfg.daemon_defaults("sink")["webhook"] == "https://hooks.example.com/services/T0-B0-tok"
    for secret in ("s3cret", "from-env-wins", "dotenv-mqtt", "T0-B0-tok"):
        assert secret not in done.stdout


def test_flags_on_the_command_line_override_the_file(tmp_path: Path) -> None:
    path = tmp_path / "camwire.toml"
    path.write_text('[sockets]\nresults = "tcp://127.0.0.1:5557"\nevents = "tcp://127.0.0.1:5558"\n'
                    'frames = "tcp://127.0.0.1:5559"\n\n[sink]\nevents = "file.jsonl"\ngone_after = 3.0\n\n'
                    '[recorder]\ndir = "ring"\nmax_bytes = "2G"\n')
    args = parse(["sink", "--config", str(path), "--gone-after", "0.5"])
    assert (args.bind, args.events, args.gone_after) == ("tcp://127.0.0.1:5557", "file.jsonl", 0.5)
    args = parse(["recorder", "--config", str(path)])
    assert args.subscribe == ["tcp://127.0.0.1:5559"] and args.max_bytes == 2 * 1024 ** 3
    args = parse(["recorder", "--config", str(path), "--subscribe", "tcp://10.0.0.2:5559"])
    assert args.subscribe == ["tcp://10.0.0.2:5559"]  # replaces the file's list, does not add to it


# -- the extractor serving the file's cameras ------------------------------------------------------

def sockets(p, frames: str) -> str:
    return f'[sockets]\nfrontend = "{p.frontend}"\nframes = "{frames}"\n\n[extractor]\npublish_enc = "passthrough"\n\n'


def increasing(seqs: list[int]) -> bool:
    return all(b > a for a, b in zip(seqs, seqs[1:]))


def test_one_extractor_serves_three_cameras_and_reloads(pipeline_factory, daemons, zctx, long_clip: Path,
                                                        tmp_path: Path) -> None:
    p = pipeline_factory()
    p.worker("worker-1", "covered")
    frames = tcp()
    path = tmp_path / "camwire.toml"
    head = sockets(p, frames)
    write(path, head + camera("a", long_clip, realtime=True, every=5) + camera("b", long_clip, realtime=True)
          + camera("c", long_clip, realtime=True, every=5))
    proc = daemons.start("extractor", "extractor", "--config", str(path))
    log = daemons.tmp / "extractor.log"
    tap = FrameTap(zctx, frames)
    tap.until(lambda t: all(t.counts().get(c, 0) >= 25 for c in "abc"))
    for cam in "abc":  # each camera reached the classifiers too
        p.events.wait_for(lambda e, cam=cam: e["type"] == "motion_start" and e["camera"] == cam)

    # a stays as it is; b goes; c changes (sampling); d is new
    mark = len(tap.seen)
    write(path, head + camera("a", long_clip, realtime=True, every=5) + camera("c", long_clip, realtime=True, every=10)
          + camera("d", long_clip, realtime=True))
    applied = wait_log(log, lambda r: r["event"] == "config applied", proc=proc)
    assert (applied["added"], applied["removed"], applied["changed"], applied["untouched"]) == (["d"], ["b"], ["c"], ["a"])
    tap.until(lambda t: len(t.of("d", mark)) >= 25 and len(t.of("a", mark)) >= 50)
    p.events.wait_for(lambda e: e["type"] == "camera_offline" and e["camera"] == "b"
                      and e["reason"] == "removed from the config")

    a = tap.of("a")
    assert increasing([s for s, _ in a]) and increasing([t for _, t in a])  # never restarted: seq and time run on
    c = tap.of("c")
    assert increasing([s for s, _ in c])  # restarted from the file's start, yet its seq goes on
    assert any(t2 < t1 for (_, t1), (_, t2) in zip(c, c[1:]))  # ... which is how we know it restarted
    assert tap.of("d")[0][0] == 0
    assert daemons.stop("extractor") == 0
    stats = daemons.stats("extractor")
    assert set(stats) == {"a", "b", "c", "d"}  # a removed camera's counts are kept


def test_a_broken_file_is_refused_and_the_cameras_run_on(pipeline_factory, daemons, zctx, long_clip: Path,
                                                         tmp_path: Path) -> None:
    p = pipeline_factory()
    p.worker("worker-1", "covered")
    frames = tcp()
    path = tmp_path / "camwire.toml"
    good = sockets(p, frames) + camera("lobby", long_clip, realtime=True, every=5)
    write(path, good)
    proc = daemons.start("extractor", "extractor", "--config", str(path))
    tap = FrameTap(zctx, frames)
    tap.until(lambda t: len(t.of("lobby")) >= 10)

    broken = good + camera("yard", long_clip) + "fps = 5\nevery = 2\nkeyframes = yes\n"  # the last line
    bad_line = len(broken.splitlines())
    write(path, broken)
    refused = wait_log(daemons.tmp / "extractor.log", lambda r: r["event"].startswith("config refused"), proc=proc)
    assert refused["file"] == str(path) and refused["line"] == bad_line and refused["reason"]
    mark = len(tap.seen)
    tap.until(lambda t: len(t.of("lobby", mark)) >= 25)  # the running config stays
    assert not tap.of("yard") and proc.poll() is None

    # an invalid (if well-formed) file is refused just the same, with the line of the fault
    write(path, good + camera("yard", long_clip, every=0))
    refused = wait_log(daemons.tmp / "extractor.log",
                       lambda r: r["event"].startswith("config refused") and r["line"] != bad_line, proc=proc)
    assert refused["line"] == len(good.splitlines()) + 3 and "every" in refused["reason"]  # every = 0
    write(path, good + camera("yard", long_clip, realtime=True))  # fixed: now it is taken
    tap.until(lambda t: len(t.of("yard")) >= 10)
    assert daemons.stop("extractor") == 0


def start_shapes_worker(daemons, p, name: str) -> None:
    """A worker whose detector finds the sample clip's moving shapes as objects
    (tests/pipeline/shapes_worker.py), started and stopped like the others."""
    log = open(daemons.tmp / f"{name}.log", "wb")
    env = {**os.environ, "CAMWIRE_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}
    daemons.procs[name] = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "pipeline" / "shapes_worker.py"), "classifier", "--connect", p.backend,
         "--sink", p.results, "--detector", "shapes", "--name", name, "--stats", str(daemons.stats_path(name))],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def test_the_sink_follows_rule_changes_in_the_file(pipeline_factory, daemons, long_clip: Path, tmp_path: Path) -> None:
    later = datetime.now(timezone.utc) + timedelta(hours=12)  # a window that is not now
    window = f"{later:%H:%M}-{later + timedelta(minutes=1):%H:%M}"
    path = tmp_path / "camwire.toml"
    write(path, camera("porch", long_clip) + f'[cameras.porch.rules]\nlabels = ["*"]\nactive = ["{window}"]\n')
    port = free_port()
    p = pipeline_factory(sink_args=("--config", str(path), "--metrics-port", str(port)))
    start_shapes_worker(daemons, p, "worker-1")  # finds the clip's moving box and disc: objects to hold back
    p.extractor("porch", str(long_clip), extra=("--realtime", "--every", "5"))
    p.events.wait_type("camera_online")
    deadline = time.monotonic() + 60
    while (held := value(metrics := scrape(port), "camwire_sink_suppressed_total", camera="porch",
                         reason="outside_schedule")) < 5:
        assert time.monotonic() < deadline, "objects were never held back by the schedule"
        time.sleep(0.2)  # a counter has no change notification: scrape again
    # held back, not tracked: no object started, by the counters and by the events written so far
    assert value(metrics, "camwire_sink_objects_total", camera="porch") == 0, held
    assert not [e for e in p.events_written() if e["type"] == "object"]

    write(path, camera("porch", long_clip) + '[cameras.porch.rules]\nlabels = ["*"]\n')  # no schedule: every object counts
    wait_log(daemons.tmp / "sink.log", lambda r: r["event"] == "rules reloaded")
    start = p.events.wait_for(lambda e: e["type"] == "object")
    assert (start["camera"], start["phase"]) == ("porch", "start") and start["label"] in ("box", "disc")
