"""``camwire status``: the cameras and workers as the sink last wrote them (``DATA_DIR/status.db``).

The sink keeps the table (sink.camera_status); this only reads it, so it works while the
pipeline runs, after it stopped, and from another user with read access to the folder. It says
first whether what follows is current: the sink rewrites its own row every second, so a row
older than a few seconds means the sink has stopped (cleanly or not) or cannot write, and the
tables below are what it last saw. Failed writes (a full disk) are shown beside it, and the
cameras whose recording the recorder has paused (``DATA_DIR/ledger.db``, sink.recording_state).

With ``--config`` on a file that is refused (a typo saved: the daemons keep running on their last
good one), it still shows what the sink last wrote: the data dir is read from what can be read
(the TOML, if it parses; else the ``[sink] data_dir`` line alone), and one warning line on stderr
names the refusal (``FILE:LINE: reason``); the exit code stays 0. Only a data dir that cannot be
read even so is an error (exit 2: give ``--dir``).

On a host without the sink (no status.db at ``[sink] data_dir`` here) it asks the sink listed in
the file's ``[web] daemons`` over its ``serve`` (web.remote, with ``[security]``'s keys), or the one
``--sink ADDR`` names; a sink that does not answer is named with its address (exit 1).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from camwire.sink.store.status_db import read_refused, read_sink, read_status
from camwire.sink.recording_state import paused_cameras
from camwire.common.camera_state import WITH_REASON, with_covered
from camwire.common.config import ConfigError, load_config
from camwire.common.config_lines import line_of
from camwire.common.config_scope import Scope
from camwire.common.frame_account import BUCKETS, OPEN
from camwire.common.env import VAR
from camwire.common.daemon import EXIT_FAILED, EXIT_OK, EXIT_OPTIONS


def add_arguments(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--dir", metavar="DIR", help="the sink's --data-dir")
    where.add_argument("--config", metavar="FILE", help="camwire.toml: its [sink] data_dir; where that is not on "
                       "this host, the sink of its [web] daemons, asked over the network")
    where.add_argument("--sink", metavar="ADDR", help="a sink's serve address on another host (no CURVE: give "
                       "--config for a file with [security] and [web] daemons instead)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")


def main(args: argparse.Namespace) -> int:
    remote = remote_sink(args)
    if remote is not None:
        return remote
    data_dir, config_error = data_dir_of(args)
    if config_error is not None:
        if not data_dir:
            print(f"camwire status: error: {config_error} (and no [sink] data_dir can be read from it: "
                  f"give --dir instead)", file=sys.stderr)
            return EXIT_OPTIONS
        print(f"camwire status: warning: {config_error} (the daemons keep their last good config; "
              f"status read from {data_dir})", file=sys.stderr)
    elif not data_dir:
        print(f"camwire status: error: {args.config} sets no [sink] data_dir", file=sys.stderr)
        return EXIT_OPTIONS
    path = Path(data_dir) / "status.db"
    try:
        cameras, workers = read_status(path)
        sink = read_sink(path)
        refused = read_refused(path)
        paused = paused_cameras(Path(data_dir))
    except sqlite3.Error as exc:
        print(f"camwire status: error: cannot read {path}: {exc} (is the sink running with --data-dir?)",
              file=sys.stderr)
        return EXIT_FAILED
    return show(args, sink, cameras, workers, refused, paused, config_error)


def remote_sink(args: argparse.Namespace) -> int | None:
    """The status asked of a sink on another host (``--sink``, or ``--config``'s [web] daemons
    where its [sink] data_dir is not on this host); None when the status is to be read here."""
    from camwire.web.remote import Remote, curve_in, daemons_in

    if args.sink:
        daemons, curve, what = [("sink", args.sink)], None, args.sink
    elif not args.config:
        return None
    else:
        try:  # [sink] data_dir, [web] daemons and [security]: none of the other daemons' secrets
            cfg = load_config(args.config, Scope.of(()))
        except ConfigError:
            return None  # the local path says what is wrong with the file
        data_dir = cfg.daemon_defaults("sink").get("data_dir")
        daemons = [d for d in daemons_in(cfg) if d[0] == "sink"]
        if not daemons or (data_dir and (Path(data_dir) / "status.db").exists()):
            return None
        curve, what = curve_in(cfg), ", ".join(a for _, a in daemons)
    import zmq

    ctx = zmq.Context()
    remote = Remote.of(ctx, daemons, curve)
    try:
        cameras, workers, sink, refused = remote.status()
        down = [p for p in remote.sinks if p.error]
    finally:
        remote.close()
        ctx.term()
    if down and not cameras and sink is None:
        for p in down:
            print(f"camwire status: error: the sink at {p.address} does not answer ({p.error})", file=sys.stderr)
        return EXIT_FAILED
    for p in down:
        print(f"camwire status: warning: the sink at {p.address} does not answer ({p.error})", file=sys.stderr)
    print(f"status from the sink at {what}", file=sys.stderr)
    return show(args, sink, cameras, workers, refused, [], None)


def show(args: argparse.Namespace, sink: dict[str, Any] | None, cameras: list[dict[str, Any]],
         workers: list[dict[str, Any]], refused: list[dict[str, Any]], paused: list[dict[str, Any]],
         config_error: ConfigError | None) -> int:
    if args.json:
        shown = {"sink": sink, "cameras": cameras, "workers": workers, "refused": refused,
                 "recording_paused": paused}
        if config_error is not None:
            shown["config_error"] = str(config_error)
        print(json.dumps(shown, indent=1))
        return EXIT_OK
    now = time.time()
    print(sink_line(sink, cameras, now))
    if paused:
        print(paused_line(paused, now))
    print()
    print(table(["CAMERA", "STATE", "LAST FRAME", "FPS IN", "FPS USED", "RECONNECTS", "ATTEMPTS", "LAST ERROR"],
                [[c["camera"], state(c), ago(c["last_frame_ts"], now), f"{c['fps_in'] or 0:.1f}",
                  f"{c['fps_used'] or 0:.1f}", c["reconnects"], c.get("attempts") or 0, c["last_error"] or ""]
                 for c in cameras]))
    if any(c.get("pool") or c.get("sent") for c in cameras):
        print()
        print(frames_table(cameras))
    print()
    print(table(["WORKER", "DETECTOR", "RESULTS", "CREDITS", "IN FLIGHT", "DISPATCHED", "COMPLETED", "REPORTED"],
                [[w["name"] + (" (leaving)" if w["leaving"] else ""), w.get("detector") or "-", w["results"], *(
                  "-" if w[k] is None else w[k] for k in ("credits", "in_flight", "dispatched", "completed")),
                  ago(w["updated_ts"], now)] for w in workers]))
    if refused:  # only where CURVE is on and someone was turned away
        print()
        print(table(["REFUSED BY", "SOCKET", "REASON", "HANDSHAKES", "LAST", "PEERS (ADDRESS KEY COUNT)"],
                    [[r["daemon"], r["socket"], r["reason"], r["count"], ago(r["updated_ts"], now),
                      peers_cell(r.get("peers") or [])] for r in refused]))
    return EXIT_OK


def frames_table(cameras: list[dict[str, Any]]) -> str:
    """One account of every frame per camera (common.frame_account): the extractor's decoded, sent
    and drops by why, then the pool's final buckets and what is still waiting or in flight."""
    shown = (*BUCKETS, *OPEN)
    return table(["CAMERA", "DECODED", "SENT", "EXTRACTOR DROPS", *(b.replace("_", " ").upper() for b in shown)],
                 [[c["camera"], c.get("decoded") or 0, c.get("sent") or 0,
                   ", ".join(f"{why} {n}" for why, n in sorted(json.loads(c["drops"]).items())) if c.get("drops")
                   else "0", *("-" if not c.get("pool") else c["pool"].get(b, 0) for b in shown)]
                  for c in cameras])


