"""A daemon's answers to other hosts: the console, ``camwire status`` and ``camwire reload``.

A daemon started with ``--serve ADDR`` binds a ROUTER there (CURVE on tcp://, the same keys and
allowed clients as its other sockets: the link camwire already secures, so no second kind of
secret and no TLS to set up). It answers questions; it never sends unasked.

On the wire (a DEALER asks, the ROUTER answers; msgpack, no ext types):

  ask:    [Ask]                         Ask = {op, id, args}
  answer: [Answer, blob, blob, ...]     Answer = {id, ok, error, body}; blobs: bytes the op returns
                                        beside its body (a snapshot, an MP4), untouched by msgpack

``op`` names what is asked: every daemon answers ``hello`` (who it is) and ``reload`` (its
camwire.toml again, as SIGHUP does, and what came of it); a daemon that owns data adds its own
(sink: status, events, snapshot; recorder: ranges, clips, previews). An op that fails answers
``ok: false`` with a one-line ``error``; a question that does not decode is counted and dropped.

:class:`Server` owns its socket on a thread of its own: a slow answer (an MP4 remuxed where the
recordings are) never holds up the daemon's loop, and the loop's sockets are never touched from
here. Ops run on a few threads of their own (a bounded queue before them: past it, "busy");
their answers come back to the server's thread over inproc.
:class:`Client` is the asking side, safe to call from any thread (one socket per call in flight,
kept for the next call; a socket whose answer timed out is closed, so a late answer is never
taken for the next question's).
"""

from __future__ import annotations

import itertools
import threading
import queue
from dataclasses import dataclass, field
from typing import Any, Callable

import msgspec
import zmq

from camwire.common.curve import SERVE_DOMAIN
from camwire.common.sockets import make_socket

OPS_THREADS = 4  # answers made at once; more questions wait in a queue ...
QUEUED_MAX = 64  # ... this long at most: past it a question is answered "busy" at once
ANSWER_MAX_BYTES = 1 << 30  # an MP4 of a long kept clip fits; a bigger answer is refused by ZeroMQ
ASK_MAX_BYTES = 1 << 18  # a question is small: a name, a time range, a page's object ids
TIMEOUT_S = 10.0

Body = Any  # msgpack data: maps, lists, str, bytes, numbers, None
Blobs = list[bytes]
Op = Callable[[dict[str, Any]], "tuple[Body, Blobs] | Body"]


class Ask(msgspec.Struct, frozen=True):
    op: str
    id: int
    args: dict[str, Any] = {}


class Answer(msgspec.Struct, frozen=True):
    id: int
    ok: bool
    body: Any = None
    error: str | None = None


class Unreachable(Exception):
    """No answer from ``address`` within the timeout (host down, link cut, wrong key)."""

    def __init__(self, address: str, why: str = "no answer") -> None:
        super().__init__(f"{address}: {why}")
        self.address = address


class Refused(Exception):
    """The daemon answered that it could not do what was asked (its one-line error)."""


_ask_decoder = msgspec.msgpack.Decoder(Ask)
_answer_decoder = msgspec.msgpack.Decoder(Answer)
_encoder = msgspec.msgpack.Encoder()


