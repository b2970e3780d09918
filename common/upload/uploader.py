"""The :class:`Uploader`: takes an event's parts on the caller's thread (one SQLite transaction in
``uploads.db``), sends the due ones from a dispatcher thread to a bounded pool of PUTs, the manifest
last, retries with a capped backoff, and hands the ``uploaded`` events back to the daemon's loop
(common.upload says how it all goes)."""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import msgspec

from camwire.common import wire
from camwire.common.counters import Counters
from camwire.common.ids import event_id
from camwire.common.logs import RepeatLimiter, redact_url
from camwire.common.upload.parts import Part, index_width, object_key, object_url, upload_id
from camwire.common.upload.queue_db import UploadQueue
from camwire.common.upload.s3 import failure_reason, make_client
from camwire.common.upload.settings import UploadConfig

FIRST_RETRY_S = 1.0
IDLE_S = 1.0  # the dispatcher looks at the queue at least this often
CLOSE_WAIT_S = 5.0  # uploads under way at exit are given this long; the rest resume at the next start


def backoff(attempts: int, cap_s: float) -> float:
    """Seconds before try ``attempts + 1`` after ``attempts`` failed ones: 1, 2, 4 ... up to ``cap_s``."""
    return min(cap_s, FIRST_RETRY_S * 2.0 ** max(0, attempts - 1))



# -- the uploader ---------------------------------------------------------------------------------

