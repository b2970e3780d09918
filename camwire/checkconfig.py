"""``camwire check-config FILE``: validate a camwire.toml as every daemon would read it, and print
the resolved cameras, sockets and settings with secrets masked. Exit 0 when valid, 2 when not
(the file, line and reason on stderr)."""

from __future__ import annotations

import argparse
import json
import sys

from common.config import DAEMONS, ConfigError, load_config


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="the camwire.toml to check")


def main(args: argparse.Namespace) -> int:
    from camwire.cli import apply_config, build_parser  # the daemons' own parsers judge their sections

    try:
        cfg = load_config(args.file)
        _, subs = build_parser()
        for daemon in DAEMONS:
            apply_config(subs[daemon], daemon, cfg)
    except ConfigError as exc:
        print(f"camwire check-config: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(cfg.describe(), indent=2))
    return 0