@dataclass
class Server:
    """``ops`` answered on ``sock`` (a bound ROUTER, handed over: from now on this thread's)."""

    sock: zmq.Socket
    ops: dict[str, Op]
    malformed: Callable[[str], None] = lambda _reason: None  # counts a question dropped for its form
    failed: Callable[[str, Exception], None] = lambda _op, _exc: None  # logs an op that raised
    stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="serve", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        self.stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        ctx = self.sock.context
        done_addr = f"inproc://camwire-serve-{id(self)}"
        done = ctx.socket(zmq.PULL)
        done.setsockopt(zmq.LINGER, 0)
        done.bind(done_addr)
        # daemon threads, not an executor's: a daemon stopping never waits for a remux in progress
        todo: queue.Queue[tuple[bytes, Ask] | None] = queue.Queue(QUEUED_MAX)
        threads = [threading.Thread(target=self._work, args=(todo, done_addr), name=f"serve-op-{i}", daemon=True)
                   for i in range(OPS_THREADS)]
        for t in threads:
            t.start()
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(done, zmq.POLLIN)
        try:
            while not self.stop.is_set():
                for sock, _ in poller.poll(200):
                    if sock is done:
                        self._send(done.recv_multipart(copy=False))
                    else:
                        self._take(self.sock.recv_multipart(copy=True), todo)
        finally:
            for _ in threads:
                try:
                    todo.put_nowait(None)
                except queue.Full:
                    break  # they see the stop flag after their op
            done.close()
            self.sock.close()

    def _take(self, parts: list[bytes], todo: queue.Queue) -> None:
        if len(parts) != 2:
            self.malformed("serve_parts")
            return
        peer, raw = parts
        try:
            ask = _ask_decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.malformed("serve_ask")
            return
        try:
            todo.put_nowait((peer, ask))
        except queue.Full:  # as many questions waiting as are worth answering: say so at once
            self._send([peer, _encoder.encode(Answer(ask.id, False, error="busy: too many questions waiting"))])

    def _work(self, todo: queue.Queue, done_addr: str) -> None:
        while not self.stop.is_set():
            item = todo.get()
            if item is None:
                return
            self._answer(*item, done_addr)

    def _answer(self, peer: bytes, ask: Ask, done_addr: str) -> None:
        """On an op thread: run the op, hand the answer to the server's thread over inproc."""
        blobs: Blobs = []
        op = self.ops.get(ask.op)
        if op is None:
            answer = Answer(ask.id, False, error=f"unknown op {ask.op[:40]!r}")
        else:
            try:
                out = op(dict(ask.args))
                body, blobs = out if isinstance(out, tuple) else (out, [])
                answer = Answer(ask.id, True, body)
            except (LookupError, ValueError, OSError, Refused) as exc:  # what was asked cannot be had
                answer = Answer(ask.id, False, error=_one_line(exc))
            except Exception as exc:  # noqa: BLE001 - a bug answers an error and is logged; the server goes on
                self.failed(ask.op, exc)
                answer = Answer(ask.id, False, error=f"{type(exc).__name__}: {_one_line(exc)}")
        try:
            push = self.sock.context.socket(zmq.PUSH)
        except zmq.ZMQError:
            return  # the daemon has stopped: nobody to answer
        push.setsockopt(zmq.LINGER, 1000)
        try:
            push.connect(done_addr)
            push.send_multipart([peer, _encoder.encode(answer), *blobs], copy=False)
        except zmq.ZMQError:
            pass
        finally:
            push.close()

    def _send(self, parts: list[bytes]) -> None:
        try:
            self.sock.send_multipart(parts, flags=zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # the asker went away (EHOSTUNREACH) or is not reading: it will time out


def bind_server(ctx: zmq.Context, addr: str, curve: Any = None) -> zmq.Socket:
    """The ROUTER a Server answers on, bound now (so an address in use fails the daemon's start)."""
    # sndhwm counts messages, not bytes: a few answers (an MP4 each, perhaps) wait for a slow asker
    return make_socket(ctx, zmq.ROUTER, bind=addr, curve=curve, maxmsgsize=ASK_MAX_BYTES, linger=0, sndhwm=4,
                       domain=SERVE_DOMAIN)  # its clients: --curve-clients' serve/ where there is one


class Client:
    """Asks the daemon serving at ``address`` (``server``: its role, whose CURVE key is pinned)."""

    def __init__(self, ctx: zmq.Context, address: str, server: str, curve: Any = None) -> None:
        self.ctx, self.address, self.server, self.curve = ctx, address, server, curve
        self._idle: list[zmq.Socket] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._closed = False  # a call still in flight at close closes its socket when it ends

    def call(self, op: str, timeout: float = TIMEOUT_S, **args: Any) -> tuple[Body, Blobs]:
        """``op``'s body and blobs; Unreachable when no answer came in ``timeout``, Refused when
        the daemon answered that it could not."""
        sock = self._take()
        ask = Ask(op, next(self._ids), args)
        try:
            sock.send(_encoder.encode(ask), flags=zmq.NOBLOCK)
        except zmq.Again:
            sock.close(linger=0)
            raise Unreachable(self.address, "not connected") from None
        deadline_ms = int(timeout * 1000)
        while True:
            if not sock.poll(deadline_ms):
                sock.close(linger=0)  # a late answer must never meet the next question
                raise Unreachable(self.address)
            parts = sock.recv_multipart(copy=True)
            try:
                answer = _answer_decoder.decode(parts[0])
            except (msgspec.DecodeError, msgspec.ValidationError):
                sock.close(linger=0)
                raise Unreachable(self.address, "an answer that does not decode") from None
            if answer.id == ask.id:
                break
        self._give(sock)
        if not answer.ok:
            raise Refused(answer.error or "refused")
        return answer.body, parts[1:]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for sock in self._idle:
                sock.close(linger=0)
            self._idle = []

    def _take(self) -> zmq.Socket:
        with self._lock:
            if self._closed:
                raise Unreachable(self.address, "closed")
            if self._idle:
                return self._idle.pop()
        return make_socket(self.ctx, zmq.DEALER, connect=self.address, curve=self.curve, server=self.server,
                           maxmsgsize=ANSWER_MAX_BYTES, linger=0)

    def _give(self, sock: zmq.Socket) -> None:
        with self._lock:
            if self._closed:
                sock.close(linger=0)
            else:
                self._idle.append(sock)


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())[:300]
