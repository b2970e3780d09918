"""The console's one way to change something a sink owns: a PUSH to each sink's ``--bind``.

What goes over the wire: common.wire ``Switch`` (a camera's detect/record/snapshots switch), to
the sink that owns the camera (common.sinks: several sinks each own their cameras), and
``Reviewed`` (objects marked reviewed), to every sink (the console reads the marks back from all
of them, merged: a mark or an unmark one of them missed would show wrong, so it is answered as not
sent unless all took it); one part each, ``wire.pack(msg)``; the sink keeps them.

The PUSHes belong to the console's main thread (the skeleton's loop); the HTTP thread hands it a
message with :meth:`SinkLink.send` and gets a future. The loop sends what waits each
``FLUSH_S``. ``immediate`` is set, so a message is never queued for a sink that is not connected:
the future fails at once with :class:`SinkUnreachable`, and the console says so instead of
answering ok to a change nobody will make; it names the sinks that did not take it.
:meth:`SinkLink.unreachable` says so before anyone tries (the page greys out what it cannot
change), and :meth:`SinkLink.away` for one camera, whose own sink may be away while another is
there: each sink's PeerWatch knows whether its address has a peer.
"""

from __future__ import annotations

import asyncio
import queue
from concurrent.futures import Future


from camwire.common import wire
from camwire.common.sinks import Sinks

FLUSH_S = 0.05  # how often the loop sends what the HTTP side queued
SEND_WAIT_S = 5.0  # a request waits this long for the loop to send its message, at most
SNDHWM = 64  # messages towards the sink; a console never has many changes in flight


NO_SINK = "the console has no --sink (the sink's --bind, [sockets] results)"
NOT_CONNECTED = "the sink is not connected: is it running, and is the console's --sink its --bind?"


class SinkUnreachable(ConnectionError):
    """The sink's address is not connected now (or the console has none)."""


class SinkLink:
    """PUSHes to the sinks (common.sinks.Sinks), fed from any thread, sent from the loop's."""

    def __init__(self, sinks: Sinks | None) -> None:
        self.sinks = sinks  # None: the console was given no --sink
        self.waiting: queue.SimpleQueue[tuple[wire.Switch | wire.Reviewed, Future]] = queue.SimpleQueue()

    def unreachable(self) -> str | None:
        """Why a message sent now would reach no sink, or None while a sink's address has a peer
        (a camera whose own sink is away is answered 503 naming it, when its switch is sent)."""
        if self.sinks is None:
            return NO_SINK
        if not self.sinks.connected():
            return NOT_CONNECTED
        return None

    def reached(self) -> set[str]:
        """The sinks' addresses connected now (none without --sink)."""
        return self.sinks.reached() if self.sinks is not None else set()

    def away(self, camera: str, reached: set[str]) -> str | None:
        """Why ``camera``'s switches would not reach the sink that owns it now (``reached``:
        :meth:`reached`, asked once for all cameras), or None."""
        if self.sinks is None:
            return NO_SINK
        addr = self.sinks.of(camera)
        return None if addr in reached else f"{NOT_CONNECTED} (its sink: {addr})"

    @property
    def configured(self) -> bool:
        return self.sinks is not None

    def send(self, msg: wire.Switch | wire.Reviewed) -> Future:
        """Queue ``msg`` for the sink (any thread); the future is True once ZeroMQ took it."""
        done: Future = Future()
        if self.sinks is None:
            done.set_exception(SinkUnreachable(f"{NO_SINK}: it cannot change what the sink keeps"))
        else:
            self.waiting.put((msg, done))
        return done

    def flush(self) -> None:
        """The loop's: send what waits (a switch to its camera's sink, a review mark to every sink)."""
        while True:
            try:
                msg, done = self.waiting.get_nowait()
            except queue.Empty:
                return
            assert self.sinks is not None
            body = [wire.pack(msg)]
            if isinstance(msg, wire.Switch):
                addr = self.sinks.of(msg.camera)
                missed = [] if self.sinks.send_to(addr, body) else [addr]
            else:  # every sink, or the console would read back a mark one of them still has (or lacks)
                missed = [addr for addr in self.sinks.addrs if not self.sinks.send_to(addr, body)]
            if missed:
                done.set_exception(SinkUnreachable(f"{NOT_CONNECTED} (not taken by {', '.join(missed)})"))
            else:
                done.set_result(True)


async def delivered(link: SinkLink, msg: wire.Switch | wire.Reviewed, wait_s: float = SEND_WAIT_S) -> None:
    """``msg`` sent (from the HTTP thread's event loop), awaited; SinkUnreachable, saying why, when it was not."""
    try:
        await asyncio.wait_for(asyncio.wrap_future(link.send(msg)), wait_s)
    except asyncio.TimeoutError:
        raise SinkUnreachable("the console's loop did not send it in time; try again") from None
