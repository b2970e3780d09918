"""The ``camwire`` command: one sub-command per daemon, plus ``run`` (all of them) and tools."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from common.config import DAEMONS, Config, ConfigError, load_config
from common.metrics import serve_metrics

# sub-command -> (module, one-line help); modules are imported only when their command runs
COMMANDS = {
    "extractor": ("extractor.daemon", "decode a camera source and push frames to the ventilator"),
    "ventilator": ("classifier.ventilator", "share frames out to classifier workers"),
    "classifier": ("classifier.worker", "run a detector on frames from the ventilator"),
    "sink": ("classifier.sink", "turn results into events, snapshots and camera status"),
    "recorder": ("recorder.daemon", "record cameras into a ring of files; keep the files around events"),
    "clip": ("recorder.clip", "write one file for a camera and a time range from the recorder's ring"),
    "run": ("camwire.supervisor", "start and supervise the whole pipeline on this host"),
    "status": ("camwire.status", "print the cameras and workers as the sink last saw them"),
    "check-config": ("camwire.checkconfig", "validate a camwire.toml and print what it resolves to, secrets masked"),
    "sample-clip": ("camwire.sample", "write the built-in sample clip (H.264) for demos and tests"),
}


def build_parser(only: str | None = None) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The ``camwire`` parser and its sub-parsers (all of them, or just ``only``'s)."""
    parser = argparse.ArgumentParser(prog="camwire", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    subs = {}
    for name, (module_name, help_text) in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=help_text)
            continue
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        if name in DAEMONS:
            p.add_argument("--config", metavar="FILE", help="camwire.toml: cameras, sockets and this daemon's "
                           "settings; flags given here override it")
            p.add_argument("--metrics-port", type=int, metavar="PORT",
                           help="serve Prometheus metrics on http://0.0.0.0:PORT/metrics")
        p.set_defaults(main=module.main)
        subs[name] = p
    return parser, subs


def apply_config(sub: argparse.ArgumentParser, daemon: str, cfg: Config) -> dict[str, Any]:
    """Make the file's values ``sub``'s defaults, so flags on the command line win. Returns the
    values of repeatable flags, which are filled in after parsing only if none were given."""
    actions = {a.dest: a for a in sub._actions}
    after = {}
    for dest, value in cfg.daemon_defaults(daemon).items():
        action = actions.get(dest)
        where = f"{daemon}.{dest}"
        if action is None or dest in ("config", "help"):
            raise cfg.error(where, f"[{daemon}] {dest}: camwire {daemon} has no flag --{dest.replace('_', '-')}")
        if isinstance(action, argparse._StoreTrueAction) and not isinstance(value, bool):
            raise cfg.error(where, f"[{daemon}] {dest}: true or false, not {value!r}")
        if action.choices and value not in action.choices:
            raise cfg.error(where, f"[{daemon}] {dest}: one of {', '.join(map(str, action.choices))}, not {value!r}")
        action.required = False
        if isinstance(action, argparse._AppendAction):
            after[dest] = value if isinstance(value, list) else [value]
            action.default = None
        else:
            action.default = value
    return after


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; a daemon given ``--config`` takes its defaults from the file first."""
    command = next((a for a in argv if not a.startswith("-")), None)
    parser, subs = build_parser(command if command in COMMANDS else None)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv[1:] if command else argv)
    if command not in DAEMONS or not known.config:
        return parser.parse_args(argv)
    try:
        cfg = load_config(known.config)
        after = apply_config(subs[command], command, cfg)
    except ConfigError as exc:
        parser.exit(2, f"camwire {command}: error: {exc}\n")
    args = parser.parse_args(argv)
    for dest, value in after.items():
        if getattr(args, dest) is None:
            setattr(args, dest, value)
    args.config = cfg
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else list(argv))
    try:
        if getattr(args, "metrics_port", None) is not None:
            port = args.metrics_port + (getattr(args, "instance", None) or 0)
            try:
                serve_metrics(port)
            except OSError as exc:  # most often: another daemon has the port
                raise ValueError(f"--metrics-port {port}: {exc.strerror}") from None
        return args.main(args)
    except ValueError as exc:  # bad options found after parsing (a detector spec, sampling)
        print(f"camwire {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
