"""The console's door: how many connections a client may hold, how long it may take to ask, and
who a request is from.

aiohttp has no header timeout and no connection caps, and a process runs out of descriptors
long before it runs out of memory: 1,100 slow partial requests, and the console stopped
answering anyone (issue 21). So every accepted socket passes through a :class:`Door` before
aiohttp's RequestHandler sees it (:class:`DoorSite`, web.daemon.Http):

- **Caps.** At most ``per_address`` connections open from one address and ``total`` in all. One
  past a cap is closed the moment it is accepted (reset: its descriptor is free at once) and
  counted under ``refused/connections_per_address`` or ``refused/connections_total``.
  ``total`` sits below the process's descriptor limit (:func:`connection_cap`), so files,
  SQLite and ZeroMQ always have descriptors left and those let in are still answered.
- **Header timeout.** A request's headers must be complete within ``header_timeout`` of its
  first byte (of the connection's opening, for its first request): a client that sends them a
  byte now and then, or never, is cut off, counted under ``cut_off/header_timeout``. An idle
  keep-alive connection between requests is aiohttp's to close (``keepalive_timeout``).
- **Body timeout.** A request's body is read whole (at most the app's ``client_max_size``)
  within ``body_timeout`` before any route sees it; a slower one is answered 408 and its
  connection closed (``cut_off/body_timeout``).
- **Trusted proxies.** Only when the peer is one of ``trusted`` (addresses or networks) is the
  client taken from ``X-Forwarded-For``: its rightmost hop that is not itself trusted, since
  every hop to the left of that one was written by a stranger. That address is
  ``request.remote`` for the routes (the login lockout of web.auth uses it), and no client may
  have more than ``per_address`` requests in flight at once (``refused/requests_per_address``,
  429). A trusted proxy's own connections count against ``total`` only.

Everything here runs on the HTTP thread's event loop; nothing is shared with other threads but
the counts read for the metrics.
"""

from __future__ import annotations

import asyncio
import ipaddress
import resource
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from aiohttp import web

from camwire.web.auth import Network

Note = Callable[[str, str, str], None]  # (counter, reason, client address)

FD_HEADROOM = 256  # descriptors kept back from the HTTP clients: files, SQLite, ZeroMQ, the executors
MAX_CONNECTIONS = 4096  # the total cap when none is given, descriptors permitting
UNLIMITED_FDS = 1 << 20  # what "as many as the hard limit" means when that limit is infinite


