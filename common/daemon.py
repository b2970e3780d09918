"""One daemon skeleton for every daemon: start-up, a Poller loop, reload, threads watched, a bounded stop.

All six daemons (extractor, ventilator, classifier, sink, recorder, web) use it one way. The
daemon's module holds one class of its own (Extractor, Ventilator, Worker, Sink, Recorder,
WebConsole) whose object holds the daemon's state and makes its sockets through the
:class:`Daemon`; its methods are the handlers, timers and reload hooks. The module's ``main``
builds the Daemon, then that object, says which method does what, and runs::

    def main(args) -> int:
        d = Daemon("ventilator", args, LABELS)
        vent = Ventilator(d, args)               # its sockets: d.socket(...)
        d.on(vent.frontend, vent.on_frontend)    # a socket's messages
        d.every(TICK_S, vent.tick)               # a timer
        d.on_reload(vent.reload)                 # SIGHUP, a changed --config
        d.gauges(vent.gauges)                    # what the metrics show besides the counters
        d.log.info("ventilator started", ...)
        code = d.run()                           # until stopped (until=, cleanup= where it has them)
        d.log.info("ventilator stopped", stats=d.stats())
        return code

The Daemon is never subclassed and no state lives in closures. What a daemon needs done its own
way is a hook: ``stats_extra`` and ``stats_shape`` (the extractor's per-camera ``--stats``
file), ``gauges`` and ``collector`` (the sink's ``camwire_camera_up``), ``watch`` for the
threads it runs, and ``serve_until`` for a bounded phase of serving sockets and timers outside
the loop (the extractor waiting for the recorder before it starts, a leaving classifier worker
finishing its frames in its cleanup). The skeleton owns the rest, the same way everywhere:

- SIGTERM/SIGINT set the stop flag; the loop finishes its turn, then the daemon's ``cleanup`` and
  the sockets' close (linger set) run, and ``--stats`` is written.
- SIGHUP reloads: ``--config``'s file is read again and validated as the daemon's start judged
  it (what this daemon reads: camwire.checks.load_for); refused, it is logged with file, line and reason and nothing changes;
  accepted, each ``on_reload`` hook gets the new Config. Hooks that need no file (reopen a log
  for logrotate) get the running one. A changed file is noticed without SIGHUP too.
- Each socket's messages are drained in bounded rounds (no socket starves another). A message
  that does not decode (common.wire.MalformedMessage) is counted under ``malformed/<reason>`` and
  dropped; a handler that raises anything else is logged (once per interval, common.logs) and
  counted under ``errors/<type>``, and the loop goes on: no message can kill a daemon.
- A watched thread that dies is started again with capped backoff and counted under
  ``thread_restarts/<name>``; one that is ``fatal`` makes the daemon exit 1 instead. A daemon
  never exits 0 after a failure, and never heartbeats with a dead thread behind it.
- Counters are declared once with their label names: the ``--stats`` file and the metrics are
  read from the same tree.
- With ``--serve ADDR`` the daemon answers other hosts (common.serve, on a thread of its own):
  ``hello``, ``reload`` (taken by the loop at its next turn, as SIGHUP is, and answered with what
  came of it: applied, refused at FILE:LINE, unchanged) and the daemon's own ops (``serves``:
  the sink's events and status, a recorder's recordings). Plain tcp:// there is refused unless on
  loopback.
- With ``--curve-key`` every tcp:// link is CURVE (common.curve): sockets made here are secured,
  a failed handshake on any of them is counted under ``handshakes_failed/<address>/<reason>``
  (and, on what it binds, ``refused_peers/<address>/<reason>/<peer>/<key>``: common.refusals),
  and a reload reads the allowed client keys again, cutting off a peer whose key was removed.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import threading
import time
from concurrent.futures import Future, TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import zmq
from prometheus_client.registry import Collector

from camwire.common import wire
from camwire.common.config import Config, ConfigError
from camwire.common.config_watch import ConfigWatcher
from camwire.common.counters import Counters, write_stats
from camwire.common.curve import SERVE_CLIENTS, Curve, secured
from camwire.common.lifecycle import Hangup, StopFlag, backoff_delay
from camwire.common.logs import RepeatLimiter, configure
from camwire.common.metrics import register_stats
from camwire.common.notify import notify
from camwire.common.settings import Settings
from camwire.common.refusals import PeerNames, Refusal, RefusalWatch
from camwire.common.serve import Op, Server, bind_server
from camwire.common.sockets import OperatorError, PeerWatch, is_loopback, make_socket

# exit codes, the same for every daemon and camwire run; run and systemd act on them
# (and for camwire's one-shot commands: status, check-config, clip)
EXIT_OK = 0  # stopped, or its work done (an extractor's files read to their end)
EXIT_FAILED = 1  # a crash (its traceback in the log) or a failure it cannot go on without: restarted;
# a command that could not do its work (nothing to read); camwire run --once with a camera failed
EXIT_OPTIONS = 2  # its options or file refused, or an address in use: a restart would only say so again
EXIT_SOURCE_FAILED = 3  # an extractor's: a file camera failed for good; camwire run does not restart it

TICK_MS = 250  # the longest the loop sleeps: timers and the stop flag are checked at least this often
DRAIN_MAX = 256  # messages taken from one socket in one turn before the next socket gets its turn
RESTART_FIRST_S = 0.5
RESTART_CAP_S = 30.0
REBIND_WAIT_S = 5.0  # how long a secured address may take to be free again after an unbind

Handler = Callable[[list[zmq.Frame]], None]
RECEIVING = (zmq.PULL, zmq.SUB, zmq.ROUTER, zmq.DEALER)


@dataclass
class _Timer:
    every_s: float
    fn: Callable[[], None]
    due: float = 0.0


@dataclass
class _Watched:
    name: str
    factory: Callable[[], threading.Thread]
    fatal: bool
    thread: threading.Thread | None = None
    failures: int = 0
    restart_at: float | None = None
    started: float = 0.0  # when its thread last started


class Daemon:
    """The life of one camwire daemon; ``name`` is its command (extractor, sink, ...)."""

    def __init__(self, name: str, args: Settings, labels: dict[str, tuple[str, ...]] | None = None,
                 log: Any = None) -> None:
        self.name, self.args = name, args
        self.log = log if log is not None else configure(name)
        self.counters = Counters({"malformed": ("reason",), "errors": ("error",), "thread_restarts": ("thread",),
                                  "reloads": ("outcome",), "handshakes_failed": ("socket", "reason"),
                                  "refused_peers": ("socket", "reason", "peer", "key"), **(labels or {})})
        self._peer_names = PeerNames()  # refused peers named apart, up to a cap (common.refusals)
        self._loop_thread = threading.get_ident()  # the thread that makes the daemon runs its loop
        self.repeats = RepeatLimiter(self.log)
        self.stop = StopFlag()
        self.ctx = zmq.Context()
        self.config: Config | None = args.config if isinstance(args.config, Config) else None
        self._sockets: list[zmq.Socket] = []
        self._handlers: dict[zmq.Socket, Handler] = {}
        self._paused: set[zmq.Socket] = set()
        self._timers: list[_Timer] = []
        self._reloads: list[Callable[[Config | None], None]] = []
        self._watched: dict[str, _Watched] = {}
        self._hup = Hangup()
        self._stats_extra: Callable[[], dict[str, Any]] | None = None
        self._stats_shape: Callable[[dict[str, Any]], dict[str, Any]] = lambda snapshot: snapshot
        self._gauges: Callable[[], dict] | None = None
        self._collectors: list[Collector] = []
        self._poller = zmq.Poller()
        self._polled: set[zmq.Socket] = set()
        self.exit_code = EXIT_OK
        # keys of this daemon's own section that its reload hooks apply; a change to any other is
        # logged as needing a restart, so an operator is never left thinking a reload applied it
        self.reloadable: set[str] = set()
        # the CLI hands over its check (what this daemon reads) so a reload is judged as its start was
        self._load: Callable[[Path], Config] | None = args.config_loader
        self._watcher = ConfigWatcher(self.config, load=self._load) if self.config is not None else None
        self._previous_handlers = self._install_signals()  # now: a SIGHUP during start-up must not kill us
        self.curve = Curve.from_args(args)  # OperatorError (a key file others may read) before any bind
        self._secured: list[tuple[zmq.Socket, str, str]] = []  # (socket, address, as bound) with CURVE
        # --serve: what this daemon answers other hosts (common.serve); reloads asked that way
        self._ops: dict[str, Op] = {"hello": self._hello, "reload": lambda _args: self.ask_reload()}
        self._server: Server | None = None
        self.hello_extra: dict[str, Any] = {}  # what else ``hello`` says of it (a recorder: its folder)
        self._serve_monitor: zmq.Socket | None = None  # the --serve socket's refusals (RefusalWatch)
        self._serve_addr = serve_address(getattr(args, "serve", None), getattr(args, "instance", None))
        if (self._serve_addr and self.curve is None and secured(self._serve_addr)
                and not is_loopback(self._serve_addr[len("tcp://"):].rpartition(":")[0].strip("[]"))):
            raise OperatorError(f"--serve {self._serve_addr} without CURVE: anyone who reaches it could read the "
                                "recordings and events and reload the daemon; set [security] (README \"Links "
                                "between hosts\") or serve on 127.0.0.1")
        self._asked: list[Future[dict[str, Any]]] = []
        self._asked_lock = threading.Lock()
        self.started = time.time()

    # -- set-up ---------------------------------------------------------------------------------

    def socket(self, kind: int, **options: Any) -> zmq.Socket:
        """A socket owned by the main thread, closed by the skeleton at exit (common.sockets).
        One that receives from other processes takes no message part over twice the largest frame
        (``--max-frame-bytes`` or the wire's default, whichever is larger): ZeroMQ drops a peer
        that sends one, so no part can make a daemon allocate without bound. A frame between the
        limit and this ceiling still arrives, and is counted and dropped as ``too_large``."""
        if kind in RECEIVING and "maxmsgsize" not in options:
            limit = max(getattr(self.args, "max_frame_bytes", None) or 0, wire.DEFAULT_MAX_FRAME_BYTES)
            options["maxmsgsize"] = 2 * limit + wire.MAX_HEADER_BIN
        sock = make_socket(self.ctx, kind, curve=self.curve, **options)
        self._sockets.append(sock)
        bound = [a for a in ([options["bind"]] if isinstance(options.get("bind"), str) else options.get("bind") or [])
                 if self.curve is not None and secured(a)]
        if bound:
            # the name each was bound as (a wildcard or port 0 resolved): what unbind takes
            names = [e for e in sock.getsockopt_string(zmq.LAST_ENDPOINT).split() if e]
            self._secured += [(sock, addr, names[-1] if len(bound) == 1 and names else addr) for addr in bound]
            watch = RefusalWatch(sock, self.curve.take_denied)  # type: ignore[union-attr]
            self._sockets.append(watch.monitor)
            self.on(watch.monitor, lambda parts, w=watch: self._on_refused(w.on_event(parts)))
        return sock

    def peer_watch(self, sock: zmq.Socket, addrs: str | list[str], server: str) -> PeerWatch:
        """Connect ``sock`` to ``addrs`` (the ``server`` daemon's: common.curve.SERVER_OF), warning
        about addresses that never answer and counting failed handshakes (common.sockets.PeerWatch).
        Made by the loop's own thread, its events are read by the loop as they come, so a refused
        handshake is let go at once; another thread's (an extractor's camera) reads them in its
        ``check``."""
        watch = PeerWatch(sock, addrs, self.log, curve=self.curve, server=server, failed=self.handshake_failed)
        if threading.get_ident() == self._loop_thread:
            self.on(watch.monitor, watch.on_monitor)
            watch.forget = lambda: self.off(watch.monitor)  # its close takes it out of the loop first
        return watch

    def handshake_failed(self, address: str, reason: str) -> None:
        """Count a peer that could not handshake (thread-safe: camera threads call it too)."""
        self.counters.add("handshakes_failed", address, reason)

    def _on_refused(self, refusals: list[Refusal]) -> None:
        """Count and log each refused handshake on a socket this daemon binds, with its peer: by
        socket and reason (``handshakes_failed``), and by peer (``refused_peers``); logged once a
        minute per peer (``address``: this daemon's socket; ``peer``: the client's IP address;
        ``client_key``: the fingerprint of the key it offered, common.curve.fingerprint)."""
        for r in refusals:
            peer, key = self._peer_names.name(r.peer, r.key)
            self.handshake_failed(r.socket, r.reason)
            self.counters.add("refused_peers", r.socket, r.reason, peer, key)
            self.repeats(f"handshake:{r.socket}:{r.reason}:{peer}:{key}", "a peer failed the CURVE handshake; nothing "
                         "of it got through", address=r.socket, reason=r.reason, peer=peer, client_key=key)

    def on(self, sock: zmq.Socket, handler: Handler) -> None:
        """Call ``handler(parts)`` for each message on ``sock`` (parts are zmq.Frames, not copied)."""
        self._handlers[sock] = handler

    def off(self, sock: zmq.Socket) -> None:
        """Stop polling ``sock`` (before it is closed by its owner)."""
        self._handlers.pop(sock, None)
        if sock in self._polled:
            self._poller.unregister(sock)
            self._polled.discard(sock)

    def pause(self, sock: zmq.Socket, paused: bool) -> None:
        """Stop (or resume) reading ``sock``: back-pressure towards its peers."""
        (self._paused.add if paused else self._paused.discard)(sock)

    def every(self, seconds: float, fn: Callable[[], None], now: bool = False) -> None:
        """Run ``fn`` from the loop every ``seconds`` (first at once if ``now``)."""
        self._timers.append(_Timer(seconds, fn, 0.0 if now else time.monotonic() + seconds))

    def on_reload(self, fn: Callable[[Config | None], None]) -> None:
        """``fn(config)`` on SIGHUP or a changed ``--config`` file (None when there is no file)."""
        self._reloads.append(fn)

    def watch(self, name: str, factory: Callable[[], threading.Thread], fatal: bool = False) -> None:
        """Start ``factory()``'s thread now and again whenever it dies (``fatal``: exit 1 instead)."""
        w = self._watched[name] = _Watched(name, factory, fatal)
        self._start(w)

    def unwatch(self, name: str) -> threading.Thread | None:
        """Stop watching ``name`` (a camera taken out of the config); its thread is the caller's."""
        w = self._watched.pop(name, None)
        return w.thread if w else None

    def stats_extra(self, fn: Callable[[], dict[str, Any]]) -> None:
        """More for the ``--stats`` file than the counters (names, gauges at exit)."""
        self._stats_extra = fn

    def stats_shape(self, fn: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """How the ``--stats`` file arranges the counters' snapshot (``fn(snapshot)``; the
        extractor's is per camera). Without one, as the counters hold them; the metrics are the
        counters either way."""
        self._stats_shape = fn

    def serves(self, ops: dict[str, Op]) -> None:
        """Answer these ops on ``--serve`` besides ``hello`` and ``reload`` (common.serve). Each
        runs on a thread of the server's pool, never the loop's: it reads files and databases
        the daemon writes, never its in-memory state."""
        self._ops.update(ops)

    def _hello(self, _args: dict[str, Any]) -> dict[str, Any]:
        return {"daemon": self.name, "command": self.args.command or self.name, "host": socket.gethostname(),
                "pid": os.getpid(), "started": self.started, "config": str(self.config.path) if self.config else None,
                **self.hello_extra}

    def _start_server(self, again: bool = False) -> None:
        """Bind ``--serve`` and start its thread (the socket is that thread's from then on). Its
        refused handshakes are counted and named as any bound socket's are; a plain tcp:// one
        other hosts could reach is refused (anyone there could read the recordings and reload)."""
        addr = self._serve_addr
        if not addr:
            return
        deadline = time.monotonic() + REBIND_WAIT_S
        while True:
            try:
                sock = bind_server(self.ctx, addr, self.curve)
                break
            except OperatorError:  # the old listener closes in ZeroMQ's I/O thread: busy a moment
                if not again or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        if self.curve is not None and secured(addr):
            watch = RefusalWatch(sock, self.curve.take_denied)  # made here, read by the loop
            self._sockets.append(watch.monitor)
            self.on(watch.monitor, lambda parts, w=watch: self._on_refused(w.on_event(parts)))
            self._serve_monitor = watch.monitor
        self._server = Server(sock, self._ops, malformed=lambda reason: self.counters.add("malformed", reason),
                              failed=lambda op, exc: self.repeats(f"serve:{op}:{type(exc).__name__}",
                                                                  "an answer over --serve failed", level="error",
                                                                  exc_info=exc,
                                                                  op=op, error=f"{type(exc).__name__}: {exc}"[:500]))
        self._server.start()
        if not again:
            self.log.info("answering other hosts", serve=addr, ops=sorted(self._ops))

    def _restart_server(self) -> None:
        """--serve bound anew (a client key removed: its open connections cut, as _reload_keys does
        for the loop's sockets; the socket is the server thread's, so the thread goes with it)."""
        if self._server is None:
            return
        self._server.close()
        if self._serve_monitor is not None:
            self.off(self._serve_monitor)
            self._sockets.remove(self._serve_monitor)
            self._serve_monitor.close()
            self._serve_monitor = None
        self._start_server(again=True)

    def gauges(self, fn: Callable[[], dict]) -> None:
        """Gauges for the metrics: ``{name: (help, label names, {label values: value})}``."""
        self._gauges = fn

    def collector(self, collector: Collector) -> None:
        """A Prometheus collector of the daemon's own, for metrics not named ``camwire_<daemon>_*``
        (the sink's ``camwire_camera_up``); registered with the counters when ``run`` starts."""
        self._collectors.append(collector)

    def stats(self) -> dict[str, Any]:
        """What the ``--stats`` file holds: the counters (as ``stats_shape`` arranges them) and ``stats_extra``."""
        return {**self._stats_shape(self.counters.snapshot()), **(self._stats_extra() if self._stats_extra else {})}

    def malformed(self, exc: wire.MalformedMessage, **kw: Any) -> None:
        """Count and (once per interval per reason) log a message dropped for its form."""
        self.counters.add("malformed", exc.reason)
        self.repeats(f"malformed:{exc.reason}", "malformed message dropped", reason=exc.reason, detail=str(exc)[:300],
                     **kw)

    # -- the loop -------------------------------------------------------------------------------

    def run(self, until: Callable[[], bool] | None = None, cleanup: Callable[[], None] | None = None) -> int:
        """Loop until stopped (or ``until()``), then clean up; returns the exit code."""
        register_stats(self.name, self.counters.snapshot, self.counters.labels, self._gauges, self._collectors)
        try:
            self._start_server()
            notify()  # its sockets are bound: systemd (Type=notify) or camwire run may start what sends to it
            while not self.stop.is_set():
                if until is not None and until():
                    break
                self._turn()
                self._check_threads()
                self._maybe_reload()
        finally:
            self.stop.set()
            try:
                if cleanup is not None:
                    cleanup()
            finally:
                if self._server is not None:
                    self._server.close()
                with self._asked_lock:  # a reload asked as the daemon stops: answered, not left hanging
                    for future in self._asked:
                        future.set_result({"outcome": "refused", "reason": "the daemon is stopping"})
                    self._asked = []
                if self.curve is not None:
                    self.curve.stop()
                for sock in self._sockets:
                    sock.close()
                self.ctx.term()
                try:
                    write_stats(self.args.stats, self.stats())
                except OSError as exc:  # a full disk at exit: say so, the exit code stays what it was
                    self.log.error("could not write the stats file", path=str(self.args.stats), error=exc.strerror)
                for signum, handler in self._previous_handlers.items():
                    signal.signal(signum, handler)
        return self.exit_code

    def fail(self, reason: str, **kw: Any) -> None:
        """Stop with exit code 1: something this daemon cannot go on without has failed."""
        self.log.error("stopping on failure", reason=reason, **kw)
        self.exit_code = EXIT_FAILED
        self.stop.set()

    def serve_until(self, done: Callable[[], bool], within_s: float) -> bool:
        """Serve the sockets and timers as the loop does until ``done()``, or ``within_s`` has
        passed; whether ``done()`` came. A bounded phase outside ``run``: before it (the
        extractor waiting for the recorder's subscriptions) or in its cleanup (a leaving worker
        finishing the frames it took). The stop flag does not end it, and no reload and no
        thread restart happens in it."""
        deadline = time.monotonic() + within_s
        while not (finished := done()) and time.monotonic() < deadline:
            self._turn(deadline)
        return finished

    def _turn(self, deadline: float | None = None) -> None:
        """One turn of the loop: wait for a message (a tick at most, less when a timer or the
        ``deadline`` is due), handle what came from each socket, run the timers due."""
        for sock in self._handlers:
            want = sock not in self._paused
            if want and sock not in self._polled:
                self._poller.register(sock, zmq.POLLIN)
                self._polled.add(sock)
            elif not want and sock in self._polled:
                self._poller.unregister(sock)
                self._polled.discard(sock)
        timeout_ms = self._timeout_ms(deadline)
        if self._polled:
            for sock in list(dict(self._poller.poll(timeout_ms))):
                self.drain(sock)
        elif self.stop.is_set():  # a phase after the stop (serve_until): the flag no longer waits
            time.sleep(timeout_ms / 1000)
        else:
            self.stop.wait(timeout_ms / 1000)
        self._run_timers()

    def _timeout_ms(self, deadline: float | None = None) -> int:
        due = min((t.due for t in self._timers), default=time.monotonic() + TICK_MS / 1000)
        if deadline is not None:
            due = min(due, deadline)
        return max(0, min(TICK_MS, int((due - time.monotonic()) * 1000) + 1))

    def drain(self, sock: zmq.Socket) -> None:
        """Handle what waits on ``sock`` now, at most DRAIN_MAX messages, with the loop's rules for
        bad messages and failing handlers (for a daemon's own shutdown drains too)."""
        handler = self._handlers[sock]
        for _ in range(DRAIN_MAX):
            if sock in self._paused:
                return
            try:
                parts = sock.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                handler(parts)
            except wire.MalformedMessage as exc:
                self.malformed(exc)
            except Exception as exc:  # noqa: BLE001 - counted and logged; one message never kills a daemon
                kind = type(exc).__name__
                self.counters.add("errors", kind)
                self.repeats(f"handler:{kind}:{exc}", "message handling failed; message dropped", level="error",
                             exc_info=True, error=f"{kind}: {exc}"[:500])

    def _run_timers(self) -> None:
        now = time.monotonic()
        for timer in self._timers:
            if now >= timer.due:
                timer.due = now + timer.every_s
                try:
                    timer.fn()
                except Exception as exc:  # noqa: BLE001 - same rule as a handler
                    kind = type(exc).__name__
                    self.counters.add("errors", kind)
                    self.repeats(f"timer:{kind}:{exc}", "periodic task failed", level="error", exc_info=True,
                                 error=f"{kind}: {exc}"[:500])

    # -- threads ---------------------------------------------------------------------------------

    def _start(self, w: _Watched) -> None:
        w.thread = w.factory()
        w.started = time.monotonic()
        w.thread.start()

    def _check_threads(self) -> None:
        now = time.monotonic()
        for w in list(self._watched.values()):
            if w.restart_at is not None:
                if now >= w.restart_at:
                    w.restart_at = None
                    self._start(w)
                    self.log.warning("thread restarted", thread=w.name, restarts=w.failures)
                continue
            if w.thread is None or w.thread.is_alive() or getattr(w.thread, "finished", False):
                continue
            if w.fatal:
                self.fail("a thread died", thread=w.name)
                return
            # a thread that ran a good while before dying starts again quickly
            if now - w.started > 5 * RESTART_CAP_S:
                w.failures = 0
            w.failures += 1
            self.counters.add("thread_restarts", w.name)
            delay = backoff_delay(w.failures, RESTART_FIRST_S, RESTART_CAP_S)
            w.restart_at = now + delay
            self.log.error("thread died; restarting", thread=w.name, restart_in_s=delay, failures=w.failures)

    # -- signals and reload -------------------------------------------------------------------------

    def _install_signals(self) -> dict[int, Any]:
        def on_thread_crash(hook: threading.ExceptHookArgs) -> None:
            # the traceback goes to the daemon's own log (JSON in the journal), then the watch restarts it
            self.log.error("thread crashed", thread=hook.thread.name if hook.thread else None,
                           exc_info=(hook.exc_type, hook.exc_value, hook.exc_traceback))

        threading.excepthook = on_thread_crash
        return {signal.SIGTERM: signal.signal(signal.SIGTERM, self.stop.handle),
                signal.SIGINT: signal.signal(signal.SIGINT, self.stop.handle),
                signal.SIGHUP: signal.signal(signal.SIGHUP, self._hup.handle)}

    def _maybe_reload(self) -> None:
        with self._asked_lock:
            asked, self._asked = self._asked, []
        outcome = self._reload(self._hup.take() or bool(asked))
        for future in asked:
            future.set_result(outcome)

    def _reload(self, forced: bool) -> dict[str, Any]:
        """Read the file again if it changed (or ``forced``: SIGHUP, a reload asked over --serve)
        and apply it; what came of it: ``{"outcome": "applied" | "refused" | "unchanged", ...}``
        with the refusal's ``file``, ``line`` and ``reason``."""
        cfg: Config | None = None
        if self.config is not None:
            try:
                cfg = self._reload_config(forced)
            except ConfigError as exc:
                return self._refused(exc)
            if cfg is None and not forced:
                return {"outcome": "unchanged"}
        elif not forced:
            return {"outcome": "unchanged"}
        new = cfg if cfg is not None else self.config
        self.log.info("reloading", file=str(new.path) if new else None, signal=forced)
        restart: list[str] = []
        if self.config is not None and new is not None:
            restart = self._say_what_needs_a_restart(self.config, new)
        try:
            self._reload_keys()
        except OperatorError as exc:  # the key folder cannot be read: the running keys stay
            self.counters.add("reloads", "refused")
            self.log.error("client keys not read again; the running ones stay", reason=str(exc))
            return {"outcome": "refused", "reason": f"client keys not read again: {exc}"}
        for fn in self._reloads:
            try:
                fn(new)
            except ConfigError as exc:  # a hook found the new file unusable for this daemon
                return self._refused(exc)
        self.config = new
        self.counters.add("reloads", "applied")
        return {"outcome": "applied", "file": str(new.path) if new else None, "needs_restart": restart}

    def ask_reload(self, timeout: float = 30.0) -> dict[str, Any]:
        """A reload asked from another thread (the ``reload`` op of --serve): done by the loop
        at its next turn, as SIGHUP is; what came of it (:meth:`_reload`), or ``pending`` when the
        loop has not taken it within ``timeout`` (busy: it still applies at its next turn)."""
        future: Future[dict[str, Any]] = Future()
        with self._asked_lock:
            self._asked.append(future)
        try:
            return future.result(timeout)
        except FutureTimeout:
            return {"outcome": "pending", "reason": f"asked; the daemon's loop has not taken it in {timeout:g} s "
                                                    "(busy), it applies the file at its next turn"}

    def _reload_keys(self) -> None:
        """The allowed client keys again; a removed one is cut off now, not at its next reconnect:
        every secured address is unbound (closing its connections) and bound again, so each peer
        handshakes anew and the removed one fails."""
        if self.curve is None or self.curve.clients is None:
            return
        added, removed = self.curve.reload()
        if added or removed:
            self.log.info("client keys read again", added=added, removed=removed, allowed=len(self.curve.allowed))
        if not removed:
            return
        self._restart_server()
        if all(name.startswith(f"{SERVE_CLIENTS}/") for name in removed):
            return  # keys --serve no longer lets in, still clients of the rest: cut off --serve alone
        for sock, addr, endpoint in self._secured:
            try:
                sock.unbind(endpoint)
            except zmq.ZMQError as exc:
                self.fail("a secured address could not be unbound to cut a removed key off", address=addr,
                          error=exc.strerror)
                return
            self._rebind(sock, addr)

    def _rebind(self, sock: zmq.Socket, addr: str) -> None:
        deadline = time.monotonic() + REBIND_WAIT_S
        while True:
            try:
                self.curve.prepare(sock, addr, True, None)  # type: ignore[union-attr]
                sock.bind(addr)
                return
            except zmq.ZMQError as exc:
                # the old listener closes in ZeroMQ's I/O thread: the port may be busy a moment
                if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    self.fail("a secured address could not be bound again after a key was removed", address=addr,
                              error=exc.strerror)
                    return
                time.sleep(0.02)

    def _say_what_needs_a_restart(self, old: Config, new: Config) -> list[str]:
        section = self.args.command or self.name
        before, after = old.daemon_defaults(section), new.daemon_defaults(section)
        changed = sorted(k for k in {*before, *after} if before.get(k) != after.get(k) and k not in self.reloadable)
        if changed:
            self.log.warning("changed settings need a restart of this daemon; the running values stay",
                             section=section, settings=changed)
        return changed

    def _refused(self, exc: ConfigError) -> dict[str, Any]:
        self.counters.add("reloads", "refused")
        self.log.error("config refused; the running config stays", file=str(exc.path), line=exc.line,
                       reason=exc.reason)
        return {"outcome": "refused", "file": str(exc.path), "line": exc.line, "reason": exc.reason}

    def _reload_config(self, forced: bool) -> Config | None:
        """The file again, if it changed (or SIGHUP came); validated whole before anything applies."""
        assert self._watcher is not None
        return self._watcher.poll_now(force=forced)  # loaded once, through the daemon's loader


def serve_address(addr: str | None, instance: int | None) -> str | None:
    """``--serve`` as this daemon binds it: a worker started as ``camwire-classifier@N``
    (``--instance N``) serves on the port plus N, as its metrics do, so one file serves a pool."""
    if not addr or not instance:
        return addr
    head, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not addr.startswith("tcp://"):
        raise OperatorError(f"--serve {addr} with --instance {instance}: a tcp://HOST:PORT address, its port plus N")
    if not 0 < int(port) + instance < 65536:
        raise OperatorError(f"--serve {addr} + --instance {instance} is past the last port (65535)")
    return f"{head}:{int(port) + instance}"
