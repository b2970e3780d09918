"""``camwire status``: the cameras and workers as the sink last wrote them (``DATA_DIR/status.db``).

The sink keeps the table (classifier.camera_status); this only reads it, so it works while the
pipeline runs, after it stopped, and from another user with read access to the folder.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from classifier.camera_status import read_status
from common.config import ConfigError, load_config


def add_arguments(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--dir", metavar="DIR", help="the sink's --data-dir")
    where.add_argument("--config", metavar="FILE", help="camwire.toml: its [sink] data_dir")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")


def main(args: argparse.Namespace) -> int:
    if args.config:
        try:
            data_dir = load_config(args.config).daemon_defaults("sink").get("data_dir")
        except ConfigError as exc:
            print(f"camwire status: error: {exc}", file=sys.stderr)
            return 2
        if not data_dir:
            print(f"camwire status: error: {args.config} sets no [sink] data_dir", file=sys.stderr)
            return 2
    else:
        data_dir = args.dir
    path = Path(data_dir) / "status.db"
    try:
        cameras, workers = read_status(path)
    except sqlite3.Error as exc:
        print(f"camwire status: error: cannot read {path}: {exc} (is the sink running with --data-dir?)",
              file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"cameras": cameras, "workers": workers}, indent=1))
        return 0
    now = time.time()
    print(table(["CAMERA", "STATE", "LAST FRAME", "FPS IN", "FPS USED", "RECONNECTS", "LAST ERROR"],
                [[c["camera"], state(c), ago(c["last_frame_ts"], now), f"{c['fps_in'] or 0:.1f}",
                  f"{c['fps_used'] or 0:.1f}", c["reconnects"], c["last_error"] or ""] for c in cameras]))
    print()
    print(table(["WORKER", "RESULTS", "CREDITS", "IN FLIGHT", "DISPATCHED", "COMPLETED", "REPORTED"],
                [[w["name"] + (" (leaving)" if w["leaving"] else ""), w["results"], *(
                  "-" if w[k] is None else w[k] for k in ("credits", "in_flight", "dispatched", "completed")),
                  ago(w["updated_ts"], now)] for w in workers]))
    return 0


def state(c: dict[str, Any]) -> str:
    if c["state"] == "offline":
        return f"offline: {c['reason']}" if c["reason"] else "offline"
    return "covered" if c["state"] == "online" and c["covered"] else c["state"]


def ago(ts: float | None, now: float) -> str:
    return "never" if ts is None else f"{max(0.0, now - ts):.0f}s ago"


def table(head: list[str], rows: list[list[Any]]) -> str:
    cells = [head, *[[str(v) for v in row] for row in rows]] if rows else [head, ["(none)"] + [""] * (len(head) - 1)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells)
