"""Kept clips to object storage (``[upload] what = ["clips"]``, common.upload): the recorder's side.

No sockets of its own. When the keeper (recorder.keep) completes a kept clip whose event is final
(:func:`final`: an ``object`` clip once its newest event is the object's ``end``; a clip of any
other type at once), :meth:`ClipUploads.completed` remuxes its kept segments into one MP4
(recorder.clip: packets copied, never re-encoded, cut to the keep's window from the key frame
at or before its start) written as ``DIR/kept/<date>/<id>/clip.mp4``, and queues it with the
keep's ``event.json`` in the recorder's ``DIR/uploads.db``; the manifest goes last. The remux
runs on a thread of its own, one clip after another: the main loop, which records every camera,
never waits for it (an object seen for an hour is an hour of video to copy). The index stays on
the main loop: it names the segments there, and the thread only reads their files. The MP4 sits in
the kept folder, so it counts in the kept clips' budget (``--keep-max-bytes``, ``--keep-retain``:
deleted with its folder, an upload not done by then fails for good), and it is
deleted once it is up (or failed for good): the segments beside it stay.

The ``uploaded`` events (:meth:`ClipUploads.tell`, on the main loop) go over the recorder's PUSH
to the sink's results address (``--sink``), which emits them as its own (events file, PUB, MQTT,
webhook). One the PUSH cannot take now (no sink yet, its queue full) waits for the next round;
one accepted there is marked told.

At start (:meth:`ClipUploads.resume`), a final kept clip completed within ``retry_for`` and never
queued (the recorder was killed or stopped while it made the MP4 or before its turn came, or
``clips`` was just turned on) is queued then: a restart loses no clip. A stop waits for the MP4
under way, not for those after it.

An MP4 that could not be written for a reason that may pass (an OSError: a full disk, most
often) is tried again by :meth:`ClipUploads.retry` on the main loop's housekeeping, after
RETRY_FIRST_S and then doubling up to RETRY_CAP_S, for as long as ``retry_for`` allows: space
given back means the clip goes up without a restart. It is counted under ``uploads/not_queued``
once, when it first fails; the retries that fail again are logged at most once a minute.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import msgspec

from camwire.common import wire
from camwire.common.counters import Counters
from camwire.common.sinks import Sinks
from camwire.common.lifecycle import backoff_delay
from camwire.common.logs import RepeatLimiter
from camwire.common.upload import Part, Uploader, upload_id
from camwire.recorder.clip import write_clip
from camwire.recorder.index import Index, Keep, Segment
from camwire.recorder.keep import kept_name

CLIP_NAME = "clip.mp4"
RETRY_FIRST_S = 5.0  # a clip whose MP4 could not be written is tried again after this, then doubling
RETRY_CAP_S = 60.0


def final(event: dict[str, Any]) -> bool:
    """Whether a kept clip's newest event is its last: an object's end, or any event not of an object."""
    return event.get("object_id") is None or event.get("phase") == "end"


@dataclass(slots=True)
class _Failed:
    """A clip whose MP4 could not be written, waiting to be tried again."""

    keep: Keep
    failures: int
    due: float  # monotonic


class ClipUploads:
    def __init__(self, uploader: Uploader, root: Path, index: Index, counters: Counters, log: Any,
                 repeats: RepeatLimiter | None = None) -> None:
        self.uploader, self.root, self.index = uploader, root, index
        self.counters, self.log = counters, log
        self.repeats = repeats or RepeatLimiter(log)
        self.unsent: list[wire.Event] = []  # taken from the uploader, not yet accepted by the PUSH
        self.remux = ThreadPoolExecutor(1, thread_name_prefix="clip-remux")  # one clip at a time, in order
        # by event id: written by the remux thread when an MP4 fails, taken by the main loop's retry
        self._failed: dict[str, _Failed] = {}
        self._failed_lock = threading.Lock()

    def resume(self, now_ns: int) -> int:
        """Queue the final kept clips whose window ended within ``retry_for`` and that were never
        queued; how many. An index that cannot be read now (a full disk) is said and skipped."""
        since = self._retry_from(now_ns)
        try:
            keeps = [k for k in self.index.keeps(complete=True) if k.to_ns >= since and final(k.event)]
            missed = [k for k in keeps
                      if not self.uploader.queue.known(upload_id(msgspec.convert(k.event, wire.Event), "clip"))]
        except (sqlite3.Error, msgspec.ValidationError) as exc:
            self.log.error("kept clips not looked over for upload", error=str(exc)[:300])
            return 0
        for keep in missed:
            self.completed(keep)
        return len(missed)

    def _retry_from(self, now_ns: int) -> int:
        """The oldest window end still within ``retry_for``: a clip that ended before it is not tried."""
        return now_ns - int(self.uploader.cfg.retry_for * 1e9)

    def completed(self, keep: Keep) -> None:
        """The keeper completed ``keep`` (on the main thread, its folder and event.json written):
        if its event is final, its kept segments go to the remux thread, to be made into an MP4
        and queued. Never raises: a clip that cannot be made is logged."""
        if not final(keep.event):
            return
        try:
            linked = self.index.kept_segment_ids(keep.event_id)
            segments = [replace(seg, path=str(Path(keep.dir) / kept_name(keep.camera, seg)))
                        for seg in self.index.overlapping(keep.camera, keep.from_ns, keep.to_ns) if seg.id in linked]
        except sqlite3.Error as exc:
            self._not_queued(keep, exc, again=True)  # an index that cannot be read now (a full disk)
            return
        self.remux.submit(self._queue, keep, segments)

    def retry(self, now_ns: int) -> None:
        """On the main loop: hand the clips whose MP4 failed, and whose turn has come, back to the
        remux thread. One past ``retry_for``, or whose kept clip has been deleted, is given up."""
        now = time.monotonic()
        with self._failed_lock:
            due = [f.keep for f in self._failed.values() if f.due <= now]
            for keep in due:
                self._failed[keep.event_id].due = float("inf")  # under way: its outcome sets the next
        since = self._retry_from(now_ns)
        for keep in due:
            try:
                deleted = not self.index.kept_segment_ids(keep.event_id)
            except sqlite3.Error:
                continue  # the index cannot be read now (a full disk): the next round
            if keep.to_ns < since or deleted:
                with self._failed_lock:
                    self._failed.pop(keep.event_id, None)
                self.log.error("kept clip not uploaded: given up", event_id=keep.event_id,
                               reason="its kept clip was deleted" if deleted else "past retry_for")
                continue
            self.completed(keep)

    def _queue(self, keep: Keep, segments: list[Segment]) -> None:
        """On the remux thread: the MP4 of ``segments`` cut to the keep's window, then queued."""
        folder = self.root / keep.dir
        mp4 = folder / CLIP_NAME
        try:
            event = msgspec.convert(keep.event, wire.Event)
            if not segments:
                raise LookupError("no segment of its window is indexed")
            t0 = time.monotonic()
            frames = write_clip(segments, self.root, keep.from_ns, keep.to_ns, mp4, {"movflags": "+faststart"})
            size = mp4.stat().st_size  # now: once queued, the MP4 may be up and gone at any moment
        except Exception as exc:  # noqa: BLE001 - an error on this thread is seen nowhere else: the clip is said
            mp4.unlink(missing_ok=True)
            self._not_queued(keep, exc, again=isinstance(exc, OSError))
            return
        with self._failed_lock:
            retried = self._failed.pop(keep.event_id, None)
        parts = [Part(mp4, CLIP_NAME, "video/mp4", remove=True), Part(folder / "event.json", "event.json",
                                                                       "application/json")]
        if not self.uploader.enqueue(event, msgspec.json.encode(event), parts, tag="clip"):
            mp4.unlink(missing_ok=True)  # queued already (a replay), or the queue refused it (counted)
            return
        self.log.info("kept clip queued for upload", event_id=keep.event_id, frames=frames, segments=len(segments),
                      bytes=size, remux_s=round(time.monotonic() - t0, 3),
                      **({"after_failures": retried.failures} if retried else {}))

    def _not_queued(self, keep: Keep, exc: BaseException, again: bool) -> None:
        """A clip with no MP4 (from either thread), counted and said once; ``again``: tried again
        later (:meth:`retry`), else given up now (no segment indexed, a corrupt file)."""
        with self._failed_lock:
            before = self._failed.pop(keep.event_id, None)
            failures = before.failures + 1 if before else 1
            delay = backoff_delay(failures, RETRY_FIRST_S, RETRY_CAP_S)
            if again:
                self._failed[keep.event_id] = _Failed(keep, failures, time.monotonic() + delay)
        error = str(exc)[:300]
        if before is None:
            self.counters.add("uploads", "not_queued")
            self.log.error("kept clip not uploaded: no MP4", event_id=keep.event_id, error=error,
                           **({"retry_in_s": delay} if again else {}))
        else:
            self.repeats(f"clip-again:{keep.event_id}", "kept clip still has no MP4", level="error",
                         event_id=keep.event_id, error=error, failures=failures,
                         **({"retry_in_s": delay} if again else {}))

    def tell(self, sinks: Sinks) -> None:
        """Every round of the main loop's timer: the ``uploaded`` events, each to its camera's sink,
        without blocking."""
        self.unsent += self.uploader.take()
        # one a sink cannot take now (none connected yet, or its queue full) waits for the next round
        for event in sinks.send_events(list(self.unsent)):
            self.unsent.remove(event)
            self.uploader.announced(event)

    def close(self) -> None:
        """The MP4 under way is finished and queued; the clips waiting for their turn are left to
        the next start (:meth:`resume`). What was not told stays ``uploaded`` in uploads.db: told
        after the next start."""
        self.remux.shutdown(wait=True, cancel_futures=True)
        self.uploader.close()
