"""CURVE on camwire's TCP links: who may connect, and to whom a daemon may talk.

Opt-in per deployment, the IronHouse pattern of ZeroMQ (libsodium, in pyzmq's wheel):

- Each daemon has a key pair, written by ``camwire keygen NAME``: ``NAME.key`` (the public key,
  shareable) and ``NAME.key_secret`` (both keys, mode 0600). ``--curve-key`` names the secret
  file; a file that group or others may read is refused, naming it, before anything binds.
- A daemon that *binds* a ``tcp://`` address is a CURVE server there: only clients whose public
  key is a ``*.key`` file in ``--curve-clients DIR`` get through (a ZAP handler in the daemon
  checks each handshake). Its ``--serve`` (status, clips, reload: common.serve) is the one
  socket with clients of its own where ``DIR/serve/`` exists: only the keys there (the
  consoles' and operators', not every host that sends frames) get through to it. The directory is read again on reload (SIGHUP); a key taken out of it
  cuts its peer off at once (the daemon's secured endpoints are unbound and bound again, so every
  peer handshakes again, and the removed one fails).
- A daemon that *connects* pins the server's public key, from ``--curve-servers DIR``: for
  ``tcp://HOST:PORT`` first ``HOST.key`` (one pair per host: extractors on two hosts, each with
  its own key), else the role's ``ventilator.key``, ``sink.key`` or ``extractor.key`` (extractor
  --push and classifier --connect: ventilator; classifier --sink and recorder --events: sink;
  recorder --subscribe: extractor). Each address's key is read at start; one with neither file
  is refused then, naming the address and both files.
- ``ipc://`` and ``inproc://`` stay plain: they never leave the host, and file modes guard them.

A handshake that fails (no key, a key not listed, a wrong server key, not CURVE at all) lets
nothing through and is counted by socket and reason (``handshakes_failed``), and by peer
(``refused_peers``: its IP address, and the :func:`fingerprint` of the key it offered where the
ZAP handler saw one: common.refusals). A secret key lives in :class:`Curve` only, whose repr
hides it; nothing logs it. A public key is named by its fingerprint only.
"""

from __future__ import annotations

import os
import stat
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import zmq
from zmq.auth.thread import ThreadAuthenticator

from camwire.common.sockets import OperatorError

ZAP_DOMAIN = b"camwire"
SERVE_DOMAIN = b"camwire-serve"  # --serve's: its clients are ``serve/`` of --curve-clients where that folder is
SERVE_CLIENTS = "serve"
SECURED = ("tcp://",)  # transports that get CURVE; ipc and inproc never leave the host
# a connecting flag (argparse dest) -> the daemon that binds the address it names
SERVER_OF = {"push": "ventilator", "connect": "ventilator", "sink": "sink", "events": "sink",
             "subscribe": "extractor", "detections": "sink"}
FINGERPRINT_CHARS = 8
DENIED_KEPT = 256  # refusals the ZAP handler remembers until the daemon's loop names them


def fingerprint(public: bytes | str) -> str:
    """A public key's name in logs and status: its first 8 Z85 characters, as its key file's
    ``public-key = "..."`` line starts, so ``grep -l 'public-key = "FPRINT' clients/*.key`` finds
    the file. Only ever of a public key (Z85: 40 characters, 32 bytes)."""
    text = public.decode("ascii", "replace") if isinstance(public, bytes) else public
    return text[:FINGERPRINT_CHARS]


class _Authenticator(ThreadAuthenticator):
    """pyzmq's ZAP handler thread, keeping the address of the peer it is asked about: ZAP's own
    request carries it, pyzmq's credentials callback does not."""

    address = ""

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        # one request at a time in this thread, and the callback is not awaited: no interleaving
        self.address = msg[3].decode("utf-8", "replace")[:64] if len(msg) > 3 else ""
        await super().handle_zap_message(msg)


@contextmanager
def _named(flag: str) -> Iterator[None]:
    try:
        yield
    except OperatorError as exc:
        raise OperatorError(f"{flag} {exc}") from None


