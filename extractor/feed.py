"""A polled clip feed's life on its camera thread (extractor.camera.CameraLoop): poll (through
extractor.poll's Poller), decide, decode what is new, report the camera's state. Each camera
polls on its own thread, so a slow server holds up only its own camera.

A new clip is decoded once from memory with PyAV, with the camera's sampling (a JPEG is one
frame). Its frames go out as a stream's do (extractor.emitter.FrameStep: the motion gate, the
PUSH socket, the publish relay), with ``FrameHeader.clip`` (the ETag, or a short hash of the body) and
``clip_index``; ``ts_ns`` is the clip's Last-Modified (else its fetch time) plus the frame's pts,
and seq runs on across clips. Clip frames are not ``live``: each sampled one waits for the pool
rather than superseding the one before.

Status (common.wire.Status): ``online`` while polls succeed; ``stale`` after ``stale_after``
unchanged polls in a row; ``offline`` with reason "placeholder image (camera offline)" when the
body's sha256 is one of the camera's ``placeholder`` hashes (not decoded); ``offline`` (a
timeout, a refused connection, HTTP 5xx, an undecodable body) or ``failed`` (HTTP 400, 401, 403,
404, 410) on an error, with ``last_error`` and ``attempts`` as a stream's.

Timing: the first poll comes after a random part of the interval and each later one after the
interval +-10%, so many feeds on one extractor do not poll in step; 429 and 503 wait for their
Retry-After (seconds or an HTTP date; capped), else a capped backoff; an error waits for the
backoff or the interval, whichever is longer.

Counters (per camera): ``polls/<camera>/<outcome>`` (new, unchanged, placeholder, throttled,
error), ``poll_responses/<camera>/<http status>`` (extractor.poll.POLL_LABELS), and a stream's
``source_errors``, ``decoded``, ``sent``, ``skipped``, ``dropped``.

The feed drives its camera thread only through FeedCamera, the thread's public members: this
module does not import extractor.camera.
"""

from __future__ import annotations

import io
import random
from typing import Any, Callable, Protocol

import av

from camwire.common import wire
from camwire.common.camera_state import Reported
from camwire.common.lifecycle import StopFlag, backoff_delay
from camwire.common.logs import redact_url
from camwire.extractor.emitter import CameraCounters, Emitter, FrameStep
from camwire.extractor.poll import Fetch, PollError, Poller
from camwire.extractor.source import SOURCE_ERRORS, Failure, NoVideoStream, classify, read_frames
from camwire.extractor.spec import CameraSpec

STALE_AFTER = 10  # unchanged polls in a row before a feed is ``stale`` (a camera's ``stale_after``)
JITTER = 0.1  # each interval is drawn from +-10% of ``poll``
PLACEHOLDER_REASON = "placeholder image (camera offline)"


def jittered(interval: float, rng: random.Random) -> float:
    return interval * rng.uniform(1 - JITTER, 1 + JITTER)


class FeedCamera(Protocol):
    """What a feed drives of its camera thread (extractor.camera.CameraLoop): its status, its
    seq, its stop flag and its sockets."""

    spec: CameraSpec
    stop: StopFlag
    log: Any
    counters: CameraCounters
    subscribed: Callable[[], bool]
    failed_retry: float
    publish_enc: str
    out: Emitter
    state: Reported
    attempts: int  # failed rounds since the last frame
    last_error: str | None

    @property
    def next_seq(self) -> int: ...

    def use_seq(self, seq: int) -> None: ...

    def set_state(self, state: Reported, reason: str | None = None, level: str = "warning",
                  fresh: bool = False) -> None: ...

    def send_status(self, heartbeat: bool = False) -> None: ...

    def note_failure(self, failure: Failure, url: str, fallback_next: bool) -> None: ...

    def wait(self, seconds: float) -> None: ...


