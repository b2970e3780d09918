"""``camwire check-config FILE``: validate a camwire.toml as every daemon would read it, and print
the resolved cameras, sockets and settings with secrets masked. Exit 0 when valid, 2 when not
(``FILE:LINE: reason`` on stderr, the same line the daemon itself would refuse to start with)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

from common.config import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="the camwire.toml to check")


def check_detector(args: argparse.Namespace) -> None:
    """A detector spec's names (``motion+covered``, ``onnx:PATH``) against the classifier's
    registry, without building a detector or loading a model. For a classifier module with no
    ``check`` hook of its own."""
    spec = getattr(args, "detector", None)
    if spec is None:
        return
    from classifier.detectors import _registry

    known = _registry()
    for item in str(spec).split("+"):
        name = item.strip().partition(":")[0]
        if name not in known:
            raise ValueError(f"--detector {spec!r}: unknown detector {name!r}; known: {', '.join(sorted(known))}")


# the commands whose module defines no ``check(args)`` yet: what stands in for it
FALLBACK_CHECKS: dict[str, Callable[[argparse.Namespace], None]] = {"classifier": check_detector,
                                                                   "run": check_detector}


def main(args: argparse.Namespace) -> int:
    from camwire.cli import load_full  # the daemons' own parsers judge their sections

    try:
        cfg = load_full(args.file)
    except ConfigError as exc:
        print(f"camwire check-config: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(cfg.describe(), indent=2))
    return 0
