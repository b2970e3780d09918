"""``camwire run --config``: the whole file on one host; ``--once`` with a failed camera; two
per-camera extractors from one file on one host."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from conftest import ROOT, free_port, scrape, value

ENV = {**os.environ, "CAMWIRE_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}


def subscribe(port: int, topic: str) -> tuple[mqtt.Client, queue.Queue]:
    got: queue.Queue = queue.Queue()
    subscribed = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = lambda _c, _u, m: got.put(m.topic)
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert subscribed.wait(30), "could not subscribe"
    return client, got


def run(tmp: Path, *argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "camwire", "run", *argv], cwd=ROOT, env=ENV,
                            stdout=open(tmp / "run.out", "wb"), stderr=open(tmp / "run.log", "wb"))


def test_run_config_delivers_events_of_two_cameras_over_mqtt(tmp_path: Path, broker: int, sample_clip: Path) -> None:
    cfg = tmp_path / "camwire.toml"
    cfg.write_text(f'[sink]\nmqtt = "mqtt://127.0.0.1:{broker}/camwire"\n\n'
                   '[classifier]\ndetector = "covered"\n\n[run]\nworkers = 1\n\n'
                   f'[cameras.one]\nurl = "{sample_clip}"\nevery = 5\n\n'
                   f'[cameras.two]\nurl = "{sample_clip}"\nevery = 5\n')
    client, topics = subscribe(broker, "camwire/#")
    proc = run(tmp_path, "--config", str(cfg), "--events", str(tmp_path / "events.jsonl"),
               "--stats", str(tmp_path / "stats.json"))
    try:
        wanted = {f"camwire/{cam}/{kind}" for cam in ("one", "two") for kind in ("motion_start", "camera_covered")}
        seen: set[str] = set()
        deadline = time.monotonic() + 120
        while not wanted <= seen:
            assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            try:
                seen.add(topics.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"MQTT: {sorted(seen)}; run log: {(tmp_path / 'run.log').read_text()[-3000:]}")
    finally:
        client.loop_stop()
        client.disconnect()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert {"one", "two"} <= {e["camera"] for e in events if e["type"] == "motion_start"}
    assert json.loads((tmp_path / "stats.json").read_text())["sink"]["outputs"]["mqtt"]["published"] > 0


@pytest.mark.parametrize("by_config", [False, True])
def test_run_once_ends_with_the_missing_camera_failed_and_exit_1(tmp_path: Path, sample_clip: Path,
                                                                  by_config: bool) -> None:
    missing = tmp_path / "no-such-clip.mp4"
    if by_config:
        cfg = tmp_path / "camwire.toml"
        cfg.write_text(f'[classifier]\ndetector = "covered"\n\n[run]\nworkers = 1\n\n'
                       f'[cameras.good]\nurl = "{sample_clip}"\nevery = 5\n\n[cameras.gone]\nurl = "{missing}"\n')
        cameras = ["--config", str(cfg)]
    else:
        cameras = ["--camera", f"good={sample_clip}", "--camera", f"gone={missing}", "--detector", "covered",
                   "--workers", "1", "--every", "5"]
    proc = run(tmp_path, *cameras, "--once", "--events", str(tmp_path / "events.jsonl"),
               "--stats", str(tmp_path / "stats.json"))
    try:
        assert proc.wait(timeout=180) == 1, (tmp_path / "run.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["run"]["failed"] == ["extractor-gone"] and stats["run"]["restarts"] == {}
    assert stats["sink"]["results"]["good"] > 0  # the good camera was processed to its end
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert any(e["type"] == "motion_start" and e["camera"] == "good" for e in events)


def test_two_per_camera_extractors_from_one_file_on_one_host(tmp_path: Path, sample_clip: Path) -> None:
    ports = [free_port(), free_port()]
    cfg = tmp_path / "camwire.toml"
    cfg.write_text(f'[sockets]\nfrontend = "tcp://127.0.0.1:{free_port()}"\n'
                   f'frames = "tcp://127.0.0.1:{free_port()}"\n\n'
                   '[extractor]\nmetrics_port = 9\n\n'
                   f'[cameras.a]\nurl = "{sample_clip}"\nrealtime = true\npublish = "tcp://127.0.0.1:{free_port()}"\n'
                   f'metrics_port = {ports[0]}\n\n'
                   f'[cameras.b]\nurl = "{sample_clip}"\nrealtime = true\npublish = "tcp://127.0.0.1:{free_port()}"\n'
                   f'metrics_port = {ports[1]}\n')
    procs = [subprocess.Popen([sys.executable, "-m", "camwire", "extractor", "--config", str(cfg), "--cameras", name],
                              cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"{name}.log", "wb"))
             for name in ("a", "b")]
    try:
        for name, port in zip(("a", "b"), ports):
            deadline = time.monotonic() + 60
            while True:  # each serves its own camera on its own port, both on this host
                for proc in procs:
                    assert proc.poll() is None, (tmp_path / f"{name}.log").read_text()[-2000:]
                try:
                    if value(scrape(port), "camwire_extractor_decoded_total", camera=name) > 0:
                        break
                except OSError:
                    pass  # not serving yet
                assert time.monotonic() < deadline, f"no frames of {name} on :{port}"
                time.sleep(0.2)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)
    assert [p.returncode for p in procs] == [0, 0]
