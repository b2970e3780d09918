"""The sink's MQTT output (the webhook is sink.outputs.webhook, Kafka sink.outputs.kafka).

Each output gets an event as a common.wire.Event and the JSON the sink wrote for it (``body``: the
same bytes as its ``--events`` line). The webhook and Kafka send every event; MQTT, read by people
and by Home Assistant, sends what is worth telling. What goes out, QoS 1:

- ``<prefix>/<camera>/<event type>``: the event's JSON, for every event but a tracked object's
  quiet ``update``. Of an object (type ``object``) it sends the ``start``, the ``end``, and an
  ``update`` only when its ``changes`` name something besides ``score`` (:func:`worth_telling`:
  ``label``, ``zones``, ``stationary``, ``active``, ``snapshot``; a higher top score alone is
  not news). Those held back are counted ``outputs/mqtt/quiet``. Every other type (camera state,
  motion, recording, covered, ``suggested_mask``, ...) goes out as it comes.
- retained, the camera's state on ``<prefix>/<camera>/state`` (``online``, ``offline``,
  ``failed``, ``covered``: common.camera_state.EVENT_STATE), its motion on
  ``<prefix>/<camera>/motion`` (``ON`` at ``motion_start``, ``OFF`` at ``motion_end``) and its
  recording on ``<prefix>/<camera>/recording`` (``paused`` at ``recording_paused``,
  ``recording`` at ``recording_resumed``: the recorder's, sink.recording_state), as Home
  Assistant and NVR users expect;
- retained, ``<prefix>/available``: ``online`` while the sink runs, ``offline`` (at close, or the
  broker's last will) when it is gone;
- retained, each camera's switches (sink.switches) on ``<prefix>/<camera>/<switch>/state``
  (``detect``, ``record``, ``snapshots``: ``ON``/``OFF``), after each connect for every camera
  known (``cameras``, those set before, those events name since) and at each ``camera_switch``
  event. Commands come in on ``<prefix>/<camera>/<switch>/set`` (subscribed at each connect),
  payload ``ON`` or ``OFF`` as Home Assistant's MQTT switch sends: paho's thread queues each as a
  ``wire.Switch`` (``by`` ``mqtt``) that the sink takes on its own thread
  (:meth:`MqttOutput.take_commands`) and applies as it does the console's. A payload, switch or
  camera name that is not one is counted ``outputs/mqtt/bad_command`` and ignored, and so is a
  retained command (``retained_command``: a command is a moment's wish, not a state; a broker
  holding one would set it again at every reconnect); past COMMANDS_MAX waiting, ``dropped_command``;
- with Home Assistant's discovery on (``discovery``, sink.outputs.homeassistant), also retained:
  its configs, each tracked label's ``<prefix>/<camera>/<label>/count`` and ``.../occupied``, and
  on ``<prefix>/<camera>/snapshot`` the JPEG of an object's best snapshot when it changes in a way
  worth showing (:func:`worth_showing`: at the object's ``start``, its first, and when an event's
  ``changes`` name ``snapshot``, a clearly better one): the file written with that event, read
  from ``data_dir``. A snapshot written for any other event (an update better by its score
  alone, a camera's event) is not sent: counted ``outputs/mqtt/snapshot_quiet``. These are sent
  only while connected, and all but the picture again after each connect (a snapshot made while
  the broker is away is not sent: the next one worth showing is), so a long outage queues no
  pictures.

It never holds up the sink: its own thread (paho's) and a bounded queue, counted when full
(``outputs/mqtt/dropped``; what was handed to paho is ``outputs/mqtt/published``).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import SplitResult, unquote, urlsplit

import paho.mqtt.client as mqtt

from camwire.sink.outputs.homeassistant import AVAILABLE, NOT_AVAILABLE, OFF, ON, Discovery, switch_topic
from camwire.sink.store.snapshots import written_for
from camwire.common import wire
from camwire.common.camera_state import EVENT_STATE
from camwire.common.counters import Counters
from camwire.common.logs import RepeatLimiter, redact_url
from camwire.common.paths import CAMERA_NAME

QUEUE_MAX = 10_000
COMMANDS_MAX = 1000  # switch commands waiting for the sink's thread
MOTION_OF = {"motion_start": "ON", "motion_end": "OFF"}  # <prefix>/<camera>/motion, as Home Assistant reads it
RECORDING_OF = {"recording_paused": "paused", "recording_resumed": "recording"}  # <prefix>/<camera>/recording
NOT_NEWS = frozenset({"score"})  # an update's changes that alone are not worth a message


def worth_telling(event: wire.Event) -> bool:
    """Whether MQTT sends ``event``: all but a tracked object's ``update`` whose ``changes`` name
    nothing besides a higher score."""
    return not (event.type == "object" and event.phase == "update" and set(event.changes) <= NOT_NEWS)


def worth_showing(event: wire.Event) -> bool:
    """Whether ``event``'s snapshot goes to the retained ``<prefix>/<camera>/snapshot``: a
    tracked object's, written with this event (sink.store.snapshots.written_for), at its
    ``start`` or when its ``changes`` name a clearly better ``snapshot``."""
    return (event.type == "object" and written_for(event)
            and (event.phase == "start" or "snapshot" in event.changes))


def mqtt_address(url: str) -> SplitResult:
    """``--mqtt``'s URL split, or ValueError saying the form it must have (the sink's check, so
    check-config, refuses what MqttOutput would)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a port that is not a number raises here, not in the sink's thread
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise ValueError(f"--mqtt: an address like mqtt://host:1883/camwire, not {redact_url(url)}")
    return parts


