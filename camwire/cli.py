"""camwire: watch many video cameras at once. One sub-command per daemon (extractor: cameras in,
ventilator and classifier workers: detection, sink: events, recorder: video on disk), ``run``
for all of them on one host, and tools (check-config, status, clip).

Every daemon reads one camwire.toml (``--config FILE``); flags given on its command line
override the file. Durations are written ``30s``/``5m``/``7d``, sizes ``500M``/``200G``.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable

from camwire import __version__
from camwire.common.config import DAEMONS, SECTIONS, SECURITY, Config, ConfigError, load_config, register_part
from camwire.common.curve import Curve
from camwire.common.daemon import EXIT_OPTIONS
from camwire.common.metrics import serve_metrics
from camwire.common.paths import camera_name, name_list, writable_dir, writable_file
from camwire.common.sockets import OperatorError

# sub-command -> (module, one-line help); modules are imported only when their command runs
COMMANDS = {
    "extractor": ("camwire.extractor.daemon", "read cameras (RTSP, HTTP, HLS, files) and send their frames on"),
    "ventilator": ("camwire.classifier.ventilator", "share the cameras' frames out to classifier workers"),
    "classifier": ("camwire.classifier.worker", "a worker: run a detector on the cameras' frames"),
    "sink": ("camwire.sink.daemon", "turn detections into events, snapshots and camera status"),
    "recorder": ("camwire.recorder.daemon", "record cameras into a ring of files; keep the files around events"),
    "clip": ("camwire.recorder.clip", "write one file for a camera and a time range from the recorder's ring"),
    "run": ("camwire.supervisor", "run every daemon on this host, supervised (--config FILE or --camera)"),
    "status": ("camwire.status", "print the cameras and workers as the sink last saw them"),
    "check-config": ("camwire.checkconfig", "validate a camwire.toml as the daemons would, secrets masked"),
    "sample-clip": ("camwire.sample", "write the built-in sample clip (H.264) for demos and tests"),
    "web": ("camwire.web.daemon", "the web console: live views, events, recordings and status in a browser"),
    "keygen": ("camwire.keygen", "write a CURVE key pair for a daemon, to encrypt and authenticate its links"),
}
# what ``camwire COMMAND --help`` says: for the person running it (what it does, what to point it
# at, where its files go); the modules' docstrings are notes for the people who work on them
DESCRIPTIONS = {
    "keygen": """\
