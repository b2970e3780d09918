"""``camwire reload``: every daemon of the deployment reads its camwire.toml again, and says so.

The daemons on this host started with ``--config FILE`` are signalled (SIGHUP, as the console's
reload does: web.daemon.signal_daemons); every daemon listed in the file's ``[web] daemons``
(and each ``--daemon ROLE=ADDR``) is asked over its ``--serve`` (common.serve, CURVE with the
file's ``[security]`` keys) and answers what came of it: applied, unchanged, refused at
``FILE:LINE`` (its file there, with the reason), or it is unreachable. One line per daemon;
exit 0 when every one applied it (or had nothing new), 1 when one refused or did not answer.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from camwire.common.config import ConfigError, load_config
from camwire.common.config_scope import Scope
from camwire.common.daemon import EXIT_FAILED, EXIT_OK, EXIT_OPTIONS
from camwire.common.settings.values import daemon_address


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="camwire.toml: the daemons on this host started with it are "
                   "signalled, and those of its [web] daemons asked over the network")
    p.add_argument("--daemon", metavar="ROLE=ADDR", action="append", type=daemon_address, default=[],
                   help="also ask this daemon (its serve address); repeat for more")
    p.add_argument("--json", action="store_true", help="print JSON instead of lines")


def main(args: argparse.Namespace) -> int:
    import zmq

    from camwire.web.daemon import signal_daemons
    from camwire.web.remote import Remote, curve_in, daemons_in

    if not args.config and not args.daemon:
        print("camwire reload: error: give --config FILE, --daemon ROLE=ADDR, or both", file=sys.stderr)
        return EXIT_OPTIONS
    daemons, curve, signalled = list(args.daemon), None, []
    if args.config:
        try:  # what it reads: [web] daemons and [security]; no other daemon's secrets needed here
            cfg = load_config(args.config, Scope.of(()))
        except ConfigError as exc:  # nothing is asked to take a file this host refuses
            print(f"camwire reload: error: {exc}", file=sys.stderr)
            return EXIT_OPTIONS
        daemons = [*daemons_in(cfg), *daemons]
        curve = curve_in(cfg)
        signalled = signal_daemons(Path(args.config))
    ctx = zmq.Context()
    remote = Remote.of(ctx, list(dict.fromkeys(daemons)), curve)
    try:
        answers = remote.reload_all()
    finally:
        remote.close()
        ctx.term()
    if args.json:
        print(json.dumps({"signalled": signalled, "daemons": answers}, indent=1))
    else:
        for s in signalled:
            print(f"{s['daemon']:<11} pid {s['pid']:<17} signalled (this host)")
        for a in answers:
            print(f"{a['daemon']:<11} {a['address']:<21} {describe(a)}")
    bad = [a for a in answers if a.get("outcome") not in ("applied", "unchanged")]
    return EXIT_FAILED if bad else EXIT_OK


def describe(answer: dict[str, Any]) -> str:
    """One daemon's answer in words: ``refused at /etc/camwire/camwire.toml:12: ...``."""
    outcome = answer.get("outcome")
    if outcome == "refused" and answer.get("line"):
        return f"refused at {answer.get('file')}:{answer['line']}: {answer.get('reason')}"
    if outcome in ("refused", "unreachable", "pending"):
        return f"{outcome}: {answer.get('reason')}"
    restart = answer.get("needs_restart") or []
    return outcome + (f" (needs a restart for: {', '.join(restart)})" if restart else "")
