"""``camwire.toml``: the cameras and every daemon's settings in one file each daemon reads.

::

    [sockets]                 # where the daemons meet; each address fills the flags named
    frontend = "tcp://127.0.0.1:5555"   # extractor --push, ventilator --frontend
    backend  = "tcp://127.0.0.1:5556"   # ventilator --backend, classifier --connect (a list: several
                                        # ventilators, each then given its own [ventilator] backend)
    results  = "tcp://127.0.0.1:5557"   # classifier --sink, sink --bind
    events   = "tcp://127.0.0.1:5558"   # sink --publish, recorder --events
    frames   = "tcp://127.0.0.1:5559"   # extractor --publish, recorder --subscribe

    [sink]                    # a daemon's own flags, spelled as in its --help (- or _)
    data_dir = "/var/lib/camwire"

    [run]                     # camwire run's own flags (workers = 4)

    [security]                # CURVE on every tcp:// link (common.curve); fills each daemon's flags
    key = "/etc/camwire/keys/host1.key_secret"   # --curve-key: this host's secret key (mode 0600)
    clients = "/etc/camwire/keys/clients"        # --curve-clients: public keys allowed in
    servers = "/etc/camwire/keys/servers"        # --curve-servers: HOST.key, else ventilator.key, sink.key, ...

    [cameras.front]           # a name is ^[A-Za-z0-9_-]{1,64}$
    url = "rtsp://admin:${FRONT_PASSWORD}@10.0.0.5/stream1"
    fallback = ["rtsp://admin:${FRONT_PASSWORD}@10.0.0.5/stream2"]
    fps = 5                   # or every = N, or keyframes = true; default: every frame
    record = true             # published to the recorder (default true)
    publish = "tcp://127.0.0.1:5561"    # an extractor serving this camera alone binds here
    metrics_port = 9121                 # ... and serves its metrics here
    detect = "motion"         # frames to the classifiers only while there is motion (default), or "always"
    masks = [[[0.0, 0.0], [1.0, 0.0], [1.0, 0.1], [0.0, 0.1]]]   # polygons (common.geometry): motion
                              # ignores them, detections standing in them are dropped
    zones = {driveway = [[100, 400], [600, 400], [640, 720], [0, 720]]}   # named polygons events list
    detector = ["objects", "covered"]   # only workers serving these get its frames (default: any)
    [cameras.front.rules]     # see common.rules
    labels = ["person"]

``${VAR}`` in any string comes from the environment, or else from a ``.env`` beside the file;
a file naming a variable that is set nowhere is refused. Every error names the file and line.
Flags given on a daemon's command line override the file.

This module checks the file against the typed model: sockets, security, cameras
(sampling, masks, zones, polled feeds), ``[rules]`` (common.rules), ``[upload]``
(common.upload), and each command's section through its settings (common.settings: the same
declaration its flags come from): the whole file, or only what the daemons of one host read
(a common.config_scope.Scope: a daemon's start and reload, ``check-config --daemons``). What
only a daemon can judge (a detector spec, a rules file named by a flag, its keys) is its
``check`` hook's (camwire.checks runs those of the daemons judged). common/ imports only common/.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from dotenv import dotenv_values

from camwire.common.config_lines import ConfigError, line_of
from camwire.common.config_scope import WEB_FROM, WHOLE, Scope
from camwire.common.env import VAR
from camwire.common.paths import name_list
from camwire.common.rules import rules_from_config
from camwire.common.settings import DAEMONS, SECTIONS as SETTINGS, Settings
from camwire.common.settings.camera import CameraTable, refusal as camera_refusal
from camwire.common.settings.model import build, from_file, settings_of
from camwire.common.upload import upload_from_config
from camwire.common.settings.extractor import DETECT
from camwire.common.geometry import Polygon, parse_masks, parse_zones
from camwire.common.logs import redact_url
from camwire.common.sampling import Sampling
from camwire.common.sockets import TRANSPORTS
from camwire.common.units import duration
from camwire.common.wire import CAMERA_NAME_PATTERN, MAX_SIDE, PIXEL_FORMATS

SECTIONS = tuple(SETTINGS)  # tables of settings: each daemon's, and camwire run's
# [sockets] name -> {daemon: the flag (argparse dest) it fills}
SOCKETS: dict[str, dict[str, str]] = {
    "frontend": {"extractor": "push", "ventilator": "frontend"},
    "backend": {"ventilator": "backend", "classifier": "connect"},
    "results": {"classifier": "sink", "sink": "bind", "recorder": "sink", "web": "sink"},  # the recorder: uploaded
    # clips; the console: switches and review marks
    "events": {"sink": "publish", "recorder": "events"},
    "frames": {"extractor": "publish", "recorder": "subscribe", "web": "subscribe"},
    "detections": {"sink": "publish_detections", "web": "detections"},  # each result's boxes, for live views
}
# [sockets] that may list several addresses -> the daemon that connects to them all; each other
# daemon of the socket binds one, so it must be given its own in its section
SEVERAL = {"backend": "classifier"}
SECURITY = {"key": "curve_key", "clients": "curve_clients", "servers": "curve_servers"}  # -> every daemon's flag
CAMERA_NAME = re.compile(CAMERA_NAME_PATTERN)
MASK = "***"

@dataclass(frozen=True, slots=True)
class CameraConfig:
    """One camera as the file says, secrets resolved; ``shown`` is its URLs as safe to print.
    ``rules`` is its rules table as written (validated at load by the registered parser)."""

    name: str
    sources: tuple[str, ...]
    shown: tuple[str, ...]
    sampling: Sampling
    realtime: bool = False
    record: bool = True
    publish: str | None = None  # an extractor serving this camera alone binds its PUB here
    metrics_port: int | None = None  # ... and serves its metrics here
    rules: dict[str, Any] | None = None
    # the detectors (as workers serve them: --serves NAME, else the --detector spec) its frames go
    # to, one worker of each; empty: any worker (classifier.dispatch)
    detector: tuple[str, ...] = ()
    # frames to the pool only while there is motion (and a heartbeat), or all; None: the extractor's --detect
    detect: str | None = None
    masks: tuple[Polygon, ...] = ()  # motion ignores them; detections standing in them are dropped
    zones: dict[str, Polygon] = field(default_factory=dict)  # named polygons events list (common.geometry)
    # a polled feed (extractor.poll, extractor.feed): seconds between polls of its one http(s) url; None: a stream
    poll: float | None = None
    placeholder: tuple[str, ...] = ()  # sha256 (hex) of its "camera offline" images
    stale_after: int | None = None  # unchanged polls before it is ``stale``; None: extractor.feed's default
    detect_size: int | None = None  # the long side its frames are resized to for the detectors; None: the source's
    weight: float = 1.0  # its share of the pool under overload (classifier.dispatch), against 1 for the others
    pixel_format: str | None = None  # the pixels the detectors get (common.wire.PIXEL_FORMATS); None: the extractor's
    loop: bool = False  # a file played again from its start when it ends (extractor.camera): it never ends


@dataclass(frozen=True)
class Config:
    path: Path
    digest: str  # of the file's bytes: a reload with the same digest changes nothing
    cameras: dict[str, CameraConfig]
    sockets: dict[str, str | list[str]]  # backend may list several ventilators (SEVERAL)
    sections: dict[str, dict[str, Any]]  # section -> {dest: value}, as written (secrets resolved)
    text: str
    shown_sections: dict[str, dict[str, Any]] = field(default_factory=dict)  # each ${VAR} masked
    default_rules: dict[str, Any] | None = None  # the [rules] table as written
    parts: dict[str, Any] = field(default_factory=dict)  # "rules" (common.rules), "upload" (common.upload)
    typed: dict[str, dict[str, Any]] = field(default_factory=dict)  # section -> {setting: value}, as its model reads them
    # what the load judged (common.config_scope): the whole file, or the daemons of one host; the
    # keys of sections it did not judge whose ${VAR} is set nowhere are left out, named here
    scope: Scope = WHOLE
    unresolved: dict[str, frozenset[str]] = field(default_factory=dict)  # section -> such keys

    @property
    def rules(self) -> Any:
        """The rules as common.rules parsed them at load."""
        return self.parts.get("rules")

    def daemon_defaults(self, daemon: str) -> dict[str, Any]:
        """Values for a daemon's flags (argparse dests): its sockets, then its own section. The
        recorder subscribes to [sockets] frames and to every recorded camera's own ``publish``."""
        values: dict[str, Any] = {flags[daemon]: addr for name, addr in self.sockets.items()
                                  if (flags := SOCKETS[name]).get(daemon)}
        if daemon in DAEMONS:
            values.update({SECURITY[k]: v for k, v in self.sections.get("security", {}).items()})
        if daemon == "web":
            values.update({dest: v for dest, (section, key) in WEB_FROM.items()
                           if (v := self.sections.get(section, {}).get(key)) is not None})
        if daemon in ("recorder", "web"):  # the web console shows every published camera, recorded or not
            own = [c.publish for c in self.cameras.values() if c.publish and (c.record or daemon == "web")]
            subscribe = ([values["subscribe"]] if "subscribe" in values else []) + own
            if subscribe:
                values["subscribe"] = list(dict.fromkeys(subscribe))
        values.update(self.sections.get(daemon, {}))
        return values

    def values(self, section: str) -> dict[str, Any]:
        """The file's typed values for ``section``'s settings (only those it gives)."""
        return dict(self.typed.get(section, {}))

    def served_alone(self, cameras: str | None) -> dict[str, Any]:
        """What an extractor serving one camera (``cameras``: its ``--cameras``; none: the file
        has one) takes from that camera's table: its own ``publish`` and ``metrics_port``."""
        chosen = name_list(cameras) or list(self.cameras)
        cam = self.cameras.get(chosen[0]) if len(chosen) == 1 else None
        if cam is None:
            return {}
        return {k: v for k, v in (("publish", cam.publish), ("metrics_port", cam.metrics_port)) if v}

    def settings(self, section: str) -> Settings:
        """``section``'s settings as this file alone gives them (defaults for the rest)."""
        settings = build(SETTINGS[section], self.values(section))
        settings.config, settings.command = self, section
        return settings

    def reloaded(self, running: Settings) -> Settings:
        """The settings a daemon started with ``running`` has under this file: its defaults, this
        file's values over them, and what was given on its command line over both."""
        values = self.values(running.command)
        values.update({name: getattr(running, name) for name in running.given})
        settings = build(type(running), values)
        settings.config, settings.given, settings.command = self, running.given, running.command
        settings.config_loader = running.config_loader
        return settings

    def error(self, where: str, reason: str) -> ConfigError:
        """An error about the dotted key ``where`` (``cameras.yard.fps``), at its line."""
        return ConfigError(self.path, line_of(self.text, where), reason)

    def describe(self) -> dict[str, Any]:
        """What ``check-config`` prints: cameras with secrets masked, sockets, daemons' settings;
        judged for some daemons only (``scope``), theirs alone, and which they were."""
        shown = {"file": str(self.path),
                 "cameras": {c.name: {"sources": list(c.shown), "sampling": c.sampling.describe(),
                                     "realtime": c.realtime, "loop": c.loop, "record": c.record, "publish": c.publish,
                                     "metrics_port": c.metrics_port, "detector": list(c.detector),
                                     "detect": c.detect or "motion", "detect_size": c.detect_size,
                                     "pixel_format": c.pixel_format,
                                     "weight": c.weight, "masks": [m.to_list() for m in c.masks],
                                     "zones": {n: z.to_list() for n, z in c.zones.items()}}
                             for c in self.cameras.values()},
                 "sockets": self.sockets,
                 "daemons": {d: {k: self._shown_setting(d, k, v) for k, v in self.daemon_defaults(d).items()}
                             for d in SECTIONS if self.scope.judges(d)}}
        if not self.scope.whole:
            shown["checked_for"] = sorted(self.scope.daemons)
        return shown

    def _shown_setting(self, section: str, key: str, value: Any) -> Any:
        """A section's value as check-config prints it: ``${VAR}`` parts masked, a secret setting
        (a token, a Kafka option's value) masked even when written in the file itself."""
        secret = {f.name for f in settings_of(SETTINGS[section]) if f.opt and f.opt.secret}
        if key in secret:
            values = value if isinstance(value, list) else [value]
            masked = [f"{str(v).partition('=')[0]}=***" if "=" in str(v) else MASK for v in values]
            return masked if isinstance(value, list) else masked[0]
        return _shown(self.shown_sections.get(section, {}).get(key, value))


