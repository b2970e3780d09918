"""The pixels a result left in shared memory, and the source's own pixels for the snapshots
the sink keeps (a frame resized for detection).

A worker on the sink's host whose frame came in shared memory does not send its pixels: the
result names the frame's slot (``Result.image_shm``), which the worker leaves held. The sink
copies them out on arrival (:meth:`SourceFrames.copy_out`: a memcpy where a socket would copy
them three times) and releases the slot; a slot already reused (the ring's lease ran out while
the result waited), in a ring this host cannot map, or in another user's ring, leaves the
result without pixels, counted ``snapshot_pixels/shm_gone``, ``shm_elsewhere`` or
``shm_denied``; copied, ``snapshot_pixels/shm``.

A camera with ``detect_size`` sends the pool frames at the detection size; when its frames go
through shared memory, its extractor also keeps the last few source frames (YUV 4:2:0, the
source's size) in a ring of their own that it overwrites in turn (extractor.emitter,
``--source-slots``), and the frame's header, then its result, names the one it came from
(``source_shm``). No socket carries them. Here a result's pixels get a :class:`SourceFrame`
beside them (:meth:`SourceFrames.attach`); when the tracker makes them an object's best frame,
:meth:`common.pixels.Pixels.at_source` copies the source frame out of the ring, checked against
its generation after the copy, so only snapshots the sink keeps are read at the source's
resolution. Several objects made best by one frame share one copy (the last few taken are kept
by ref). A frame already overwritten (the sink was slow), on another host, or in a ring gone
with its extractor leaves the detector's pixels, counted: ``snapshot_pixels/source`` (taken),
``source_gone``, ``source_elsewhere``.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass

from camwire.common import shm, wire
from camwire.common.counters import Counters
from camwire.common.pixels import Pixels


@dataclass(frozen=True, slots=True, eq=False)
class SourceFrame:
    """Where a result's source frame may still be: its ring slot and the source's size."""

    frames: "SourceFrames"
    ref: wire.ShmRef
    size: tuple[int, int]
    matrix: str = "bt601"

    def take(self) -> Pixels | None:
        return self.frames.take(self.ref, self.size, self.matrix)


TAKEN_KEPT = 4  # source frames taken lately, kept by ref: the objects of one frame share a copy
IDLE_S = 10.0  # a ring not read for this long is unmapped (an extractor gone or restarted)
# why a result's pixels could not be read from their slot (common.shm.ShmError) -> snapshot_pixels/<why>
UNREAD = {"recycled": "shm_gone", "unknown_ring": "shm_gone", "denied": "shm_denied"}


class SourceFrames:
    """The sink's view of the extractors' source rings on its host; used from the sink's loop."""

    def __init__(self, counters: Counters) -> None:
        self.counters = counters
        self.readers = shm.Readers(idle_s=IDLE_S)
        self.taken: OrderedDict[wire.ShmRef, Pixels] = OrderedDict()

    def attach(self, pixels: Pixels, r: wire.Result) -> Pixels:
        """``pixels`` with the way to their source frame when the result names one on this host."""
        if r.source_shm is None:
            return pixels
        if r.source_shm.host != self.readers.host:
            self.counters.add("snapshot_pixels", "source_elsewhere")
            return pixels
        if not wire.fits_format("yuv420", 1, r.width, r.height):  # a result no extractor made
            self.counters.add("malformed", "bad_source")
            return pixels
        return dataclasses.replace(pixels, source=SourceFrame(self, r.source_shm, (r.width, r.height), r.matrix))

    def copy_out(self, ref: wire.ShmRef, image: tuple[int, int, int], pix: str) -> tuple[bytes | None, str]:
        """A copy of a result's pixels from the slot its worker left held for us (``image``:
        ``Result.image``, their size, ``pix`` their format), and the slot released; or None and
        why not (counted under ``snapshot_pixels``, or ``malformed`` for a ref no worker made)."""
        width, height, channels = image
        nbytes = width * height * 3 // 2 if pix == "yuv420" else width * height * channels
        if ref.host != self.readers.host:
            self.counters.add("snapshot_pixels", "shm_elsewhere")
            return None, "shm_elsewhere"
        try:
            data = bytes(self.readers.view(ref, nbytes))
        except shm.ShmError as exc:  # reused already, its ring gone, another user's; or a ref no worker made
            why = UNREAD.get(exc.reason, exc.reason)
            self.counters.add(*(("snapshot_pixels", why) if exc.reason in UNREAD else ("malformed", why)))
            self.readers.release(ref)
            return None, why
        valid = self.readers.valid(ref)
        self.readers.release(ref)
        if not valid:  # rewritten while it was copied
            self.counters.add("snapshot_pixels", "shm_gone")
            return None, "shm_gone"
        self.counters.add("snapshot_pixels", "shm")
        return data, "shm"

    def release(self, ref: wire.ShmRef | None) -> None:
        """A slot a result named given back unread (the result was malformed)."""
        if ref is not None and ref.host == self.readers.host:
            self.readers.release(ref)

    def take(self, ref: wire.ShmRef, size: tuple[int, int], matrix: str = "bt601") -> Pixels | None:
        """A copy of the source frame (YUV 4:2:0 pixels, raw), or None when it is no longer there."""
        if ref in self.taken:
            return self.taken[ref]
        width, height = size
        try:
            data = bytes(self.readers.view(ref, width * height * 3 // 2))
        except shm.ShmError:  # overwritten already, or its ring gone (the extractor restarted)
            data = None
        if data is None or not self.readers.valid(ref):  # overwritten while it was copied
            self.counters.add("snapshot_pixels", "source_gone")
            return None
        self.counters.add("snapshot_pixels", "source")
        pixels = self.taken[ref] = Pixels(data, width, height, 1, enc="raw", pix="yuv420", matrix=matrix)
        if len(self.taken) > TAKEN_KEPT:
            self.taken.popitem(last=False)
        return pixels

    def sweep(self) -> None:
        self.readers.sweep()  # rings of extractors gone (or restarted under new names) let go
        self.taken.clear()

    def close(self) -> None:
        self.readers.close()
