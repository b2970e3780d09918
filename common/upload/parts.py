"""Where an upload's parts go (pure, no I/O but a look at which snapshot files exist): a
:class:`Part`, an upload's id, its objects' keys (their order in the key) and path-style URLs,
and the parts of an event's snapshot."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

from camwire.common import wire
from camwire.common.paths import safe_name, utc_day

# a snapshot's files (sink.store.snapshots), in the order their keys carry
PARTS = ((".jpg", "snapshot.jpg"), (".clean.jpg", "clean.jpg"), (".thumb.jpg", "thumb.jpg"))


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

