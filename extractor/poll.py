"""A polled clip feed: a camera that publishes a still JPEG, a short MP4/TS clip or an HLS playlist
at an http(s) URL, fetched every ``poll`` seconds instead of streamed.

Each poll is one conditional GET (``If-None-Match`` with the last ETag, ``If-Modified-Since``
with the last Last-Modified); a 304, the same ETag (or, without one, the same Last-Modified), or
without either validator the same sha256 of the body, is *unchanged*: counted, never decoded. An
HLS playlist is read for its newest segment (a master playlist for its first variant), and that
segment is the clip; the same newest segment is unchanged.

A new clip is decoded once from memory with PyAV, with the camera's sampling (a JPEG is one
frame). Its frames go out as a stream's do (extractor.camera: the motion gate, the PUSH socket,
the publish relay), with ``FrameHeader.clip`` (the ETag, or a short hash of the body) and
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
backoff or the interval, whichever is longer. Every request (a poll, a playlist, each HLS
segment) has connect and read timeouts and a deadline for its whole answer, headers and body,
enforced on its socket (extractor.deadline): a server that trickles a byte a second, sends
headers without end or announces a body it never sends holds a poll no longer than that,
and it is counted (``source_errors/<camera>/DeadlineExceeded``); a body announced or grown
past MAX_BODY_BYTES is refused (``TooLarge``). Each camera polls on its own thread (extractor.camera.CameraLoop), so a
slow server holds up only its own camera.

Counters (per camera): ``polls/<camera>/<outcome>`` (new, unchanged, placeholder, throttled,
error), ``poll_responses/<camera>/<http status>``, and a stream's ``source_errors``, ``decoded``,
``sent``, ``skipped``, ``dropped``.
"""

from __future__ import annotations

import email.utils
import hashlib
import io
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin

import av
import requests
import zmq

from common import wire
from common.lifecycle import backoff_delay
from common.logs import redact_url
from common.pixels import encode_frame
from extractor.deadline import Deadline, deadline_session
from extractor.motion import MotionDetector, MotionGate
from extractor.sampling import Sampler
from extractor.source import SOURCE_ERRORS, Failure, NoVideoStream, classify, read_frames

if TYPE_CHECKING:
    from extractor.camera import CameraLoop

STALE_AFTER = 10  # unchanged polls in a row before a feed is ``stale`` (a camera's ``stale_after``)
JITTER = 0.1  # each interval is drawn from +-10% of ``poll``
RETRY_AFTER_CAP_S = 600.0  # a Retry-After longer than this is not believed
MAX_BODY_BYTES = 64 << 20  # a clip of a few seconds is a few MB; more is not a camera's clip
BODY_DEADLINE_FACTOR = 3  # a whole answer within the connect timeout and this many read timeouts
PLACEHOLDER_REASON = "placeholder image (camera offline)"
PERMANENT_HTTP = frozenset({400, 401, 403, 404, 405, 410})  # the URL is wrong: retried on failed_retry
THROTTLE_HTTP = frozenset({429, 503})
CLIP_ID_CHARS = 16
POLL_LABELS = {"polls": ("camera", "outcome"), "poll_responses": ("camera", "status")}


