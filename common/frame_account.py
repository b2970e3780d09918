"""One account of every frame a camera sends into the pool: the buckets, and how a frame lands in one.

The extractor's side travels in each camera's ``wire.Status``: ``decoded`` (frames its decoder
gave), ``sent`` (pushed to the ventilator) and ``drops`` (not sent on, by why: ``dropped/hwm``,
``skipped/no_motion``, ...). The pool's side is kept here, by the ventilator (classifier.dispatch),
and goes to the sink in ``wire.Workers.accounts`` as one ``wire.PoolAccount`` per camera, counts
since the ventilator started. The sink keeps it in status.db (the ``pool`` column), and
``camwire status``, the console's system page and the metrics show both sides side by side.

At the ventilator each frame is counted ``received`` once per detector its camera wants (one
delivery each; a camera that names none: once), and each delivery ends in exactly ONE final
bucket (:data:`BUCKETS`):

- ``superseded``: a newer frame of its (live) camera took its place while it waited;
- ``unserved``: no connected worker serves the detector it wants (at once, or when the last one left);
- ``worker_lost``: its worker was forgotten (died, silent past ``--heartbeat-timeout``, a cut
  link) while it held the frame;
- ``deadline``: its worker held it past ``--frame-deadline``;
- ``processed``: its worker said it is done (its result went to the sink);
- ``late``: its worker said it is done after it had been counted ``worker_lost`` or ``deadline``.
  The answer MOVES the frame: it leaves ``worker_lost``/``deadline`` and is counted ``late`` only
  (not ``processed``: the sink got its result, but too late to be counted on time). A frame is
  remembered for this for the last :data:`REMEMBERED` losses; an answer to one lost before that
  is counted only in the ventilator's ``late/unknown_done`` counter, never in the account.

Until it ends, a delivery is ``waiting`` (queued for a worker) or ``in_flight`` (a worker holds
it), both as the ventilator's tables say at the moment of the report. So, per camera, always::

    received == sum(BUCKETS) + waiting + in_flight        (see :func:`open_frames`)

A camera the ventilator forgets (idle, or taken out of the file by a reload: common.admission)
takes its account with it, frames still waiting included: the accounts are counts since the
ventilator started, for the cameras it knows now.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Mapping

from camwire.common.wire import PoolAccount

BUCKETS = ("superseded", "unserved", "worker_lost", "deadline", "processed", "late")
LOST = ("worker_lost", "deadline")  # the buckets a late answer moves a frame out of
LOSSES = ("superseded", "unserved", *LOST, "late")  # every bucket but ``processed``: shown as the pool's drops
OPEN = ("waiting", "in_flight")  # not final: where a delivery is until it lands in a bucket
REMEMBERED = 65_536  # lost deliveries remembered so that a late answer moves them (oldest forgotten first)
MAX_CAMERAS = 4096  # as many as a Workers message holds; the dispatcher's admission bounds them well below

Key = tuple[str, str, int]  # (detector, camera, seq): one delivery


def open_frames(account: PoolAccount) -> int:
    """``received`` less every final bucket: what is still waiting or in flight (0 when all ended)."""
    return account.received - sum(getattr(account, b) for b in BUCKETS)


class FrameAccounts:
    """The pool's side, per camera, kept by the ventilator's dispatcher (no sockets, no clock)."""

    def __init__(self, max_cameras: int = MAX_CAMERAS, remembered: int = REMEMBERED) -> None:
        self.max_cameras, self.remembered = max_cameras, remembered
        self._counts: dict[str, dict[str, int]] = {}  # camera -> "received" and each bucket
        self._lost: OrderedDict[Key, str] = OrderedDict()  # lost delivery -> its bucket, oldest first

    def _of(self, camera: str) -> dict[str, int] | None:
        counts = self._counts.get(camera)
        if counts is None and len(self._counts) < self.max_cameras:  # past the cap: not counted (never met:
            counts = self._counts[camera] = {}                       # admission keeps far fewer cameras)
        return counts

    def received(self, camera: str, n: int = 1) -> None:
        if (counts := self._of(camera)) is not None:
            counts["received"] = counts.get("received", 0) + n

    def ended(self, camera: str, bucket: str, n: int = 1) -> None:
        """``n`` deliveries of ``camera`` landed in ``bucket`` (one of :data:`BUCKETS`)."""
        assert bucket in BUCKETS, bucket
        if (counts := self._of(camera)) is not None:
            counts[bucket] = counts.get(bucket, 0) + n

    def lost(self, detector: str, camera: str, seq: int, bucket: str) -> None:
        """A delivery counted ``worker_lost`` or ``deadline``, remembered for a late answer."""
        assert bucket in LOST, bucket
        self.ended(camera, bucket)
        self._lost[(detector, camera, seq)] = bucket
        if len(self._lost) > self.remembered:
            self._lost.popitem(last=False)

    def answered_late(self, detector: str, camera: str, seq: int) -> bool:
        """A worker said done for a delivery it no longer holds: moved from its loss to ``late``
        if it was counted lost (True); False when unknown (never sent, or lost too long ago)."""
        bucket = self._lost.pop((detector, camera, seq), None)
        if bucket is None:
            return False
        counts = self._counts.get(camera)
        if counts is not None and counts.get(bucket, 0) > 0:
            counts[bucket] -= 1
            counts["late"] = counts.get("late", 0) + 1
        return True

    def forget(self, camera: str) -> None:
        """A camera that lost its place: its account goes (its remembered losses age out)."""
        self._counts.pop(camera, None)

    def report(self, waiting: Mapping[str, int], in_flight: Mapping[str, int]) -> dict[str, PoolAccount]:
        """Each camera's account now, with its deliveries ``waiting`` and ``in_flight`` as the
        dispatcher's tables say."""
        return {camera: PoolAccount(received=counts.get("received", 0), waiting=waiting.get(camera, 0),
                                    in_flight=in_flight.get(camera, 0),
                                    **{b: counts.get(b, 0) for b in BUCKETS})
                for camera, counts in self._counts.items()}
