"""Home Assistant's MQTT discovery for the sink's cameras. Pure logic: sink.outputs.mqtt publishes it.

What goes to the broker, every message retained (``<prefix>`` is ``--mqtt``'s, ``<ha>`` the
discovery prefix, ``--mqtt-discovery``, ``homeassistant`` by default; ``<node>`` is
``<prefix>_<camera>`` as HA's ids allow: ``[A-Za-z0-9_-]``):

- per camera, once known (``--config``'s cameras, then any camera an event names), three configs:
  ``<ha>/binary_sensor/<node>/connectivity/config`` (device_class ``connectivity``, state on
  ``<prefix>/<camera>/state``, which sink.outputs.mqtt publishes: its ``value_template`` reads
  ``online`` and ``covered``, still connected, as on, ``offline`` and ``failed`` as off),
  ``<ha>/binary_sensor/<node>/motion/config`` (device_class ``motion``, state on
  ``<prefix>/<camera>/motion`` ``ON``/``OFF``) and ``<ha>/image/<node>/snapshot/config`` (the
  best snapshot worth showing: JPEG bytes on ``<prefix>/<camera>/snapshot``, sent at an object's
  start and when it has a clearly better one, sink.outputs.mqtt.worth_showing); and one
  ``<ha>/switch/<node>/<switch>/config`` for each of its switches (``detect``, ``record``,
  ``snapshots``: sink.switches), commanded on ``<prefix>/<camera>/<switch>/set`` and stated on
  ``<prefix>/<camera>/<switch>/state``, ``ON``/``OFF`` both (:func:`switch_topic`);
- per camera and tracked label, from the label's first tracked object on (only ``object``
  events make them, and the sink makes those only for the labels a camera tracks: no other
  event, a ``suggested_mask`` or a detection, names a label here):
  ``<ha>/binary_sensor/<node>/<label>_occupancy/config`` (device_class ``occupancy``, state on
  ``<prefix>/<camera>/<label>/occupied`` ``ON``/``OFF``) and ``<ha>/sensor/<node>/<label>_count/config``
  (on ``<prefix>/<camera>/<label>/count``: the tracked objects of that label present now, one
  more at an object's ``start``, one less at its ``end``; an object whose label changes moves
  between counts). A label is written as a topic level of ``[A-Za-z0-9_-]`` (``traffic light``:
  ``traffic_light``); at most ``MAX_LABELS`` per camera. A count and its occupancy are published
  only when they change.

Every config is one device per camera (identifiers ``[<node>]``, manufacturer ``camwire``) and
says camwire's availability: ``<prefix>/available``, ``online``/``offline`` (the broker's last
will). After each (re)connect everything is published again (:meth:`Discovery.everything`): the
configs and the counts, in case the broker lost its retained messages.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from camwire.common import wire

MAX_LABELS = 256  # per camera: a detector inventing labels cannot grow the entities without bound
ON, OFF = "ON", "OFF"
AVAILABLE, NOT_AVAILABLE = "online", "offline"  # as sink.outputs.mqtt publishes <prefix>/available
# <prefix>/<camera>/state (common.camera_state.EVENT_STATE's values) as connectivity: covered is still connected
CONNECTED_TEMPLATE = "{{ 'ON' if value in ['online', 'covered'] else 'OFF' }}"

Message = tuple[str, str | bytes]  # (topic, payload), retained
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
# each switch's entity: its name and icon in Home Assistant
SWITCH_ENTITIES = {"detect": ("Detection", "mdi:motion-sensor"), "record": ("Recording", "mdi:record-rec"),
                   "snapshots": ("Snapshots", "mdi:image-multiple")}


def slug(name: str) -> str:
    """``name`` as one MQTT topic level and an HA id: ``[A-Za-z0-9_-]``, the rest as ``_``."""
    return _UNSAFE.sub("_", name) or "_"


def switch_topic(prefix: str, camera: str, switch: str, leaf: str) -> str:
    """``<prefix>/<camera>/<switch>/set`` (``leaf`` ``set``: commands in) or ``.../state`` (retained, out)."""
    return f"{prefix}/{camera}/{switch}/{leaf}"


@dataclass(slots=True)
class CameraEntities:
    counts: dict[str, int] = field(default_factory=dict)  # label (slugged) -> tracked objects present


class Discovery:
    """Which entities exist and what their counts are; each method returns what to publish."""

    def __init__(self, ha_prefix: str, prefix: str) -> None:
        self.ha, self.prefix = ha_prefix, prefix
        self.cameras: dict[str, CameraEntities] = {}
        self.objects: dict[str, tuple[str, str]] = {}  # object_id -> (camera, label counted)

    # -- topics -----------------------------------------------------------------------------------

    def state_topic(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/state"

    def snapshot_topic(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/snapshot"

    def occupied_topic(self, camera: str, label: str) -> str:
        return f"{self.prefix}/{camera}/{label}/occupied"

    def count_topic(self, camera: str, label: str) -> str:
        return f"{self.prefix}/{camera}/{label}/count"

    # -- what happens -----------------------------------------------------------------------------

    def camera(self, camera: str) -> list[Message]:
        """A camera's configs, the first time it is named; after that, nothing."""
        if camera in self.cameras:
            return []
        self.cameras[camera] = CameraEntities()
        return self._camera_configs(camera)

    def on_event(self, event: wire.Event) -> list[Message]:
        """What an event changes: its camera's configs if new; for a tracked object (type
        ``object``, the only events that make label entities), its label's configs if new, and
        the count and occupancy it moves."""
        out = self.camera(event.camera)
        if event.type != "object" or event.object_id is None or event.label is None:
            return out
        cam = self.cameras[event.camera]
        label = slug(event.label)
        counted = self.objects.get(event.object_id)
        if event.phase == "end":
            if counted is not None:
                del self.objects[event.object_id]
                out += self._add(counted[0], counted[1], -1)
            return out
        if counted is not None and counted[1] == label:
            return out
        if label not in cam.counts:
            if len(cam.counts) >= MAX_LABELS:
                return out
            cam.counts[label] = 0
            out += self._label_configs(event.camera, label)
        if counted is not None:  # its label changed: it moves from one count to the other
            out += self._add(counted[0], counted[1], -1)
        self.objects[event.object_id] = (event.camera, label)
        return out + self._add(event.camera, label, +1)

    def forget(self, camera: str) -> None:
        """A camera the sink let go (idle, not in the config): its counts and objects; a later event
        names it anew (its retained configs stay with the broker)."""
        self.cameras.pop(camera, None)
        self.objects = {oid: counted for oid, counted in self.objects.items() if counted[0] != camera}

    def everything(self) -> list[Message]:
        """Every config and count: what a broker that may have lost them is told after a connect."""
        out: list[Message] = []
        for camera, cam in self.cameras.items():
            out += self._camera_configs(camera)
            for label, n in cam.counts.items():
                out += self._label_configs(camera, label) + self._states(camera, label, n)
        return out

    # -- inside -----------------------------------------------------------------------------------

    def _add(self, camera: str, label: str, delta: int) -> list[Message]:
        counts = self.cameras[camera].counts
        counts[label] = max(0, counts[label] + delta)
        return self._states(camera, label, counts[label])

    def _states(self, camera: str, label: str, n: int) -> list[Message]:
        return [(self.count_topic(camera, label), str(n)), (self.occupied_topic(camera, label), ON if n else OFF)]

    def _camera_configs(self, camera: str) -> list[Message]:
        return [self._config("binary_sensor", camera, "connectivity", name="Connectivity",
                             device_class="connectivity", state_topic=self.state_topic(camera),
                             value_template=CONNECTED_TEMPLATE, payload_on=ON, payload_off=OFF),
                self._config("binary_sensor", camera, "motion", name="Motion", device_class="motion",
                             state_topic=f"{self.prefix}/{camera}/motion", payload_on=ON, payload_off=OFF),
                self._config("image", camera, "snapshot", name="Snapshot", image_topic=self.snapshot_topic(camera),
                             content_type="image/jpeg"),
                *[self._config("switch", camera, switch, name=name, icon=icon, entity_category="config",
                               command_topic=switch_topic(self.prefix, camera, switch, "set"),
                               state_topic=switch_topic(self.prefix, camera, switch, "state"),
                               payload_on=ON, payload_off=OFF, state_on=ON, state_off=OFF)
                  for switch in wire.SWITCHES for name, icon in [SWITCH_ENTITIES[switch]]]]

    def _label_configs(self, camera: str, label: str) -> list[Message]:
        words = label.replace("_", " ").capitalize()
        return [self._config("binary_sensor", camera, f"{label}_occupancy", name=f"{words} occupancy",
                             device_class="occupancy", state_topic=self.occupied_topic(camera, label),
                             payload_on=ON, payload_off=OFF),
                self._config("sensor", camera, f"{label}_count", name=f"{words} count",
                             state_topic=self.count_topic(camera, label), state_class="measurement")]

    def _config(self, component: str, camera: str, entity: str, **fields: str) -> Message:
        node = slug(f"{self.prefix}_{camera}")
        config = {"unique_id": f"{node}_{entity}", **fields,
                  "availability_topic": f"{self.prefix}/available", "payload_available": AVAILABLE,
                  "payload_not_available": NOT_AVAILABLE,
                  "device": {"identifiers": [node], "name": camera, "manufacturer": "camwire", "model": "camera"},
                  "origin": {"name": "camwire"}}
        return f"{self.ha}/{component}/{node}/{entity}/config", json.dumps(config, separators=(",", ":"))
