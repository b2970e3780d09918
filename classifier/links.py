"""A classifier worker's link to one ventilator (``--connect``, one address or several): its own
DEALER, and what the worker keeps per ventilator: the credits it gave and that no frame has used
yet, the round trips its heartbeats measured (its credit window, classifier.worker_loop.window_for),
the last ``reset`` it answered and whether the ventilator said ``bye``.

One DEALER per ventilator, never one DEALER connected to many ROUTERs: that would round-robin a
worker's ``ready`` messages (credits, frames done, ``leaving``) and heartbeats across ventilators,
so one would be told of frames another sent, and given credits the worker meant for another. Over
each link the messages are the one-ventilator protocol, unchanged (common.wire): the worker sends
``ready`` and ``heartbeat``; the ventilator sends frames, ``heartbeat`` (an echo), ``reset``,
``bye`` and the ``status``/``eos``/``motion``/``workers`` the worker passes on to the sinks.
"""

from __future__ import annotations

import statistics
from collections import deque

import zmq

from camwire.common import wire
from camwire.common.curve import SERVER_OF
from camwire.common.daemon import Daemon
from camwire.common.sockets import send_nowait

HEARTBEAT_S = 1.0
DEALER_HWM = 100  # ready/heartbeat queued while the ventilator is away; past it they are dropped
RTT_SAMPLES = 8  # round trips kept; the window follows their median


class Link:
    """One ventilator: the DEALER (connected, watched: a wrong address is warned about) and the
    worker's bookkeeping for it. The frames it sent and the worker holds are the worker's to count
    (classifier.worker_loop.Worker.origin)."""

    def __init__(self, daemon: Daemon, addr: str, name: str) -> None:
        self.addr = addr
        self.dealer = daemon.socket(zmq.DEALER, identity=name.encode(), sndhwm=DEALER_HWM)
        self.peer = daemon.peer_watch(self.dealer, addr, SERVER_OF["connect"])
        self.outstanding = 0  # credits given and not yet used by a frame
        self.rtts: deque[float] = deque(maxlen=RTT_SAMPLES)
        self.bye = False  # the ventilator said nothing more will come (we are leaving)
        self.last_reset = -HEARTBEAT_S

    def rtt(self) -> float | None:
        """The round trip to this ventilator: the median of the recent heartbeats' echoes."""
        return statistics.median(self.rtts) if self.rtts else None

    def send(self, msg: wire.Message) -> bool:
        """Never blocks; False when the ventilator's queue is full (it is away): the caller counts it."""
        return send_nowait(self.dealer, [wire.pack(msg)])
