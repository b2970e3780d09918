"""Every frame of a tracked object, kept on disk until it is uploaded (``[upload] what = ["frames"]``).

No sockets. The sink's tracker (sink.tracking, ``sightings=True``) names each frame it saw
an object in, with the pixels the worker sent (common.pixels.Pixels, an LZ4 block: they come
with every result that found something); after each call into the tracker the sink hands them
here (:meth:`Frames.observe`), before it emits the events that call made. From an object's start
on, each of its frames is encoded to JPEG (once for all the objects seen in it: counted
``snapshot_pixels/encoded``, timed in ``camwire_sink_snapshot_encode_seconds{what="frame"}``) and
written as ``DATA_DIR/frames/<object id>/<seq>.jpg``; the few seen before its start (a rule's
``min_frames`` or ``zones`` holding it back, or it has not moved yet) are held in memory, still
compressed, and written at its start, or forgotten, never encoded, when it ends unstarted. Pixels that do not decode to the
size they declare are counted ``malformed/bad_pixels`` and that frame is not written. At the
object's ``end`` :meth:`Frames.end` hands its files over as upload parts (common.upload.Part) in
seq order, each deleted once it is up or has failed for good.

Bounded: at most ``cap`` frames per object (300) and ``HELD`` before its start (the rest are
counted ``uploads/frames_capped``), nothing written while less than ``min_free`` of the volume is
free (``uploads/frames_low_space``). A sink that stops on purpose ends its objects, so their
frames are queued; the files of objects that never ended (a sink killed) are deleted at the next
start (:meth:`Frames.sweep`), except those the upload queue still holds.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from camwire.sink.store.disk import WriteErrors, free_fraction
from camwire.common.counters import Counters
from camwire.common.metrics import SNAPSHOT_ENCODE_SECONDS
from camwire.common.paths import safe_name
from camwire.common.pixels import Pixels, encode_jpeg
from camwire.common.upload import Part
from camwire.common.wire import MalformedMessage

MAX_FRAMES = 300  # per object: a minute at 5 fps
HELD = 25  # frames held in memory per object not started yet (a rule's min_frames, zones, not moved yet)


@dataclass(slots=True)
class _Object:
    tracked: Any  # the tracker's object (sink.tracking.TrackedObject), held: its id() stays its own
    folder: Path | None = None  # once started: frames/<object id>
    seqs: list[int] = field(default_factory=list)  # written
    held: list[tuple[int, Pixels]] = field(default_factory=list)  # seen before its start: written at it


class Frames:
    def __init__(self, root: Path, counters: Counters, errors: WriteErrors, min_free: float = 0.05,
                 cap: int = MAX_FRAMES) -> None:
        self.root, self.counters, self.errors = root, counters, errors
        self.min_free, self.cap = min_free, cap
        self.live: dict[int, _Object] = {}  # id(tracked object) -> its frames (the object held: its id stays its own)
        self.started: dict[str, int] = {}  # object id -> id(tracked object)

    def observe(self, sightings: list[tuple[Any, int, Pixels]], unstarted: list[Any]) -> None:
        """What :meth:`sink.tracking.Tracking.take_sightings` gave: each frame taken; an
        object's held frames written once it has started; objects ended unstarted forgotten."""
        jpegs: dict[int, bytes | None] = {}  # id(pixels) -> its JPEG: a frame two objects share is encoded once
        for tracked, seq, pixels in sightings:
            obj = self.live.get(id(tracked))
            if obj is None:
                obj = self.live[id(tracked)] = _Object(tracked)
            self._take(obj, seq, pixels, jpegs)
        for obj in {id(t): self.live[id(t)] for t, _seq, _pixels in sightings}.values():
            if obj.folder is None and obj.tracked.object_id is not None:  # started: its own folder from now on
                obj.folder = self.root / safe_name(obj.tracked.object_id)
                self.started[obj.tracked.object_id] = id(obj.tracked)
                for seq, pixels in obj.held:
                    self._write(obj, seq, pixels, jpegs)
                obj.held.clear()
        for tracked in unstarted:
            self.live.pop(id(tracked), None)

    def _take(self, obj: _Object, seq: int, pixels: Pixels, jpegs: dict[int, bytes | None]) -> None:
        unstarted = obj.tracked.object_id is None
        if len(obj.seqs) + len(obj.held) >= self.cap or (unstarted and len(obj.held) >= HELD):
            self.counters.add("uploads", "frames_capped")
        elif obj.folder is None:  # not started, or started by this very call: written at its start
            obj.held.append((seq, pixels))
        else:
            self._write(obj, seq, pixels, jpegs)

    def _encode(self, pixels: Pixels, jpegs: dict[int, bytes | None]) -> bytes | None:
        """The frame's JPEG, made once per call to observe however many objects it shows (the
        pixels are held by the sightings meanwhile, so their id is theirs)."""
        if id(pixels) not in jpegs:
            started = time.perf_counter()
            try:
                jpegs[id(pixels)] = encode_jpeg(pixels.decode())
            except MalformedMessage as exc:
                self.counters.add("malformed", exc.reason)
                jpegs[id(pixels)] = None
            else:
                SNAPSHOT_ENCODE_SECONDS.labels("frame").observe(time.perf_counter() - started)
                self.counters.add("snapshot_pixels", "encoded")
        return jpegs[id(pixels)]

    def _write(self, obj: _Object, seq: int, pixels: Pixels, jpegs: dict[int, bytes | None]) -> None:
        free = free_fraction(self.root if self.root.exists() else self.root.parent)
        if free is not None and free < self.min_free:  # before encoding: nothing is spent on a frame not kept
            self.counters.add("uploads", "frames_low_space")
            return
        jpeg = self._encode(pixels, jpegs)
        if jpeg is None:
            return
        try:
            obj.folder.mkdir(parents=True, exist_ok=True)
            with open(obj.folder / f"{seq}.jpg", "xb") as f:  # exclusive: a seq seen twice (a restarted source) once
                f.write(jpeg)
        except FileExistsError:
            return
        except OSError as exc:
            self.errors("frames", exc)
            return
        obj.seqs.append(seq)

    def end(self, object_id: str | None) -> list[Part]:
        """The object ended: its frames as upload parts, in seq order (each removed once up)."""
        key = self.started.pop(object_id, None) if object_id is not None else None
        obj = self.live.pop(key, None) if key is not None else None
        if obj is None or obj.folder is None:
            return []
        return [Part(obj.folder / f"{seq}.jpg", f"frame-{seq}.jpg", "image/jpeg", remove=True)
                for seq in sorted(obj.seqs)]

    def discard(self, parts: list[Part]) -> None:
        """Frames that will not be uploaded (the queue refused them): deleted now."""
        for folder in {part.path.parent for part in parts}:
            shutil.rmtree(folder, ignore_errors=True)

    def sweep(self, keep: set[str]) -> int:
        """At start: delete the frames of objects that never ended (the sink was killed), except
        the files in ``keep`` (queued for upload). Returns how many files went."""
        gone = 0
        if not self.root.is_dir():
            return gone
        for folder in self.root.iterdir():
            files = list(folder.iterdir()) if folder.is_dir() else [folder]
            for path in files:
                if str(path) not in keep:
                    path.unlink(missing_ok=True)
                    gone += 1
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        return gone
