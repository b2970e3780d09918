"""Prometheus metrics (``--metrics-port``): the daemon's own counters, read at scrape time.

A daemon's counters (common.counters) are the one record of what it did and dropped: the
``--stats`` file is written from them at exit, and a scrape turns the same tree into
``camwire_<daemon>_<key>_total`` counters whose labels the daemon names (``camera``, ``reason``),
so a scrape and the stats file never disagree. Histograms and gauges that have no place in a
stats file (latencies, queue depths, decode rate) are ordinary prometheus-client metrics,
declared here so every daemon spells them the same way.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from prometheus_client import REGISTRY, Gauge as PromGauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

# fine from 50 to 500 ms, where a pool under overload sits: a p99 there reads to within a bucket of 25-50 ms
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
                   10.0, 30.0)

INFERENCE_SECONDS = Histogram("camwire_inference_seconds", "time a detector took per batch",
                              ["detector"], buckets=LATENCY_BUCKETS)
RESULT_LATENCY = Histogram("camwire_result_latency_seconds", "capture time to result at the sink, per camera",
                           ["camera"], buckets=LATENCY_BUCKETS)
EVENT_LATENCY = Histogram("camwire_event_latency_seconds", "capture time to event emitted (end to end)",
                          ["camera", "type"], buckets=LATENCY_BUCKETS)
# a 640x360 snapshot takes a few ms, a 4K one with its box drawn, clean copy and thumbnail tens
ENCODE_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0)
SNAPSHOT_ENCODE_SECONDS = Histogram(
    "camwire_sink_snapshot_encode_seconds",
    "sink: a kept result's pixels to JPEG, per snapshot (LZ4 decoded, box drawn, the JPEGs written: "
    "drawn, clean, thumbnail) or per object frame kept for upload",
    ["what"], buckets=ENCODE_BUCKETS)
# weight of the newest result in CAPTURE_TO_RESULT's moving average: about the last 20 count
CAPTURE_EMA_ALPHA = 0.1
CAPTURE_TO_RESULT = PromGauge(
    "camwire_sink_capture_to_result_seconds",
    "sink: capture time to result arrival per camera, an exponential moving average "
    f"(the newest result weighs {CAPTURE_EMA_ALPHA}: about the last 20 results)",
    ["camera"])


_registered: dict[str, list[Collector]] = {}  # per daemon, all it registered
Gauge = tuple[str, tuple[str, ...], dict[tuple, float]]  # help, label names, {label values: value}


class StatsCollector(Collector):
    """Turns a daemon's counter tree into metric families at each scrape.

    ``labels`` maps a top-level key to the label names of the levels below it, e.g.
    ``{"dropped": ("camera", "reason")}``; a key not listed gets ``key1``, ``key2``...
    ``gauges`` returns extra ``{name: (help, label names, {label values: value})}``.
    """

    def __init__(self, daemon: str, snapshot: Callable[[], dict[str, Any]], labels: dict[str, tuple[str, ...]],
                 gauges: Callable[[], dict[str, Gauge]] | None = None) -> None:
        self.daemon, self.snapshot, self.labels, self.gauges = daemon, snapshot, labels, gauges

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        for key, value in sorted(self.snapshot().items()):
            names = self.labels.get(key, ())
            rows = list(_leaves(value, ()))
            depth = max((len(path) for path, _ in rows), default=0)
            names = tuple(names[:depth]) + tuple(f"key{i + 1}" for i in range(len(names), depth))
            family = CounterMetricFamily(f"camwire_{self.daemon}_{key}", f"{self.daemon} counter {key!r} "
                                         f"(as in its --stats file)", labels=names)
            for path, n in rows:
                family.add_metric(list(path) + [""] * (depth - len(path)), n)
            yield family
        for name, (help_text, names, values) in sorted((self.gauges() if self.gauges else {}).items()):
            family = GaugeMetricFamily(f"camwire_{self.daemon}_{name}", help_text, labels=names)
            for label_values, v in values.items():
                family.add_metric(list(label_values), v)
            yield family


def _leaves(node: Any, path: tuple[str, ...]) -> Iterable[tuple[tuple[str, ...], float]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, (*path, str(k)))
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield path, node


def register_stats(daemon: str, snapshot: Callable[[], dict[str, Any]], labels: dict[str, tuple[str, ...]],
                   gauges: Callable[[], dict] | None = None, collectors: Iterable[Collector] = ()) -> None:
    """Expose a daemon's counters (and gauges), and any ``collectors`` of its own (metrics named
    otherwise, as the sink's ``camwire_camera_up``), to scrapes from now on, in place of what was
    registered for ``daemon`` before (a daemon run twice in one process, as tests do)."""
    for old in _registered.pop(daemon, ()):
        REGISTRY.unregister(old)
    _registered[daemon] = [StatsCollector(daemon, snapshot, labels, gauges), *collectors]
    for collector in _registered[daemon]:
        REGISTRY.register(collector)


def serve_metrics(port: int, addr: str = "127.0.0.1") -> None:
    """Serve ``/metrics`` from a background thread (prometheus-client's own HTTP server)."""
    start_http_server(port, addr=addr)
