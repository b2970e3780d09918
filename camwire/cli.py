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
import re
import sys
from pathlib import Path
from typing import Any, Callable

from camwire import __version__
from common.config import DAEMONS, SECTIONS, Config, ConfigError, load_config, register_part
from common.metrics import serve_metrics
from common.paths import camera_name, name_list, writable_dir, writable_file
from common.sockets import OperatorError

# sub-command -> (module, one-line help); modules are imported only when their command runs
COMMANDS = {
    "extractor": ("extractor.daemon", "read cameras (RTSP, HTTP, HLS, files) and send their frames on"),
    "ventilator": ("classifier.ventilator", "share the cameras' frames out to classifier workers"),
    "classifier": ("classifier.worker", "a worker: run a detector on the cameras' frames"),
    "sink": ("classifier.sink", "turn detections into events, snapshots and camera status"),
    "recorder": ("recorder.daemon", "record cameras into a ring of files; keep the files around events"),
    "clip": ("recorder.clip", "write one file for a camera and a time range from the recorder's ring"),
    "run": ("camwire.supervisor", "run every daemon on this host, supervised (--config FILE or --camera)"),
    "status": ("camwire.status", "print the cameras and workers as the sink last saw them"),
    "check-config": ("camwire.checkconfig", "validate a camwire.toml as the daemons would, secrets masked"),
    "sample-clip": ("camwire.sample", "write the built-in sample clip (H.264) for demos and tests"),
}
CONFIGURED = SECTIONS  # the commands that take --config and a section of the file
# path flags checked before a daemon starts: dest -> (flag, a file or a folder)
PATH_FLAGS = {"events": ("--events", "file"), "stats": ("--stats", "file"), "data_dir": ("--data-dir", "dir"),
              "dir": ("--dir", "dir"), "record": ("--record", "dir")}
# the address flags each command would take from [sockets]: not path flags even where named alike
ADDRESS_DESTS = {"recorder": {"events"}}


def _rules_part(data: dict[str, Any]) -> Any:
    from classifier.rules import rules_from_config
    return rules_from_config(data)


# common/ imports only common/: the sink's rules are parsed (so validated, with their line) by
# every load of the file through this registration
register_part("rules", _rules_part)


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
            text += " (default: %(default)s)"
        return text


def build_parser(only: str | None = None) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The ``camwire`` parser and its sub-parsers (all of them, or just ``only``'s)."""
    parser = argparse.ArgumentParser(prog="camwire", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"camwire {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    subs = {}
    for name, (module_name, help_text) in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=help_text)
            continue
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=module.__doc__, formatter_class=HelpFormatter)
        module.add_arguments(p)
        if name in CONFIGURED:
            p.add_argument("--config", metavar="FILE", help="camwire.toml: cameras, sockets and this daemon's "
                           "settings; flags given here override it")
        if name in DAEMONS:
            p.add_argument("--metrics-port", type=int, metavar="PORT",
                           help="serve Prometheus metrics on http://0.0.0.0:PORT/metrics")
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
    """The command's own ``check(args)`` hook, if its module has one (a detector spec judged
    without loading a model), else camwire.checkconfig's stand-in. Raises ValueError."""
    module = importlib.import_module(COMMANDS[section][0])
    check: Callable[[argparse.Namespace], None] | None = getattr(module, "check", None)
    if check is None:
        from camwire.checkconfig import FALLBACK_CHECKS
        check = FALLBACK_CHECKS.get(section)
    if check is not None:
        try:
            check(args)
        except argparse.ArgumentTypeError as exc:
            raise ValueError(str(exc)) from None


def _namespace(sub: argparse.ArgumentParser, values: dict[str, Any]) -> argparse.Namespace:
    ns = argparse.Namespace(**{a.dest: a.default for a in sub._actions if a.default is not argparse.SUPPRESS})
    for key, value in values.items():
        setattr(ns, key, value)
    return ns


@functools.cache
def _all_parsers() -> dict[str, argparse.ArgumentParser]:
    return build_parser()[1]


def load_full(path: str | Path) -> Config:
    """``path`` loaded and judged whole, as check-config does: every section by its command's own
    flags and check hook. What a daemon's ``config_loader`` is, so a reload with a mistake in any
    section is refused whole. Raises ConfigError at the line at fault."""
    cfg = load_config(path)
    subs = _all_parsers()
    for section in SECTIONS:
        values = convert_section(subs[section], section, cfg)
        if not cfg.sections.get(section):
            continue  # nothing of this command's own in the file: its hook has nothing to judge
        ns = _namespace(subs[section], values)
        ns.config, ns.command = cfg, section
        try:
            run_check(section, ns)
        except ValueError as exc:
            raise cfg.error(_key_named(str(exc), section, cfg), f"[{section}] {exc}") from None
    return cfg


def _key_named(message: str, section: str, cfg: Config) -> str:
    """The dotted key a hook's message is about: the first ``--flag`` it names that the section
    sets, else the section itself."""
    for flag in re.findall(r"--([a-z][a-z0-9-]*)", message):
        if flag.replace("-", "_") in cfg.sections.get(section, {}):
            return f"{section}.{flag.replace('-', '_')}"
    return section


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
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    pre.add_argument("--cameras")
    known, _ = pre.parse_known_args(rest)
    cfg, after = None, {}
    if known.config:
        try:
            cfg = load_full(known.config)
            after = apply_config(subs[command], command, cfg, known.cameras)
        except ConfigError as exc:
            parser.exit(2, f"camwire {command}: error: {exc}\n")
    args = parser.parse_args(argv)
    for dest, value in after.items():
        if getattr(args, dest) is None:
            setattr(args, dest, value)
    args.config = cfg
    args.config_loader = load_full
    args.given = given_dests(command, rest)
    try:
        if command == "extractor" and getattr(args, "camera", None):
            camera_name(args.camera)  # the extractor's own flag: a name the wire takes, never renamed
        run_check(command, args)  # what the file said passed already: this is about the flags
    except (ValueError, argparse.ArgumentTypeError) as exc:
        parser.exit(2, f"camwire {command}: error: {exc}\n")
    return args


def check_paths(args: argparse.Namespace) -> None:
    """Each known path flag can be written, before the daemon starts (OperatorError naming it)."""
    for dest, (flag, kind) in PATH_FLAGS.items():
        value = getattr(args, dest, None)
        if not isinstance(value, str) or dest in ADDRESS_DESTS.get(args.command, ()):
            continue
        (writable_dir if kind == "dir" else writable_file)(value, flag)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else list(argv))
    try:
        if args.command in CONFIGURED:
            check_paths(args)
        if getattr(args, "metrics_port", None) is not None:
            port = args.metrics_port + (getattr(args, "instance", None) or 0)
            try:
                serve_metrics(port)
            except OSError as exc:  # most often: another daemon has the port
                raise OperatorError(f"--metrics-port {port}: {exc.strerror}") from None
        return args.main(args)
    except (OperatorError, ConfigError, ValueError) as exc:
        # an operator's mistake (an address in use, a path, a value found after parsing): one line
        print(f"camwire {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
