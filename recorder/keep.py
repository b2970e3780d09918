"""Keeping the ring segments around an event: ``DIR/kept/<date>/<event id>/``.

An event at capture time ``t`` keeps every segment of its camera that overlaps
``[t - pre, t + post]``: each is hard-linked there (no copy; a copy only where the file system
cannot link) with ``event.json`` beside them. The segments are whole files; the window they were
kept for is in the index's row and in ``event.json`` (``window``: ``from_ns``, ``to_ns``), and
what makes a clip of them (web.recordings, recorder.uploads) cuts it to that window, from the key
frame at or before its start. Ring retention deletes ring paths only, so a kept file lives on
under ``kept/``, within the kept clips' own budget (``--keep-retain`` by event time,
``--keep-max-bytes`` in all, the oldest event going first), and by nothing else: the volume's
free-space floor (``--min-free``) never deletes evidence; when the ring alone cannot meet it,
recording pauses instead (recorder.retention, recorder.pause). An event that arrives
before its post window has been recorded stays pending (in the index, so a restart does not
forget it) and is completed as later segments close, or when its camera ends.

A tracked object (an ``object`` event, sink.tracking) keeps one clip, not one per event:
``kept/<date first seen>/<object id>/`` over ``[first seen - pre, last seen + post]``. Its start
makes it; each update and its end stretch the window to the new last seen (a clip already
complete is opened again and gains the segments of the longer window) and its ``event.json``
becomes the newest event, with the stretched window, at once. Objects seen at the same time keep
the same ring segments: hard links to one file, stored once. An update or end whose start this
recorder never saw (it started late) makes the clip then.

A clip complete is handed to ``completed`` when one is set (recorder.uploads: kept clips to
object storage), on the same thread, before the budgets are enforced.

An event the keeper refuses is logged and counted under ``keeps_refused/<reason>``: ``duplicate``
(an event id it already keeps: the sink's PUB seen twice, or a replay), ``clock_skew`` (a time
far from the wall clock, whose window would never be recorded), ``index_error`` (a full disk).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable

import msgspec

from camwire.common.settings.shared import KEEP_TYPES
from camwire.common import wire
from camwire.common.counters import Counters
from camwire.common.logs import RepeatLimiter
from camwire.common.paths import safe_name, utc_day
from camwire.recorder.index import Index, Keep, Segment

KEPT_DIR = "kept"
# motion alone is too common to keep by default: a tree in the wind would fill the disk
DEFAULT_KEEP_TYPES = KEEP_TYPES  # the settings' default


class Keeper:
    def __init__(self, root: Path, index: Index, pre_s: float, post_s: float, types: tuple[str, ...],
                 counters: Counters, log, repeats: RepeatLimiter, max_skew_s: float = 86400.0,
                 retain_s: float | None = None, max_bytes: int | None = None) -> None:
        self.root, self.index = root, index
        self.counters, self.log, self.repeats = counters, log, repeats
        self.configure(pre_s, post_s, types, max_skew_s, retain_s, max_bytes)
        self._sizes: dict[str, int] = {}  # event id -> bytes of its complete folder
        self.completed: Callable[[Keep], None] | None = None  # told of each clip completed (recorder.uploads)

    def configure(self, pre_s: float, post_s: float, types: tuple[str, ...], max_skew_s: float,
                  retain_s: float | None, max_bytes: int | None) -> None:
        """The settings (at start, and again on a reload): new events take the new window and
        types; the budgets apply from the next round on."""
        self.pre_ns, self.post_ns = int(pre_s * 1e9), int(post_s * 1e9)
        self.types = set(types)
        self.max_skew_ns = int(max_skew_s * 1e9)
        self.retain_s, self.max_bytes = retain_s, max_bytes

    def on_event(self, event: wire.Event) -> str | None:
        """Start keeping for an event from the sink; returns the camera, or None if not kept."""
        if event.type not in self.types:
            return None
        t_ns = int(event.ts * 1e9)
        if abs(t_ns - time.time_ns()) > self.max_skew_ns:
            return self._refuse(event, "clock_skew")
        body = {k: v for k, v in msgspec.to_builtins(event).items() if k not in ("v", "kind")}
        if event.object_id is not None and event.first_seen is not None and event.last_seen is not None:
            key, first_ns, last_ns = event.object_id, int(event.first_seen * 1e9), int(event.last_seen * 1e9)
            try:
                if self.index.extend_keep(key, last_ns + self.post_ns, body):
                    self._sizes.pop(key, None)  # measured again once complete
                    self._stretched(key, event.camera)
                    return event.camera
            except sqlite3.OperationalError as exc:
                return self._refuse(event, "index_error", error=str(exc))
        else:
            key, first_ns, last_ns = event.id, t_ns, t_ns
        folder = Path(KEPT_DIR) / utc_day(first_ns / 1e9) / safe_name(key)
        keep = Keep(key, event.camera, first_ns - self.pre_ns, last_ns + self.post_ns, str(folder), False, body)
        try:
            if not self.index.add_keep(keep):
                return self._refuse(event, "duplicate")
            (self.root / folder).mkdir(parents=True, exist_ok=True)
            self._write_json(keep, [], complete=False)
        except sqlite3.OperationalError as exc:
            return self._refuse(event, "index_error", error=str(exc))
        except OSError as exc:  # the row is there: the folder and its JSON are made again when it completes
            self.repeats("keep:write", "kept clip folder not written yet", level="error", error=str(exc))
        self.counters.add("events_kept", event.type)
        self.log.info("keeping event", event_id=event.id, camera=event.camera, type=event.type)
        return event.camera

    def _stretched(self, key: str, camera: str) -> None:
        """An object's clip just took a later event: its ``event.json`` says the new window (and
        event) at once, as pending, not only once the longer window is on disk, so what reads the
        folder never cuts to a window the clip has outgrown. A window that did not grow leaves a
        complete clip complete: its JSON is written when it completes again, if ever."""
        try:
            keep = next((k for k in self.index.pending_keeps(camera) if k.event_id == key), None)
            if keep is not None:
                self._write_json(keep, _mkv_names(self.root / keep.dir), complete=False)
        except (OSError, sqlite3.OperationalError) as exc:  # kept all the same: its JSON comes when it completes
            self.repeats("keep:write", "kept clip folder not written yet", level="error", error=str(exc))

    def _refuse(self, event: wire.Event, reason: str, **kw: Any) -> None:
        self.counters.add("keeps_refused", reason)
        self.repeats(f"keep-refused:{reason}", "event not kept", reason=reason, event_id=event.id,
                     camera=event.camera, **kw)
        return None

    def update(self, camera: str, recorded_to_ns: int, open_start_ns: int | None, ended: bool) -> None:
        """Link what has been recorded for ``camera``'s pending events; complete those whose window
        is fully on disk (recorded past its end, and not in the file still being written)."""
        completed = False
        for keep in self.index.pending_keeps(camera):
            files = self._link(keep)
            past_window = recorded_to_ns >= keep.to_ns and (open_start_ns is None or open_start_ns >= keep.to_ns)
            if ended or past_window:
                self._write_json(keep, files, complete=True)
                self.index.complete_keep(keep.event_id)
                completed = True
                self.log.info("event clip kept", event_id=keep.event_id, camera=camera, files=len(files))
                if self.completed is not None:
                    self.completed(keep)
        if completed:
            self.enforce()

    def enforce(self) -> None:
        """Delete kept clips older than ``retain_s`` (by event time, against the wall clock; pending
        ones too, for a camera that never recorded their window), then the oldest complete ones
        until all of them together are within ``max_bytes``."""
        if self.retain_s is not None:
            before_ns = time.time_ns() - int(self.retain_s * 1e9)
            for keep in self.index.keeps(complete=False, before_ns=before_ns):
                self.delete(keep, "keep_age")
        if self.max_bytes is not None:
            keeps = self.index.keeps(complete=True)
            # a complete clip's files no longer change: each folder is measured once
            for k in keeps:
                if k.event_id not in self._sizes:
                    self._sizes[k.event_id] = _folder_bytes(self.root / k.dir)
            sizes = [self._sizes[k.event_id] for k in keeps]
            total = sum(sizes)
            for keep, size in zip(keeps, sizes):
                if total <= self.max_bytes:
                    break
                self.delete(keep, "keep_bytes")
                total -= size

    def delete(self, keep: Keep, reason: str) -> set[int]:
        """Delete a kept clip, counted under ``deleted/<reason>``; returns the ids of the ring
        segments it held links to (their ring paths may free space now). On a disk too full for
        the index to write, the folder still goes (that frees the space) and the error is raised:
        the row goes in a later round."""
        linked = self.index.kept_segment_ids(keep.event_id)
        try:
            self.index.delete_keep(keep.event_id)  # first: a folder left half-deleted is not in the index
        except sqlite3.OperationalError:
            shutil.rmtree(self.root / keep.dir, ignore_errors=True)
            raise
        self._sizes.pop(keep.event_id, None)
        shutil.rmtree(self.root / keep.dir, ignore_errors=True)
        self.counters.add("deleted", reason)
        self.log.info("kept clip deleted", event_id=keep.event_id, camera=keep.camera, reason=reason)
        return linked

    def _link(self, keep: Keep) -> list[str]:
        done = self.index.kept_segment_ids(keep.event_id)
        folder = self.root / keep.dir
        folder.mkdir(parents=True, exist_ok=True)
        for seg in self.index.overlapping(keep.camera, keep.from_ns, keep.to_ns):
            if seg.id in done:
                continue
            target = folder / kept_name(keep.camera, seg)
            try:
                os.link(self.root / seg.path, target)
            except FileExistsError:
                pass
            except OSError:  # another file system, or links not allowed: a copy is the fallback
                shutil.copy2(self.root / seg.path, target)
                self.counters.add("kept_copies")
            self.index.mark_kept(keep.event_id, seg.id, str(target.relative_to(self.root)))
        return _mkv_names(folder)

    def _write_json(self, keep: Keep, files: list[str], complete: bool) -> None:
        body = {**keep.event, "window": {"from_ns": keep.from_ns, "to_ns": keep.to_ns},
                "files": files, "complete": complete}
        path = self.root / keep.dir / "event.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(body, indent=1))
        tmp.replace(path)


def kept_name(camera: str, seg: Segment) -> str:
    """The name a ring segment is linked under in a kept clip's folder."""
    return f"{safe_name(camera)}-{Path(seg.path).name}"


def _mkv_names(folder: Path) -> list[str]:
    """The segment files linked into a kept clip's folder, by name (its clip.mp4 is not one)."""
    return sorted(p.name for p in folder.iterdir() if p.suffix == ".mkv")


def _folder_bytes(folder: Path) -> int:
    try:
        return sum(entry.stat().st_size for entry in os.scandir(folder) if entry.is_file())
    except FileNotFoundError:
        return 0
