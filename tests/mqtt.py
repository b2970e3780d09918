"""A real Mosquitto broker (Debian's) for the tests, and a paho subscriber that queues what it gets."""

from __future__ import annotations

import queue
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Iterator

import paho.mqtt.client as mqtt
import pytest

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def run_broker(port: int) -> Iterator[int]:
    """Start Mosquitto on ``port`` and yield it once its listener is open; stopped afterwards."""
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed: run `make debs`")
    proc = subprocess.Popen([MOSQUITTO, "-p", str(port), "-v"], stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # it says when its listener is open
        if " running" in line:
            break
    else:
        raise AssertionError(f"mosquitto did not start (exit {proc.wait()})")
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()  # keep its pipe drained
    yield port
    proc.terminate()
    proc.wait(timeout=10)


class Subscriber:
    """A paho client on ``topic``; messages land in a queue as (topic, payload, retained)."""

    def __init__(self, port: int, topic: str) -> None:
        self.messages: queue.Queue[tuple[str, str, bool]] = queue.Queue()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = lambda _c, _u, m: self.messages.put((m.topic, m.payload.decode(), m.retain))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(30), "could not subscribe"

    def take(self, n: int | None = None, timeout: float = 30.0) -> list[tuple[str, str, bool]]:
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

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
