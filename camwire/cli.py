"""camwire: watch many video cameras at once. One sub-command per daemon (extractor: cameras in,
ventilator and classifier workers: detection, sink: events, recorder: video on disk, web: the
console), ``run`` for all of them on one host, and tools (check-config, status, clip).

Every daemon reads one camwire.toml (``--config FILE``); flags given on its command line
override the file. Durations are written ``30s``/``5m``/``7d``, sizes ``500M``/``200G``.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import sys
from typing import Any

from camwire import __version__
from camwire.checks import load_for, run_check
from camwire.commands import COMMANDS, DESCRIPTIONS
from camwire.common.config import ConfigError
from camwire.common.daemon import EXIT_OPTIONS
from camwire.common.metrics import serve_metrics
from camwire.common.paths import writable_dir, writable_file
from camwire.common.settings import SECTIONS, Settings
from camwire.common.logs import configure
from camwire.common.settings.model import add_flags, build, deprecated, settings_of
from camwire.common.sockets import OperatorError
from camwire.help import HelpFormatter

# path settings checked before a daemon starts: name -> (flag, a file or a folder)
PATH_FLAGS = {"events": ("--events", "file"), "stats": ("--stats", "file"), "data_dir": ("--data-dir", "dir"),
              "dir": ("--dir", "dir"), "record": ("--record", "dir")}
# names that are not paths the command writes, though named like PATH_FLAGS: the recorder's
# events is an address; the web console only reads the sink's events file and data dir
ADDRESS_DESTS = {"recorder": {"events"}, "web": {"events", "data_dir"}}


def build_parser(only: str | None = None) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The ``camwire`` parser and its sub-parsers (all of them, or just ``only``'s). A configured
    command's flags come from its settings model; a tool's module adds its own (importing it)."""
    parser = argparse.ArgumentParser(prog="camwire", description=__doc__, formatter_class=HelpFormatter,
                                     allow_abbrev=False)  # --detect is not --detector
    parser.add_argument("--version", action="version", version=f"camwire {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    subs = {}
    for name, (module_name, help_text) in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=help_text, allow_abbrev=False)
            continue
        p = sub.add_parser(name, help=help_text, description=DESCRIPTIONS[name], formatter_class=HelpFormatter,
                           allow_abbrev=False)
        if name in SECTIONS:
            add_flags(p, SECTIONS[name])
        else:
            importlib.import_module(module_name).add_arguments(p)
        subs[name] = p
    return parser, subs


def parse(argv: list[str]) -> Any:
    """``argv`` as the command's typed settings (a configured command: common.settings) or, for a
    tool, its Namespace. With ``--config`` the file is judged first for this command (what it
    reads: camwire.checks.load_for; a mistake there is refused with its line, exit 2), and so is
    every reload of it; its values are the defaults that flags override."""
    command = next((a for a in argv if not a.startswith("-")), None)
    parser, subs = build_parser(command if command in COMMANDS else None)
    if command not in SECTIONS:
        return parser.parse_args(argv)
    sub, cls = subs[command], SECTIONS[command]
    rest = argv[argv.index(command) + 1:]
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config")
    pre.add_argument("--cameras")
    if command == "run":  # what run starts is judged with it: the recorder, the console
        pre.add_argument("--record")
        pre.add_argument("--web")
    known, _ = pre.parse_known_args(rest)
    cfg, from_file = None, {}
    # what this command reads of the file, at start and at each reload: its own, not the others'
    load = functools.partial(load_for, daemons=(command,), cameras=known.cameras if command == "extractor" else None,
                             record=bool(getattr(known, "record", None)), web=bool(getattr(known, "web", None)))
    if known.config:
        try:
            cfg = load(known.config)
        except ConfigError as exc:
            parser.exit(EXIT_OPTIONS, f"camwire {command}: error: {exc}\n")
        from_file = cfg.values(command)
        if command == "extractor":  # serving one camera: its own publish address and metrics port
            from_file.update(cfg.served_alone(known.cameras))
        for action in sub._actions:
            if action.dest in from_file:
                action.required = False  # the file gives it; a flag still wins (below)
    ns = parser.parse_args(argv)
    given = given_names(sub, rest)
    values = {f.name: getattr(ns, f.name) for f in settings_of(cls, cli=True)}
    for name, value in from_file.items():
        if name not in given:
            values[name] = value
    try:
        for f in settings_of(cls, cli=True):
            seen = getattr(ns, f"_{f.name}_given", None)
            if f.opt.once and seen and len(seen) > 1:  # type: ignore[union-attr]
                raise ValueError(f"{f.flag} given {len(seen)} times ({', '.join(seen)}): {f.opt.once}")  # type: ignore[union-attr]
        settings = build(cls, values)
        settings.config, settings.given, settings.command = cfg, frozenset(given), command
        settings.config_loader = load
        run_check(command, settings)  # what the file said passed already: this is about the flags
    except (ValueError, argparse.ArgumentTypeError) as exc:
        parser.exit(EXIT_OPTIONS, f"camwire {command}: error: {exc}\n")
    return settings


def given_names(sub: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The settings given on the command line itself, not filled from defaults or the file."""
    saved = [(a, a.default, a.required) for a in sub._actions]
    try:
        for action in sub._actions:
            action.default, action.required = argparse.SUPPRESS, False
        return {name for name in vars(sub.parse_known_args(argv)[0]) if not name.startswith("_")} - {"help"}
    finally:
        for action, default, required in saved:
            action.default, action.required = default, required


def check_paths(command: str, settings: Settings) -> None:
    """Each known path setting can be written, before the daemon starts (OperatorError naming it)."""
    for name, (flag, kind) in PATH_FLAGS.items():
        value = getattr(settings, name, None)
        if not isinstance(value, str) or name in ADDRESS_DESTS.get(command, ()):
            continue
        (writable_dir if kind == "dir" else writable_file)(value, flag)


def serve_own_metrics(settings: Settings) -> None:
    """``--metrics-port`` (plus ``--instance``, so one config serves a pool of workers)."""
    port = getattr(settings, "metrics_port", None)
    if port is None:
        return
    instance = getattr(settings, "instance", None)
    number = port + (instance or 0)
    if not 0 < number < 65536:
        raise OperatorError(f"--metrics-port {port} + --instance {instance} is {number}, past the last port (65535)")
    try:
        serve_metrics(number, settings.metrics_bind)  # type: ignore[attr-defined]
    except OSError as exc:  # most often: another daemon has the port
        raise OperatorError(f"--metrics-port {number}: {exc.strerror}") from None


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else list(argv))
    command = args.command
    try:
        if command in SECTIONS:
            os.umask(args.umask)  # before the first file or folder is made; children of run inherit it
            check_paths(command, args)
            for line in deprecated(args):  # in the command's own log, before it starts
                configure(command).warning(line)
            serve_own_metrics(args)
        return importlib.import_module(COMMANDS[command][0]).main(args)
    except BrokenPipeError:  # `camwire status | head`: the reader had enough
        sys.stderr.close()
        return 0
    except (OperatorError, ConfigError) as exc:
        # an operator's mistake (an address in use, a path): one line, exit 2, which camwire run
        # and systemd read as "do not restart". Options were judged before the daemon started
        # (argparse, the file, each command's check hook); any other error from here on is a
        # crash: it exits 1 with its traceback in the log, and is restarted.
        print(f"camwire {command}: error: {exc}", file=sys.stderr)
        return EXIT_OPTIONS


if __name__ == "__main__":
    sys.exit(main())
