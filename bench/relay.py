"""A delaying TCP relay: a delay line between two hosts, for benchmarks on a kernel without netem.

It listens (``--listen``, by default 127.0.0.1 on a port the kernel picks) and, for each connection
it accepts, opens one to ``--target``; the bytes each side sends reach the other ``--delay`` later
(each way, so a round trip through it costs twice that). Every chunk read is stamped with the time
it came and queued; it is written when due, in order. Nothing sleeps per chunk and nothing paces
the bytes: a delay line, not a rate limit, so throughput is what the two ends and the host give
(reading from a side pauses only while more than ``--max-queued`` bytes wait to be written towards
the other, or while its socket's send buffer is full, as TCP itself would). An end of stream or a
connection closed is passed on after the same delay, once the bytes before it are delivered.

Run alone: ``.venv/bin/python bench/relay.py --target 127.0.0.1:5556 --delay 50ms`` prints one JSON
line, ``{"listening": "127.0.0.1", "port": PORT, ...}``, then relays until SIGTERM or Ctrl-C.
``--check`` instead measures the relay itself against an echo server it starts (round trip of
small messages, throughput of 1 MB messages) and prints that as JSON.

Imported: ``serve(target, delay)`` (a coroutine: the asyncio Server, bound) or ``RelayThread``
(a context manager running one relay on its own event loop thread; ``.port`` is where it listens).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import sys
import threading
import time
from collections import deque

CHUNK = 1 << 20  # read size: big reads keep the per-byte cost low
MAX_QUEUED = 64 << 20  # bytes one direction may hold in its delay line before reading from its source pauses


def _nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class DelayLine:
    """One direction: chunks from a source transport, written to a destination when due, in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float, max_queued: int, stats: dict) -> None:
        self.loop, self.delay, self.max_queued, self.stats = loop, delay, max_queued, stats
        self.queue: deque[tuple[float, bytes | None]] = deque()  # (due, chunk); None: the source ended
        self.queued = 0
        self.dest: asyncio.Transport | None = None
        self.source: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.source_paused = False  # by us, for the queue's size or the destination's buffer
        self.dest_full = False
        self.done = False

    def put(self, chunk: bytes | None) -> None:
        if self.done:
            return
        self.queue.append((self.loop.time() + self.delay, chunk))
        if chunk is not None:
            self.queued += len(chunk)
            self.stats["bytes"] += len(chunk)
        if self.timer is None and self.dest is not None:
            self.timer = self.loop.call_at(self.queue[0][0], self.deliver)
        self._flow()

    def attach(self, dest: asyncio.Transport) -> None:
        """The destination is connected: deliver what waited for it."""
        self.dest = dest
        if self.queue and self.timer is None:
            self.timer = self.loop.call_at(self.queue[0][0], self.deliver)

    def deliver(self) -> None:
        """Write every chunk now due, in order; then wake up for the next."""
        self.timer = None
        now = self.loop.time()
        while self.queue and self.queue[0][0] <= now:
            _, chunk = self.queue.popleft()
            if self.dest is None or self.dest.is_closing():
                self.close()
                return
            if chunk is None:  # the source ended: so does the destination, after the same delay
                if self.dest.can_write_eof():
                    self.dest.write_eof()
                else:
                    self.dest.close()
                self.done = True
                self.queue.clear()
                return
            self.queued -= len(chunk)
            self.dest.write(chunk)
        if self.queue:
            self.timer = self.loop.call_at(self.queue[0][0], self.deliver)
        self._flow()

    def set_dest_full(self, full: bool) -> None:
        self.dest_full = full
        self._flow()

    def _flow(self) -> None:
        """Read from the source only while the line has room and the destination takes bytes."""
        if self.source is None or self.source.is_closing():
            return
        pause = self.queued > self.max_queued or self.dest_full
        if pause and not self.source_paused:
            self.source.pause_reading()
            self.source_paused = True
        elif not pause and self.source_paused:
            self.source.resume_reading()
            self.source_paused = False

    def close(self) -> None:
        self.done = True
        self.queue.clear()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class _Side(asyncio.Protocol):
    """One end of a relayed connection: what it reads goes into ``out``; ``inbound`` writes to it."""

    def __init__(self, out: DelayLine, inbound: DelayLine, on_lost) -> None:
        self.out, self.inbound, self.on_lost = out, inbound, on_lost
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        _nodelay(transport)
        transport.set_write_buffer_limits(high=4 * CHUNK)  # type: ignore[attr-defined]
        self.out.source = self.transport
        self.inbound.attach(self.transport)

    def data_received(self, data: bytes) -> None:
        self.out.put(data)

    def eof_received(self) -> bool:
        self.out.put(None)
        return True  # keep the transport open for writing: a half-close is passed on, not a close

    def pause_writing(self) -> None:
        self.inbound.set_dest_full(True)

    def resume_writing(self) -> None:
        self.inbound.set_dest_full(False)

    def connection_lost(self, exc: Exception | None) -> None:
        self.on_lost(self)