def load_config(path: str | os.PathLike[str], scope: Scope = WHOLE) -> Config:
    """Read, resolve and validate ``path``; raises ConfigError naming the line at fault. ``scope``:
    what is judged (common.config_scope), the whole file unless told; the rest is read as far as
    it goes and never refused."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(path, None, f"cannot read: {exc.strerror}") from None
    text = raw.decode("utf-8", errors="replace")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib says "... (at line 7, column 3)": keep its reason, and the line in our form
        m = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        raise ConfigError(path, int(m.group(1)) if m else None, str(exc)) from None
    env = {**{k: v for k, v in dotenv_values(path.parent / ".env").items() if v is not None}, **os.environ}
    cfg = Config(path, hashlib.sha256(raw).hexdigest(), {}, {}, {}, text)
    unknown = set(data) - {"sockets", "cameras", "rules", "security", "upload", *SECTIONS}
    if unknown:
        key = sorted(unknown)[0]
        raise cfg.error(key, f"unknown section [{key}]; known: sockets, cameras, rules, security, upload, "
                             f"{', '.join(SECTIONS)}")
    sockets = data.get("sockets", {})
    if not isinstance(sockets, dict):
        raise cfg.error("sockets", "[sockets] must be a table of addresses")
    for name, addr in sockets.items():
        if name not in SOCKETS:
            raise cfg.error(f"sockets.{name}", f"unknown socket {name!r}; known: {', '.join(SOCKETS)}")
        if name in SEVERAL and isinstance(addr, list) and addr:  # several ventilators: the workers connect to each
            _several(cfg, name, addr, sections_of(data), scope)
            continue
        if not isinstance(addr, str) or not addr.startswith(TRANSPORTS):
            raise cfg.error(f"sockets.{name}", f"sockets.{name}: an address like tcp://host:port, not {addr!r}")
        twin = next((other for other, a in sockets.items() if a == addr and other != name), None)
        if twin is not None and list(sockets).index(twin) < list(sockets).index(name):
            raise cfg.error(f"sockets.{name}", f"sockets.{name}: {addr} is sockets.{twin} already; "
                                               f"each socket needs its own address")
    security = data.get("security", {})
    if not isinstance(security, dict):
        raise cfg.error("security", "[security] must be a table: key, clients, servers")
    for key, value in security.items():
        if key not in SECURITY:
            raise cfg.error(f"security.{key}", f"unknown key security.{key}; known: {', '.join(SECURITY)}")
        if not isinstance(value, str) or not value:
            raise cfg.error(f"security.{key}", f"security.{key}: a path, not {value!r}")
    sections, shown = {"security": dict(security)}, {"security": dict(security)}
    unresolved: dict[str, frozenset[str]] = {}
    for section in SECTIONS:
        table = data.get(section, {})
        if not isinstance(table, dict):
            if scope.judges(section):
                raise cfg.error(section, f"[{section}] must be a table of its flags")
            table = {}  # not this host's daemon: read as far as it goes
        pairs, missing = {}, set()
        for written, value in table.items():
            key = written.replace("-", "_")
            try:
                pairs[key] = _resolve(value, env, cfg, f"{section}.{written}")
            except ConfigError:
                if scope.judges(section) or (section, key) in scope.borrowed:
                    raise
                missing.add(key)  # a ${VAR} this host need not have (another daemon's token)
        sections[section] = {key: pair[0] for key, pair in pairs.items()}
        shown[section] = {key: pair[1] for key, pair in pairs.items()}
        if missing:
            unresolved[section] = frozenset(missing)
    _same_sinks(cfg, sockets, sections, scope, unresolved, data)
    scope = scope.serving(sections.get("extractor", {}).get("cameras") if scope.judges("extractor") else None)
    cameras_table = data.get("cameras") or {}
    if scope.cameras and not isinstance(cameras_table, dict):
        raise cfg.error("cameras", "cameras: a table of [cameras.NAME] tables")
    cameras = {}
    for name, table in (cameras_table.items() if scope.cameras and isinstance(cameras_table, dict) else ()):
        try:
            cameras[name] = _camera(name, table, env, cfg, opens=scope.opens(name))
        except ConfigError:
            if scope.judges_camera(name):
                raise  # else a camera no daemon here serves: left out
    default_rules = data.get("rules")
    if scope.rules and default_rules is not None and not isinstance(default_rules, dict):
        raise cfg.error("rules", "[rules] must be a table")
    parts = {}
    for name, parse in (("rules", lambda: rules_from_config(data)), ("upload", lambda: upload_from_config(data, env))):
        if not getattr(scope, name):
            continue  # no daemon judged here acts on it
        try:
            parts[name] = parse()
        except ValueError as exc:  # "cameras.yard.rules.min_frames: ..." names the key
            raise cfg.error(str(exc).split(":")[0].split(" ")[0], str(exc)) from None
    cfg = Config(path, cfg.digest, cameras, dict(sockets), sections, text, shown, default_rules, parts, scope=scope,
                 unresolved=unresolved)
    for section, model in SETTINGS.items():
        if scope.judges(section):
            cfg.typed[section] = _typed(model, section, cfg)
    return cfg


def sections_of(data: dict[str, Any]) -> dict[str, Any]:
    """The file's daemon sections as written (a table each, or nothing)."""
    return {section: table for section in SECTIONS if isinstance(table := data.get(section), dict)}