class Uploader:
    """The queue, a dispatcher thread and a bounded pool of PUTs; see common.upload's docstring.
    ``folder`` holds ``uploads.db`` (the sink's --data-dir, the recorder's --dir)."""

    def __init__(self, cfg: UploadConfig, folder: Path, counters: Counters, log: Any,
                 client: Any | None = None) -> None:
        self.cfg, self.counters = cfg, counters
        self.log = log.bind(upload=redact_url(cfg.endpoint), bucket=cfg.bucket)
        self.repeats = RepeatLimiter(self.log)  # the dispatcher's own: used from its thread only
        self.queue = UploadQueue(folder / "uploads.db")
        self.client = client if client is not None else make_client(cfg)
        self.pool = ThreadPoolExecutor(cfg.workers, thread_name_prefix="upload")
        self.out: queue.Queue[tuple[str, wire.Event]] = queue.Queue()  # (upload, its uploaded event) for the loop
        self.taken: dict[str, str] = {}  # uploaded event id -> its upload, between take and announced (caller's thread)
        self.wake = threading.Event()
        self.stop = threading.Event()
        self.failing = False  # since the last success: the store refuses or is away
        for upload in self.queue.untold():  # uploaded before a restart, never told
            self.out.put((upload, self._uploaded(upload)))
        self.thread = threading.Thread(target=self._run, name="upload-dispatch", daemon=True)
        self.thread.start()

    # -- the caller's thread --------------------------------------------------------------------

    def enqueue(self, event: wire.Event, body: bytes, parts: Sequence[Part], tag: str = "") -> bool:
        """Queue ``parts`` of ``event`` (``body``: its JSON, for the manifest) and the manifest
        after them, under ``upload_id(event, tag)``: one SQLite transaction. False when there is
        nothing to send, the upload is queued already, or the queue cannot be written (counted
        ``not_queued``)."""
        if not parts:
            return False
        width = index_width(len(parts))
        objects: list[tuple[str | None, str, str, bool]] = [
            (str(p.path), object_key(self.cfg.prefix, event, i, p.name, tag, width), p.content_type, p.remove)
            for i, p in enumerate(parts)]
        objects.append((None, object_key(self.cfg.prefix, event, len(parts), "manifest.json", tag, width),
                        "application/json", False))
        try:
            if not self.queue.add(upload_id(event, tag), body, objects, time.time()):
                return False
        except sqlite3.Error as exc:
            self.counters.add("uploads", "not_queued")
            self.log.error("upload not queued", id=event.id, error=str(exc))
            return False
        self.counters.add("uploads", "queued", n=len(objects))
        self.wake.set()
        return True

    def take(self) -> list[wire.Event]:
        """The ``uploaded`` events ready to be emitted, without waiting."""
        out = []
        while True:
            try:
                upload, event = self.out.get_nowait()
            except queue.Empty:
                return out
            self.taken[event.id] = upload
            out.append(event)

    def announced(self, event: wire.Event) -> None:
        """``event`` (an ``uploaded`` one from :meth:`take`) was emitted: not to be told again after a restart."""
        upload = self.taken.pop(event.id, None)
        if upload is None:
            return
        try:
            self.queue.set_event(upload, "told")
        except sqlite3.Error as exc:
            self.log.warning("upload queue not updated", error=str(exc))

    def pending_paths(self) -> set[str]:
        """Local files still to go: what a restart must keep."""
        return self.queue.pending_paths()

    def close(self) -> None:
        """Stop taking work; uploads under way get CLOSE_WAIT_S; what is left resumes at the next start."""
        self.stop.set()
        self.wake.set()
        self.thread.join(CLOSE_WAIT_S + 1.0)
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.queue.close()

    # -- the dispatcher thread -------------------------------------------------------------------

    def _run(self) -> None:
        busy: dict[Future, tuple] = {}
        try:
            while not self.stop.is_set():
                self.wake.wait(IDLE_S)
                self.wake.clear()
                self._finished(busy)
                free = self.cfg.workers * 2 - len(busy)  # a few queued in the pool: no idle gap between PUTs
                if free > 0:
                    for row in self.queue.due(time.time(), free, {(r[0], r[1]) for r in busy.values()}):
                        manifest = self._manifest(row[0]) if row[2] is None else None
                        future = self.pool.submit(self._put, row, manifest)
                        future.add_done_callback(lambda _f: self.wake.set())
                        busy[future] = row
            deadline = time.monotonic() + CLOSE_WAIT_S
            while busy and time.monotonic() < deadline:
                self.wake.wait(0.1)
                self.wake.clear()
                self._finished(busy)
        except Exception:  # noqa: BLE001 - a broken queue file: said once, the daemon goes on without uploads
            self.log.exception("uploads stopped")

    def _put(self, row: tuple, manifest: bytes | None) -> None:
        """On a pool thread (which never touches the queue): one PUT. Raises what the store or the disk said."""
        path, key, content_type = row[2], row[3], row[6]
        if manifest is not None:
            self.client.put_object(Bucket=self.cfg.bucket, Key=key, Body=manifest, ContentType="application/json")
            return
        with open(path, "rb") as f:  # a file object: boto3 streams it (a clip may be large)
            self.client.put_object(Bucket=self.cfg.bucket, Key=key, Body=f, ContentType=content_type)

    def _manifest(self, upload: str) -> bytes:
        body, keys = self.queue.event(upload)
        return json.dumps({"event": json.loads(body),
                           "parts": [{"key": k, "url": object_url(self.cfg.endpoint, self.cfg.bucket, k)}
                                     for k in keys[:-1]]}, indent=1).encode()

    def _finished(self, busy: dict[Future, tuple]) -> None:
        for future in [f for f in busy if f.done()]:
            row = busy.pop(future)
            upload, part, path, key, attempts, created, _content_type, remove = row
            exc = future.exception() if not future.cancelled() else None
            now = time.time()
            if exc is None:
                self.queue.mark(upload, part, "done", attempts + 1, now, None)
                self.counters.add("uploads", "uploaded")
                if remove:
                    _remove(path)
                if self.failing:
                    self.failing = False
                    self.log.info("uploads go again")
                    self.queue.all_due_now(now)
                if path is None:
                    self.counters.add("uploads", "manifests")
                    self.queue.set_event(upload, "uploaded")
                    self.out.put((upload, self._uploaded(upload)))
                continue
            error = failure_reason(exc)
            gone = isinstance(exc, FileNotFoundError)  # the file was pruned before it could go
            if gone or now - created >= self.cfg.retry_for:
                self.queue.mark(upload, part, "failed", attempts + 1, now, error)
                self.counters.add("uploads", "failed")
                for other in self.queue.removable(upload):  # failed for good: the upload's own files go too
                    _remove(other)
                self.repeats(f"failed:{error}", "upload failed for good", level="error", id=upload, key=key,
                             error=error)
                continue
            self.failing = True
            self.queue.mark(upload, part, "pending", attempts + 1, now + backoff(attempts + 1, self.cfg.retry_max),
                            error)
            self.counters.add("uploads", "retried")
            self.repeats(f"retry:{error}", "upload failed; will retry", error=error)

    def _uploaded(self, upload: str) -> wire.Event:
        body, keys = self.queue.event(upload)
        of = msgspec.json.decode(body.encode(), type=wire.Event)
        urls = [object_url(self.cfg.endpoint, self.cfg.bucket, k) for k in keys]
        now = time.time_ns()
        return wire.Event(id=event_id(now, of.camera, "uploaded"), type="uploaded", camera=of.camera, ts=now / 1e9,
                          snapshot=of.snapshot, object_id=of.object_id, label=of.label, of=of.id, urls=urls)


def _remove(path: str) -> None:
    """A part's local file, once it is up or failed for good; its folder too once empty (an
    object's frames)."""
    target = Path(path)
    try:
        target.unlink(missing_ok=True)
        target.parent.rmdir()
    except OSError:  # the folder is not empty (a kept clip's, frames still to go): it stays
        pass