def peers_cell(peers: list[dict[str, Any]], shown: int = 3) -> str:
    """The peers refused on one socket, most first: ``10.0.0.7 key=AbCd1234 x12, unknown x3 (+2 more)``."""
    cell = ", ".join(p["peer"] + ("" if p["key"] in ("-", None) else f" key={p['key']}") + f" x{p['count']}"
                     for p in peers[:shown])
    return cell + (f" (+{len(peers) - shown} more)" if len(peers) > shown else "") or "-"


def data_dir_of(args: argparse.Namespace) -> tuple[str | None, ConfigError | None]:
    """The data dir to read (``--dir``, or ``--config``'s [sink] data_dir), and the file's
    refusal when it is refused (the data dir then as :func:`data_dir_in` reads it)."""
    if not args.config:
        return args.dir, None
    try:
        return load_config(args.config).daemon_defaults("sink").get("data_dir"), None
    except ConfigError as exc:
        return data_dir_in(Path(args.config)), exc


def data_dir_in(path: Path) -> str | None:
    """``[sink] data_dir`` as a refused file still gives it: from the whole TOML when it parses (a
    value refused elsewhere), else from its own line alone (a syntax error elsewhere); ``${VAR}``
    filled in as common.config does (the environment, else a ``.env`` beside the file). None when
    even that cannot be read (the mistake is on that line, or a variable is set nowhere)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        line = line_of(text, "sink.data_dir")
        try:
            # ``data_dir = "..."`` under [sink], or ``sink.data_dir = "..."`` at the top
            alone = tomllib.loads(text.splitlines()[line - 1]) if line else {}
        except tomllib.TOMLDecodeError:
            return None
        data = alone if "sink" in alone else {"sink": alone}
    table = data.get("sink")
    value = next((v for k, v in table.items() if k.replace("-", "_") == "data_dir"), None) \
        if isinstance(table, dict) else None
    if not isinstance(value, str) or not value:
        return None
    if "${" in value:
        from dotenv import dotenv_values

        env = {**{k: v for k, v in dotenv_values(path.parent / ".env").items() if v is not None}, **os.environ}
        if any(m.group(1) not in env for m in VAR.finditer(value)):
            return None
        value = VAR.sub(lambda m: env[m.group(1)], value)
    return value


def sink_line(sink: dict[str, Any] | None, cameras: list[dict[str, Any]], now: float) -> str:
    """Whether the tables are current, in words; and the sink's failed writes, if any."""
    if sink is None:  # a status.db from an older sink: judge by its newest row
        newest = max((c["updated_ts"] or 0.0 for c in cameras), default=0.0)
        return f"sink: last wrote {ago(newest or None, now)} (no sink row: an older sink wrote this)"
    if sink["stopped_ts"]:
        line = f"STALE: the sink stopped {ago(sink['stopped_ts'], now)}; this is what it last saw"
    elif sink["stale"]:
        line = (f"STALE: the sink has not written for {sink['age_s']:.0f}s (is it running? is its disk full?); "
                f"this is what it last saw")
    else:
        line = f"sink: running (pid {sink['pid']}), last wrote {ago(sink['updated_ts'], now)}"
    if sink["write_errors"]:
        counts = ", ".join(f"{what} {n}" for what, n in sorted(sink["write_errors"].items()))
        line += f"\nwrite errors: {counts}; last {ago(sink['last_write_error_ts'], now)}: {sink['last_write_error']}"
    return line


