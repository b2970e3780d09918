"""The console's one way to change something the sink owns: a PUSH to the sink's ``--bind``.

What goes over the wire: common.wire ``Switch`` (a camera's detect/record/snapshots switch) and
``Reviewed`` (objects marked reviewed), one part each, ``wire.pack(msg)``; the sink keeps them.

The PUSH belongs to the console's main thread (the skeleton's loop); the HTTP thread hands it a
message with :meth:`SinkLink.send` and gets a future. The loop sends what waits each
``FLUSH_S``. ``immediate`` is set, so a message is never queued for a sink that is not connected:
the future fails at once with :class:`SinkUnreachable`, and the console says so instead of
answering ok to a change nobody will make. :meth:`SinkLink.unreachable` says so before anyone
tries (the page greys out what it cannot change): the link's PeerWatch (``watch``, set by
web.daemon and checked on the loop) knows whether the sink's address has a peer.
"""

from __future__ import annotations

import asyncio
import queue
from concurrent.futures import Future

import zmq

from camwire.common import wire

FLUSH_S = 0.05  # how often the loop sends what the HTTP side queued
SEND_WAIT_S = 5.0  # a request waits this long for the loop to send its message, at most
SNDHWM = 64  # messages towards the sink; a console never has many changes in flight


class SinkUnreachable(ConnectionError):
    """The sink's address is not connected now (or the console has none)."""


class SinkLink:
    """A PUSH to the sink, fed from any thread, sent from the loop's."""

    def __init__(self, sock: zmq.Socket | None) -> None:
        self.sock = sock  # None: the console was given no --sink
        self.waiting: queue.SimpleQueue[tuple[bytes, Future]] = queue.SimpleQueue()
        self.watch = None  # the socket's common.sockets.PeerWatch (web.daemon sets it)

    def unreachable(self) -> str | None:
        """Why a message sent now would not reach the sink, or None while its address has a peer."""
        if self.sock is None:
            return "the console has no --sink (the sink's --bind, [sockets] results)"
        if self.watch is not None and not any(peer.connected for peer in self.watch.peers.values()):
            return "the sink is not connected: is it running, and is the console's --sink its --bind?"
        return None

    @property
    def configured(self) -> bool:
        return self.sock is not None

    def send(self, msg: wire.Switch | wire.Reviewed) -> Future:
        """Queue ``msg`` for the sink (any thread); the future is True once ZeroMQ took it."""
        done: Future = Future()
        if self.sock is None:
            done.set_exception(SinkUnreachable("the console has no --sink (the sink's --bind): it cannot change "
                                               "what the sink keeps"))
        else:
            self.waiting.put((wire.pack(msg), done))
        return done

    def flush(self) -> None:
        """The loop's: send what waits."""
        while True:
            try:
                body, done = self.waiting.get_nowait()
            except queue.Empty:
                return
            try:
                self.sock.send(body, zmq.NOBLOCK)
            except zmq.Again:
                done.set_exception(SinkUnreachable("the sink is not connected: is it running, and is the console's "
                                                   "--sink its --bind?"))
            else:
                done.set_result(True)


async def delivered(link: SinkLink, msg: wire.Switch | wire.Reviewed, wait_s: float = SEND_WAIT_S) -> None:
    """``msg`` sent (from the HTTP thread's event loop), awaited; SinkUnreachable, saying why, when it was not."""
    try:
        await asyncio.wait_for(asyncio.wrap_future(link.send(msg)), wait_s)
    except asyncio.TimeoutError:
        raise SinkUnreachable("the console's loop did not send it in time; try again") from None
