"""Event media to object storage: an event's files, then its manifest, on any S3-compatible store.

``[upload]`` in camwire.toml (parsed and judged at load by :func:`upload_from_config`)::

    [upload]
    endpoint = "http://127.0.0.1:9000"   # AWS, MinIO, Ceph, GCS interop: path-style requests
    bucket = "camwire"
    prefix = "site1"                     # keys start PREFIX/ (default: none)
    access_key = "${S3_ACCESS_KEY}"      # always a ${VAR}: from the environment or a .env
    secret_key = "${S3_SECRET_KEY}"
    region = "us-east-1"                 # optional
    what = ["snapshots", "clips", "frames"]   # any of them (default: snapshots)
    retry_for = "24h"                    # a part not up by then is failed (kept in the queue as such)
    retry_max = "5m"                     # the longest wait between two tries of one part
    workers = 8                          # uploads at once

What goes, and who sends it (one :class:`Uploader`, its ``uploads.db`` in that daemon's folder):

- ``snapshots`` (the sink, ``DATA_DIR/uploads.db``): each event's snapshot files as the sink wrote
  them (:func:`snapshot_parts`), under ``EVENT_ID/00-snapshot.jpg, 01-clean.jpg, 02-thumb.jpg``;
- ``frames`` (the sink): every frame JPEG of a tracked object (classifier.frames), at its ``end``,
  under ``END_EVENT_ID.frames/000-frame-SEQ.jpg ...`` in seq order, each file deleted once up;
- ``clips`` (the recorder, ``DIR/uploads.db``): a kept clip once complete and final, one MP4
  remuxed from its segments and its event.json (recorder.uploads), under ``EVENT_ID.clip/``.

The caller hands an event and its parts (:class:`Part`: local file, name, Content-Type) to
:meth:`Uploader.enqueue`: one SQLite transaction (a row per object, a row per upload), nothing
else on the caller's thread. A dispatcher thread sends the due parts to a bounded pool (one boto3
client, ``max_pool_connections = workers``) under keys that carry their order (the index is
zero-padded as wide as the manifest's, so keys sort in order)::

    PREFIX/CAMERA/UTC-DATE/EVENT_ID[.TAG]/00-snapshot.jpg, 01-clean.jpg, ..., then NN-manifest.json

The manifest (the event's JSON, each part's key and URL) goes only once every part is up; then an
``uploaded`` common.wire.Event (``of``: the event's id, ``urls``: the parts' then the manifest's)
waits in a thread-safe queue the daemon drains on its own loop (:meth:`Uploader.take`): the sink
emits it like any event (events file, PUB, MQTT, webhook), the recorder pushes it to the sink,
which emits it the same way; then it is marked as told (:meth:`Uploader.announced`).

A failed PUT (the store down, 5xx, a missing bucket, refused keys) is tried again after an
exponential, capped wait (:func:`backoff`) until ``retry_for`` has passed since the event was
queued; then it is failed. The first success after failures makes every waiting part due at once
(the store is back). A restart resumes what the queue holds, and tells what was uploaded but not
yet told. A part queued with ``remove`` (a frame, a clip's MP4) is deleted once up, or once its
upload failed for good. Counted under ``uploads/<outcome>``: queued, uploaded, retried, failed,
manifests, not_queued (the queue itself could not be written: a full disk). Keys are never logged.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
import time
from argparse import ArgumentTypeError
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Sequence
from urllib.parse import quote, urlsplit

import msgspec

from common import wire
from common.counters import Counters
from common.env import VAR, expand
from common.ids import event_id
from common.logs import RepeatLimiter, redact_url
from common.paths import safe_name, utc_day
from common.units import duration

WHAT = ("snapshots", "clips", "frames")
SINK_WHAT = ("snapshots", "frames")  # uploaded by the sink; clips by the recorder
KEYS = ("endpoint", "bucket", "prefix", "access_key", "secret_key", "region", "what", "retry_for", "retry_max",
        "workers")
# a snapshot's files (classifier.snapshots), in the order their keys carry
PARTS = ((".jpg", "snapshot.jpg"), (".clean.jpg", "clean.jpg"), (".thumb.jpg", "thumb.jpg"))
FIRST_RETRY_S = 1.0
IDLE_S = 1.0  # the dispatcher looks at the queue at least this often
CLOSE_WAIT_S = 5.0  # uploads under way at exit are given this long; the rest resume at the next start
SCHEMA = """
CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, body TEXT NOT NULL, created REAL NOT NULL,
                                   state TEXT NOT NULL);   -- pending, uploaded (not told yet), told, failed