def paused_line(paused: list[dict[str, Any]], now: float) -> str:
    """The recorder's pause (its disk full of others' files), as the sink last heard it."""
    first = min(paused, key=lambda p: p["since"])
    names = ", ".join(p["camera"] for p in paused[:10]) + (f" and {len(paused) - 10} more" if len(paused) > 10 else "")
    return f"recording paused since {ago(first['since'], now)} ({first.get('reason') or 'no reason given'}): {names}"


def state(c: dict[str, Any]) -> str:
    """The camera's state (common.camera_state) as the table shows it: with its reason, or covered."""
    if c["state"] in WITH_REASON:
        shown = f"{c['state']}: {c['reason']}" if c["reason"] else c["state"]
    else:
        shown = with_covered(c["state"], bool(c["covered"]))
    if c.get("unserved_detectors"):  # a detector it wants that no worker serves: never a silent starve
        shown += f"; no worker serves {c['unserved_detectors']} ({c['unserved']} frames unserved)"
    off = [name for name, on in (c.get("switches") or {}).items() if not on]  # sink.switches
    if off:
        shown += f"; switched off: {', '.join(off)}"
    return shown


def ago(ts: float | None, now: float) -> str:
    return "never" if ts is None else f"{max(0.0, now - ts):.0f}s ago"


def table(head: list[str], rows: list[list[Any]]) -> str:
    cells = [head, *[[str(v) for v in row] for row in rows]] if rows else [head, ["(none)"] + [""] * (len(head) - 1)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells)