SINK_TELLERS = ("recorder", "web")  # they send each camera's messages to its sink by the workers' rule (common.sinks)


def _same_sinks(cfg: Config, sockets: dict[str, Any], sections: dict[str, Any], scope: Scope,
                unresolved: dict[str, frozenset[str]], data: dict[str, Any]) -> None:
    """The recorder and the console (each judged here, and given a section in the file) list the
    workers' sinks: a camera's messages go to the sink that owns it by hashing the list
    (common.sinks), so another list sends a camera's switches or recording pauses to a sink that
    never sees it. Compared as the daemons compare them: the addresses as written, in any order.
    One sink each is no choice at all: the console on another host may well reach the workers'
    one sink by another name. A list with a ${VAR} this host lacks is not compared."""

    def listed(daemon: str) -> tuple[tuple[str, ...], str] | None:
        if "sink" in unresolved.get(daemon, ()):
            return None  # another host's to resolve
        value = sections.get(daemon, {}).get("sink", sockets.get("results"))
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            return None  # none, or not addresses: the daemon's own settings say what is wrong
        where = f"{daemon}.sink" if "sink" in sections.get(daemon, {}) else "sockets.results"
        return tuple(sorted(set(value))), where

    workers = listed("classifier")
    if workers is None:
        return
    for daemon in SINK_TELLERS:
        if (scope.judges(daemon) and isinstance(data.get(daemon), dict) and (own := listed(daemon)) is not None
                and own[0] != workers[0] and len(own[0]) + len(workers[0]) > 2):
            said = "[classifier] sink" if workers[1] == "classifier.sink" else "[sockets] results"
            raise cfg.error(own[1], f"the {daemon} sends to the sinks {list(own[0])}, the workers to {list(workers[0])} "
                                    f"({said}): give [{daemon}] sink the workers' list, written alike, or a camera's "
                                    "messages go to a sink that does not own it")


