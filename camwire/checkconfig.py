"""``camwire check-config FILE``: validate a camwire.toml as every daemon would read it, and print
the resolved cameras, sockets and settings with secrets masked. Exit 0 when valid, 2 when not
(``FILE:LINE: reason`` on stderr, the same line the daemon itself would refuse to start with:
each section through the typed settings model and its command's ``check`` hook, camwire.checks).

``--daemons extractor,recorder`` judges only what the daemons one host runs read of the file
(common.config_scope), as each of them judges it at start: the file says nothing of which host
runs what (every host keeps the same copy; its enabled units, or ``camwire run``, decide), so
the host is named by its daemons. ``run`` stands for what ``camwire run --config`` starts;
``--cameras`` for the cameras an extractor serves (``camwire-extractor@NAME``)."""

from __future__ import annotations

import argparse
import json
import sys

from camwire.checks import load_for
from camwire.common.config import ConfigError
from camwire.common.config_scope import READS, Scope
from camwire.common.paths import name_list
from camwire.common.daemon import EXIT_OK, EXIT_OPTIONS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="the camwire.toml to check")
    p.add_argument("--daemons", metavar="LIST", type=_daemons,
                   help="check only what these daemons read (the ones this host runs: " + ",".join(READS)
                        + "; run: what camwire run starts), as each judges it at start (default: the whole file)")
    p.add_argument("--cameras", metavar="LIST", help="with --daemons extractor: the cameras it serves (its "
                                                     "--cameras; default: all)")


def _daemons(text: str) -> list[str]:
    names = name_list(text)
    try:
        Scope.of(names)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not names:
        raise argparse.ArgumentTypeError("one daemon or more, comma-separated")
    return names


def main(args: argparse.Namespace) -> int:
    if args.cameras and "extractor" not in (args.daemons or ()):
        print("camwire check-config: error: --cameras: the cameras an extractor serves, so only with --daemons "
              "extractor", file=sys.stderr)
        return EXIT_OPTIONS
    try:
        cfg = load_for(args.file, args.daemons, cameras=args.cameras)
    except ConfigError as exc:
        print(f"camwire check-config: error: {exc}", file=sys.stderr)
        return EXIT_OPTIONS
    print(json.dumps(cfg.describe(), indent=2))
    return EXIT_OK