class FeedLoop:
    """A CameraLoop's life as a polled feed: poll, decide, decode what is new, report the state.
    It sends through the camera's own machinery (its sockets and frame step, status and motion)."""

    def __init__(self, cam: FeedCamera, rng: random.Random | None = None) -> None:
        self.cam, self.spec = cam, cam.spec
        self.url = self.spec.sources[0]
        self.rng = rng or random.Random()
        self.stale_after = self.spec.stale_after or STALE_AFTER
        self.origin_ns: int | None = None  # the first clip's time: the motion gate's timeline starts there
        self.unchanged = 0  # polls in a row that brought nothing new
        self.throttled = 0  # 429/503 in a row
        self.placeholder = False  # the last new body was a placeholder
        # frames go to the relay as LZ4 even with passthrough: a JPEG or a clip in memory is decoded anyway
        publish_enc = "lz4" if cam.publish_enc not in wire.ENCODINGS else cam.publish_enc
        # one motion background for the feed's life; the sampling runs over each clip
        self.step = FrameStep(self.spec, cam.out, publish_enc if cam.out.relay is not None else None, cam.subscribed)

    def run(self) -> None:
        cam = self.cam
        poller = Poller(self.url, self.spec.open_timeout, self.spec.read_timeout)
        cam.log.info("polling", source=redact_url(self.url), every_s=self.spec.poll)
        cam.set_state("connecting")
        try:
            cam.wait(self.rng.uniform(0, self.spec.poll))  # feeds spread over the interval
            while not cam.stop.is_set():
                wait = jittered(self.spec.poll, self.rng)
                try:
                    fetch = poller.poll()
                    cam.counters.add("poll_responses", str(fetch.status))
                    if fetch.outcome == "throttled":
                        self.throttled += 1
                        wait = max(wait, fetch.wait if fetch.wait is not None else backoff_delay(self.throttled))
                        self._throttled(fetch, wait)
                    else:
                        self.throttled = 0
                        if fetch.outcome == "unchanged":
                            self._unchanged()
                        else:
                            self._new(fetch, poller)
                except PollError as exc:
                    failure = exc.failure
                    wait = cam.failed_retry if failure.permanent else max(wait, backoff_delay(cam.attempts + 1))
                    self._failed(failure)
                cam.wait(wait)
        finally:
            poller.close()
            self.step.finish()

    def _throttled(self, fetch: Fetch, wait: float) -> None:
        cam = self.cam
        cam.counters.add("polls", "throttled")
        cam.last_error = f"HTTP {fetch.status}: polled again in {wait:.1f}s ({redact_url(self.url)})"
        cam.log.warning("server asks to slow down", status=fetch.status, retry_after=fetch.wait, wait_s=round(wait, 2))
        cam.send_status()

    def _unchanged(self) -> None:
        cam = self.cam
        cam.counters.add("polls", "unchanged")
        cam.attempts = 0
        self.unchanged += 1
        if self.placeholder:
            cam.set_state("offline", PLACEHOLDER_REASON)  # still the placeholder
        elif self.unchanged >= self.stale_after:
            cam.set_state("stale", f"no new image for {self.unchanged} polls")
        elif cam.state != "online" and self.origin_ns is not None:
            cam.set_state("online")  # back after an error, the image we had still current

    def _new(self, fetch: Fetch, poller: Poller) -> None:
        cam = self.cam
        self.unchanged = 0
        if fetch.sha256 in self.spec.placeholder:
            cam.counters.add("polls", "placeholder")
            self.placeholder, cam.attempts = True, 0
            cam.set_state("offline", PLACEHOLDER_REASON)
            return
        self.placeholder = False
        try:
            frames = self._decode(fetch)
        except SOURCE_ERRORS as exc:
            poller.forget()  # not "unchanged" next time: fetched and tried again, and said again
            failure = classify(exc, opened=True, file=False)
            raise PollError(Failure(permanent=False, reason=f"cannot decode the clip: {failure.reason}",
                                    kind=failure.kind)) from None
        cam.counters.add("polls", "new")
        cam.log.info("new clip", clip=fetch.clip, frames=frames, seq=cam.next_seq)

    def _failed(self, failure: Failure) -> None:
        cam = self.cam
        cam.counters.add("polls", "error")
        cam.note_failure(failure, self.url, fallback_next=False)
        cam.attempts += 1
        cam.set_state("failed" if failure.permanent else "offline", failure.reason,
                      level="error" if failure.permanent else "warning")

    def _decode(self, fetch: Fetch) -> int:
        """Decode a new clip from memory and send its frames as a stream's; the frames decoded."""
        cam, spec = self.cam, self.spec
        if self.origin_ns is None:
            self.origin_ns = fetch.base_ns
        self.step.restart_sampling()  # the sampling runs over each clip
        seq_base, count = cam.next_seq, 0
        with av.open(io.BytesIO(fetch.body), timeout=(spec.open_timeout, spec.read_timeout)) as container:
            if not container.streams.video:
                raise NoVideoStream("no video stream")
            for sf in read_frames(container, spec.sampling.keyframes):
                if cam.stop.is_set():
                    break
                count += 1
                seq = seq_base + sf.index
                cam.use_seq(seq)
                cam.counters.add("decoded")
                if cam.state != "online":
                    cam.attempts = 0
                    cam.set_state("online")
                pts = sf.t or 0.0
                ts_ns = fetch.base_ns + int(pts * 1e9)
                t = (ts_ns - self.origin_ns) / 1e9  # the feed's timeline, across clips
                # a clip's sampled frames all go to the pool (not live: each waits for room)
                self.step(sf, seq, t, ts_ns, live=False, sample_t=pts, clip=fetch.clip)
        return count