def _several(cfg: Config, name: str, addrs: list[Any], sections: dict[str, Any], scope: Scope) -> None:
    """``[sockets] name`` as a list: each an address, and every daemon judged here but the one that
    connects to them all given its own address in its section (one ventilator binds one backend)."""
    for addr in addrs:
        if not isinstance(addr, str) or not addr.startswith(TRANSPORTS):
            raise cfg.error(f"sockets.{name}", f"sockets.{name}: addresses like tcp://host:port, not {addr!r}")
    for daemon, flag in SOCKETS[name].items():
        if daemon != SEVERAL[name] and scope.judges(daemon) and flag not in sections.get(daemon, {}):
            raise cfg.error(f"sockets.{name}", f"sockets.{name}: a list is for the {SEVERAL[name]}s, which connect "
                                               f"to each; give the {daemon} its own: [{daemon}] {flag} = \"ADDR\"")


def _typed(model: type[Settings], section: str, cfg: Config) -> dict[str, Any]:
    """``section``'s values (its own table, and what [sockets] and [security] fill in) read
    through its settings model; a key it has no setting for, or a value it refuses, at its line."""
    table = cfg.daemon_defaults(section)
    try:
        return {name: value for name, (_, value) in from_file(model, table, section).items()}
    except KeyError as exc:
        key = str(exc.args[0]).replace("-", "_")
        raise cfg.error(f"{section}.{key}", f"[{section}] {key}: camwire {section} has no flag "
                                            f"--{key.replace('_', '-')}") from None
    except ValueError as exc:
        key, reason = exc.args
        key = key.replace("-", "_")
        raise cfg.error(f"{section}.{key}", f"[{section}] {key}: {reason}") from None


