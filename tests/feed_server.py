"""A local HTTP server standing in for a public camera's clip URLs (extractor.poll's tests).

Each path serves what the test last put there (:meth:`FeedServer.put`): a JPEG or a clip, with
or without an ETag and a Last-Modified, answering conditional GETs with 304 when they match.
On command a path answers 429 with a Retry-After (:meth:`throttle`), holds the connection
without a word (:meth:`hang`), or is hostile (:meth:`hostile`): a body of one byte a second, a
header line that never ends, a 2 GB Content-Length whose body never comes; a hostile answer goes
on until the client hangs up (or the server closes). Every request is logged with its monotonic
arrival time, and when it ended.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import select
import threading
import time
from dataclasses import dataclass, field

import av
import numpy as np


@dataclass
class Resource:
    body: bytes
    content_type: str
    etag: str | None = None
    last_modified: str | None = None


@dataclass
class Request:
    t: float  # time.monotonic() at arrival
    path: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    ended: float | None = None  # time.monotonic() when the answer ended (or the client hung up)


HOSTILE = ("slow_body", "endless_headers", "huge_length")


class FeedServer:
    """``with FeedServer() as feed``: serving on 127.0.0.1 at ``feed.url(path)``."""

    def __init__(self) -> None:
        self.resources: dict[str, Resource] = {}
        self.throttles: dict[str, list[str]] = {}  # path -> Retry-After values, one per coming request
        self.hung: set[str] = set()
        self.hostiles: dict[str, str] = {}  # path -> one of HOSTILE
        self.log: list[Request] = []
        self.lock = threading.Lock()
        self.release = threading.Event()  # set at exit: hung requests end
        feed = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                feed._handle(self)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True

    def __enter__(self) -> "FeedServer":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def put(self, path: str, body: bytes, content_type: str = "image/jpeg", etag: bool = False,
            last_modified: str | None = None) -> None:
        """Serve ``body`` at ``path`` from now on; ``etag``: with a strong ETag (the body's hash)."""
        tag = f'"{hashlib.sha256(body).hexdigest()[:12]}"' if etag else None
        with self.lock:
            self.resources[path] = Resource(body, content_type, tag, last_modified)

    def throttle(self, path: str, retry_after: str) -> None:
        with self.lock:
            self.throttles.setdefault(path, []).append(retry_after)

    def hang(self, path: str) -> None:
        with self.lock:
            self.hung.add(path)

    def hostile(self, path: str, how: str) -> None:
        """From now on ``path`` answers as ``how`` (one of HOSTILE), until the client hangs up."""
        assert how in HOSTILE, how
        with self.lock:
            self.hostiles[path] = how

    def requests(self, path: str, status: int | None = None) -> list[Request]:
        with self.lock:
            return [r for r in self.log if r.path == path and (status is None or r.status == status)]

    def _handle(self, h: http.server.BaseHTTPRequestHandler) -> None:
        now = time.monotonic()
        with self.lock:
            how = self.hostiles.get(h.path)
            if how is not None:
                request = Request(now, h.path, 0 if how == "endless_headers" else 200, dict(h.headers))
                self.log.append(request)
        if how is not None:
            try:
                self._hostile(h, how)
            finally:
                with self.lock:
                    request.ended = time.monotonic()
            return
        with self.lock:
            hung = h.path in self.hung
            throttle = self.throttles.get(h.path, [])
            retry = throttle.pop(0) if throttle else None
            res = self.resources.get(h.path)
            if hung:
                status = 0
            elif retry is not None:
                status = 429
            elif res is None:
                status = 404
            elif (res.etag and h.headers.get("If-None-Match") == res.etag) or (
                    not res.etag and res.last_modified and h.headers.get("If-Modified-Since") == res.last_modified):
                status = 304
            else:
                status = 200
            self.log.append(Request(now, h.path, status, dict(h.headers)))
        if hung:
            self.release.wait()  # says nothing until the server closes
            return
        h.send_response(status)
        if retry is not None:
            h.send_header("Retry-After", retry)
        if res is not None and status in (200, 304):
            if res.etag:
                h.send_header("ETag", res.etag)
            if res.last_modified:
                h.send_header("Last-Modified", res.last_modified)
        body = res.body if status == 200 and res is not None else b""
        if status == 200:
            h.send_header("Content-Type", res.content_type)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)


    def _hostile(self, h: http.server.BaseHTTPRequestHandler, how: str) -> None:
        """Answer as ``how`` says, one piece a while, until the client hangs up or the server closes."""
        if how == "endless_headers":
            h.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nX-Endless: ")
            piece, every = b"a", 0.2  # one header line that never ends, a byte at a time
        else:
            h.send_response(200)
            h.send_header("Content-Type", "image/jpeg")
            h.send_header("Content-Length", "2000000000" if how == "huge_length" else "1000")
            h.end_headers()
            piece, every = (b"", 1.0) if how == "huge_length" else (b"\xff", 1.0)  # nothing, or a byte a second
        try:
            h.wfile.flush()
            while not self.release.is_set():
                if piece:
                    h.wfile.write(piece)
                    h.wfile.flush()
                readable, _, _ = select.select([h.connection], [], [], every)  # the pace: the client's hangup ends it
                if readable and not h.connection.recv(1):
                    return
        except OSError:  # the client hung up mid-write
            return


def jpeg(shade: int, width: int = 160, height: int = 120) -> bytes:
    """A grey JPEG of one shade (0-255): a different shade is a different image."""
    return _encode([np.full((height, width, 3), shade, np.uint8)], "mjpeg", "image2pipe")


def clip(shade: int, frames: int = 5, fmt: str = "mp4", width: int = 160, height: int = 120) -> bytes:
    """A short H.264 clip (MP4 or MPEG-TS) of ``frames`` frames at 10 fps, a square moving over ``shade``."""
    images = []
    for i in range(frames):
        img = np.full((height, width, 3), shade, np.uint8)
        img[40:80, 10 + 20 * i:50 + 20 * i] = 255 - shade
        images.append(img)
    return _encode(images, "libx264", "mpegts" if fmt == "ts" else "mp4")


def _encode(images: list[np.ndarray], codec: str, container_format: str) -> bytes:
    out = io.BytesIO()
    with av.open(out, "w", format=container_format) as c:
        s = c.add_stream(codec, rate=10)
        s.width, s.height = images[0].shape[1], images[0].shape[0]
        s.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        for img in images:
            for packet in s.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return out.getvalue()

