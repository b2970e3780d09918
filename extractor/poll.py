"""The HTTP half of a polled clip feed (extractor.feed): a camera that publishes a still JPEG, a
short MP4/TS clip or an HLS playlist at an http(s) URL, fetched every ``poll`` seconds instead of
streamed. Poller fetches; the pure decisions (Retry-After, Last-Modified, clip ids, playlists)
are functions beside it. Nothing here knows ZeroMQ or the camera thread.

Each poll is one conditional GET (``If-None-Match`` with the last ETag, ``If-Modified-Since``
with the last Last-Modified); a 304, the same ETag (or, without one, the same Last-Modified), or
without either validator the same sha256 of the body, is *unchanged*: counted, never decoded. An
HLS playlist is read for its newest segment (a master playlist for its first variant), and that
segment is the clip; the same newest segment is unchanged.

Every request (a poll, a playlist, each HLS segment) has connect and read timeouts and a deadline
for its whole answer, headers and body, enforced on its socket (extractor.deadline): a server
that trickles a byte a second, sends headers without end or announces a body it never sends
holds a poll no longer than that, and it is counted (``source_errors/<camera>/DeadlineExceeded``);
a body announced or grown past MAX_BODY_BYTES is refused (``TooLarge``). 429 and 503 say how
long to wait in their Retry-After (seconds or an HTTP date; capped).

Counters (per camera, counted by extractor.feed; their labels are POLL_LABELS):
``polls/<camera>/<outcome>`` (new, unchanged, placeholder, throttled, error),
``poll_responses/<camera>/<http status>``.
"""
from __future__ import annotations

import email.utils
import hashlib
import time
from dataclasses import dataclass
from urllib.parse import urljoin

import requests

from camwire.extractor.deadline import Deadline, deadline_session
from camwire.extractor.source import Failure

RETRY_AFTER_CAP_S = 600.0  # a Retry-After longer than this is not believed
MAX_BODY_BYTES = 64 << 20  # a clip of a few seconds is a few MB; more is not a camera's clip
BODY_DEADLINE_FACTOR = 3  # a whole answer within the connect timeout and this many read timeouts
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