def _camera(name: str, table: Any, env: dict[str, str], cfg: Config, opens: bool = True) -> CameraConfig:
    """Camera ``name``'s table judged; ``opens``: its URLs are filled in as the extractor opens
    them (else a ``${VAR}`` set nowhere stays masked: no daemon here connects to it)."""
    where = f"cameras.{name}"
    if not CAMERA_NAME.fullmatch(name):
        raise ConfigError(cfg.path, line_of(cfg.text, ("cameras", name)),
                          f"cameras.{name!r}: a camera name is 1 to 64 of A-Z a-z 0-9 _ - (no renaming is done)")
    if not isinstance(table, dict):
        raise cfg.error(where, f"[{where}] must be a table")
    try:  # the keys and their types, as common.settings.camera declares them
        msgspec.convert(table, CameraTable, strict=True)
    except msgspec.ValidationError as exc:
        raise cfg.error(*camera_refusal(exc, where, table)) from None
    if not table.get("url"):
        raise cfg.error(where, f"{where}: a camera needs a url")
    urls = [table["url"], *table.get("fallback", [])]
    if not all(isinstance(u, str) and u for u in urls):
        raise cfg.error(f"{where}.fallback", f"{where}.fallback: a list of URLs")
    resolved = [_resolve(u, env, cfg, f"{where}.url") if opens else _resolve_or_mask(u, env) for u in urls]
    try:
        sampling = Sampling(every=table.get("every", 1), fps=table.get("fps"), keyframes=table.get("keyframes", False))
    except ValueError as exc:
        # "--fps must be positive" is about one key; "choose one of ..." about the camera
        flags = re.findall(r"--(\w+)", str(exc))
        key = f"{where}.{flags[0]}" if len(flags) == 1 else where
        raise cfg.error(key, f"{where}: {str(exc).replace('--', '')}") from None
    publish = table.get("publish")
    if publish is not None and not publish.startswith(TRANSPORTS):
        raise cfg.error(f"{where}.publish", f"{where}.publish: an address like tcp://host:port, not {publish!r}")
    port = table.get("metrics_port")
    if port is not None and not 0 < port < 65536:
        raise cfg.error(f"{where}.metrics_port", f"{where}.metrics_port: a port from 1 to 65535, not {port}")
    wanted = table.get("detector", [])
    wanted = [wanted] if isinstance(wanted, str) else wanted
    if not all(isinstance(d, str) and 0 < len(d) <= 128 for d in wanted) or len(set(wanted)) != len(wanted):
        raise cfg.error(f"{where}.detector", f"{where}.detector: a detector name (1 to 128 characters) or a list "
                                             f"of different ones, not {table['detector']!r}")
    detect_size = table.get("detect_size")
    if detect_size is not None and not 16 <= detect_size <= MAX_SIDE:
        raise cfg.error(f"{where}.detect_size", f"{where}.detect_size: a long side in pixels, 16 to {MAX_SIDE}, "
                                                f"not {detect_size}")
    pixel_format = table.get("pixel_format")
    if pixel_format is not None and pixel_format not in PIXEL_FORMATS:
        raise cfg.error(f"{where}.pixel_format", f"{where}.pixel_format: one of {', '.join(PIXEL_FORMATS)}, "
                                                 f"not {pixel_format!r}")
    weight = table.get("weight", 1)
    if not 0 < weight <= 1000:
        raise cfg.error(f"{where}.weight", f"{where}.weight: a share above 0 and at most 1000, not {weight}")
    return CameraConfig(name, tuple(r[0] for r in resolved), tuple(redact_url(r[1]) for r in resolved), sampling,
                        table.get("realtime", False), table.get("record", True), publish, port, table.get("rules"),
                        loop=table.get("loop", False), detector=tuple(wanted), detect_size=detect_size,
                        weight=float(weight), pixel_format=pixel_format,
                        **_motion_keys(table, where, cfg),
                        **_poll_keys(table, where, cfg, resolved[0][0]))