def secured(addr: str) -> bool:
    return addr.startswith(SECURED)


def keygen(folder: str | os.PathLike[str], name: str) -> tuple[Path, Path]:
    """Write ``NAME.key`` (0644) and ``NAME.key_secret`` (0600, created so: never readable by
    others, not even for an instant) in ``folder``, in ZeroMQ's certificate format. Refuses to
    overwrite a key: a lost secret cannot be told from a replaced one."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a folder this user may not make (run as camwire, /etc/camwire root's)
        raise OperatorError(f"--dir {folder}: cannot make it: {exc.strerror}") from None
    public, secret = zmq.curve_keypair()
    paths = folder / f"{name}.key", folder / f"{name}.key_secret"
    for path in paths:  # both first: never a new secret beside an old public key
        if path.exists():
            raise OperatorError(f"{path}: exists already; keygen never overwrites a key")
    for path, mode, keys in ((paths[1], 0o600, (public, secret)), (paths[0], 0o644, (public, None))):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            raise OperatorError(f"{path}: exists already; keygen never overwrites a key") from None
        except OSError as exc:
            raise OperatorError(f"{path}: cannot write it: {exc.strerror}") from None
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(_certificate(*keys))
    return paths


def _certificate(public: bytes, secret: bytes | None) -> str:
    lines = ["#   ZeroMQ CURVE " + ("secret certificate: keep it private (mode 0600)" if secret else
                                    "public certificate: give it to the daemons that talk to this one"),
             "metadata", "curve", f'    public-key = "{public.decode()}"']
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode()}"')
    return "\n".join(lines) + "\n"


def read_keys(path: str | os.PathLike[str], secret: bool) -> tuple[bytes, bytes | None]:
    """A certificate's z85 keys; OperatorError naming the file for anything wrong with it. A
    secret file that group or others may read is refused: it may have been read already."""
    path = Path(path)
    try:
        st = path.stat()
        text = path.read_bytes()
    except OSError as exc:
        raise OperatorError(f"{path}: cannot read the key file: {exc.strerror}") from None
    if secret and st.st_mode & 0o077:
        raise OperatorError(f"{path}: the secret key file is readable by others (mode "
                            f"{stat.S_IMODE(st.st_mode):04o}); chmod 600 it, or make a new pair with camwire keygen")
    keys: dict[bytes, bytes] = {}
    for line in text.splitlines():
        name, sep, value = line.strip().partition(b"=")
        if sep and name.strip() in (b"public-key", b"secret-key"):
            keys[name.strip()] = value.strip().strip(b"'\"")
    public, secret_key = keys.get(b"public-key"), keys.get(b"secret-key")
    if public is None or len(public) != 40 or (secret and (secret_key is None or len(secret_key) != 40)):
        what = "a secret key file (NAME.key_secret)" if secret else "a public key file (NAME.key)"
        raise OperatorError(f"{path}: not {what} written by camwire keygen")
    return public, secret_key


def read_folder(folder: Path) -> dict[bytes, str]:
    """The public keys in ``folder``'s ``*.key`` files: key -> file name. OperatorError for a
    folder that cannot be read or a file that is not a key (named)."""
    try:
        files = sorted(p for p in folder.iterdir() if p.suffix == ".key")
    except OSError as exc:
        raise OperatorError(f"{folder}: cannot read the key folder: {exc.strerror}") from None
    return {read_keys(p, secret=False)[0]: p.name for p in files}


def read_serve(clients: Path) -> dict[bytes, str] | None:
    """The keys ``clients/serve/`` lists (None where there is no such folder: --serve lets in
    every key of ``clients``)."""
    folder = clients / SERVE_CLIENTS
    return read_folder(folder) if folder.is_dir() else None


@dataclass
class Curve:
    """One daemon's CURVE settings, loaded once at start (OperatorError before anything binds)."""

    public: bytes
    secret: bytes = field(repr=False)
    clients: Path | None = None  # folder of allowed client keys, for what this daemon binds
    servers: dict[str, bytes] = field(default_factory=dict)  # HOST or role -> its public key, as read
    servers_dir: Path | None = None  # --curve-servers: HOST.key, ROLE.key
    # (``clients``' keys, ``clients/serve/``'s or None where there is no such folder): key -> file;
    # swapped whole in one assignment, so the ZAP thread sees both old or both new
    keys: tuple[dict[bytes, str], dict[bytes, str] | None] = field(default_factory=lambda: ({}, None))
    # (peer address, key fingerprint) of each key the ZAP handler refused, oldest first: appended
    # by its thread, taken by the daemon's loop (deque's append and popleft are thread-safe)
    denied: deque[tuple[str, str]] = field(default_factory=lambda: deque(maxlen=DENIED_KEPT), repr=False)
    _auth: _Authenticator | None = field(default=None, repr=False)

    @classmethod
    def from_args(cls, args: Any) -> Curve | None:
        """From ``--curve-key``/``--curve-clients``/``--curve-servers``; None without a key."""
        key = getattr(args, "curve_key", None)
        clients, servers = getattr(args, "curve_clients", None), getattr(args, "curve_servers", None)
        if not key:
            if clients or servers:
                raise OperatorError("--curve-clients and --curve-servers need --curve-key (this daemon's own "
                                    "secret key file)")
            return None
        with _named("--curve-key"):  # each error names its flag too, so check-config finds the line
            public, secret = read_keys(key, secret=True)
        assert secret is not None
        curve = cls(public, secret, Path(clients) if clients else None)
        curve.servers_dir = Path(servers) if servers else None
        if curve.clients is not None:
            with _named("--curve-clients"):
                curve.keys = read_folder(curve.clients), read_serve(curve.clients)
        for dest, server in SERVER_OF.items():  # each server this daemon connects to over tcp: its key, now
            value = getattr(args, dest, None)
            for addr in [value] if isinstance(value, str) else value or []:
                if secured(addr):
                    curve.require(server, addr)
        return curve

    def require(self, server: str, addr: str | None = None) -> bytes:
        """The public key to pin for the ``server`` daemon at ``addr``: ``HOST.key`` in
        ``--curve-servers`` for ``tcp://HOST:PORT``, else ``server.key``. Read once, then kept; a
        key file that is there but not a key is refused, naming it. OperatorError naming the
        address and the files looked for when neither is there."""
        host = host_of(addr)
        names = ([host] if host and host != server else []) + [server]
        for name in names:
            if name in self.servers:
                return self.servers[name]
            path = self.servers_dir / f"{name}.key" if self.servers_dir is not None else None
            if path is not None and path.is_file():
                with _named("--curve-servers"):
                    self.servers[name] = read_keys(path, secret=False)[0]
                return self.servers[name]
        at = f" at {addr}" if addr else ""
        if self.servers_dir is None:
            raise OperatorError(f"--curve-servers is not set: the public key of the {server}{at} this daemon "
                                f"connects to is looked for there, as {' or '.join(f'{n}.key' for n in names)}")
        looked = ", then ".join(str(self.servers_dir / f"{n}.key") for n in names)
        raise OperatorError(f"--curve-servers has {' and '.join(f'no {n}.key' for n in names)}: the public key of "
                            f"the {server}{at} this daemon connects to (looked for {looked})")

    # -- the binding side ----------------------------------------------------------------------

    def start(self, ctx: zmq.Context) -> None:
        """Start the ZAP handler on ``ctx``: with none, libzmq would let any client key in."""
        if self._auth is not None:
            return
        if self.clients is None:
            raise OperatorError("binding a tcp:// address with --curve-key needs --curve-clients DIR: the public "
                                "keys allowed to connect")
        self._auth = _Authenticator(ctx)
        self._auth.start()
        for domain in (ZAP_DOMAIN, SERVE_DOMAIN):
            self._auth.configure_curve_callback(domain=domain.decode(), credentials_provider=self)

    def callback(self, domain: str, client_key: bytes) -> bool:
        """The ZAP handler's question, from its thread: is this client's key listed (for --serve,
        in ``serve/`` where there is one)? A refusal is remembered with the peer's address and
        the key's fingerprint (:meth:`take_denied`)."""
        allowed, serve = self.keys  # one read: both of one reload
        if client_key in (serve if serve is not None and domain == SERVE_DOMAIN.decode() else allowed):
            return True
        self.denied.append((self._auth.address if self._auth is not None else "", fingerprint(client_key)))
        return False

    def take_denied(self) -> tuple[str, str] | None:
        """The oldest refusal of the ZAP handler not yet taken: (peer address, key fingerprint)."""
        try:
            return self.denied.popleft()
        except IndexError:
            return None

    @property
    def allowed(self) -> dict[bytes, str]:
        """``clients``' keys: key -> file."""
        return self.keys[0]

    def reload(self) -> tuple[list[str], list[str]]:
        """Read ``clients`` (and ``clients/serve/``) again; returns the files added and removed,
        a key --serve no longer lets in named ``serve/FILE`` among the removed (its peer there is
        to be cut off; only there when every removal is such). The running sets stay if a folder
        cannot be read (OperatorError)."""
        if self.clients is None:
            return [], []
        (before, was_serve), (now, now_serve) = self.keys, (read_folder(self.clients), read_serve(self.clients))
        self.keys = now, now_serve
        added = [now[k] for k in now if k not in before]
        removed = [before[k] for k in before if k not in now]
        # --serve's keys before and now: all of clients where there is no serve/
        serve_before = before if was_serve is None else was_serve
        serve_now = now if now_serve is None else now_serve
        added += [f"{SERVE_CLIENTS}/{serve_now[k]}" for k in serve_now if now_serve is not None and k not in serve_before]
        removed += [f"{SERVE_CLIENTS}/{serve_before[k]}" for k in serve_before
                    if k not in serve_now and serve_before[k] not in removed]
        return added, removed

    def stop(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None

    # -- per socket ------------------------------------------------------------------------------

    def prepare(self, sock: zmq.Socket, addr: str, bind: bool, server: str | None,
                domain: bytes | None = None) -> None:
        """Set ``sock`` up for its next bind/connect to ``addr`` (libzmq takes the options as they
        are at that call, so one socket may bind ipc:// plain and tcp:// secured)."""
        if not secured(addr):
            plain(sock)
        elif bind:
            self.start(sock.context)
            self.serve(sock, domain)
        else:
            if server is None:
                raise OperatorError(f"{addr}: which daemon is there is not known, so its key cannot be pinned")
            self.client(sock, server, addr)

    def serve(self, sock: zmq.Socket, domain: bytes | None = None) -> None:
        """Make the next bind of ``sock`` a CURVE server's, its clients checked in ``domain``."""
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret)
        sock.setsockopt(zmq.ZAP_DOMAIN, domain or ZAP_DOMAIN)

    def client(self, sock: zmq.Socket, server: str, addr: str | None = None) -> None:
        """Make the next connect of ``sock`` (to ``addr``) a CURVE client's, pinning the public key
        of the ``server`` there (:meth:`require`)."""
        sock.setsockopt(zmq.CURVE_SERVERKEY, self.require(server, addr))
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret)


def host_of(addr: str | None) -> str | None:
    """The host a ``tcp://`` address connects to (``tcp://10.0.0.2:5559`` -> ``10.0.0.2``; a
    source address before ``;`` left out, IPv6 brackets taken off): the name of its server's
    ``HOST.key``. None for another transport or no address."""
    if not addr or not addr.startswith("tcp://"):
        return None
    host = addr[len("tcp://"):].rsplit(";", 1)[-1].rsplit(":", 1)[0].strip("[]")
    return host if host and "/" not in host and host not in (".", "..") else None


def plain(sock: zmq.Socket) -> None:
    """Make the next bind/connect of ``sock`` plain (an ipc:// beside a secured tcp://)."""
    sock.setsockopt(zmq.CURVE_SERVER, 0)  # libzmq: back to the NULL mechanism