class PollError(Exception):
    """A poll that brought nothing: ``failure`` says why (reason for people, kind a counter label)."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.reason)
        self.failure = failure


@dataclass(frozen=True, slots=True)
class Fetch:
    """What one poll brought. ``outcome``: new | unchanged | throttled. A new one has ``body``
    (a JPEG, or a clip), ``clip`` (its id), ``sha256`` and ``base_ns`` (its capture time:
    Last-Modified, else fetch time); a throttled one has ``wait`` (its Retry-After, or None)."""

    outcome: str
    status: int
    body: bytes = b""
    clip: str = ""
    sha256: str = ""
    base_ns: int = 0
    wait: float | None = None


# -- pure decisions ---------------------------------------------------------------------------

def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a Retry-After header asks for (``120`` or an HTTP date), capped; None when absent
    or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_CAP_S)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return min(max(0.0, when - (time.time() if now is None else now)), RETRY_AFTER_CAP_S)


def http_time_ns(value: str | None) -> int | None:
    """A Last-Modified header as ns since the epoch; None when absent or unreadable."""
    if not value:
        return None
    try:
        return int(email.utils.parsedate_to_datetime(value).timestamp() * 1e9)
    except (TypeError, ValueError, IndexError):
        return None


def jittered(interval: float, rng: random.Random) -> float:
    return interval * rng.uniform(1 - JITTER, 1 + JITTER)


def clip_id(etag: str | None, digest: str) -> str:
    """A clip's id: its ETag (without quotes and W/), else the start of its body's sha256."""
    if etag:
        return etag.removeprefix("W/").strip('"')[:128] or digest[:CLIP_ID_CHARS]
    return digest[:CLIP_ID_CHARS]


def is_playlist(content_type: str, body: bytes) -> bool:
    return "mpegurl" in content_type.lower() or body.lstrip()[:7] == b"#EXTM3U"


def playlist_entries(text: str) -> tuple[list[str], bool]:
    """The URIs of an HLS playlist in order, and whether it is a master playlist (of variants)."""
    lines = [line.strip() for line in text.splitlines()]
    master = any(line.startswith("#EXT-X-STREAM-INF") for line in lines)
    return [line for line in lines if line and not line.startswith("#")], master


# -- the HTTP half ----------------------------------------------------------------------------

class Poller:
    """Fetches one URL conditionally and says whether it changed; knows nothing of ZeroMQ."""

    def __init__(self, url: str, connect_timeout: float, read_timeout: float,
                 session: requests.Session | None = None) -> None:
        self.url = url
        self.timeout = (connect_timeout, read_timeout)
        self.deadline_s = connect_timeout + BODY_DEADLINE_FACTOR * read_timeout  # per request
        self.deadline = Deadline()
        self.session = session or deadline_session(self.deadline)
        self.etag: str | None = None
        self.last_modified: str | None = None
        self.last_key: str | None = None  # what said "this clip" last time: ETag, Last-Modified, hash or segment

    def close(self) -> None:
        self.session.close()

    def forget(self) -> None:
        """Fetch the next one whole: what came last could not be used (an undecodable body)."""
        self.etag = self.last_modified = self.last_key = None

    def poll(self) -> Fetch:
        """One poll; raises PollError when it brought nothing (a timeout, an HTTP error...)."""
        headers = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        fetched_ns = time.time_ns()
        response, body = self._get(self.url, headers)
        if response.status_code == 304:
            return Fetch("unchanged", 304)
        if response.status_code in THROTTLE_HTTP:
            return Fetch("throttled", response.status_code, wait=retry_after(response.headers.get("Retry-After")))
        self._check(response)
        etag, modified = response.headers.get("ETag"), response.headers.get("Last-Modified")
        self.etag, self.last_modified = etag, modified
        if is_playlist(response.headers.get("Content-Type", ""), body):
            return self._newest_segment(body, response.url or self.url, fetched_ns)
        digest = hashlib.sha256(body).hexdigest()
        # ETag first; then Last-Modified; without either validator the body itself decides
        key = f"etag:{etag}" if etag else f"modified:{modified}" if modified else f"sha256:{digest}"
        if key == self.last_key:
            return Fetch("unchanged", response.status_code)
        self.last_key = key
        return Fetch("new", response.status_code, body, clip_id(etag, digest), digest,
                     http_time_ns(modified) or fetched_ns)

    def _newest_segment(self, body: bytes, base: str, fetched_ns: int) -> Fetch:
        entries, master = playlist_entries(body.decode("utf-8", errors="replace"))
        if master and entries:  # a master playlist: its first variant's media playlist
            base = urljoin(base, entries[0])
            response, body = self._get(base, {})
            self._check(response)
            entries, _ = playlist_entries(body.decode("utf-8", errors="replace"))
        if not entries:
            raise PollError(Failure(permanent=False, reason="HLS playlist lists no segment", kind="EmptyPlaylist"))
        segment = urljoin(base, entries[-1])
        if f"segment:{segment}" == self.last_key:
            return Fetch("unchanged", 200)
        response, body = self._get(segment, {})
        self._check(response)
        digest = hashlib.sha256(body).hexdigest()
        self.last_key = f"segment:{segment}"
        return Fetch("new", response.status_code, body, clip_id(response.headers.get("ETag"), digest), digest,
                     http_time_ns(response.headers.get("Last-Modified")) or fetched_ns)

    def _get(self, url: str, headers: dict[str, str]) -> tuple[requests.Response, bytes]:
        """GET with connect and read timeouts and a deadline for the whole answer."""
        self.deadline.start(self.deadline_s)
        try:
            with self.session.get(url, headers=headers, timeout=self.timeout, stream=True,
                                  allow_redirects=True) as response:
                announced = response.headers.get("Content-Length", "")
                if announced.isdigit() and int(announced) > MAX_BODY_BYTES:  # refused before a byte of it
                    raise PollError(too_large(int(announced)))
                chunks, size = [], 0
                for chunk in response.iter_content(1 << 16):
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > MAX_BODY_BYTES:
                        raise PollError(too_large(size))
                if self.deadline.expired:  # cut short: a body without a length looks whole
                    raise PollError(self._expired())
                return response, b"".join(chunks)
        except requests.RequestException as exc:
            if self.deadline.expired:  # whatever the cut looked like to requests
                raise PollError(self._expired()) from None
            raise PollError(request_failure(exc)) from None
        finally:
            self.deadline.stop()

    def _expired(self) -> Failure:
        return Failure(permanent=False, reason=f"no whole answer within {self.deadline_s:g}s", kind="DeadlineExceeded")

    @staticmethod
    def _check(response: requests.Response) -> None:
        if response.status_code >= 400:
            reason = f"HTTP {response.status_code} {response.reason or ''}".strip()
            raise PollError(Failure(permanent=response.status_code in PERMANENT_HTTP, reason=reason,
                                    kind=f"HTTP{response.status_code}"))


def too_large(size: int) -> Failure:
    return Failure(permanent=False, reason=f"body of {size >> 20} MiB, over {MAX_BODY_BYTES >> 20} MiB",
                   kind="TooLarge")


def request_failure(exc: requests.RequestException) -> Failure:
    """What a failed request says, in words and as a counter label."""
    if isinstance(exc, requests.Timeout):
        what = "connect" if isinstance(exc, requests.ConnectTimeout) else "read"
        return Failure(permanent=False, reason=f"{what} timed out", kind=type(exc).__name__)
    if isinstance(exc, requests.ConnectionError):
        text = str(exc).lower()
        if "read timed out" in text:  # a body that stopped coming: requests says so as a ConnectionError
            return Failure(permanent=False, reason="read timed out", kind="ReadTimeout")
        reason = "connection refused" if "refused" in text else "connection failed"
        return Failure(permanent=False, reason=reason, kind="ConnectionError")
    # a malformed URL, too many redirects, a broken chunked body
    return Failure(permanent=isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema)),
                   reason=type(exc).__name__, kind=type(exc).__name__)


# -- the camera thread's poll loop ------------------------------------------------------------

class FeedLoop:
    """A CameraLoop's life as a polled feed: poll, decide, decode what is new, report the state.
    It sends through the camera's own machinery (its PUSH socket, relay, status and motion)."""

    def __init__(self, cam: "CameraLoop", push: zmq.Socket, relay: zmq.Socket | None,
                 rng: random.Random | None = None) -> None:
        self.cam, self.push, self.relay, self.spec = cam, push, relay, cam.spec
        self.url = self.spec.sources[0]
        self.rng = rng or random.Random()
        self.stale_after = self.spec.stale_after or STALE_AFTER
        self.detector = MotionDetector(self.spec.motion, self.spec.masks)  # one background for the feed's life
        self.gate = MotionGate(self.spec.name, self.spec.motion, self.spec.detect)
        self.origin_ns: int | None = None  # the first clip's time: the motion gate's timeline starts there
        self.unchanged = 0  # polls in a row that brought nothing new
        self.throttled = 0  # 429/503 in a row
        self.placeholder = False  # the last new body was a placeholder
        # frames go to the relay as LZ4 even with passthrough: a JPEG or a clip in memory is decoded anyway
        self.publish_enc = "lz4" if cam.publish_enc not in wire.ENCODINGS else cam.publish_enc

    def run(self) -> None:
        cam = self.cam
        poller = Poller(self.url, self.spec.open_timeout, self.spec.read_timeout)
        cam.log.info("polling", source=redact_url(self.url), every_s=self.spec.poll)
        cam._set_state(self.push, "connecting")
        try:
            cam._wait(self.push, self.rng.uniform(0, self.spec.poll))  # feeds spread over the interval
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
                    wait = cam.failed_retry if failure.permanent else max(wait, backoff_delay(cam._attempts + 1))
                    self._failed(failure)
                cam._wait(self.push, wait)
        finally:
            poller.close()
            cam._say_motion(self.push, self.gate.finish())

    def _throttled(self, fetch: Fetch, wait: float) -> None:
        cam = self.cam
        cam.counters.add("polls", "throttled")
        cam._last_error = f"HTTP {fetch.status}: polled again in {wait:.1f}s ({redact_url(self.url)})"
        cam.log.warning("server asks to slow down", status=fetch.status, retry_after=fetch.wait, wait_s=round(wait, 2))
        cam._send_status(self.push)

    def _unchanged(self) -> None:
        cam = self.cam
        cam.counters.add("polls", "unchanged")
        cam._attempts = 0
        self.unchanged += 1
        if self.placeholder:
            cam._set_state(self.push, "offline", PLACEHOLDER_REASON)  # still the placeholder
        elif self.unchanged >= self.stale_after:
            cam._set_state(self.push, "stale", f"no new image for {self.unchanged} polls")
        elif cam._state != "online" and self.origin_ns is not None:
            cam._set_state(self.push, "online")  # back after an error, the image we had still current

    def _new(self, fetch: Fetch, poller: Poller) -> None:
        cam = self.cam
        self.unchanged = 0
        if fetch.sha256 in self.spec.placeholder:
            cam.counters.add("polls", "placeholder")
            self.placeholder, cam._attempts = True, 0
            cam._set_state(self.push, "offline", PLACEHOLDER_REASON)
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
        cam._note_failure(self.push, failure, self.url, fallback_next=False)
        cam._attempts += 1
        cam._set_state(self.push, "failed" if failure.permanent else "offline", failure.reason,
                       level="error" if failure.permanent else "warning")

    def _decode(self, fetch: Fetch) -> int:
        """Decode a new clip from memory and send its frames as a stream's; the frames decoded."""
        cam, spec = self.cam, self.spec
        if self.origin_ns is None:
            self.origin_ns = fetch.base_ns
        sampler = Sampler(spec.sampling)  # the sampling runs over each clip
        seq_base, count = cam.next_seq, 0
        with av.open(io.BytesIO(fetch.body), timeout=(spec.open_timeout, spec.read_timeout)) as container:
            if not container.streams.video:
                raise NoVideoStream("no video stream")
            for sf in read_frames(container, spec.sampling.keyframes):
                if cam.stop.is_set():
                    break
                count += 1
                seq = seq_base + sf.index
                cam._seq = max(cam._seq, seq + 1)
                cam.counters.add("decoded")
                if cam._state != "online":
                    cam._attempts = 0
                    cam._set_state(self.push, "online")
                self._frame(sf, seq, fetch, sampler)
        return count

    def _frame(self, sf, seq: int, fetch: Fetch, sampler: Sampler) -> None:
        """One decoded frame: motion, the camera's sampling and gate, then to the pool and the relay."""
        cam, spec = self.cam, self.spec
        pts = sf.t or 0.0
        ts_ns = fetch.base_ns + int(pts * 1e9)
        t = (ts_ns - self.origin_ns) / 1e9  # the feed's timeline, across clips
        boxes = self.detector.boxes_of_frame(sf.frame)
        cam._say_motion(self.push, self.gate.update(boxes, t, ts_ns, seq))
        take = sampler.take(pts)
        if take and not self.gate.wanted(t):
            take = False
            cam.counters.add("skipped", "no_motion")
        publish_now = self.relay is not None and cam.subscribed()
        if not take and not publish_now:
            return
        image = sf.frame.to_ndarray(format="bgr24")
        header = wire.FrameHeader(camera=spec.name, seq=seq, ts_ns=ts_ns, pts=sf.t, width=image.shape[1],
                                  height=image.shape[0], enc=spec.enc, live=False, key=sf.key, motion=boxes,
                                  prev=cam._prev_sent if take else None, clip=fetch.clip, clip_index=sf.index)
        if publish_now:
            cam._publish(self.relay, encode_frame(header.with_enc(self.publish_enc), image))
        if take:
            self.gate.sent(t)
            cam._send_frame(self.push, header, image, block=True)  # a clip's sampled frames all go to the pool
            cam._prev_sent = seq
