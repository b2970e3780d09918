"""``camwire keygen NAME``: a CURVE key pair for one daemon or host (common.curve)."""

from __future__ import annotations

import argparse
import re

from camwire.common.curve import keygen
from camwire.common.daemon import EXIT_OK


def key_name(text: str) -> str:
    """argparse type: a file name without a path (``sink``, ``host-2``)."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", text) or text.startswith("."):
        raise argparse.ArgumentTypeError(f"a name of A-Z a-z 0-9 _ . - (no path), not {text!r}")
    return text


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", type=key_name, metavar="NAME", help="the pair's name: NAME.key and NAME.key_secret")
    p.add_argument("--dir", default=".", metavar="DIR", help="where to write them (made if missing)")


def main(args: argparse.Namespace) -> int:
    public, secret = keygen(args.dir, args.name)
    print(f"public key {public} (copy it where peers need it)\nsecret key {secret} (mode 0600: keep it here)")
    return EXIT_OK
