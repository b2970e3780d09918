"""``camwire ventilator``: takes frames from extractors, hands them to workers that ask for work.

Sockets (both bound, both owned by the main thread):
  - frontend PULL: frames, ``status`` and ``eos`` from extractors (see common.wire);
  - backend ROUTER: workers (DEALER) send ``ready`` (credits and frames done) and ``heartbeat``;
    the ventilator sends them frames, ``heartbeat``, ``reset`` (to a worker it does not know,
    after a restart of either side) and ``bye`` (when a leaving worker will get nothing more).
    ``status`` and ``eos`` ride to the sink through any worker, and so does a ``workers`` map
    every WORKERS_EVERY_S (each worker's credits, frames in flight and done; the backlog per
    camera), which the sink keeps for ``camwire status``.
The decisions live in classifier.dispatch; this module is sockets and time.
"""

from __future__ import annotations

import argparse
import errno
import time
from collections import deque

import zmq

from classifier.dispatch import Dispatcher
from common import wire
from common.counters import write_stats
from common.lifecycle import StopFlag
from common.logs import configure
from common.metrics import register_stats
from common.sockets import make_socket

HEARTBEAT_S = 1.0
OUTBOX_MAX = 10_000  # status messages held while no worker is there to carry them
WORKERS_EVERY_S = 2.0
METRIC_LABELS = {"received": ("camera",), "dispatched": ("camera",), "completed": ("camera",),
                 "dropped": ("camera", "reason"), "workers": ("worker", "what"), "malformed": ("reason",),
                 "workers_forgotten": ("reason",)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frontend", required=True, metavar="ADDR", help="bind: extractors push here")
    p.add_argument("--backend", required=True, metavar="ADDR", help="bind: workers connect here")
    p.add_argument("--heartbeat-timeout", type=float, default=5.0, metavar="S",
                   help="forget a worker silent this long (its in-flight frames are counted lost)")
    p.add_argument("--max-backlog", type=int, default=64, metavar="N",
                   help="frames waiting before the frontend is paused (only files queue)")
    p.add_argument("--stats", metavar="PATH", help="write counters as JSON here at exit")


class Ventilator:
    def __init__(self, frontend: zmq.Socket, backend: zmq.Socket, dispatcher: Dispatcher,
                 heartbeat_timeout: float, log) -> None:
        self.frontend, self.backend, self.d = frontend, backend, dispatcher
        self.heartbeat_timeout = heartbeat_timeout
        self.log = log
        self.outbox: deque[bytes] = deque(maxlen=OUTBOX_MAX)
        self._next_heartbeat = 0.0
        self._next_workers = 0.0
        self.load: dict = self.d.load()  # refreshed every tick; what a metrics scrape reads

    def run(self, stop: StopFlag) -> None:
        poller = zmq.Poller()
        poller.register(self.backend, zmq.POLLIN)
        frontend_on = False
        while not stop.is_set():
            # a full backlog stops reading the frontend: TCP back-pressure then slows a file reader
            if self.d.accepting() and not frontend_on:
                poller.register(self.frontend, zmq.POLLIN)
                frontend_on = True
            elif not self.d.accepting() and frontend_on:
                poller.unregister(self.frontend)
                frontend_on = False
            events = dict(poller.poll(timeout=int(HEARTBEAT_S * 1000 / 2)))
            if self.backend in events:
                self._drain_backend()
            if self.frontend in events:
                self._drain_frontend()
            self._dispatch()
            self._tick(time.monotonic())

    # -- input ---------------------------------------------------------------------------------

    def _drain_frontend(self) -> None:
        for _ in range(256):  # bounded, so workers' messages are never starved
            if not self.d.accepting():
                return
            try:
                parts = self.frontend.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                head = wire.unpack(parts[0].buffer)
                if head["kind"] == "frame":
                    self.d.offer(wire.peek_frame([p.buffer for p in parts]), parts)
                elif head["kind"] == "status" and len(parts) == 1:
                    self.outbox.append(parts[0].bytes)
                elif head["kind"] == "eos" and isinstance(head.get("camera"), str):
                    self.d.end_of_stream(head["camera"], head)
                else:
                    raise wire.MalformedMessage("unexpected_kind", head["kind"])
            except wire.MalformedMessage as exc:
                self.d.counters.add("malformed", exc.reason)
                self.log.warning("malformed message dropped", reason=exc.reason, detail=str(exc))

    def _drain_backend(self) -> None:
        now = time.monotonic()
        for _ in range(1024):
            try:
                parts = self.backend.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            ident = parts[0]
            try:
                if len(parts) != 2:
                    raise wire.MalformedMessage("bad_part_count", f"{len(parts) - 1} parts from a worker")
                msg = wire.unpack(parts[1])
                name = str(msg.get("worker", ident.hex()))
                if msg["kind"] == "ready":
                    self._ready(ident, name, msg, now)
                elif msg["kind"] == "heartbeat":
                    if self.d.worker_seen(ident, name, now)[1]:
                        self._send(ident, wire.pack("reset", {}))  # we restarted: tell us your credits
                else:
                    raise wire.MalformedMessage("unexpected_kind", msg["kind"])
            except (wire.MalformedMessage, TypeError, ValueError, IndexError) as exc:
                reason = exc.reason if isinstance(exc, wire.MalformedMessage) else "bad_control"
                self.d.counters.add("malformed", reason)
                self.log.warning("malformed message dropped", reason=reason, detail=str(exc))

    def _ready(self, ident: bytes, name: str, msg: dict, now: float) -> None:
        known = ident in self.d.workers
        self.d.ready(ident, name, int(msg.get("credits", 0)), msg.get("done") or [], now)
        if not known:
            self.log.info("worker joined", worker=name, credits=msg.get("credits"))
            self._next_workers = 0.0  # the sink's table learns of it at the next tick
        if msg.get("leaving") and not self.d.workers[ident].leaving:
            self.d.leaving(ident)
            self._send(ident, wire.pack("bye", {}))
            self.log.info("worker leaving", worker=name, in_flight=len(self.d.workers[ident].in_flight))

    # -- output --------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        while (item := self.d.next_dispatch()) is not None:
            ident, pending = item
            if not self._send(ident, *pending.parts):
                self.d.requeue(ident, pending)
                self._forget(ident, "unreachable")
        for body in self.d.drained():
            self.outbox.append(wire.pack("eos", body))
        while self.outbox:
            ident = self.d.any_worker()
            if ident is None:
                return
            if self._send(ident, self.outbox[0]):
                self.outbox.popleft()
            else:
                self._forget(ident, "unreachable")

    def _send(self, ident: bytes, *parts) -> bool:
        try:
            self.backend.send_multipart([ident, *parts], flags=zmq.NOBLOCK, copy=False)
            return True
        except zmq.ZMQError as exc:
            if exc.errno in (errno.EHOSTUNREACH, zmq.EAGAIN):
                return False
            raise

    def _forget(self, ident: bytes, reason: str) -> None:
        name = self.d.workers[ident].name if ident in self.d.workers else ident.hex()
        lost = self.d.forget(ident, reason)
        self.log.warning("worker forgotten", worker=name, reason=reason, frames_lost=len(lost))
        self._next_workers = 0.0

    def _tick(self, now: float) -> None:
        for ident in self.d.expired(now, self.heartbeat_timeout):
            self._forget(ident, "heartbeat")
        for ident in self.d.finished_leavers():
            self.log.info("worker left", worker=self.d.workers[ident].name)
            self.d.forget(ident, "left")
            self._next_workers = 0.0
        self.load = self.d.load()
        if now >= self._next_workers and self.d.any_worker() is not None:
            self._next_workers = now + WORKERS_EVERY_S
            self.outbox.append(wire.pack("workers", {**self.load, "ts_ns": time.time_ns()}))
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + HEARTBEAT_S
            beat = wire.pack("heartbeat", {})
            for ident in list(self.d.workers):
                if not self._send(ident, beat):
                    self._forget(ident, "unreachable")


def _gauges(load: dict) -> dict:
    workers = load["workers"]
    return {"backlog": ("frames waiting for a worker", ("camera",), {(c,): n for c, n in load["backlog"].items()}),
            "worker_in_flight": ("frames a worker holds", ("worker",), {(w["name"],): w["in_flight"] for w in workers}),
            "worker_credits": ("frames a worker can take now", ("worker",),
                               {(w["name"],): w["credits"] for w in workers}),
            "workers": ("workers known", (), {(): len(workers)})}


def main(args: argparse.Namespace) -> int:
    log = configure("ventilator")
    stop = StopFlag().install()
    dispatcher = Dispatcher(max_backlog=args.max_backlog)
    with zmq.Context() as ctx:
        frontend = make_socket(ctx, zmq.PULL, bind=args.frontend, rcvhwm=8, linger=0)
        backend = make_socket(ctx, zmq.ROUTER, bind=args.backend, linger=1000)
        log.info("ventilator started", frontend=args.frontend, backend=args.backend)
        vent = Ventilator(frontend, backend, dispatcher, args.heartbeat_timeout, log)
        register_stats("ventilator", dispatcher.counters.snapshot, METRIC_LABELS, lambda: _gauges(vent.load))
        try:
            vent.run(stop)
        finally:
            frontend.close()
            backend.close()
    stats = dispatcher.stats()
    write_stats(args.stats, stats)
    log.info("ventilator stopped", stats=stats)
    return 0
