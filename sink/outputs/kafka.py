"""The sink's Kafka output: each event as a JSON record on one topic, keyed by its camera.

What goes over the wire: to ``--kafka host:port[,host:port...]/topic``, one record per event,
key = the camera's name (UTF-8), value = the event's JSON (``body``: the same bytes as its
``--events`` line, without the newline). The producer's partitioner hashes the key, so one
camera's events all go to one partition and, with the idempotent producer, stay in order there
through retries and reconnects.

confluent-kafka (librdkafka) does the sending on its own threads; this class never waits:
- ``produce`` only queues (bounded: ``queue.buffering.max.messages``/``.kbytes``). A full queue
  drops the event, counted ``outputs/kafka/dropped_queue_full`` and logged once per interval.
- A down broker: the queue holds what comes meanwhile for ``message.timeout.ms`` (an hour) and
  sends it, in order, when the broker is back; nothing the queue holds is lost.
- Delivery reports are served by ``poll()`` on the sink's thread (at each send and from a timer):
  ``outputs/kafka/delivered``, or ``outputs/kafka/failed`` with the error logged once per interval.
- At close, what is queued gets ``drain_s`` to go; what is still left is counted
  ``outputs/kafka/left_at_exit``.
``--kafka-option KEY=VALUE`` settings go to librdkafka as they are (TLS, SASL, tuning) and
override the defaults here; their values are masked in logs where the key names a secret.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # librdkafka is loaded only by a sink with --kafka, not by every daemon judging the file
    from confluent_kafka import KafkaError, Message

from camwire.common import wire
from camwire.common.counters import Counters
from camwire.common.logs import RepeatLimiter
from camwire.common.sockets import OperatorError

TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")  # what Kafka accepts as a topic name
HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(?P<port>[0-9]{1,5})$")
SECRET_OPTION = re.compile(r"password|secret|key", re.IGNORECASE)  # sasl.password, ssl.key.pem, ...
MASK = "***"
DRAIN_S = 5.0  # at close: what is queued gets this long to reach the broker
POLL_EVERY_S = 0.5  # the sink serves delivery reports this often, besides at each send

# ours unless --kafka-option says otherwise
DEFAULTS: dict[str, Any] = {
    "client.id": "camwire-sink",
    "enable.idempotence": True,  # acks=all and no reordering or duplicates on retry
    "linger.ms": 5,  # events are few: a short batch wait, not a latency
    "queue.buffering.max.messages": 100_000,  # bounded: a full queue drops and counts, never blocks
    "queue.buffering.max.kbytes": 131_072,
    "message.timeout.ms": 3_600_000,  # a broker down for up to an hour loses nothing queued
    "reconnect.backoff.max.ms": 5_000,
}


def kafka_address(text: str) -> tuple[str, str]:
    """``host:port[,host:port...]/topic`` -> (bootstrap servers, topic), or ValueError naming
    ``--kafka`` with the form it must have (the sink's check, so check-config refuses it too)."""
    servers, slash, topic = text.rpartition("/")
    good = (slash and TOPIC.match(topic) and servers
            and all((m := HOST_PORT.match(s)) and 0 < int(m["port"]) < 65536 for s in servers.split(",")))
    if not good:
        raise ValueError(f"--kafka: host:port/topic (several host:port comma-separated), like "
                         f"127.0.0.1:9092/camwire-events, not {text!r}")
    return servers, topic


def shown(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` safe to log: values of keys that name a secret masked."""
    return {k: MASK if SECRET_OPTION.search(k) else v for k, v in options.items()}


class _RdkafkaLog:
    """librdkafka's own log lines (served by poll(), on the sink's thread) into the daemon's log,
    each kind once per interval: a down broker says so once a minute, not at every reconnect."""

    def __init__(self, repeats: RepeatLimiter) -> None:
        self.repeats = repeats

    def log(self, level: int, fmt: str, *args: Any) -> None:
        text = fmt % args if args else fmt
        facility = args[0] if args else "log"
        self.repeats(f"kafka:log:{facility}", "kafka client", level="warning" if level >= logging.WARNING else "info",
                     detail=text[:500])


class KafkaOutput:
    """Produces events to ``url`` (``host:port/topic``); ``options``: librdkafka settings on top
    of DEFAULTS (TLS, SASL). Methods are called from the sink's thread only."""

    def __init__(self, url: str, counters: Counters, log, options: dict[str, Any] | None = None,
                 drain_s: float = DRAIN_S) -> None:
        from confluent_kafka import KafkaException, Producer

        self._refused = KafkaException
        self._refused_here = 0
        servers, self.topic = kafka_address(url)
        self.counters, self.drain_s = counters, drain_s
        self.log = log.bind(kafka=url)
        self.repeats = RepeatLimiter(self.log)
        settings = {**DEFAULTS, **(options or {}), "bootstrap.servers": servers}
        try:
            self.producer = Producer(settings, logger=_RdkafkaLog(self.repeats), error_cb=self._on_error)
        except KafkaException as exc:  # a setting librdkafka does not know or take: the operator's to fix
            raise OperatorError(f"--kafka-option: {exc.args[0].str()}") from None
        self.log.info("kafka producer started", topic=self.topic, settings=shown(settings))

    def send(self, event: wire.Event, body: bytes) -> None:
        try:
            self.producer.produce(self.topic, key=event.camera.encode(), value=body, on_delivery=self._on_delivery)
        except BufferError:  # the queue is full (a long outage): drop this one, never wait
            self.counters.add("outputs", "kafka", "dropped_queue_full")
            self.repeats("kafka:queue_full", "kafka queue full; events dropped",
                         queued=len(self.producer))
        except self._refused as exc:  # refused outright: too large, or the producer failed for good
            self.counters.add("outputs", "kafka", "failed")
            self._refused_here += 1  # failed, though never produced
            self.repeats(f"kafka:refused:{exc.args[0].name()}", "kafka refused an event", error=exc.args[0].str())
        else:
            self.counters.add("outputs", "kafka", "produced")
        self.producer.poll(0)

    def poll(self) -> None:
        """Serve delivery reports and the client's logs (the sink's timer; never waits)."""
        self.producer.poll(0)

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is None:
            self.counters.add("outputs", "kafka", "delivered")
            return
        self.counters.add("outputs", "kafka", "failed")
        self.repeats(f"kafka:failed:{err.name()}", "kafka delivery failed", error=err.str())

    def _on_error(self, err: KafkaError) -> None:
        """Client-wide errors (all brokers down, authentication): retried by the client itself,
        except a fatal one, after which nothing more is sent."""
        if err.fatal():
            self.log.error("kafka producer failed for good; events are no longer sent", error=err.str())
            return
        self.repeats(f"kafka:error:{err.name()}", "kafka client error; retrying", error=err.str())

    def close(self) -> None:
        """Give what is queued ``drain_s`` to reach the broker; count what is left."""
        self.producer.flush(self.drain_s)
        # flush's own count takes in librdkafka's requests too (metadata, the idempotent producer's
        # id): the events left are those produced with no delivery report, good or bad, yet
        tree = self.counters.get_tree("outputs").get("kafka", {})
        left = tree.get("produced", 0) - tree.get("delivered", 0) - tree.get("failed", 0) - self._refused_here
        if left > 0:
            self.counters.add("outputs", "kafka", "left_at_exit", n=left)
            self.log.warning("kafka events not delivered at exit", left=left, waited_s=self.drain_s)