CREATE TABLE IF NOT EXISTS objects (event TEXT NOT NULL, part INTEGER NOT NULL, path TEXT, key TEXT NOT NULL,
                                    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
                                    next_try REAL NOT NULL, error TEXT,
                                    PRIMARY KEY (event, part));  -- path NULL: the manifest, always last
CREATE INDEX IF NOT EXISTS due ON objects (state, next_try);
"""
# columns added since the first uploads.db (snapshots only): added to such a file at open
ADDED = (("content_type", "TEXT NOT NULL DEFAULT 'image/jpeg'"), ("remove", "INTEGER NOT NULL DEFAULT 0"))


@dataclass(frozen=True)
class UploadConfig:
    endpoint: str
    bucket: str
    prefix: str = ""
    access_key: str | None = field(default=None, repr=False)  # resolved secrets: never shown
    secret_key: str | None = field(default=None, repr=False)
    region: str | None = None
    what: tuple[str, ...] = ("snapshots",)
    retry_for: float = 86400.0
    retry_max: float = 300.0
    workers: int = 8


def upload_from_config(data: dict[str, Any], env: dict[str, str] | None = None) -> UploadConfig | None:
    """The file's ``[upload]`` table judged (registered with common.config by camwire.cli), or
    None without one; its ``${VAR}`` from ``env`` (common.config: the environment over the .env
    beside the file), else the environment and the working folder's .env. ValueError starting with
    the dotted key at fault."""
    table = data.get("upload")
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ValueError("upload: [upload] must be a table")
    for key in table:
        if key not in KEYS:
            raise ValueError(f"upload.{key}: unknown key {key!r}; known: {', '.join(KEYS)}")
    for key in ("endpoint", "bucket"):
        if not isinstance(table.get(key), str) or not table[key]:
            raise ValueError(f"upload.{key if key in table else 'endpoint'}: [upload] needs {key} = \"...\"")
    endpoint = table["endpoint"]
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"upload.endpoint: an http:// or https:// URL, not {redact_url(endpoint)!r}")
    bucket = table["bucket"]
    if not (3 <= len(bucket) <= 63 and all(c.islower() or c.isdigit() or c in ".-" for c in bucket)
            and bucket[0].isalnum() and bucket[-1].isalnum()):
        raise ValueError(f"upload.bucket: a bucket name is 3 to 63 of a-z 0-9 . - , not {bucket!r}")
    prefix = table.get("prefix", "")
    if not isinstance(prefix, str):
        raise ValueError("upload.prefix: a string")
    keys = {k: _secret(table, k, env) for k in ("access_key", "secret_key")}
    if (keys["access_key"] is None) != (keys["secret_key"] is None):
        raise ValueError("upload.access_key: give both access_key and secret_key, or neither (boto3's own chain)")
    region = table.get("region")
    if region is not None and (not isinstance(region, str) or not region):
        raise ValueError("upload.region: a region name such as \"us-east-1\"")
    what = table.get("what", ["snapshots"])
    if not isinstance(what, list) or not what or not all(isinstance(w, str) for w in what):
        raise ValueError("upload.what: a list such as [\"snapshots\", \"clips\"]")
    other = [w for w in what if w not in WHAT]
    if other:
        raise ValueError(f"upload.what: {other[0]!r} is not uploaded; any of {', '.join(WHAT)}")
    timing = {}
    for key, default in (("retry_for", "24h"), ("retry_max", "5m")):
        try:
            timing[key] = duration(table.get(key, default))
        except (ValueError, TypeError, ArgumentTypeError) as exc:
            raise ValueError(f"upload.{key}: {exc}") from None
        if timing[key] <= 0:
            raise ValueError(f"upload.{key}: must be positive")
    workers = table.get("workers", 8)
    if not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= 256:
        raise ValueError(f"upload.workers: a number from 1 to 256, not {workers!r}")
    return UploadConfig(endpoint.rstrip("/"), bucket, prefix.strip("/"), keys["access_key"], keys["secret_key"],
                        region, tuple(dict.fromkeys(what)), timing["retry_for"], timing["retry_max"], workers)


def _secret(table: dict[str, Any], key: str, env: dict[str, str] | None) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not VAR.fullmatch(value):
        raise ValueError(f"upload.{key}: give it as \"${{VAR}}\" (set in the environment or a .env), "
                         f"never written in the file")
    name = VAR.fullmatch(value).group(1)
    if env is not None and name in env:
        return env[name]
    return expand(value, f"upload.{key}")


# -- pure decisions ---------------------------------------------------------------------------------

def backoff(attempts: int, cap_s: float) -> float:
    """Seconds before try ``attempts + 1`` after ``attempts`` failed ones: 1, 2, 4 ... up to ``cap_s``."""
    return min(cap_s, FIRST_RETRY_S * 2.0 ** max(0, attempts - 1))


class Part(NamedTuple):
    """One file of an upload: where it is, its name in the key (after ``NN-``), its Content-Type,
    and whether the local file is deleted once up (or once its upload failed for good)."""

    path: Path
    name: str
    content_type: str
    remove: bool = False


def upload_id(event: wire.Event, tag: str = "") -> str:
    """The folder of one upload, and its row in uploads.db: the event's id, with ``.TAG`` for a
    clip's or frames' upload, so an event's snapshot, clip and frames never share a manifest."""
    return f"{event.id}.{tag}" if tag else event.id


