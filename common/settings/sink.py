"""``[sink]`` and ``camwire sink``'s flags: results in, events out (sink/)."""

from __future__ import annotations

from typing import Annotated

from camwire.common.admission import DEFAULT_IDLE_S, DEFAULT_POOL
from camwire.common.settings.model import Group, opt, section
from camwire.common.settings.shared import DaemonOptions, FileOptions
from camwire.common.settings import values
from camwire.common.units import duration, percent, positive, size

EVENTS_KEEP = 3  # rotated --events files kept beside the live one
DISCOVERY_PREFIX = "homeassistant"  # Home Assistant's own default


class Sink(Group):
    bind: Annotated[str | None, opt("workers push results here", metavar="ADDR", required=True)] = None
    events: Annotated[str | None, opt("append events here as JSON lines", metavar="PATH", required=True)] = None
    events_max_bytes: Annotated[int, opt(f"rotate --events past this size (PATH.1 ... PATH.{EVENTS_KEEP} kept; "
                                         "default 100M)", metavar="SIZE", parse=positive(size))] = 100 << 20
    publish: Annotated[str | None, opt("publish every event here for the recorder and other listeners "
                                       "(tcp://*:5558)", metavar="ADDR")] = None
    publish_detections: Annotated[str | None, opt("publish each frame's detections (boxes only) here for live views "
                                                  "(tcp://*:5560)", metavar="ADDR")] = None
    data_dir: Annotated[str | None, opt("save snapshots and status.db here", metavar="DIR")] = None
    snapshot_retain: Annotated[float, opt("delete snapshots older than this (default 7d)", metavar="AGE",
                                          parse=positive(duration))] = 7 * 86400.0
    snapshot_max_bytes: Annotated[int, opt("keep at most this much of snapshots, the oldest deleted first "
                                           "(default 1G)", metavar="SIZE", parse=size)] = 1 << 30
    min_free: Annotated[float, opt("write no snapshot while less than this share of the disk is free (default 5%)",
                                   metavar="PCT", parse=percent)] = 0.05
    max_cameras: Annotated[int, opt(f"cameras not in --config remembered at once (default {DEFAULT_POOL}); messages "
                                    "about a new one past these are counted and dropped. The file's cameras always "
                                    "have a place", metavar="N", parse=positive(int))] = DEFAULT_POOL
    camera_idle: Annotated[float, opt(f"forget a camera not in --config after this long without a message (default "
                                      f"{DEFAULT_IDLE_S:g}s; never less than twice --silent-after), making room for "
                                      "another", metavar="DURATION", parse=positive(duration))] = DEFAULT_IDLE_S
    silent_after: Annotated[float, opt("an online camera whose extractor sends nothing this long is offline "
                                       "(default 15s)", metavar="S", parse=positive(duration))] = 15.0
    gone_after: Annotated[float, opt("a tracked object not seen for this much capture time ends (default 5s)",
                                     metavar="S", parse=positive(duration))] = 5.0
    update_every: Annotated[float, opt("at most one update per tracked object in this much capture time "
                                       "(default 5s)", metavar="S", parse=duration)] = 5.0
    rules: Annotated[str | None, opt("per-camera event rules and schedules (TOML; see sink.rules)",
                                     metavar="FILE")] = None
    cooldown: Annotated[float | None, opt("no longer used: events are per tracked object (--update-every, "
                                          "--gone-after) and motion a start and an end", metavar="S",
                                          parse=duration, deprecated=True)] = None


class Outputs(Group):
    mqtt: Annotated[str | None, opt("publish events to this broker: mqtt://[user:pass@]host[:port][/prefix]",
                                    metavar="URL", group="outputs")] = None
    mqtt_discovery: Annotated[str, opt("with --mqtt: Home Assistant's MQTT discovery under this prefix (default "
                                       "homeassistant; \"\" for none): per camera motion, a snapshot image, per "
                                       "label occupancy and a count", metavar="PREFIX", parse=values.discovery_prefix,
                                       group="outputs")] = DISCOVERY_PREFIX
    webhook: Annotated[str | None, opt("POST each event as JSON here (retried with backoff)", metavar="URL",
                                       group="outputs")] = None
    webhook_retries: Annotated[int, opt("attempts after the first for an event the webhook did not take (5xx, 429, "
                                        "no answer)", metavar="N", group="outputs")] = 5
    kafka: Annotated[str | None, opt("produce each event as JSON to this Kafka topic, keyed by camera "
                                     "(sink.outputs.kafka)", metavar="HOST:PORT/TOPIC", group="outputs")] = None
    kafka_option: Annotated[list[tuple[str, str]] | None, opt(
        "with --kafka: a librdkafka setting (security.protocol=SASL_SSL, sasl.mechanism, sasl.username, "
        "sasl.password, ssl.ca.location); repeatable", metavar="KEY=VALUE", parse=values.kafka_option, repeat=True,
        group="outputs", secret=True)] = None
    exit_when_drained: Annotated[str | None, opt("comma-separated cameras: exit once each has ended and all its "
                                                 "results are in", metavar="CAMERAS")] = None


SinkSettings = section("SinkSettings", Sink, Outputs, FileOptions, DaemonOptions)
