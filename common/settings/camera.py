"""``[cameras.NAME]``: one camera as camwire.toml writes it, each key's type and meaning declared
once. common.config reads a table through it (a key it does not declare, or a value of another
type, is refused at its line), then resolves ``${VAR}`` and judges what types cannot say (an
address's transport, a polygon, a poll's URL) into a ``CameraConfig``."""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec


def key(help: str) -> msgspec.Meta:
    return msgspec.Meta(description=help)


class CameraTable(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    url: Annotated[str, key("the source: a file, rtsp://, http(s)://, an HLS .m3u8; ${VAR} from the environment")]
    fallback: Annotated[list[Any], key("sources tried in order when the url fails")] = []
    every: Annotated[int, key("send every N-th decoded frame on")] = 1
    fps: Annotated[int | float | None, key("send about this many frames a second")] = None
    keyframes: Annotated[bool, key("decode and send key frames only")] = False
    realtime: Annotated[bool, key("a file read at its own pace, as a camera would send it")] = False
    loop: Annotated[bool, key("a file played again from its start when it ends (seq and capture times go on); "
                              "it never ends")] = False
    record: Annotated[bool, key("published to the recorder")] = True
    rules: Annotated[dict[str, Any] | None, key("what its detections must be to become events (common.rules)")] = None
    publish: Annotated[str | None, key("an extractor serving this camera alone publishes its video here")] = None
    metrics_port: Annotated[int | None, key("... and serves its metrics here")] = None
    detector: Annotated[str | list[Any], key("the detectors (workers' --serves) its frames go to; "
                                             "none: any worker")] = []
    detect: Annotated[str | None, key("motion: frames to the pool only while there is motion; always: all")] = None
    masks: Annotated[list[Any], key("polygons motion ignores; detections standing in them are dropped")] = []
    zones: Annotated[dict[str, Any], key("named polygons that events list")] = {}
    poll: Annotated[str | int | float | None, key("a polled feed: how often its one http(s) url is fetched")] = None
    placeholder: Annotated[str | list[Any], key("sha256 of the feed's 'camera offline' images")] = []
    stale_after: Annotated[int | None, key("unchanged polls before a polled feed is stale")] = None
    detect_size: Annotated[int | None, key("the long side, in pixels, its frames are resized to once for the "
                                           "detectors (e.g. the model's 416 or 640); none: the source's")] = None
    pixel_format: Annotated[str | None, key("the pixels the detectors get: bgr, rgb, gray or yuv420 (the format its "
                                            "detector takes saves a conversion per frame; a worker converts "
                                            "any other, counted); none: the extractor's --pixel-format")] = None
    weight: Annotated[int | float, key("its share of the pool under overload, against 1 for every other "
                                       "camera")] = 1


KEYS = tuple(f.name for f in msgspec.structs.fields(CameraTable))


def refusal(exc: msgspec.ValidationError, where: str, table: dict[str, Any]) -> tuple[str, str]:
    """msgspec's reason for refusing ``table`` as (the dotted key at fault, the line to print)."""
    text = str(exc)
    if (m := _between(text, "unknown field `")) is not None:
        return f"{where}.{m}", f"{where}: unknown key {m!r}; known: {', '.join(KEYS)}"
    if _between(text, "missing required field `") is not None:
        return where, f"{where}: a camera needs a url"
    name = m.group(1) if (m := re.search(r"\$\.(\w+)", text)) else ""
    if name in table:
        return f"{where}.{name}", f"{where}.{name}: wrong type {type(table[name]).__name__}"
    return where, f"{where}: {text}"


def _between(text: str, start: str) -> str | None:
    i = text.find(start)
    return text[i + len(start):].split("`")[0] if i >= 0 else None
