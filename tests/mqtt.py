"""A real Mosquitto broker (Debian's) for the tests, and a paho subscriber that queues what it gets."""

from __future__ import annotations

import queue
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator

import paho.mqtt.client as mqtt
import pytest

from processes import free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def run_broker(port: int | None = None) -> Iterator[int]:
    """Start Mosquitto and yield its port once it accepts connections on 127.0.0.1; stopped
    afterwards. Without ``port``, a free one, tried again on another should the first be taken
    between choosing and binding it (an outgoing connection of another test may hold that
    number: Mosquitto then listens on ::1 alone and still says it is running)."""
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed: run `make debs`")
    for _ in range(1 if port is not None else 5):
        chosen = port if port is not None else free_port()
        proc = subprocess.Popen([MOSQUITTO, "-p", str(chosen), "-v"], stderr=subprocess.PIPE, text=True)
        for line in proc.stderr:  # it says when its listeners are open
            if " running" in line:
                break
        else:
            proc.wait()
            continue
        threading.Thread(target=lambda p=proc: [None for _ in p.stderr], daemon=True).start()  # keep its pipe drained
        try:
            socket.create_connection(("127.0.0.1", chosen), timeout=5).close()
        except OSError:
            proc.terminate()
            proc.wait(timeout=10)
            continue
        try:
            yield chosen
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        return
    raise AssertionError(f"mosquitto did not start listening on 127.0.0.1 (port {port or 'any free one'})")


class Subscriber:
    """A paho client on ``topic``; messages land in a queue as (topic, payload, retained), the
    payload as text, or as bytes with ``raw`` (a JPEG)."""

    def __init__(self, port: int, topic: str, raw: bool = False) -> None:
        self.messages: queue.Queue[tuple[str, str | bytes, bool]] = queue.Queue()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = lambda _c, _u, m: self.messages.put(
            (m.topic, m.payload if raw else m.payload.decode(), m.retain))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(30), "could not subscribe"

    def take(self, n: int | None = None, timeout: float = 30.0) -> list[tuple[str, str | bytes, bool]]:
        """``n`` messages (waiting for each), or what has come so far when ``n`` is None."""
        out = []
        while n is None or len(out) < n:
            try:
                out.append(self.messages.get(timeout=timeout if n is not None else 0.5))
            except queue.Empty:
                if n is not None:
                    raise AssertionError(f"{len(out)} of {n} MQTT messages within {timeout}s: {out}") from None
                break
        return out

    def until(self, done, timeout: float = 30.0) -> list[tuple[str, str | bytes, bool]]:
        """Messages as they come, until ``done(messages so far)``; ``timeout`` only fails a test."""
        got: list[tuple[str, str | bytes, bool]] = []
        deadline = time.monotonic() + timeout
        while not done(got):
            got += self.take(1, timeout=max(0.1, deadline - time.monotonic()))
        return got

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
