"""Counters that tell the truth about what a daemon did and dropped, and the stats file they end in."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any


class Counters:
    """Nested counts: ``counters.add("dropped", camera, "hwm")`` -> ``{"dropped": {cam: {"hwm": 1}}}``.

    The last key holds an int; everything above it is a dict. The owning thread counts; a
    metrics scrape may take a snapshot from another thread at any time, hence the lock.

    ``labels`` declares, once, the names of the levels under each top-level key (``{"dropped":
    ("camera", "reason")}``): the ``--stats`` file and the Prometheus metrics (common.metrics)
    both come from this one tree and this one declaration.
    """

    def __init__(self, labels: dict[str, tuple[str, ...]] | None = None) -> None:
        self._tree: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.labels: dict[str, tuple[str, ...]] = dict(labels or {})

    def add(self, *path: str, n: int = 1) -> None:
        with self._lock:
            node = self._tree
            for key in path[:-1]:
                node = node.setdefault(_bounded(node, key), {})
            key = _bounded(node, path[-1])
            node[key] = node.get(key, 0) + n

    def get(self, *path: str) -> int:
        node: Any = self._tree
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return 0
            node = node[key]
        return node if isinstance(node, int) else 0

    def fold(self, label: str, value: str) -> None:
        """Move the counts under ``value`` of every counter whose first level is ``label`` into
        OTHER: a forgotten camera (common.admission) frees its key and stays in the totals."""
        with self._lock:
            for key, names in self.labels.items():
                node = self._tree.get(key)
                if names[:1] == (label,) and isinstance(node, dict) and value in node:
                    counted = node.pop(value)
                    if isinstance(counted, dict):
                        merge(node.setdefault(OTHER, {}), counted)
                    else:
                        node[OTHER] = node.get(OTHER, 0) + counted

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self._tree))

    def get_tree(self, key: str) -> dict[str, Any]:
        """A copy of one counter's levels (``{}`` when nothing was counted under it)."""
        with self._lock:
            return json.loads(json.dumps(self._tree.get(key, {})))


MAX_KEYS = 2048  # distinct keys under one counter level; past it, new ones are counted as OTHER
OTHER = "other"


def _bounded(node: dict[str, Any], key: str) -> str:
    """``key``, or OTHER once a level holds MAX_KEYS: peers inventing names (workers, cameras)
    cannot grow a daemon's counters, its stats file or its metrics without bound."""
    return key if key in node or len(node) < MAX_KEYS else OTHER


def write_stats(path: str | os.PathLike[str] | None, stats: dict[str, Any]) -> None:
    """Write a daemon's stats JSON atomically (a reader never sees half a file)."""
    if not path:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(stats, indent=2, sort_keys=True))
    tmp.replace(path)


def merge(dst: dict[str, Any], src: dict[str, Any]) -> dict[str, Any]:
    """Add ``src``'s counts into ``dst`` (for a daemon restarted under ``camwire run``)."""
    for key, value in src.items():
        if isinstance(value, dict):
            merge(dst.setdefault(key, {}), value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and isinstance(dst.get(key, 0), (int, float)):
            dst[key] = dst.get(key, 0) + value
        else:
            dst[key] = value
    return dst