def _poll_keys(table: dict[str, Any], where: str, cfg: Config, url: str) -> dict[str, Any]:
    """``poll``, ``placeholder`` and ``stale_after`` (extractor.feed), each refused at its own line."""
    poll = table.get("poll")
    if poll is not None:
        try:
            poll = duration(poll)
        except argparse.ArgumentTypeError as exc:
            raise cfg.error(f"{where}.poll", f"{where}.poll: {exc}") from None
        if poll <= 0:
            raise cfg.error(f"{where}.poll", f"{where}.poll: a duration above zero, like 30s, not {table['poll']!r}")
        if not url.startswith(("http://", "https://")):
            raise cfg.error(f"{where}.url", f"{where}.url: a polled camera needs an http(s) URL")
        if table.get("fallback"):
            raise cfg.error(f"{where}.fallback", f"{where}.fallback: a polled camera has one url")
    elif "placeholder" in table or "stale_after" in table:
        key = "placeholder" if "placeholder" in table else "stale_after"
        raise cfg.error(f"{where}.{key}", f"{where}.{key}: only for a polled camera (set poll too)")
    hashes = table.get("placeholder", [])
    hashes = [hashes] if isinstance(hashes, str) else hashes
    if not all(isinstance(h, str) and re.fullmatch(r"[0-9a-fA-F]{64}", h) for h in hashes):
        raise cfg.error(f"{where}.placeholder", f"{where}.placeholder: a sha256 in hex (64 characters) or a "
                                                f"list of them, not {table['placeholder']!r}")
    stale_after = table.get("stale_after")
    if stale_after is not None and stale_after < 1:
        raise cfg.error(f"{where}.stale_after", f"{where}.stale_after: a number of polls, 1 or more, not {stale_after}")
    return {"poll": poll, "placeholder": tuple(h.lower() for h in hashes), "stale_after": stale_after}