Write a CURVE key pair: NAME.key (the public key: copy it to the hosts that talk to this one)
and NAME.key_secret (this daemon's secret: mode 0600, never copied). A daemon given
--curve-key NAME.key_secret (or [security] key) encrypts every tcp:// link; a daemon that binds
lets in only the clients whose NAME.key is in its --curve-clients folder, and a daemon that
connects checks the server against --curve-servers (ventilator.key, sink.key, extractor.key).
An existing key is never overwritten.""",
    "extractor": """\
Read cameras and send their frames on: to the ventilator for detection (--push) and, with
--publish, to the recorder.

Which cameras: --config camwire.toml (its [cameras.NAME] tables; --cameras to serve only some of
them), or one camera as --camera NAME --source URL (a file, rtsp://, http(s)://, an HLS .m3u8;
repeat --source for fallbacks). A camera that drops is reconnected; one whose source can never
work (no such file, 404, not a video) is reported failed, with the reason, in camwire status and
tried again every --failed-retry. It writes nothing to disk but --stats.

Exit status: 0 stopped, or every file read to its end; 1 crashed; 2 a mistake in the options or
the file; 3 a file camera failed for good (without --config).""",
    "ventilator": """\
Share the cameras' frames out among the classifier workers: each worker gets frames as it asks
for them, so a slow or busy worker never holds up the others. Run one per pipeline.

Extractors send to --frontend; workers connect to --backend. When files are read faster than the
workers keep up, reading pauses (--max-backlog); a frame a worker holds past --frame-deadline, or
held by a worker gone silent, is counted lost. It keeps nothing on disk.""",
    "classifier": """\
A worker: run a detector on the cameras' frames and send what it finds to the sink.

--detector picks it: covered (a lens covered or blinded), hog (people), onnx:MODEL.onnx
(a YOLO model, on the GPU when there is one), roboflow:MODEL_ID; join several with +. Motion
is not found here: the extractor sees every frame and sends frames on only while there is
motion (a camera's detect = "always" sends them all). Point
--connect at the ventilator's --backend and --sink at the sink's --bind. Start as many workers as
the detector needs; --instance N names each one and gives it its own metrics port. A frame that
cannot be read, or a detector error, reaches the sink as a result with the error (camwire status
shows the camera degraded). It keeps nothing on disk.""",
    "sink": """\
Turn what the workers found into events (motion starting and ending, an object, a camera
covered or gone offline, with the reason) and keep each camera's status.

Workers send to --bind. Each event is appended to --events (JSON lines, rotated past
--events-max-bytes), saved with a snapshot under --data-dir/snapshots (bounded by age and size),
sent to --mqtt and --webhook, and published on --publish for the recorder. --data-dir/status.db
holds the cameras' and workers' status that camwire status prints. --rules sets per-camera rules
and schedules. A full disk never stops events reaching MQTT and the webhook. SIGHUP reopens
--events (for logrotate) and reads the rules again.""",
    "recorder": """\
Record every camera into a ring of video files, and keep the video around events.

Point --subscribe at each extractor's --publish and --events at the sink's --publish. Files go
under --dir: DIR/CAMERA/<UTC start>.mkv, indexed in DIR/index.db, and clips kept around events
under DIR/kept. The ring is bounded by age (--retain), size (--max-bytes) and the free space left
on its disk (--min-free); kept clips by their own age and size (--keep-retain, --keep-max-bytes).
A full disk pauses recording (the gap is counted) until space returns. Cut a clip out with
camwire clip.""",
    "clip": """\
Write one video file of a camera between two times, cut from the recorder's files (--dir: the
recorder's --dir). The video is copied, never re-encoded; the container follows --out's name
(.mkv, .mp4).""",
    "run": """\
Run every daemon on this host, supervised: cameras in, detection, events, and recording.

Give --config camwire.toml (its cameras and every daemon's settings: MQTT, webhook, metrics
ports, the recorder when [recorder] names a dir), or cameras as --camera NAME=URL with
--detector. Flags given here override the file. Events go to --events and the file's outputs;
snapshots and status.db (for camwire status) to --data-dir; video to --record DIR. A daemon that
dies is restarted; SIGHUP makes every daemon reload; SIGTERM or Ctrl-C stops them all in order.
With --once (every source a file) it ends when every camera is done: exit 1 if a camera failed.""",
    "status": """\
Print each camera's state (online, offline, failed, degraded, covered) with its latest error, and
each worker's load, as the sink last wrote them (DATA_DIR/status.db); first, whether that is
current or the sink has stopped reporting. Works while the pipeline runs and after it stopped.""",
    "web": """\
The web console: every camera live (boxes, zones and motion drawn, its state and why), the
events with their snapshots and clips, the recordings on a timeline (pick a range, play it,
download it), and the workers, drops and disks; its JSON API is in the README.

It reads what the other daemons write and publish: the sink's --events file and --data-dir, the
recorder's --dir (--recordings), the extractors' --publish (--subscribe, only while someone
watches) and the sink's --publish-detections (--detections). It listens on 127.0.0.1 unless
--bind says otherwise, which needs a token ([web] token = "${CAMWIRE_WEB_TOKEN}"); every change
(reload) needs the token.""",
    "check-config": """\
Check a camwire.toml as every daemon would read it, and print the cameras, sockets and settings
it comes to, secrets masked. Exit 0 when every daemon would take it; else exit 2 with
FILE:LINE: what to fix (the line the daemon itself would refuse to start with).""",
    "sample-clip": """\
Write the built-in sample clip (H.264: shapes moving across a street-like scene, the lens covered
for a while in the middle), to try camwire without a camera.""",
}
CONFIGURED = SECTIONS  # the commands that take --config and a section of the file
# path flags checked before a daemon starts: dest -> (flag, a file or a folder)
PATH_FLAGS = {"events": ("--events", "file"), "stats": ("--stats", "file"), "data_dir": ("--data-dir", "dir"),
              "dir": ("--dir", "dir"), "record": ("--record", "dir")}
# dests that are not paths the command writes, though named like PATH_FLAGS: the recorder's
# events is an address; the web console only reads the sink's events file and data dir
ADDRESS_DESTS = {"recorder": {"events"}, "web": {"events", "data_dir"}}


def _rules_part(data: dict[str, Any], _env: dict[str, str]) -> Any:
    from camwire.sink.rules import rules_from_config
    return rules_from_config(data)


# common/ imports only common/: the sink's rules are parsed (so validated, with their line) by
# every load of the file through this registration
register_part("rules", _rules_part)


def _upload_part(data: dict[str, Any], env: dict[str, str]) -> Any:
    from camwire.common.upload import upload_from_config
    return upload_from_config(data, env)


register_part("upload", _upload_part)  # [upload]: the sink's object storage (common.upload)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; each option's default and, for durations and sizes, its units."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        kind = getattr(action.type, "__name__", "")
        if "duration" in kind and "30s" not in text:
            text += " (a duration: 30s, 5m, 2h, 7d)"
        elif "size" in kind and "200G" not in text:
            text += " (a size: 500M, 200G, 1.5T)"
        if ("default" not in text and action.option_strings and action.default not in (None, False)
                and action.default is not argparse.SUPPRESS):
            text += f" (default: {_in_units(action.default, kind)})"
        return text


def _in_units(default: Any, kind: str) -> str:
    """A numeric default as it would be written: 86400.0 seconds as ``1d``, 1073741824 bytes as
    ``1G``; anything else as argparse shows it."""
    if isinstance(default, (int, float)) and not isinstance(default, bool) and default > 0:
        if "duration" in kind:
            for unit, seconds in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1), ("ms", 0.001)):
                n = default / seconds
                if n >= 1 and abs(n - round(n)) < 1e-9:
                    return f"{round(n)}{unit}"
        elif "size" in kind:
            for unit, scale in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("k", 1 << 10)):
                if default >= scale and default % scale == 0 and (unit != "k" or default < 1 << 20):
                    return f"{default // scale}{unit}"
            if default >= 1 << 20:
                return f"{default} bytes, about {default / (1 << 20):.0f}M"
    return "%(default)s"


def build_parser(only: str | set[str] | None = None) -> tuple[argparse.ArgumentParser,
                                                               dict[str, argparse.ArgumentParser]]:
    """The ``camwire`` parser and its sub-parsers (all of them, or just ``only``'s): a command's
    module is imported only when its parser is built."""
    if isinstance(only, str):
        only = {only}
    parser = argparse.ArgumentParser(prog="camwire", description=__doc__, formatter_class=HelpFormatter,
                                     allow_abbrev=False)  # --detect is not --detector
    parser.add_argument("--version", action="version", version=f"camwire {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    subs = {}
    for name, (module_name, help_text) in COMMANDS.items():
        if only is not None and name not in only:
            sub.add_parser(name, help=help_text, allow_abbrev=False)
            continue
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=DESCRIPTIONS[name], formatter_class=HelpFormatter,
                           allow_abbrev=False)
        module.add_arguments(p)
        if name in CONFIGURED:
            p.add_argument("--config", metavar="FILE", help="camwire.toml: cameras, sockets and this daemon's "
                           "settings; flags given here override it")
            p.add_argument("--umask", type=umask, default=DEFAULT_UMASK, metavar="MODE",
                           help="files camwire writes (recordings, snapshots, events, databases) are 0640 and "
                                "folders 0750 with the default; 0022 makes them readable by every user")
        if name in DAEMONS:
            p.add_argument("--metrics-port", type=port, metavar="PORT",
                           help="serve Prometheus metrics on http://ADDR:PORT/metrics (ADDR: --metrics-bind)")
            p.add_argument("--metrics-bind", default="127.0.0.1", metavar="ADDR",
                           help="the address the metrics listen on: this host only by default; 0.0.0.0 (or one "
                                "interface's address) for a Prometheus on another host")
            p.add_argument("--curve-key", metavar="FILE",
                           help="this daemon's secret key (camwire keygen; mode 0600): encrypt and authenticate "
                                "every tcp:// link ([security] key)")
            p.add_argument("--curve-clients", metavar="DIR",
                           help="public keys (*.key) of the clients allowed to connect to what this daemon binds; "
                                "read again on SIGHUP ([security] clients)")
            p.add_argument("--curve-servers", metavar="DIR",
                           help="public keys of the daemons this one connects to: ventilator.key, sink.key, "
                                "extractor.key ([security] servers)")
        p.set_defaults(main=module.main)
        subs[name] = p
    return parser, subs


# -- the file judged by the daemons' own flags ---------------------------------------------------

def _convert(action: argparse.Action, value: Any) -> Any:
    """``value`` from the file as the command line would have it: through the flag's type and
    choices. Raises ValueError with the reason."""
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise ValueError(f"true or false, not {value!r}")
        return value
    if isinstance(action, argparse._AppendAction):
        return [_convert_one(action, v) for v in (value if isinstance(value, list) else [value])]
    return _convert_one(action, value)


def _convert_one(action: argparse.Action, value: Any) -> Any:
    if isinstance(value, bool) or isinstance(value, (list, dict)):
        raise ValueError(f"one value as on the command line, not {value!r}")
    text = value if isinstance(value, str) else str(value)
    converted: Any = text
    if action.type is not None:
        try:
            converted = action.type(text)
        except argparse.ArgumentTypeError as exc:
            raise ValueError(str(exc)) from None
        except (TypeError, ValueError):
            raise ValueError(f"invalid {getattr(action.type, '__name__', 'value')} value: {value!r}") from None
    if action.choices is not None and converted not in action.choices:
        raise ValueError(f"one of {', '.join(map(str, action.choices))}, not {value!r}")
    return converted


def convert_section(sub: argparse.ArgumentParser, section: str, cfg: Config) -> dict[str, Any]:
    """The file's values for ``section``'s flags (argparse dests), each converted through the flag's
    own type and choices; a key the command has no flag for, or a value it would refuse, raises
    ConfigError at its line."""
    actions = {a.dest: a for a in sub._actions}
    values = {}
    for dest, value in cfg.daemon_defaults(section).items():
        action = actions.get(dest)
        where = f"{section}.{dest}"
        if action is None or dest in ("config", "help", "version", "main"):
            raise cfg.error(where, f"[{section}] {dest}: camwire {section} has no flag --{dest.replace('_', '-')}")
        try:
            values[dest] = _convert(action, value)
        except ValueError as exc:
            raise cfg.error(where, f"[{section}] {dest}: {exc}") from None
    return values


def run_check(section: str, args: argparse.Namespace) -> None:
    """The command's own ``check(args)`` hook, if its module has one: what the daemon would refuse
    (an address without a transport, a rules file, a detector spec), judged before it starts,
    without opening a socket or loading a model. Raises ValueError naming the flag."""
    module = importlib.import_module(COMMANDS[section][0])
    check: Callable[[argparse.Namespace], None] | None = getattr(module, "check", None)
    try:
        if check is not None:
            check(args)
        if section in DAEMONS:
            Curve.from_args(args)  # the key files: readable, keys, and the secret one private
    except (argparse.ArgumentTypeError, OperatorError) as exc:
        raise ValueError(str(exc)) from None


def _namespace(sub: argparse.ArgumentParser, values: dict[str, Any]) -> argparse.Namespace:
    ns = argparse.Namespace(**{a.dest: a.default for a in sub._actions if a.default is not argparse.SUPPRESS})
    for key, value in values.items():
        setattr(ns, key, value)
    return ns


@functools.cache
def _all_parsers() -> dict[str, argparse.ArgumentParser]:
    """The parsers of every command a camwire.toml configures (not the tools'): a daemon that
    judges the whole file imports no more than those commands' modules."""
    return build_parser(set(SECTIONS))[1]


def load_full(path: str | Path, running: str | None = None) -> Config:
    """``path`` loaded and judged whole, as check-config does: every section by its command's own
    flags and check hook. What a daemon's ``config_loader`` is, so a reload with a mistake in any
    section is refused whole. Raises ConfigError at the line at fault. ``running``: the daemon
    that asks; one that decodes no pixels judges detector specs without building them (no OpenCV
    for the ventilator), the classifier and check-config build them."""
    cfg = load_config(path)
    subs = _all_parsers()
    for section in SECTIONS:
        values = convert_section(subs[section], section, cfg)
        if not cfg.sections.get(section):
            continue  # nothing of this command's own in the file: its hook has nothing to judge
        ns = _namespace(subs[section], values)
        ns.config, ns.command = cfg, section
        ns.build_detectors = running in (None, "classifier", "run")
        try:
            run_check(section, ns)
        except ValueError as exc:
            raise cfg.error(_key_named(str(exc), section, cfg), f"[{section}] {exc}") from None
    return cfg


def _key_named(message: str, section: str, cfg: Config) -> str:
    """The dotted key a hook's message is about: the first ``--flag`` it names that the section
    sets, else the section itself."""
    security = {dest: key for key, dest in SECURITY.items()}  # [security] fills every daemon's --curve-*
    for flag in re.findall(r"--([a-z][a-z0-9-]*)", message):
        dest = flag.replace("-", "_")
        if dest in cfg.sections.get(section, {}):
            return f"{section}.{dest}"
        if dest in security and security[dest] in cfg.sections.get("security", {}):
            return f"security.{security[dest]}"
    return section


def args_from_config(args: argparse.Namespace, cfg: Config) -> argparse.Namespace:
    """What a configured daemon started as ``args`` would have been started with under ``cfg``:
    its flags' defaults, ``cfg``'s values for them over those, and the flags given on its own
    command line (``args.given``) over both. For a daemon's reload hook. Raises ConfigError."""
    sub = _all_parsers()[args.command]
    ns = _namespace(sub, convert_section(sub, args.command, cfg))
    for dest in getattr(args, "given", ()):
        setattr(ns, dest, getattr(args, dest))
    ns.config, ns.command = cfg, args.command
    return ns


# -- parsing ----------------------------------------------------------------------------------

def apply_config(sub: argparse.ArgumentParser, section: str, cfg: Config,
                 cameras: str | None = None) -> dict[str, Any]:
    """Make the file's values ``sub``'s defaults, so flags on the command line win. Returns the
    values of repeatable flags, which are filled in after parsing only if none were given.
    An extractor serving one camera takes that camera's own ``publish`` and ``metrics_port``."""
    values = convert_section(sub, section, cfg)
    if section == "extractor":
        chosen = name_list(cameras) or list(cfg.cameras)
        if len(chosen) == 1 and (cam := cfg.cameras.get(chosen[0])) is not None:
            if cam.publish:
                values["publish"] = cam.publish
            if cam.metrics_port:
                values["metrics_port"] = cam.metrics_port
    actions = {a.dest: a for a in sub._actions}
    after = {}
    for dest, value in values.items():
        action = actions[dest]
        action.required = False
        if isinstance(action, argparse._AppendAction):
            after[dest] = value
            action.default = None
        else:
            action.default = value
    return after


def given_dests(command: str, argv: list[str]) -> set[str]:
    """The flags (argparse dests) given on the command line itself, not filled from defaults."""
    _, subs = build_parser(command)
    sub = subs[command]
    for action in sub._actions:
        action.default = argparse.SUPPRESS
        action.required = False
    return set(vars(sub.parse_known_args(argv)[0]))


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; a command given ``--config`` takes its defaults from the file first (the
    file judged whole: a mistake in any section is refused with its line, exit 2)."""
    command = next((a for a in argv if not a.startswith("-")), None)
    parser, subs = build_parser(command if command in COMMANDS else None)
    if command not in CONFIGURED:
        return parser.parse_args(argv)
    rest = argv[argv.index(command) + 1:]
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config")
    pre.add_argument("--cameras")
    known, _ = pre.parse_known_args(rest)
    cfg, after = None, {}
    if known.config:
        try:
            cfg = load_full(known.config, running=command)
            after = apply_config(subs[command], command, cfg, known.cameras)
        except ConfigError as exc:
            parser.exit(EXIT_OPTIONS, f"camwire {command}: error: {exc}\n")
    args = parser.parse_args(argv)
    for dest, value in after.items():
        if getattr(args, dest) is None:
            setattr(args, dest, value)
    args.config = cfg
    args.config_loader = functools.partial(load_full, running=command)
    args.given = given_dests(command, rest)
    try:
        if command == "extractor" and getattr(args, "camera", None):
            camera_name(args.camera)  # the extractor's own flag: a name the wire takes, never renamed
        run_check(command, args)  # what the file said passed already: this is about the flags
    except (ValueError, argparse.ArgumentTypeError) as exc:
        parser.exit(EXIT_OPTIONS, f"camwire {command}: error: {exc}\n")
    return args


def check_paths(args: argparse.Namespace) -> None:
    """Each known path flag can be written, before the daemon starts (OperatorError naming it)."""
    for dest, (flag, kind) in PATH_FLAGS.items():
        value = getattr(args, dest, None)
        if not isinstance(value, str) or dest in ADDRESS_DESTS.get(args.command, ()):
            continue
        (writable_dir if kind == "dir" else writable_file)(value, flag)


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


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else list(argv))
    try:
        if args.command in CONFIGURED:
            os.umask(args.umask)  # before the first file or folder is made; children of run inherit it
            check_paths(args)
        if getattr(args, "metrics_port", None) is not None:
            number = args.metrics_port + (getattr(args, "instance", None) or 0)
            if not 0 < number < 65536:
                raise OperatorError(f"--metrics-port {args.metrics_port} + --instance {args.instance} is "
                                    f"{number}, past the last port (65535)")
            try:
                serve_metrics(number, args.metrics_bind)
            except OSError as exc:  # most often: another daemon has the port
                raise OperatorError(f"--metrics-port {number}: {exc.strerror}") from None
        return args.main(args)
    except BrokenPipeError:  # `camwire status | head`: the reader had enough
        sys.stderr.close()
        return 0
    except (OperatorError, ConfigError) as exc:
        # an operator's mistake (an address in use, a path): one line, exit 2, which camwire run
        # and systemd read as "do not restart". Options were judged before the daemon started
        # (argparse, the file, each command's check hook); any other error from here on is a
        # crash: it exits 1 with its traceback in the log, and is restarted.
        print(f"camwire {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_OPTIONS


if __name__ == "__main__":
    sys.exit(main())
