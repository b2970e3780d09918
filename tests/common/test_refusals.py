"""Refused CURVE handshakes name their peer, a refused client backs off, and a worker's default
detector name is the same on every host.

The daemons are real processes over real TCP with keys made by ``camwire keygen``: a ventilator
that lists one client key, a worker with a key nobody listed (refused by the ZAP handler: its
address and key are named) and a worker that pins the wrong server key (refused before any
client key is seen, which libzmq on its own would retry every 100 ms).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

import msgspec

from camwire.classifier.detector_name import served_name
from camwire.common import wire
from camwire.common.curve import fingerprint, read_keys
from camwire.common.refusals import MAX_PEERS, OTHER, PeerNames
from conftest import ROOT, Daemons, free_port, scrape, tcp

LIBZMQ_RETRY_S = 0.1  # libzmq's default ZMQ_RECONNECT_IVL: the rate a refused client would retry without a backoff


def keygen(folder: Path, name: str) -> tuple[Path, Path]:
    done = subprocess.run([sys.executable, "-m", "camwire", "keygen", name, "--dir", str(folder)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return folder / f"{name}.key", folder / f"{name}.key_secret"


def test_default_detector_name_leaves_the_hosts_paths_out() -> None:
    assert served_name("onnx:/opt/models/yolov8n.onnx") == served_name("onnx:/home/cam/yolov8n.onnx") \
        == "onnx:yolov8n.onnx"
    assert served_name("onnx:path=/srv/m/ssd.onnx,layout=ssd+covered") == "onnx:path=ssd.onnx,layout=ssd+covered"
    for spec in ("covered", "onnx", "hog:threshold=0.5", "roboflow:yard/3", None):
        assert served_name(spec) == spec  # nothing of a host's own in them


def test_refusals_are_rows_per_peer_and_peers_are_capped() -> None:
    counted = {"tcp://0.0.0.0:5556": {"auth": 5, "protocol": 2}}
    peers = {"tcp://0.0.0.0:5556": {"auth": {"10.0.0.7": {"AbCd1234": 4}}}}
    rows = wire.refusals(counted, peers)
    assert [(r.reason, r.count, r.peer, r.key) for r in rows] == [("auth", 4, "10.0.0.7", "AbCd1234"),
                                                                  ("auth", 1, None, None), ("protocol", 2, None, None)]
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(rows), type=wire.Refusals) == rows
    old = msgspec.msgpack.encode({"socket": "tcp://0.0.0.0:5556", "reason": "auth", "count": 1})  # a daemon from before
    assert msgspec.msgpack.decode(old, type=wire.Refused).peer is None
    names = PeerNames()
    named = [names.name(f"10.0.0.{i}", "-") for i in range(MAX_PEERS + 5)]
    assert named[:MAX_PEERS] == [(f"10.0.0.{i}", "-") for i in range(MAX_PEERS)]
    assert set(named[MAX_PEERS:]) == {(OTHER, OTHER)}
    assert names.name("10.0.0.0", "-") == ("10.0.0.0", "-")  # one already named stays named
    assert fingerprint(b"rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7") == "rq:rM>}U"


def _metric(port: int, name: str) -> list[tuple[dict[str, str], float]]:
    try:
        return scrape(port).get(name, [])
    except (urllib.error.URLError, ConnectionError):
        return []  # not up yet


def test_refused_workers_are_named_and_back_off(tmp_path: Path, daemons: Daemons) -> None:
    keys = tmp_path / "keys"
    host_public, host_secret = keygen(keys, "host")
    stranger_public, stranger_secret = keygen(keys, "stranger")
    clients, servers, wrong = keys / "clients", keys / "servers", keys / "wrong"
    for folder in (clients, servers, wrong):
        folder.mkdir()
    shutil.copy(host_public, clients / "host.key")
    for name in ("ventilator", "sink"):
        shutil.copy(host_public, servers / f"{name}.key")
        shutil.copy(stranger_public, wrong / f"{name}.key")  # pins a key that is not the server's
    frontend, backend, results = tcp(), tcp(), tcp()
    port = free_port()
    curve = ("--curve-key", str(host_secret), "--curve-clients", str(clients), "--curve-servers", str(servers))
    daemons.start("ventilator", "ventilator", "--frontend", frontend, "--backend", backend,
                  "--metrics-port", str(port), *curve)
    daemons.start("unlisted", "classifier", "--connect", backend, "--sink", results, "--detector", "covered",
                  "--name", "unlisted", "--curve-key", str(stranger_secret), "--curve-servers", str(servers))
    daemons.start("wrong-server", "classifier", "--connect", backend, "--sink", results, "--detector", "covered",
                  "--name", "wrong-server", "--curve-key", str(host_secret), "--curve-servers", str(wrong))

    # the wrong server key: refused before a client key is seen; count its refusals over a span
    first: tuple[float, float] | None = None
    deadline = time.monotonic() + 90
    while True:
        assert time.monotonic() < deadline, "the ventilator never counted the wrong-server-key worker 4 times"
        assert all(p.poll() is None for p in daemons.procs.values()), "a daemon exited"
        counted = sum(v for labels, v in _metric(port, "camwire_ventilator_handshakes_failed_total")
                      if labels["socket"] == backend and labels["reason"] != "auth")
        now = time.monotonic()
        if counted and first is None:
            first = (now, counted)
        if first is not None and counted - first[1] >= 3:
            break
        time.sleep(0.2)  # a counter has no event to await: poll it
    span, refused = now - first[0], counted - first[1]
    # without a backoff libzmq retries every 100 ms (plus up to 100 ms of jitter): at least
    # span / 0.2 handshakes; with it (1 s doubling), far fewer. A slow machine only lowers the ratio.
    assert refused / (span / (2 * LIBZMQ_RETRY_S)) < 0.25, (refused, span)

    # the unlisted key: named by its address and fingerprint, in metrics and in the log
    fpr = fingerprint(read_keys(stranger_public, secret=False)[0])
    peers = _metric(port, "camwire_ventilator_refused_peers_total")
    named = {(l["reason"], l["peer"], l["key"]) for l, _v in peers if l["socket"] == backend}
    assert ("auth", "127.0.0.1", fpr) in named, named
    assert {(p, k) for r, p, k in named if r != "auth"} <= {("127.0.0.1", "-"), ("unknown", "-")}, named
    daemons.stop_all()
    records = [json.loads(line) for line in (tmp_path / "ventilator.log").read_text().splitlines()
               if line.startswith("{")]
    assert any(r.get("event", "").startswith("a peer failed the CURVE handshake") and r.get("peer") == "127.0.0.1"
               and r.get("client_key") == fpr for r in records)
    stats = daemons.stats("ventilator")
    assert stats["refused_peers"][backend]["auth"]["127.0.0.1"][fpr] >= 1
    # the refused worker's own view: refused, and backing off
    unlisted = [json.loads(line) for line in (tmp_path / "unlisted.log").read_text().splitlines()
                if line.startswith("{")]
    assert any(r.get("event", "").startswith("handshake with peer failed") and r.get("retry_s") for r in unlisted)
    for name in ("host", "stranger"):
        secret = read_keys(keys / f"{name}.key_secret", secret=True)[1].decode()
        for log in tmp_path.glob("*.log"):
            assert secret not in log.read_text(errors="replace"), log


def test_a_camera_naming_its_detector_with_a_path_finds_the_workers_that_serve_it(tmp_path) -> None:
    """camwire.toml written before workers named models by file: the ventilator names a camera's
    detector as workers serve it, so ``onnx:/models/x.onnx`` routes to workers of ``onnx:x.onnx``."""
    from camwire.classifier.ventilator import routes_of
    from camwire.common.config import load_config

    config = tmp_path / "camwire.toml"
    config.write_text('[cameras.door]\nurl = "rtsp://127.0.0.1:1/door"\n'
                      'detector = ["onnx:/opt/models/yolov8n.onnx + covered", "onnx:path=/m/s.onnx,fp16"]\n')
    assert routes_of(load_config(config), [("gate", "onnx:/srv/yolov8n.onnx")]) == {
        "door": ["onnx:yolov8n.onnx+covered", "onnx:path=s.onnx,fp16"], "gate": ["onnx:yolov8n.onnx"]}