def _motion_keys(table: dict[str, Any], where: str, cfg: Config) -> dict[str, Any]:
    """``detect``, ``masks`` and ``zones`` (common.geometry), each refused at its own line."""
    detect = table.get("detect")
    if detect is not None and detect not in DETECT:
        raise cfg.error(f"{where}.detect", f"{where}.detect: {' or '.join(DETECT)}, not {detect!r}")
    try:
        masks = parse_masks(table.get("masks", []), f"{where}.masks")
    except ValueError as exc:
        raise cfg.error(f"{where}.masks", str(exc)) from None
    try:
        zones = parse_zones(table.get("zones", {}), f"{where}.zones")
    except ValueError as exc:
        # ``zones = {a = [...]}`` on one line, or a ``[cameras.NAME.zones]`` table: the later line is the key's
        key = str(exc).split(":")[0]
        line = max(line_of(cfg.text, f"{where}.zones") or 0, line_of(cfg.text, key.split(" ")[0]) or 0)
        raise ConfigError(cfg.path, line or None, str(exc)) from None
    return {"detect": detect, "masks": masks, "zones": zones}


def _resolve(value: Any, env: dict[str, str], cfg: Config, where: str) -> tuple[Any, Any]:
    """``value`` with ``${VAR}`` filled in, and the same with each filled-in part masked."""
    if isinstance(value, list):
        pairs = [_resolve(v, env, cfg, where) for v in value]
        return [p[0] for p in pairs], [p[1] for p in pairs]
    if not isinstance(value, str):
        return value, value
    missing = [m.group(1) for m in VAR.finditer(value) if m.group(1) not in env]
    if missing:
        raise cfg.error(where, f"{where}: ${{{missing[0]}}} is set neither in the environment nor in "
                               f"{cfg.path.parent / '.env'}")
    return VAR.sub(lambda m: env[m.group(1)], value), VAR.sub(MASK, value)


def _resolve_or_mask(value: str, env: dict[str, str]) -> tuple[str, str]:
    """A URL as :func:`_resolve` gives it where each ``${VAR}`` is set; one set nowhere is masked."""
    return (VAR.sub(lambda m: env.get(m.group(1), MASK), value), VAR.sub(MASK, value))


def _shown(value: Any) -> Any:
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, list):
        return [_shown(v) for v in value]
    return value