class _Pair:
    """A client accepted and its connection to the target."""

    def __init__(self, loop: asyncio.AbstractEventLoop, target: tuple[str, int], delay: float, max_queued: int,
                 stats: dict) -> None:
        self.loop, self.target, self.stats = loop, target, stats
        self.up = DelayLine(loop, delay, max_queued, stats)  # client -> target
        self.down = DelayLine(loop, delay, max_queued, stats)  # target -> client
        self.client = _Side(self.up, self.down, self._lost)
        self.server: _Side | None = None
        self.closed = False

    async def connect(self) -> None:
        try:
            _, self.server = await self.loop.create_connection(
                lambda: _Side(self.down, self.up, self._lost), *self.target)
            self.stats["connections"] += 1
        except OSError:
            self.stats["refused"] += 1
            self._lost(None)

    def _lost(self, side: _Side | None) -> None:
        """One end went away: the other is closed once the bytes already on their way to it are
        delivered (as a peer that closed its socket would be seen, just later)."""
        if self.closed:
            return
        if side is self.client:
            self.up.put(None)
        elif side is self.server:
            self.down.put(None)
        else:
            self.closed = True
            self.up.close()
            self.down.close()
            for s in (self.client, self.server):
                if s is not None and s.transport is not None:
                    s.transport.close()
            return
        other = self.server if side is self.client else self.client
        when = self.loop.time() + self.up.delay + 0.001
        self.loop.call_at(when, self._close_other, other)

    def _close_other(self, other: _Side | None) -> None:
        self.closed = True
        self.up.close()
        self.down.close()
        if other is not None and other.transport is not None:
            other.transport.close()


async def serve(target: str | tuple[str, int], delay: float, host: str = "127.0.0.1", port: int = 0,
                max_queued: int = MAX_QUEUED, stats: dict | None = None) -> asyncio.base_events.Server:
    """Start relaying; returns the asyncio Server, already listening (its port:
    ``server.sockets[0].getsockname()[1]``). ``stats`` (a dict) counts connections and bytes."""
    if isinstance(target, str):
        h, _, p = target.rpartition(":")
        target = (h.strip("[]") or "127.0.0.1", int(p))
    loop = asyncio.get_running_loop()
    stats = stats if stats is not None else {}
    for key in ("accepted", "connections", "refused", "bytes"):
        stats.setdefault(key, 0)

    def accept() -> _Side:
        stats["accepted"] += 1
        pair = _Pair(loop, target, delay, max_queued, stats)
        loop.create_task(pair.connect())
        return pair.client

    return await loop.create_server(accept, host, port, reuse_address=True)


class RelayThread:
    """One relay on its own event loop in a daemon thread: ``with RelayThread(target, 0.05) as r:``
    ``r.port`` is where it listens; leaving the block stops it."""

    def __init__(self, target: str, delay: float, host: str = "127.0.0.1", port: int = 0) -> None:
        self.target, self.delay, self.host, self._port = target, delay, host, port
        self.stats: dict = {}
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="relay", daemon=True)
        self._server = None
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(
                serve(self.target, self.delay, self.host, self._port, stats=self.stats))
            self.port = self._server.sockets[0].getsockname()[1]
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            self._error = exc
        self._ready.set()
        if self._error is None:
            self._loop.run_forever()
        self._loop.close()

    def __enter__(self) -> RelayThread:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc) -> None:
        def stop() -> None:
            self._server.close()
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
            self._loop.stop()
        self._loop.call_soon_threadsafe(stop)
        self._thread.join(timeout=5)


