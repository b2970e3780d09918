"""``camwire check-config FILE``: validate a camwire.toml as every daemon would read it, and print
the resolved cameras, sockets and settings with secrets masked. Exit 0 when valid, 2 when not
(``FILE:LINE: reason`` on stderr, the same line the daemon itself would refuse to start with:
each section through the typed settings model and its command's ``check`` hook, camwire.checks)."""

from __future__ import annotations

import argparse
import json
import sys

from camwire.checks import load_full
from camwire.common.config import ConfigError
from camwire.common.daemon import EXIT_OK, EXIT_OPTIONS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="the camwire.toml to check")


def main(args: argparse.Namespace) -> int:
    try:
        cfg = load_full(args.file)
    except ConfigError as exc:
        print(f"camwire check-config: error: {exc}", file=sys.stderr)
        return EXIT_OPTIONS
    print(json.dumps(cfg.describe(), indent=2))
    return EXIT_OK
