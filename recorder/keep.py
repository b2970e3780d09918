"""Keeping the ring segments around an event: ``DIR/kept/<date>/<event id>/``.

An event at capture time ``t`` keeps every segment of its camera that overlaps
``[t - pre, t + post]``: each is hard-linked there (no copy; a copy only where the file system
cannot link) with ``event.json`` beside them. Retention deletes ring paths only, so a kept file
lives on under ``kept/`` until the user removes it. An event that arrives before its post window
has been recorded stays pending (in the index, so a restart does not forget it) and is completed
as later segments close, or when its camera ends.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from common.counters import Counters
from common.paths import safe_name, utc_day
from recorder.index import Index, Keep

KEPT_DIR = "kept"
DEFAULT_KEEP_TYPES = ("detection", "motion", "camera_covered")


class Keeper:
    def __init__(self, root: Path, index: Index, pre_s: float, post_s: float, types: tuple[str, ...],
                 counters: Counters, log) -> None:
        self.root, self.index = root, index
        self.pre_ns, self.post_ns = int(pre_s * 1e9), int(post_s * 1e9)
        self.types = set(types)
        self.counters = counters
        self.log = log

    def on_event(self, event: dict[str, Any]) -> str | None:
        """Start keeping for an event map from the sink; returns the camera, or None if ignored."""
        etype, camera, ts, event_id = (event.get(k) for k in ("type", "camera", "ts", "id"))
        if etype not in self.types:
            return None
        if not (isinstance(camera, str) and isinstance(event_id, str) and isinstance(ts, (int, float))):
            self.counters.add("malformed", "bad_event")
            return None
        t_ns = int(ts * 1e9)
        folder = Path(KEPT_DIR) / utc_day(ts) / safe_name(event_id)
        event = {k: v for k, v in event.items() if k not in ("v", "kind")}
        keep = Keep(event_id, camera, t_ns - self.pre_ns, t_ns + self.post_ns, str(folder), False, event)
        if not self.index.add_keep(keep):
            return None
        (self.root / folder).mkdir(parents=True, exist_ok=True)
        self._write_json(keep, [], complete=False)
        self.counters.add("events_kept", etype)
        self.log.info("keeping event", event_id=event_id, camera=camera, type=etype)
        return camera

    def update(self, camera: str, recorded_to_ns: int, open_start_ns: int | None, ended: bool) -> None:
        """Link what has been recorded for ``camera``'s pending events; complete those whose window
        is fully on disk (recorded past its end, and not in the file still being written)."""
        for keep in self.index.pending_keeps(camera):
            files = self._link(keep)
            past_window = recorded_to_ns >= keep.to_ns and (open_start_ns is None or open_start_ns >= keep.to_ns)
            if ended or past_window:
                self.index.complete_keep(keep.event_id)
                self._write_json(keep, files, complete=True)
                self.log.info("event clip kept", event_id=keep.event_id, camera=camera, files=len(files))

    def _link(self, keep: Keep) -> list[str]:
        done = self.index.kept_segment_ids(keep.event_id)
        folder = self.root / keep.dir
        for seg in self.index.overlapping(keep.camera, keep.from_ns, keep.to_ns):
            if seg.id in done:
                continue
            target = folder / f"{safe_name(keep.camera)}-{Path(seg.path).name}"
            try:
                os.link(self.root / seg.path, target)
            except FileExistsError:
                pass
            except OSError:  # another file system, or links not allowed: a copy is the fallback
                shutil.copy2(self.root / seg.path, target)
                self.counters.add("kept_copies")
            self.index.mark_kept(keep.event_id, seg.id, str(target.relative_to(self.root)))
        return sorted(p.name for p in folder.iterdir() if p.suffix == ".mkv")

    def _write_json(self, keep: Keep, files: list[str], complete: bool) -> None:
        body = {**keep.event, "window": {"from_ns": keep.from_ns, "to_ns": keep.to_ns},
                "files": files, "complete": complete}
        path = self.root / keep.dir / "event.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(body, indent=1))
        tmp.replace(path)

