"""``camwire check-config FILE``: validate a camwire.toml as every daemon would read it, and print
the resolved cameras, sockets and settings with secrets masked. Exit 0 when valid, 2 when not
(``FILE:LINE: reason`` on stderr, the same line the daemon itself would refuse to start with:
each section goes through its command's own flags and ``check`` hook, camwire.cli.load_full)."""

from __future__ import annotations

import argparse
import json
import sys

from camwire.common.config import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="the camwire.toml to check")


def main(args: argparse.Namespace) -> int:
    from camwire.cli import load_full  # the daemons' own parsers judge their sections

    try:
        cfg = load_full(args.file)
    except ConfigError as exc:
        print(f"camwire check-config: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(cfg.describe(), indent=2))
    return 0
