"""common.admission on its own: the configured cameras always pass, the pool is bounded and forgets
the idle, refusals are counted per peer with few labels; and the peer a real socket names."""

from __future__ import annotations

import argparse
from pathlib import Path

import zmq

from camwire.common.admission import MAX_PEERS, OTHER, Admission, peer_of
from camwire.common.counters import Counters
from camwire.common.curve import Curve, keygen


def test_configured_cameras_pass_whatever_the_pool_holds() -> None:
    a = Admission(configured=["door"], pool=3)
    assert all(a.admit(f"fake{i}", now=0, peer="10.0.0.9") for i in range(3))
    assert not any(a.admit(f"fake{i}", now=0, peer="10.0.0.9") for i in range(3, 1000))
    assert a.admit("door", now=0) and len(a) == 4 and a.in_pool() == 3
    assert a.counters.get("cameras_refused", "pool_full", "10.0.0.9") == 997


def test_a_camera_that_keeps_talking_keeps_its_place_and_the_idle_are_forgotten() -> None:
    a = Admission(pool=2, idle_s=60)
    assert a.admit("a", now=0) and a.admit("b", now=0)
    assert not a.admit("c", now=30)  # a newcomer never pushes a running camera out
    assert a.admit("a", now=50)
    assert a.expire(now=59) == []
    assert a.expire(now=61) == ["b"]  # heard last at 0; a was heard at 50
    assert a.admit("c", now=61) and a.names() == {"a", "c"}
    assert a.expire(now=200, busy=lambda camera: camera == "c") == ["a"]  # c's work still waits: kept
    assert "c" in a and a.expire(now=259) == [] and a.expire(now=260) == ["c"]


def test_a_reload_moves_cameras_between_the_config_and_the_pool() -> None:
    a = Admission(configured=["x", "y"], pool=1, idle_s=60)
    assert a.set_configured(["y", "z"], now=0) == []  # x joins the pool, which has room
    assert a.names() == {"x", "y", "z"}
    assert a.set_configured(["z"], now=1) == ["y"]  # no room for y: forgotten now
    assert a.set_configured(["x", "z"], now=2) == [] and a.in_pool() == 0  # x is configured again


def test_refusals_name_few_peers() -> None:
    counters = Counters()
    a = Admission(counters, pool=0)
    for i in range(MAX_PEERS + 10):
        a.admit("cam", now=0, peer=f"10.0.{i // 256}.{i % 256}")
    assert len(counters.get_tree("cameras_refused")["pool_full"]) == MAX_PEERS + 1
    assert counters.get("cameras_refused", "pool_full", OTHER) == 10


def test_forgotten_counts_fold_into_other_and_stay_in_the_totals() -> None:
    counters = Counters({"received": ("camera",), "dropped": ("camera", "reason"), "workers": ("worker", "what")})
    counters.add("received", "fake", n=3)
    counters.add("received", "door")
    counters.add("dropped", "fake", "superseded", n=2)
    counters.add("workers", "fake", "lost")  # a worker named like the camera: not a camera's counter
    counters.fold("camera", "fake")
    assert counters.snapshot() == {"received": {"door": 1, OTHER: 3}, "dropped": {OTHER: {"superseded": 2}},
                                   "workers": {"fake": {"lost": 1}}}


def test_the_peer_is_its_address_or_its_curve_key(tmp_path: Path) -> None:
    ctx = zmq.Context()
    try:
        pull = ctx.socket(zmq.PULL)
        pull.setsockopt(zmq.LINGER, 0)
        port = pull.bind_to_random_port("tcp://127.0.0.1")
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        push.connect(f"tcp://127.0.0.1:{port}")
        push.send(b"x")
        assert pull.poll(10_000)
        assert peer_of(pull.recv(copy=False)) == "127.0.0.1"
        assert peer_of(b"not a frame") == "?"

        # CURVE as the daemons run it (common.curve): the key ZAP let in names the peer
        keygen(tmp_path / "clients", "extractor")
        keygen(tmp_path / "servers", "ventilator")
        server = Curve.from_args(argparse.Namespace(curve_key=str(tmp_path / "servers" / "ventilator.key_secret"),
                                                    curve_clients=str(tmp_path / "clients"), curve_servers=None))
        client = Curve.from_args(argparse.Namespace(curve_key=str(tmp_path / "clients" / "extractor.key_secret"),
                                                    curve_clients=None, curve_servers=str(tmp_path / "servers")))
        secured = ctx.socket(zmq.PULL)
        secured.setsockopt(zmq.LINGER, 0)
        server.prepare(secured, "tcp://127.0.0.1:0", True, None)
        secured.bind("tcp://127.0.0.1:0")
        sender = ctx.socket(zmq.PUSH)
        sender.setsockopt(zmq.LINGER, 0)
        address = secured.getsockopt_string(zmq.LAST_ENDPOINT)
        client.prepare(sender, address, False, "ventilator")
        sender.connect(address)
        sender.send(b"y")
        assert secured.poll(10_000)
        assert peer_of(secured.recv(copy=False)) == f"key:{client.public.decode()}"
        server.stop()
    finally:
        ctx.destroy(linger=0)
