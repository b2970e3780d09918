"""``camwire web`` cannot be starved (web.door), as a real process over real sockets: 1,100 slow
partial requests leave a token-holder answered; the caps per address and in total hold and free
as connections go; headers and bodies that do not arrive in time are cut off; behind a trusted
proxy each client is locked out on its own, and a stranger's X-Forwarded-For is ignored; a bad
path is a 400, never a 500. Loopback has a whole /8 on Linux, so a socket bound to 127.0.0.2
before it connects is another client address."""

from __future__ import annotations

import resource
import select
import socket
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import free_port, scrape, value, wait_log
from test_api import TOKEN, call, start_web, stopped  # noqa: F401 (stopped: the fixture)

SLOW = 1100  # the count: past a unit's default 1,024 descriptors
ATTACKER = "127.0.0.2"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
PARTIAL = b"GET /api/cameras HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "  # headers that never end


@pytest.fixture
def fds() -> Iterator[None]:
    """Room in this process for more sockets than the console may keep."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = SLOW + 256
    if hard != resource.RLIM_INFINITY and hard < want:
        pytest.skip(f"the hard limit on open files here is {hard}; the test needs {want}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def partial(source: str, port: int) -> socket.socket:
    """A connection from ``source`` that has sent the start of a request and not its end. One the
    console refused may already be closed: the send fails, and the socket is kept all the same."""
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    try:
        s.sendall(PARTIAL)
    except OSError:
        pass
    return s


def drip(socks: list[socket.socket]) -> None:
    """A byte more of a header on each: a slow client, not a dead one."""
    for s in socks:
        try:
            s.send(b"a")
        except OSError:
            pass


def close_all(socks: list[socket.socket]) -> None:
    for s in socks:
        s.close()


def metric(port: int, name: str, **labels: str) -> float:
    return value(scrape(port), name, **labels)


def wait_metric(port: int, name: str, want: float, timeout: float = 60.0, **labels: str) -> None:
    deadline = time.monotonic() + timeout
    while (got := metric(port, name, **labels)) != want:
        assert time.monotonic() < deadline, f"{name}{labels}: {got}, never {want}"
        time.sleep(0.05)  # a scrape has nothing to await: look again, briefly


def cut_off(s: socket.socket, timeout: float = 60.0, dripping: bool = False) -> bytes:
    """What ``s`` receives until the console closes it (a byte of header every 0.2 s meanwhile, if
    ``dripping``); fails if it is still open after ``timeout``."""
    got = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        readable, _, _ = select.select([s], [], [], 0.2)
        if readable:
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                return got
            if not data:
                return got
            got += data
        elif dripping:
            s.send(b"a")
    raise AssertionError(f"still open after {timeout} s")


def test_eleven_hundred_slow_connections_leave_a_token_holder_answered(tmp_path: Path, stopped, fds) -> None:
    """The issue's attack on a console with the descriptors of a unit without LimitNOFILE= (1,024,
    soft and hard): 1,100 requests whose headers never end, a byte now and then. The header
    timeout is long here: the caps alone hold the line."""
    metrics = free_port()
    limit_fds = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))  # noqa: E731
    proc, port = start_web(tmp_path, "--events", str(tmp_path / "events.jsonl"), "--metrics-port", str(metrics),
                           "--header-timeout", "5m", token=TOKEN, preexec_fn=limit_fds)
    stopped.append(proc)
    started = wait_log(tmp_path / "web.log", lambda r: r.get("event") == "web console started", proc=proc)
    assert started["fd_limit"] == 1024 and started["max_connections"] <= 1024 - 256
    per_address = started["max_connections_per_address"]
    socks: list[socket.socket] = []
    try:
        for _ in range(SLOW):
            socks.append(partial(ATTACKER, port))
        drip(socks)
        wait_metric(metrics, "camwire_web_refused_total", SLOW - per_address, reason="connections_per_address")
        wait_metric(metrics, "camwire_web_connections", per_address)
        drip(socks)
        status, body, _ = call(port, "GET", "/api/cameras", headers=BEARER)
        assert status == 200 and body["cameras"] == []
        drip(socks)
        assert call(port, "GET", "/api/cameras", headers=BEARER)[0] == 200
        assert proc.poll() is None
    finally:
        close_all(socks)


def test_the_total_cap_holds_across_addresses_and_frees_as_they_go(tmp_path: Path, stopped) -> None:
    metrics = free_port()
    proc, port = start_web(tmp_path, "--events", str(tmp_path / "events.jsonl"), "--metrics-port", str(metrics),
                           "--max-connections", "40", "--max-connections-per-address", "16", "--header-timeout", "5m")
    stopped.append(proc)
    wait_metric(metrics, "camwire_web_connections", 0)  # start_web's own look has gone
    socks: dict[str, list[socket.socket]] = {f"127.0.0.{n}": [] for n in range(2, 6)}  # 4 addresses x 16: 64 asked, 40 let in
    try:
        for source, held in socks.items():
            held += [partial(source, port) for _ in range(16)]
        wait_metric(metrics, "camwire_web_refused_total", 24, reason="connections_total")
        wait_metric(metrics, "camwire_web_connections", 40)
        assert metric(metrics, "camwire_web_refused_total", reason="connections_per_address") == 0
        with pytest.raises(ConnectionError):  # a newcomer too, while the console is full
            call(port, "GET", "/api/cameras", source="127.0.0.9")
        close_all(socks.pop("127.0.0.2"))  # the first 16 let in go: room for others
        wait_metric(metrics, "camwire_web_connections", 24)
        assert call(port, "GET", "/api/cameras", source="127.0.0.9")[0] == 200
    finally:
        close_all([s for held in socks.values() for s in held])


def test_headers_or_a_body_slower_than_their_deadline_are_cut_off(tmp_path: Path, stopped) -> None:
    metrics = free_port()
    proc, port = start_web(tmp_path, "--events", str(tmp_path / "events.jsonl"), "--metrics-port", str(metrics),
                           "--header-timeout", "1s", "--body-timeout", "1s", token=TOKEN)
    stopped.append(proc)
    with partial(ATTACKER, port) as slow, socket.create_connection(("127.0.0.1", port)) as mute:
        assert cut_off(slow, dripping=True) == b""  # a byte every 0.2 s: never the end of its headers
        assert cut_off(mute) == b""  # nothing at all
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100\r\n\r\n{\"token\": ")
        answer = cut_off(s)
        assert answer.startswith(b"HTTP/1.1 408 ") and b"did not arrive" in answer
    wait_metric(metrics, "camwire_web_cut_off_total", 2, reason="header_timeout")
    wait_metric(metrics, "camwire_web_cut_off_total", 1, reason="body_timeout")
    # a client that keeps to the deadlines is served as ever, its body included
    assert call(port, "POST", "/api/login", {"token": TOKEN})[0] == 200
    assert call(port, "GET", "/api/cameras", headers=BEARER)[0] == 200


def test_behind_a_trusted_proxy_each_client_is_locked_out_on_its_own(tmp_path: Path, stopped) -> None:
    proc, port = start_web(tmp_path, "--events", str(tmp_path / "events.jsonl"), "--trusted-proxy", "127.0.0.1",
                           token=TOKEN)
    stopped.append(proc)

    def via(forwarded: str, token: str, source: str = "127.0.0.1") -> int:
        return call(port, "GET", "/api/cameras", source=source,
                    headers={"Authorization": f"Bearer {token}", "X-Forwarded-For": forwarded})[0]

    assert [via("10.0.0.1", f"guess{i}") for i in range(10)] == [401] * 10
    assert via("10.0.0.1", TOKEN) == 429
    assert call(port, "POST", "/api/login", {"token": TOKEN}, headers={"X-Forwarded-For": "10.0.0.1"})[0] == 429
    assert via("10.0.0.2", TOKEN) == 200  # another user behind the same proxy
    assert call(port, "POST", "/api/login", {"token": TOKEN}, headers={"X-Forwarded-For": "10.0.0.2"})[0] == 200
    # a client that writes its own X-Forwarded-For only adds hops to the left of what the proxy saw
    assert via("10.0.0.2, 10.0.0.1", TOKEN) == 429
    # a peer that is no trusted proxy is its own address, whatever X-Forwarded-For it sends
    assert [via(f"10.0.1.{i}", f"guess{i}", source="127.0.0.3") for i in range(10)] == [401] * 10
    assert via("10.0.1.99", TOKEN, source="127.0.0.3") == 429
    assert via("10.0.1.99", TOKEN) == 200


def test_behind_a_trusted_proxy_the_per_address_cap_is_the_clients(tmp_path: Path, stopped) -> None:
    """The proxy's own connections count only against the total; each client behind it may have
    no more requests in flight than the per-address cap (here 2: two logins whose bodies never
    come)."""
    metrics = free_port()
    proc, port = start_web(tmp_path, "--events", str(tmp_path / "events.jsonl"), "--trusted-proxy", "127.0.0.1",
                           "--max-connections-per-address", "2", "--body-timeout", "5m",
                           "--metrics-port", str(metrics), token=TOKEN)
    stopped.append(proc)
    waiting = []
    try:
        for _ in range(2):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Forwarded-For: 10.0.0.7\r\n"
                      b"Content-Length: 50\r\n\r\n")
            waiting.append(s)
        wait_metric(metrics, "camwire_web_requests_in_flight", 2)
        forwarded = lambda client: {**BEARER, "X-Forwarded-For": client}  # noqa: E731
        assert call(port, "GET", "/api/cameras", headers=forwarded("10.0.0.7"))[0] == 429
        assert call(port, "GET", "/api/cameras", headers=forwarded("10.0.0.8"))[0] == 200
        assert metric(metrics, "camwire_web_refused_total", reason="requests_per_address") == 1
        assert metric(metrics, "camwire_web_refused_total", reason="connections_per_address") == 0
    finally:
        close_all(waiting)


# a path the file system cannot take, or one that climbs: a 400
BAD = ["/media/snapshots/%00", "/media/%00", "/media/snapshots/door/a%00.jpg", "/media/snapshots/" + "a" * 300,
       "/media/snapshots/" + "a/" * 600 + "a.jpg", "/media/snapshots/../status.db",
       "/media/snapshots/%2e%2e/status.db", "/media/snapshots/door/..%2f..%2fstatus.db",
       "/static/%00", "/static/" + "a" * 5000, "/api/recordings/%00/clip.mp4?start=1&end=2",
       "/api/recordings/a%22b/clip.mp4?start=1&end=2&download=1"]
# bad percent-encoding and names that are no file of ours: a 400 or a 404, never a 500
ODD = ["/media/snapshots/%ff", "/media/snapshots/%ed%a0%80", "/media/snapshots/%zz", "/media/snapshots/%",
       "/media/snapshots/a%0d%0ab", "/static/%ed%a0%80", "/static/..%2fapi.py", "/api/events/%00",
       "/api/events/%00/clip.mp4", "/api/events?camera=%00"]


def test_a_bad_path_is_a_400_never_a_500(tmp_path: Path, stopped) -> None:
    (tmp_path / "data" / "snapshots" / "door").mkdir(parents=True)
    (tmp_path / "data" / "snapshots" / "door" / "a.jpg").write_bytes(b"\xff\xd8jpeg")
    (tmp_path / "rec").mkdir()
    proc, port = start_web(tmp_path, "--events", str(tmp_path / "events.jsonl"), "--data-dir", str(tmp_path / "data"),
                           "--recordings", str(tmp_path / "rec"))
    stopped.append(proc)
    for path in BAD:
        status, body, _ = call(port, "GET", path)
        assert status == 400 and "error" in body, (path[:80], status)
    for path in ODD:
        assert call(port, "GET", path)[0] in (200, 400, 404), path[:80]
    assert call(port, "GET", "/media/snapshots/door/a.jpg")[1] == b"\xff\xd8jpeg"
    assert proc.poll() is None and "Traceback" not in (tmp_path / "web.log").read_text()


def test_a_flood_of_refusals_is_counted_not_logged_line_by_line(tmp_path: Path, stopped) -> None:
    """Refusals are counted, not logged one by one: a flood makes a line a minute per reason."""
    metrics = free_port()
    proc, port = start_web(tmp_path, "--events", str(tmp_path / "events.jsonl"), "--metrics-port", str(metrics),
                           "--max-connections-per-address", "1", "--header-timeout", "5m")
    stopped.append(proc)
    socks = [partial(ATTACKER, port) for _ in range(50)]
    try:
        wait_metric(metrics, "camwire_web_refused_total", 49, reason="connections_per_address")
        lines = [line for line in (tmp_path / "web.log").read_text().splitlines()
                 if '"reason": "connections_per_address"' in line]
        assert len(lines) == 1
    finally:
        close_all(socks)


def test_the_client_behind_a_trusted_proxy_is_the_rightmost_hop_it_did_not_write() -> None:
    from camwire.common.settings.values import network
    from camwire.web.door import Door, Limits

    door = Door(Limits(1.0, 1.0, 4, 100, (network("127.0.0.1"), network("10.1.0.0/16"))), lambda *_: None)
    assert door.client_of("192.0.2.1", ["198.51.100.7"]) == "192.0.2.1"  # not a proxy of ours: ignored
    assert door.client_of("127.0.0.1", []) == "127.0.0.1"  # a proxy that says nothing is the client
    assert door.client_of("127.0.0.1", ["198.51.100.7"]) == "198.51.100.7"
    assert door.client_of("127.0.0.1", ["203.0.113.9, 198.51.100.7"]) == "198.51.100.7"  # a hop the client wrote
    assert door.client_of("127.0.0.1", ["198.51.100.7", "10.1.2.3"]) == "198.51.100.7"  # two proxies of ours
    assert door.client_of("127.0.0.1", ["10.1.2.3"]) == "10.1.2.3"  # all trusted: the farthest
    assert door.client_of("127.0.0.1", ["198.51.100.7:5123"]) == "198.51.100.7"
    assert door.client_of("127.0.0.1", ["[2001:db8::1]:443"]) == "2001:db8::1"
    assert door.client_of("127.0.0.1", ["198.51.100.7, nonsense, 10.1.2.3"]) == "10.1.2.3"  # no proxy wrote that
    assert door.client_of("::ffff:127.0.0.1", ["198.51.100.7"]) == "198.51.100.7"


def test_the_total_cap_leaves_descriptors_for_files_and_sockets() -> None:
    from camwire.web.door import MAX_CONNECTIONS, connection_cap

    assert connection_cap(None, 1024) == 768
    assert connection_cap(None, 65536) == MAX_CONNECTIONS
    assert connection_cap(100_000, 65536) == 65536 - 65536 // 4
    assert connection_cap(10, 1024) == 10
