"""``[web]`` and ``camwire web``'s flags: the console (web/)."""

from __future__ import annotations

import argparse
from typing import Annotated

from camwire.common.settings.model import Group, opt, section
from camwire.common.settings.shared import DaemonOptions, FileOptions
from camwire.common.settings import values
from camwire.common.settings.values import proxy
from camwire.common.units import duration, positive, size

TOKEN_ENV = "CAMWIRE_WEB_TOKEN"
ALERT_LABELS = ("person",)  # the review page's alerts when [web] alert_labels is not set


def review_name(text: str) -> str:
    """An alert label or zone (web.review): 1 to 64 printable characters."""
    if not 0 < len(text) <= 64 or not text.isprintable():
        raise argparse.ArgumentTypeError(f"a label or zone name of 1 to 64 printable characters, not {text[:70]!r}")
    return text



class Web(Group):
    bind: Annotated[str, opt("the address the console listens on: this host only by default; another needs a token",
                             metavar="ADDR")] = "127.0.0.1"
    port: Annotated[int, opt("the console's HTTP port (default 8080)", metavar="PORT")] = 8080
    token: Annotated[str | None, opt("the password for the console and every change made through it; put it in the "
                                     f"file as [web] token = \"${{{TOKEN_ENV}}}\" (or the environment's {TOKEN_ENV}), "
                                     "not on a command line", metavar="TOKEN", secret=True)] = None
    data_dir: Annotated[str | None, opt("the sink's --data-dir: status.db and snapshots", metavar="DIR")] = None
    events: Annotated[str | None, opt("the sink's --events file, followed for the events page",
                                      metavar="PATH")] = None
    recordings: Annotated[str | None, opt("the recorder's --dir: recordings and kept clips", metavar="DIR")] = None
    subscribe: Annotated[list[str] | None, opt("an extractor's --publish, for live views; repeat for more",
                                               metavar="ADDR", repeat=True)] = None
    detections: Annotated[str | None, opt("the sink's --publish-detections, for boxes on live views",
                                          metavar="ADDR")] = None
    sink: Annotated[list[str] | None, opt("the sink's --bind, where the console sends what it changes (a camera's "
                                          "switches, to the sink that owns it; objects marked reviewed, to every "
                                          "sink); repeat for several sinks, listed as the workers list them",
                                          metavar="ADDR", repeat=True)] = None
    daemons: Annotated[list[tuple[str, str]] | None, opt(
        "a daemon on another host and its serve address, ROLE=ADDR (sink=tcp://10.0.0.4:5570, "
        "recorder=tcp://10.0.0.1:5571): a sink's events, status and snapshots, each recorder's recordings (merged "
        "with --recordings), and every one asked to reload with the console; repeat for more",
        metavar="ROLE=ADDR", parse=values.daemon_address, repeat=True)] = None
    alert_labels: Annotated[list[str] | None, opt("the review page's alerts: objects of these labels (the rest are "
                                                  "detections); repeat for more", metavar="LABEL",
                                                  parse=review_name, repeat=True, shown="person")] = None
    alert_zones: Annotated[list[str] | None, opt("... and only those in one of these zones (default: anywhere); "
                                                 "repeat for more", metavar="ZONE", parse=review_name,
                                                 repeat=True)] = None
    cache_max_bytes: Annotated[int, opt("MP4s remuxed for the browser are kept up to this much (default 1G)",
                                        metavar="SIZE", parse=size)] = 1 << 30
    header_timeout: Annotated[float, opt("a request's headers must be in within this of its first byte, or the "
                                         "connection is cut", metavar="S", parse=positive(duration))] = 10.0
    body_timeout: Annotated[float, opt("a request's body must be in within this of its headers, or it is answered "
                                       "408", metavar="S", parse=positive(duration))] = 10.0
    max_connections: Annotated[int | None, opt("connections open at once, from everyone (default: 4096, or fewer "
                                               "where the limit on open files is lower: a quarter of it is kept for "
                                               "files and sockets)", metavar="N", parse=positive(int))] = None
    max_connections_per_address: Annotated[int, opt("connections open at once from one address (requests in flight, "
                                                    "behind a trusted proxy)", metavar="N",
                                                    parse=positive(int))] = 64
    trusted_proxy: Annotated[list[str] | None, opt("a reverse proxy's address or network: only from it is "
                                                   "X-Forwarded-For believed (the client is its rightmost hop that "
                                                   "is not a trusted proxy); repeat for more", metavar="ADDR",
                                                   parse=proxy, repeat=True)] = None


WebSettings = section("WebSettings", Web, FileOptions, DaemonOptions)