class MqttOutput:
    """Publishes events to a broker given as ``mqtt://[user:password@]host[:port][/prefix]``.
    ``discovery``: Home Assistant's discovery prefix ("" for none); ``cameras``: known before any
    event names them (``--config``'s); ``data_dir``: what snapshot paths are relative to;
    ``switches``: the switches of the cameras set before (sink.switches.Switches.shown)."""

    def __init__(self, url: str, counters: Counters, log, client_id: str = "camwire-sink", discovery: str = "",
                 cameras: Iterable[str] = (), data_dir: Path | None = None,
                 switches: Mapping[str, Mapping[str, bool]] | None = None) -> None:
        parts = mqtt_address(url)
        self.prefix = parts.path.strip("/") or "camwire"
        self.counters, self.log = counters, log.bind(mqtt=redact_url(url))
        self.repeats = RepeatLimiter(self.log)  # paho's thread's own: a bad command logged once a minute
        self.ha = Discovery(discovery, self.prefix) if discovery else None
        cameras = list(cameras)
        for camera in cameras if self.ha else ():
            self.ha.camera(camera)  # published at connect, with everything else
        self.data_dir = data_dir
        # the sink's thread and paho's (at a connect) both publish Home Assistant's state and the
        # switches': one at a time, so what is sent last is the newest; _ready: connected and told everything
        self._ha_lock = threading.Lock()
        self._ready = False
        # each camera known: its switches as last told (all on until told otherwise)
        self.switches: dict[str, dict[str, bool]] = {camera: dict.fromkeys(wire.SWITCHES, True) for camera in cameras}
        self.switches.update({camera: dict(shown) for camera, shown in (switches or {}).items()})
        self.commands: queue.Queue[wire.Switch] = queue.Queue(COMMANDS_MAX)  # paho's thread -> the sink's
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        if parts.username:
            self.client.username_pw_set(unquote(parts.username), unquote(parts.password or "") or None)
        self.client.max_queued_messages_set(QUEUE_MAX)
        self.client.will_set(f"{self.prefix}/available", NOT_AVAILABLE, qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.message_callback_add(switch_topic(self.prefix, "+", "+", "set"), self._on_command)
        self.client.connect_async(parts.hostname, parts.port or 1883)
        self.client.loop_start()  # paho's network thread: reconnects, and queues while disconnected
        self._last: mqtt.MQTTMessageInfo | None = None

    def _on_connect(self, client: mqtt.Client, _userdata, _flags, reason, _props) -> None:
        if reason.is_failure:
            self.log.warning("mqtt connect refused", reason=str(reason))
            return
        self.log.info("mqtt connected")
        client.publish(f"{self.prefix}/available", AVAILABLE, qos=1, retain=True)
        client.subscribe(switch_topic(self.prefix, "+", "+", "set"), qos=1)
        with self._ha_lock:
            if self.ha is not None:
                for topic, payload in self.ha.everything():
                    self._publish(topic, payload, retain=True)
                self._ready = True
            for camera, shown in self.switches.items():
                self._switch_states(camera, shown)

    def _on_disconnect(self, _client: mqtt.Client, _userdata, _flags, _reason, _props) -> None:
        with self._ha_lock:
            self._ready = False

    def _on_command(self, _client: mqtt.Client, _userdata, message: mqtt.MQTTMessage) -> None:
        """Paho's thread: ``<prefix>/<camera>/<switch>/set`` ``ON``/``OFF``, queued for the sink's."""
        if message.retain:
            self._refuse("retained_command", message, "a retained switch command is ignored: publish it unretained")
            return
        camera, switch, _set = message.topic[len(self.prefix) + 1:].split("/", 2)
        payload = message.payload.decode(errors="replace").strip().upper()
        if switch not in wire.SWITCHES or not CAMERA_NAME.fullmatch(camera) or payload not in (ON, OFF):
            self._refuse("bad_command", message, f"a switch command is <prefix>/<camera>/<{'|'.join(wire.SWITCHES)}>"
                         "/set with ON or OFF")
            return
        try:
            self.commands.put_nowait(wire.Switch(camera=camera, switch=switch, on=payload == ON, by="mqtt"))
        except queue.Full:
            self.counters.add("outputs", "mqtt", "dropped_command")
            return
        self.counters.add("outputs", "mqtt", "command")

    def _refuse(self, outcome: str, message: mqtt.MQTTMessage, why: str) -> None:
        self.counters.add("outputs", "mqtt", outcome)
        self.repeats(f"command:{outcome}", "mqtt switch command ignored", why=why, topic=message.topic[:200],
                     payload=message.payload[:40].decode(errors="replace"))

    def take_commands(self) -> list[wire.Switch]:
        """The sink's thread: the switch commands queued since the last call."""
        out = []
        while True:
            try:
                out.append(self.commands.get_nowait())
            except queue.Empty:
                return out

    def _switch_states(self, camera: str, shown: Mapping[str, bool]) -> None:
        for switch, on in shown.items():
            self._publish(switch_topic(self.prefix, camera, switch, "state"), ON if on else OFF, retain=True)

    def send(self, event: wire.Event, body: bytes) -> None:
        self._switches(event)
        if worth_telling(event):
            self._publish(f"{self.prefix}/{event.camera}/{event.type}", body, retain=False)
        else:
            self.counters.add("outputs", "mqtt", "quiet")
        if (state := EVENT_STATE.get(event.type)) is not None:
            self._publish(f"{self.prefix}/{event.camera}/state", state, retain=True)
        if (motion := MOTION_OF.get(event.type)) is not None:
            self._publish(f"{self.prefix}/{event.camera}/motion", motion, retain=True)
        if (recording := RECORDING_OF.get(event.type)) is not None:
            self._publish(f"{self.prefix}/{event.camera}/recording", recording, retain=True)
        if self.ha is not None:
            self._home_assistant(event)  # a quiet update too: the counts follow every event

    def _switches(self, event: wire.Event) -> None:
        """A camera first named (its switches all on, or as the sink kept them), or a switch set:
        the retained states follow."""
        told = wire.switch_told(event)
        if told is None and event.camera in self.switches:
            return
        with self._ha_lock:
            shown = self.switches.setdefault(event.camera, dict.fromkeys(wire.SWITCHES, True))
            if told is not None:
                shown[told[0]] = told[1]
            self._switch_states(event.camera, {told[0]: told[1]} if told is not None else shown)

    def forget(self, camera: str) -> None:
        """The sink let ``camera`` go: Home Assistant's record of it goes too (sink.outputs.homeassistant),
        and its switches' unless one is off (their states stay with the broker)."""
        with self._ha_lock:
            if self.ha is not None:
                self.ha.forget(camera)
            if all(self.switches.get(camera, {}).values()):
                self.switches.pop(camera, None)

    def _home_assistant(self, event: wire.Event) -> None:
        with self._ha_lock:
            changes = self.ha.on_event(event)  # kept even while away: everything() tells it at the connect
            if not self._ready:
                return
            for topic, payload in changes:
                self._publish(topic, payload, retain=True)
            if self.data_dir is None or not written_for(event):
                return
            if not worth_showing(event):
                self.counters.add("outputs", "mqtt", "snapshot_quiet")
                return
            try:  # the file just written, from the page cache
                image = (self.data_dir / event.snapshot).read_bytes()
            except OSError:
                self.counters.add("outputs", "mqtt", "snapshot_unreadable")
                return
            self._publish(self.ha.snapshot_topic(event.camera), image, retain=True)

    def _publish(self, topic: str, payload: str | bytes, retain: bool) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            self.counters.add("outputs", "mqtt", "dropped")
        else:
            self.counters.add("outputs", "mqtt", "published")
            self._last = info

    def close(self, drain_s: float = 2.0) -> None:
        """Wait (a little) for what is queued to reach the broker, then say goodbye."""
        deadline = time.monotonic() + drain_s
        if self._last is not None and self.client.is_connected():
            try:
                self._last.wait_for_publish(timeout=max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                pass  # not sent: counted as published, lost with the connection
        if self.client.is_connected():
            self.client.publish(f"{self.prefix}/available", NOT_AVAILABLE, qos=1, retain=True).wait_for_publish(
                timeout=max(0.1, deadline - time.monotonic()))
        self.client.disconnect()
        self.client.loop_stop()