def object_key(prefix: str, event: wire.Event, index: int, name: str, tag: str = "", width: int = 2) -> str:
    """``PREFIX/CAMERA/UTC-DATE/EVENT_ID[.TAG]/NN-name``: the order of an upload's parts is in their
    keys (``width`` digits: as many as the manifest's index needs, so they sort as numbers)."""
    head = f"{prefix}/" if prefix else ""
    return (f"{head}{safe_name(event.camera)}/{utc_day(event.ts)}/{safe_name(upload_id(event, tag))}/"
            f"{index:0{width}d}-{name}")


def index_width(parts: int) -> int:
    """Digits for the keys of ``parts`` parts and the manifest after them: 2 at least."""
    return max(2, len(str(parts)))


def object_url(endpoint: str, bucket: str, key: str) -> str:
    """A path-style URL (what every S3-compatible store answers)."""
    return f"{endpoint}/{bucket}/{quote(key)}"


def snapshot_parts(data_dir: Path, event: wire.Event) -> list[Part]:
    """The snapshot files the store wrote for ``event`` (``event.snapshot`` is relative to
    ``data_dir``), in key order; they stay (the snapshot store prunes them)."""
    jpg = data_dir / event.snapshot
    stem = jpg.name[:-len(".jpg")]
    found = [Part(jpg.with_name(stem + suffix), name, "image/jpeg") for suffix, name in PARTS]
    return [part for part in found if part.path.exists()]


# -- the queue ------------------------------------------------------------------------------------

