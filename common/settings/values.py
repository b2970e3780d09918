"""How the text of a flag (or a file value written as text) becomes a setting's value, for the
values that are not durations, sizes or shares (common.units): a port, a umask, a route, a
Kafka option, a topic prefix, a proxy's network, a polygon, a camera given as NAME=URL.

Each is an argparse ``type``: it returns the value or raises ``argparse.ArgumentTypeError``
saying what would be taken, so a flag and a file key are refused with the same words.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
from typing import Any

from camwire.common.geometry import Polygon, parse_polygon
from camwire.common.logs import redact_url
from camwire.common.paths import camera_name
from camwire.common.wire import CAMERA_NAME_PATTERN

CAMERA_NAME = re.compile(CAMERA_NAME_PATTERN)
DEFAULT_UMASK = 0o027  # files 0640, folders 0750: the camwire group may read, no one else


def umask(text: object) -> int:
    """A umask in octal: ``0027``, ``027``, ``0o027`` (or its value as a number from the file)."""
    try:
        value = text if isinstance(text, int) and not isinstance(text, bool) else int(str(text), 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a umask in octal like 0027, not {text!r}") from None
    if not 0 <= value <= 0o777:
        raise argparse.ArgumentTypeError(f"a umask in octal like 0027, not {text!r}")
    return value


def port(text: str) -> int:
    """A TCP port: 1 to 65535."""
    try:
        number = int(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"a port number (1-65535), not {text!r}") from None
    if not 0 < number < 65536:
        raise argparse.ArgumentTypeError(f"a port number (1-65535), not {text!r}")
    return number


def route(text: str) -> tuple[str, str]:
    """``--route CAMERA=DETECTOR``: a camera name and the detector name its frames go to."""
    camera, sep, detector = str(text).partition("=")
    if not sep or not CAMERA_NAME.fullmatch(camera) or not 0 < len(detector) <= 128:
        raise argparse.ArgumentTypeError(f"a camera and a detector as CAMERA=DETECTOR (a camera name, a detector "
                                         f"name of 1 to 128 characters), not {text!r}")
    return camera, detector


DAEMON_ROLES = ("extractor", "ventilator", "classifier", "sink", "recorder", "web")


def daemon_address(text: str) -> tuple[str, str]:
    """``ROLE=ADDR``: a daemon of the deployment and its ``--serve`` (``sink=tcp://10.0.0.4:5570``)."""
    role, sep, addr = str(text).partition("=")
    role, addr = role.strip(), addr.strip()
    if not sep or role not in DAEMON_ROLES or "://" not in addr:
        raise argparse.ArgumentTypeError(f"ROLE=ADDR, ROLE one of {', '.join(DAEMON_ROLES)} and ADDR that daemon's "
                                         f"serve address (sink=tcp://10.0.0.4:5570), not {str(text)[:100]!r}")
    return role, addr


def kafka_option(text: str) -> tuple[str, str]:
    """``--kafka-option KEY=VALUE`` -> (key, value), refused with the key only (the value may be a
    password)."""
    key, eq, value = str(text).partition("=")
    key = key.strip()
    if not eq or not re.fullmatch(r"[a-z0-9._]+", key):
        raise argparse.ArgumentTypeError(f"KEY=VALUE with a librdkafka setting as KEY (security.protocol=SASL_SSL), "
                                         f"not {re.match(r'[a-z0-9._]*', key)[0][:60] or '(nothing)'}=...")
    if key == "bootstrap.servers":
        raise argparse.ArgumentTypeError("bootstrap.servers comes from --kafka host:port/topic")
    return key, value


def discovery_prefix(text: str) -> str:
    """``--mqtt-discovery``: a topic to publish under (no ``+``, ``#``, empty level), or ``""``: none."""
    prefix = text.strip("/")
    if text and (not prefix or any(c in prefix for c in "+#\0") or "//" in prefix):
        raise argparse.ArgumentTypeError(f"a topic prefix like homeassistant, or \"\" for none, not {text!r}")
    return prefix


def network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A trusted proxy's address or network (``10.0.0.1``, ``10.0.0.0/24``, ``fd00::/8``);
    ValueError naming it (web.door believes X-Forwarded-For only from these)."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"an address or network like 10.0.0.1 or 10.0.0.0/24, not {text!r}") from None


def proxy(text: str) -> str:
    """A --trusted-proxy as given, checked: an address or a network."""
    try:
        network(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def mask_polygon(text: str) -> Polygon:
    """``--mask``: a polygon as JSON, read as camwire.toml's ``masks`` are."""
    try:
        return parse_polygon(json.loads(text), "--mask")
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"a JSON list of [x, y] points, not {text!r} ({exc.msg})") from None
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--mask: ")) from None


def camera_url(text: str) -> tuple[str, list[str]]:
    """``camwire run --camera NAME=URL[|FALLBACK...]``; the name as the wire allows it."""
    name, sep, urls = text.partition("=")
    if not sep or not name or not urls:
        raise argparse.ArgumentTypeError(f"{redact_url(text)!r} is not NAME=URL")
    return camera_name(name), [u for u in urls.split("|") if u]


def text(value: Any) -> str:
    """A value as a flag's word (what ``camwire run`` writes on its children's command lines)."""
    return value if isinstance(value, str) else str(value)