def raise_fd_limit() -> int:
    """Raise the soft limit on open files to the hard one, and return the soft limit now. Under
    the systemd unit ``setrlimit`` is refused (``SystemCallFilter=~@resources``); its
    ``LimitNOFILE=`` has set both already."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED_FDS if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError):
            pass  # the soft limit stays what it was, and the cap is sized from it
    return UNLIMITED_FDS if soft == resource.RLIM_INFINITY else soft


def connection_cap(asked: int | None, fd_limit: int) -> int:
    """The total cap on open connections: ``asked`` (MAX_CONNECTIONS if None), never more than
    the descriptor limit less a headroom (a quarter of it, at least FD_HEADROOM)."""
    ceiling = max(16, fd_limit - max(FD_HEADROOM, fd_limit // 4))
    return min(asked if asked is not None else MAX_CONNECTIONS, ceiling)


def address(text: str) -> str | None:
    """An IP address as one spelling (an IPv4 peer of a dual-stack socket as IPv4; a hop of
    X-Forwarded-For with its port taken off), or None for anything else."""
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


@dataclass(frozen=True)
class Limits:
    header_timeout: float
    body_timeout: float
    per_address: int
    total: int
    trusted: tuple[Network, ...] = ()


class Door:
    """The caps, the deadlines and the client's address, for one HTTP server."""

    def __init__(self, limits: Limits, note: Note) -> None:
        self.limits = limits
        self.note = note  # counts (and now and then logs) a refusal or a cut
        self.open_now = 0
        self.in_flight = 0
        self._by_address: dict[str, int] = {}  # open connections per peer; an entry goes at 0
        self._requests: dict[str, int] = {}  # requests in flight per client; likewise
        self._connections: dict[Any, Connection] = {}  # transport -> its Connection

    def trusted(self, addr: str) -> bool:
        if not self.limits.trusted:
            return False
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in net for net in self.limits.trusted)

    def admit(self, peer: str) -> bool:
        if self.open_now >= self.limits.total:
            self.note("refused", "connections_total", peer)
            return False
        if self._by_address.get(peer, 0) >= self.limits.per_address and not self.trusted(peer):
            self.note("refused", "connections_per_address", peer)
            return False
        self.open_now += 1
        self._by_address[peer] = self._by_address.get(peer, 0) + 1
        return True

    def release(self, peer: str) -> None:
        self.open_now -= 1
        left = self._by_address.pop(peer, 1) - 1
        if left > 0:
            self._by_address[peer] = left

    def client_of(self, peer: str, forwarded: list[str]) -> str:
        """The client behind ``peer``: itself, unless it is a trusted proxy; then the rightmost
        hop of X-Forwarded-For that is not trusted (or the leftmost, if all are). A hop that is
        no address ends the walk: no proxy of ours wrote it."""
        client = address(peer) or peer
        if not self.trusted(client):
            return client
        hops = [hop for value in forwarded for hop in value.split(",")]
        for hop in reversed(hops):
            addr = address(hop)
            if addr is None:
                break
            client = addr
            if not self.trusted(addr):
                break
        return client

    def protocol(self, make_handler: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """The protocol factory for ``loop.create_server``: aiohttp's, behind this door."""
        return lambda: Connection(self, make_handler)

    @web.middleware
    async def middleware(self, request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """The first of the app's middlewares: the headers are in (the header deadline is off),
        the client is who the trusted proxies say, and the body is read before its deadline."""
        conn = self._connections.get(request.transport)
        if conn is not None:
            conn.request_started()
        try:
            return await self._serve(request, handler)
        finally:
            if conn is not None:
                conn.request_ended()

    async def _serve(self, request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        client = self.client_of(request.remote or "?", request.headers.getall("X-Forwarded-For", []))
        if client != request.remote:
            request = request.clone(remote=client)
        if self._requests.get(client, 0) >= self.limits.per_address:
            self.note("refused", "requests_per_address", client)
            return web.json_response({"error": "too many requests at once from here"}, status=429)
        self._requests[client] = self._requests.get(client, 0) + 1
        self.in_flight += 1
        try:
            if request.body_exists:
                try:
                    async with asyncio.timeout(self.limits.body_timeout):
                        await request.read()  # kept by the request: the route's json() reads it from there
                except TimeoutError:
                    self.note("cut_off", "body_timeout", client)
                    return await self._cut(request, web.json_response(
                        {"error": f"the body did not arrive within {self.limits.body_timeout:g} s"}, status=408))
            return await handler(request)
        finally:
            self.in_flight -= 1
            left = self._requests.pop(client, 1) - 1
            if left > 0:
                self._requests[client] = left

    @staticmethod
    async def _cut(request: web.Request, response: web.Response) -> web.Response:
        """Send ``response`` and close the connection now: aiohttp would otherwise linger up to
        10 s reading the rest of a body that is not coming."""
        response.force_close()
        await response.prepare(request)
        await response.write_eof()
        if request.protocol is not None:
            request.protocol.force_close()
        return response


class Connection(asyncio.Protocol):
    """One accepted socket: reset at once past a cap, else aiohttp's RequestHandler's, watched for
    a request whose headers do not end in time."""

    def __init__(self, door: Door, make_handler: Callable[[], asyncio.Protocol]) -> None:
        self.door, self.make_handler = door, make_handler
        self.inner: asyncio.Protocol | None = None  # aiohttp's handler, made only for a connection let in
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.busy = 0  # requests of this connection in the app now
        self.head_since: float | None = None  # when the request now arriving began, while its headers are not in
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = (address(peer[0]) if isinstance(peer, tuple) else None) or "?"
        if not self.door.admit(self.peer):
            transport.abort()  # closed now, nothing written: the descriptor is free at once
            return
        self.door._connections[transport] = self
        self.inner = self.make_handler()
        self.inner.connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.inner is None:
            return
        if self.busy == 0 and self.head_since is None:
            self._arm()  # the first byte of the next request
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.inner is None:
            return  # refused: never counted in
        self.door.release(self.peer)
        self.door._connections.pop(self.transport, None)
        inner, self.inner = self.inner, None
        inner.connection_lost(exc)

    def request_started(self) -> None:
        self.busy += 1
        self.head_since = None

    def request_ended(self) -> None:
        self.busy -= 1

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self.head_since = loop.time()
        if self.timer is None:
            self.timer = loop.call_at(self.head_since + self.door.limits.header_timeout, self._check)

    def _check(self) -> None:
        self.timer = None
        if self.head_since is None or self.busy or self.transport is None or self.inner is None:
            return  # the headers came in time
        loop = asyncio.get_running_loop()
        due = self.head_since + self.door.limits.header_timeout
        if loop.time() < due:  # a later request began since this timer was set
            self.timer = loop.call_at(due, self._check)
            return
        self.door.note("cut_off", "header_timeout", self.peer)
        self.transport.abort()


class DoorSite(web.BaseSite):
    """aiohttp's TCPSite, with every accepted connection passed through a :class:`Door` first."""

    __slots__ = ("_host", "_port", "_door")

    def __init__(self, runner: web.BaseRunner, door: Door, host: str, port: int) -> None:
        super().__init__(runner)
        self._host, self._port, self._door = host, port, door

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self._door.protocol(server), self._host, self._port, backlog=self._backlog, reuse_address=True)
