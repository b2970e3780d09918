"""``camwire sink``: turns workers' results into events, snapshots and camera status.

Sockets, owned by the main thread:
  - PULL (bound): ``result`` maps from workers, each with an optional JPEG of its frame, the
    extractors' ``status`` and ``eos`` maps and the ventilator's ``workers`` map, relayed by the
    ventilator through the workers;
  - PUB (bound, ``--publish``): every event as a one-part msgpack map of kind ``event``.
Events are also appended to ``--events`` as JSON lines, and sent to ``--mqtt`` and ``--webhook``
(classifier.outputs); a snapshot is ``--data-dir``/snapshots/<camera>/<date>/<event id>.jpg with
the event's JSON beside it, and ``--data-dir``/status.db holds each camera's and worker's status
(classifier.camera_status).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, TextIO

import zmq

from classifier.camera_status import StatusBook
from classifier.events import Events
from classifier.outputs import MqttOutput, WebhookOutput, origin
from classifier.rules import load_rules
from common import wire
from common.config import ConfigWatcher
from common.counters import write_stats
from common.lifecycle import StopFlag
from common.logs import configure
from common.metrics import EVENT_LATENCY, RESULT_LATENCY, register_stats
from common.paths import name_list, safe_name, utc_day
from common.sockets import make_socket


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bind", required=True, metavar="ADDR", help="workers push results here")
    p.add_argument("--events", required=True, metavar="PATH", help="append events here as JSON lines")
    p.add_argument("--publish", metavar="ADDR", help="bind a PUB socket of events")
    p.add_argument("--data-dir", metavar="DIR", help="save snapshots here")
    p.add_argument("--cooldown", type=float, default=1.0, metavar="S",
                   help="at most one detection/motion event per camera and type in this much capture time")
    p.add_argument("--rules", metavar="FILE", help="per-camera event rules and schedules (TOML; see classifier.rules)")
    p.add_argument("--mqtt", metavar="URL",
                   help="publish events to this broker: mqtt://[user:pass@]host[:port][/prefix]")
    p.add_argument("--webhook", metavar="URL", help="POST each event as JSON here (retried with backoff)")
    p.add_argument("--webhook-retries", type=int, default=5, metavar="N")
    p.add_argument("--exit-when-drained", metavar="CAMERAS",
                   help="comma-separated cameras: exit once each has ended and all its results are in")
    p.add_argument("--stats", metavar="PATH", help="write counters as JSON here at exit")


METRIC_LABELS = {"results": ("camera",), "result_errors": ("camera",), "suppressed": ("camera", "reason"),
                 "events": ("type",), "malformed": ("reason",), "outputs": ("output", "outcome")}


class Sink:
    def __init__(self, pull: zmq.Socket, pub: zmq.Socket | None, events_file: TextIO,
                 data_dir: Path | None, events: Events, log, book: StatusBook | None = None,
                 outputs: list | None = None) -> None:
        self.pull, self.pub, self.events_file, self.data_dir = pull, pub, events_file, data_dir
        self.events = events
        self.log = log
        self.book = book
        self.outputs = outputs or []
        self.watcher: ConfigWatcher | None = None  # set: the rules follow --config's file as it changes

    def run(self, stop: StopFlag, until_drained: set[str] | None) -> None:
        while not stop.is_set():
            if until_drained and all(self.events.drained(c) for c in until_drained):
                self.log.info("all cameras drained", cameras=sorted(until_drained))
                return
            if self.book is not None:
                self.book.flush()
            if self.watcher is not None and (cfg := self.watcher.changed()) is not None:
                self.events.rules = cfg.rules
                self.log.info("rules reloaded", file=str(cfg.path), cameras=sorted(cfg.rules.cameras or {}))
            if not self.pull.poll(250):
                continue
            self.drain()

    def drain(self) -> None:
        """Handle what is waiting now, in bounded rounds."""
        for _ in range(1000):
            try:
                parts = self.pull.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            self.handle(parts)

    def handle(self, parts: list[bytes]) -> None:
        try:
            msg = wire.unpack(parts[0])
            kind = msg["kind"]
            if kind == "result":
                if len(parts) > 2:
                    raise wire.MalformedMessage("bad_part_count", f"{len(parts)} parts")
                _check_result(msg)
                now = time.time()
                RESULT_LATENCY.labels(msg["camera"]).observe(max(0.0, now - msg["ts_ns"] / 1e9))
                for event in self.events.on_result(msg):
                    EVENT_LATENCY.labels(event["camera"], event["type"]).observe(max(0.0, now - event["ts"]))
                    self.emit(event, parts[1] if len(parts) == 2 else None)
                if self.book is not None:
                    self.book.on_result(msg["camera"], msg["ts_ns"], self.events.camera(msg["camera"]).covered,
                                        msg.get("worker") if isinstance(msg.get("worker"), str) else None)
            elif kind == "status":
                if not isinstance(msg.get("camera"), str):
                    raise wire.MalformedMessage("bad_header", "status without camera")
                for event in self.events.on_status(msg):
                    self.emit(event, None)
                if self.book is not None:
                    self.book.on_status(msg)
            elif kind == "workers":
                if not isinstance(msg.get("workers"), list):
                    raise wire.MalformedMessage("bad_header", "workers without a list")
                if self.book is not None:
                    self.book.on_workers(msg)
            elif kind == "eos":
                if not isinstance(msg.get("camera"), str):
                    raise wire.MalformedMessage("bad_header", "eos without camera")
                self.events.on_eos(msg)
                if self.book is not None:
                    self.book.on_eos(msg)
                self.log.info("camera ended", camera=msg["camera"], results=msg.get("results"))
            else:
                raise wire.MalformedMessage("unexpected_kind", kind)
        except wire.MalformedMessage as exc:
            self.events.counters.add("malformed", exc.reason)
            self.log.warning("malformed message dropped", reason=exc.reason, detail=str(exc))

    def emit(self, event: dict[str, Any], jpeg: bytes | None) -> None:
        if jpeg is not None and self.data_dir is not None:
            event["snapshot"] = str(self._save_snapshot(event, jpeg))
        line = json.dumps(event, separators=(",", ":"))
        self.events_file.write(line + "\n")
        self.events_file.flush()
        if self.pub is not None:
            self.pub.send(wire.pack("event", event))
        for output in self.outputs:
            output.send(event)
        self.log.info("event", type=event["type"], camera=event["camera"], seq=event["seq"],
                      detections=len(event["detections"]), snapshot=event["snapshot"])

    def _save_snapshot(self, event: dict[str, Any], jpeg: bytes) -> Path:
        folder = self.data_dir / "snapshots" / safe_name(event["camera"]) / utc_day(event["ts"])
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{safe_name(event['id'])}.jpg"
        path.write_bytes(jpeg)
        path.with_suffix(".json").write_text(json.dumps({**event, "snapshot": str(path)}, indent=1))
        return path


def _check_result(msg: dict[str, Any]) -> None:
    for key, types in (("camera", str), ("seq", int), ("ts_ns", int), ("detections", list)):
        if not isinstance(msg.get(key), types):
            raise wire.MalformedMessage("bad_header", f"result {key}={msg.get(key)!r}")


def main(args: argparse.Namespace) -> int:
    log = configure("sink")
    stop = StopFlag().install()
    rules = load_rules(args.rules) if args.rules else args.config.rules if args.config else None
    events = Events(cooldown_s=args.cooldown, rules=rules)
    until = set(name_list(args.exit_when_drained)) or None
    Path(args.events).parent.mkdir(parents=True, exist_ok=True)
    data_dir = Path(args.data_dir) if args.data_dir else None
    started = time.monotonic()
    book = StatusBook(data_dir / "status.db") if data_dir is not None else None
    outputs: list = []
    if args.mqtt:
        outputs.append(MqttOutput(args.mqtt, events.counters, log))
    if args.webhook:
        outputs.append(WebhookOutput(args.webhook, events.counters, log, retries=args.webhook_retries))
    register_stats("sink", events.counters.snapshot, METRIC_LABELS)
    with zmq.Context() as ctx, open(args.events, "a", encoding="utf-8") as events_file:
        pull = make_socket(ctx, zmq.PULL, bind=args.bind, linger=0)
        pub = make_socket(ctx, zmq.PUB, bind=args.publish, linger=1000) if args.publish else None
        log.info("sink started", bind=args.bind, events=args.events, publish=args.publish, mqtt=args.mqtt,
                 webhook=origin(args.webhook) if args.webhook else None,
                 status=str(data_dir / "status.db") if data_dir else None)
        sink = Sink(pull, pub, events_file, data_dir, events, log, book, outputs)
        if args.config is not None and not args.rules:
            sink.watcher = ConfigWatcher(args.config, log)
        try:
            sink.run(stop, until)
            sink.drain()  # results already queued here were accepted: they become events too
        finally:
            pull.close()
            if pub is not None:
                pub.close()
            for output in outputs:
                output.close()
            if book is not None:
                book.close()
    stats = {**events.counters.snapshot(), "uptime_s": round(time.monotonic() - started, 3),
             "cameras": {name: {"online": c.online, "covered": c.covered, "results": c.results}
                         for name, c in events.cameras.items()}}
    write_stats(args.stats, stats)
    log.info("sink stopped", stats=stats)
    return 0