# -- checking the relay itself ------------------------------------------------------------------

def check(delay: float, seconds: float = 2.0) -> dict:
    """The relay's own figures against a local echo server: the median round trip of 64-byte
    messages (should be 2 x delay plus little), and MB/s of 1 MB messages echoed through it
    with up to 32 MB in flight (one way, counted as they come back)."""
    echo = socket.socket()
    echo.bind(("127.0.0.1", 0))
    echo.listen()

    def serve_echo() -> None:
        while True:
            try:
                conn, _ = echo.accept()
            except OSError:
                return
            def pump(c=conn) -> None:
                with c:
                    while data := c.recv(CHUNK):
                        c.sendall(data)
            threading.Thread(target=pump, daemon=True).start()

    threading.Thread(target=serve_echo, daemon=True).start()
    out: dict = {"delay_ms_each_way": delay * 1e3}
    try:
        with RelayThread(f"127.0.0.1:{echo.getsockname()[1]}", delay) as relay:
            with socket.create_connection(("127.0.0.1", relay.port)) as c:
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                rtts = []
                for _ in range(10):
                    t = time.perf_counter()
                    c.sendall(b"x" * 64)
                    got = 0
                    while got < 64:
                        got += len(c.recv(64 - got))
                    rtts.append(time.perf_counter() - t)
                out["rtt_ms_median"] = round(sorted(rtts)[len(rtts) // 2] * 1e3, 1)
                block = b"\0" * (1 << 20)
                inflight_max, sent, received = 32, 0, 0
                start = time.perf_counter()
                c.setblocking(False)
                import selectors
                sel = selectors.DefaultSelector()
                sel.register(c, selectors.EVENT_READ | selectors.EVENT_WRITE)
                pending = memoryview(b"")
                while time.perf_counter() - start < seconds + 2 * delay:
                    for key, events in sel.select(timeout=0.05):
                        if events & selectors.EVENT_READ:
                            try:
                                received += len(c.recv(CHUNK))
                            except BlockingIOError:
                                pass
                        if events & selectors.EVENT_WRITE and sent - received < inflight_max << 20:
                            if not pending:
                                pending = memoryview(block)
                            try:
                                n = c.send(pending)
                            except BlockingIOError:
                                n = 0
                            pending, sent = pending[n:], sent + n
                elapsed = time.perf_counter() - start
                out["echo_MB_s"] = round(received / elapsed / 1e6, 1)
    finally:
        echo.close()
    return out


def parse_delay(text: str) -> float:
    """``50ms``, ``0.05s`` or ``0.05`` (seconds)."""
    text = text.strip()
    if text.endswith("ms"):
        return float(text[:-2]) / 1e3
    return float(text.rstrip("s"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 allow_abbrev=False)
    ap.add_argument("--target", help="HOST:PORT to relay to (not with --check)")
    ap.add_argument("--delay", type=parse_delay, default=0.05, help="each way: 50ms, 0.05s (default 50ms)")
    ap.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT to listen on (port 0: the kernel picks)")
    ap.add_argument("--max-queued", type=int, default=MAX_QUEUED, help="bytes one direction may hold")
    ap.add_argument("--check", action="store_true", help="measure the relay itself against an echo server")
    args = ap.parse_args()
    if args.check:
        print(json.dumps(check(args.delay)), flush=True)
        return
    if not args.target:
        ap.error("--target is required")
    host, _, port = args.listen.rpartition(":")

    async def run() -> None:
        stats: dict = {}
        server = await serve(args.target, args.delay, host or "127.0.0.1", int(port), args.max_queued, stats)
        bound = server.sockets[0].getsockname()
        print(json.dumps({"listening": bound[0], "port": bound[1], "target": args.target,
                          "delay_ms_each_way": args.delay * 1e3}), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        server.close()
        print(json.dumps({"stopped": True, **stats}), flush=True)

    asyncio.run(run())
    sys.exit(0)


if __name__ == "__main__":
    main()