class UploadQueue:
    """``uploads.db``: what is to go, what went, what failed. One connection, under a lock: the
    sink's thread adds (one transaction), the dispatcher thread takes and marks."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, check_same_thread=False, timeout=5.0)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        have = {row[1] for row in self.db.execute("PRAGMA table_info(objects)")}
        for column, kind in ADDED:
            if column not in have:
                self.db.execute(f"ALTER TABLE objects ADD COLUMN {column} {kind}")
        self.lock = threading.Lock()

    def add(self, upload: str, body: bytes, objects: list[tuple[str | None, str, str, bool]], now: float) -> bool:
        """One upload and its objects (``(local path or None for the manifest, key, Content-Type,
        remove)``, in order); False when that upload is queued already (nothing added)."""
        with self.lock, self.db:  # one transaction: committed whole, or rolled back
            cur = self.db.execute("INSERT OR IGNORE INTO events VALUES (?, ?, ?, 'pending')",
                                  (upload, body.decode(), now))
            if cur.rowcount != 1:
                return False
            self.db.executemany("INSERT INTO objects (event, part, path, key, state, next_try, content_type, remove) "
                                "VALUES (?, ?, ?, ?, 'pending', ?, ?, ?)",
                                [(upload, i, path, key, now, kind, int(remove))
                                 for i, (path, key, kind, remove) in enumerate(objects)])
        return True

    def due(self, now: float, limit: int, busy: set[tuple[str, int]]) -> list[tuple]:
        """Pending objects whose time has come, oldest first; a manifest only once its event's parts are all up."""
        with self.lock:
            rows = self.db.execute(
                "SELECT o.event, o.part, o.path, o.key, o.attempts, e.created, o.content_type, o.remove "
                "FROM objects o JOIN events e "
                "ON e.id = o.event WHERE o.state = 'pending' AND o.next_try <= ? AND (o.path IS NOT NULL OR NOT "
                "EXISTS (SELECT 1 FROM objects p WHERE p.event = o.event AND p.path IS NOT NULL "
                "AND p.state != 'done')) ORDER BY o.next_try, e.created, o.part LIMIT ?",
                (now, limit + len(busy))).fetchall()
        return [r for r in rows if (r[0], r[1]) not in busy][:limit]

    def mark(self, event: str, part: int, state: str, attempts: int, next_try: float, error: str | None) -> None:
        with self.lock, self.db:
            self.db.execute("UPDATE objects SET state = ?, attempts = ?, next_try = ?, error = ? "
                            "WHERE event = ? AND part = ?", (state, attempts, next_try, error, event, part))
            if state == "failed":  # the event's other parts and its manifest are not tried any more
                self.db.execute("UPDATE objects SET state = 'failed', error = 'another part failed' "
                                "WHERE event = ? AND state = 'pending'", (event,))
                self.db.execute("UPDATE events SET state = 'failed' WHERE id = ?", (event,))

    def all_due_now(self, now: float) -> None:
        """The store answered again: every waiting object is due."""
        with self.lock, self.db:
            self.db.execute("UPDATE objects SET next_try = ? WHERE state = 'pending' AND next_try > ?", (now, now))

    def event(self, upload: str) -> tuple[str, list[str]]:
        """An upload's event JSON and its objects' keys, in order: the parts', then the manifest's."""
        with self.lock:
            body = self.db.execute("SELECT body FROM events WHERE id = ?", (upload,)).fetchone()[0]
            keys = [k for (k,) in self.db.execute("SELECT key FROM objects WHERE event = ? ORDER BY part", (upload,))]
        return body, keys

    def removable(self, upload: str) -> list[str]:
        """The local files of an upload's parts that go once up or failed for good."""
        with self.lock:
            return [p for (p,) in self.db.execute("SELECT path FROM objects WHERE event = ? AND remove = 1 "
                                                  "AND path IS NOT NULL", (upload,))]

    def pending_paths(self) -> set[str]:
        """The local files of parts still to go (what a restart must not delete)."""
        with self.lock:
            return {p for (p,) in self.db.execute("SELECT path FROM objects WHERE state = 'pending' "
                                                  "AND path IS NOT NULL")}

    def set_event(self, event_id: str, state: str) -> None:
        with self.lock, self.db:
            self.db.execute("UPDATE events SET state = ? WHERE id = ?", (state, event_id))

    def known(self, upload: str) -> bool:
        """Is this upload queued (pending, up, told or failed)?"""
        with self.lock:
            return self.db.execute("SELECT 1 FROM events WHERE id = ?", (upload,)).fetchone() is not None

    def untold(self) -> list[str]:
        with self.lock:
            return [i for (i,) in self.db.execute("SELECT id FROM events WHERE state = 'uploaded' ORDER BY created")]

    def counts(self) -> dict[str, int]:
        """Objects by state (for the gauges and tests)."""
        with self.lock:
            return dict(self.db.execute("SELECT state, count(*) FROM objects GROUP BY state").fetchall())

    def close(self) -> None:
        with self.lock:
            self.db.close()


# -- the uploader ---------------------------------------------------------------------------------

class Uploader:
    """The queue, a dispatcher thread and a bounded pool of PUTs; see the module docstring.
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
            error = _reason(exc)
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


def make_client(cfg: UploadConfig) -> Any:
    """One boto3 S3 client for the pool (thread-safe), path-style, no retries of its own (ours are
    counted), with timeouts so a hung store holds up one worker at most that long."""
    import boto3
    from botocore.config import Config as BotoConfig

    return boto3.session.Session().client(
        "s3", endpoint_url=cfg.endpoint, aws_access_key_id=cfg.access_key, aws_secret_access_key=cfg.secret_key,
        region_name=cfg.region or "us-east-1",
        config=BotoConfig(max_pool_connections=cfg.workers, connect_timeout=5, read_timeout=30,
                          retries={"total_max_attempts": 1}, s3={"addressing_style": "path"}))


def _reason(exc: BaseException) -> str:
    """One line for a failed PUT: the store's error code (NoSuchBucket, InvalidAccessKeyId ...) or the exception."""
    code = getattr(exc, "response", {}).get("Error", {}).get("Code") if hasattr(exc, "response") else None
    if code:
        return f"{code}: {exc.response['Error'].get('Message', '')}".strip()  # type: ignore[attr-defined]
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
