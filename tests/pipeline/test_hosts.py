"""camwire spread over four hosts (issue 26), each a network namespace of its own (tests/hosts.py),
with its own camwire.toml, its own folders and its own CURVE key pair, and CURVE on every tcp://
link:

- A: the extractor (a real clip played as a live camera, looped) and a recorder;
- B: the ventilator and a classifier worker (the built-in model);
- C: a second worker, and a stranger: a third worker with a key of C's that nobody listed;
- D: the sink, a second recorder and the web console.

No host can see another's folder: each host's processes run with the others' folders covered.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import sqlite3
import time
import urllib.error
from pathlib import Path
from typing import Any, Callable

import pytest

from camwire.common.curve import fingerprint, read_keys
from camwire.sink.store.status_db import read_refused, read_status
from conftest import ROOT
from hosts import Host, Network
from processes import log_records as records_in
from prometheus_client.parser import text_string_to_metric_families

CAMERA = "door"
CLIP = ROOT / "camwire" / "media" / "people-walking-30s.mp4"
PORTS = {"frontend": 5555, "backend": 5556, "results": 5557, "events": 5558, "frames": 5559, "detections": 5560}
SERVER_HOST = {"frontend": "b", "backend": "b", "results": "d", "events": "d", "frames": "a", "detections": "d"}
USES = {  # the [sockets] each host's daemons use, and nothing more
    "a": ("frontend", "frames", "events", "results"),  # extractor; recorder (its clips' uploads: results)
    "b": ("frontend", "backend", "results"),  # ventilator; worker
    "c": ("backend", "results", "frames", "detections"),  # workers; a console of the whole site
    "d": ("results", "events", "frames", "detections"),  # sink; recorder; console
}
VENT_METRICS, SINK_METRICS = 9102, 9103
CUT_S = 30.0  # how long C's cable stays pulled
# where each daemon answers other hosts (--serve: common.serve), by host and section
SERVE = {("a", "extractor"): 5573, ("a", "recorder"): 5571, ("b", "ventilator"): 5572, ("b", "classifier"): 5574,
         ("c", "classifier"): 5574, ("d", "sink"): 5570, ("d", "recorder"): 5571}


def until(what: str, check: Callable[[], Any], net: Network, timeout: float = 120.0, every: float = 0.2) -> Any:
    """``check()``'s first truthy value; fails with ``what`` (and the exited daemons) after ``timeout``.
    Files, databases and metrics have no change to await: they are polled."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        exited = {f"{h.name}/{n}": rc for h in net.hosts.values() for n, rc in h.died().items()}
        if exited:
            logs = "\n".join(f"--- {h.name}/{n}\n{h.log(n, 1500)}" for h in net.hosts.values() for n in h.died())
            raise AssertionError(f"waiting for {what}: daemons exited {exited}\n{logs}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:.0f}s")
        time.sleep(every)


def sql(db: Path, query: str, *args: Any) -> list[tuple]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            return con.execute(query, args).fetchall()
    except sqlite3.Error:
        return []  # not made yet


def events_of(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def metric(host: Host, port: int, name: str) -> list[tuple[dict[str, str], float]]:
    """``name``'s samples from a daemon's metrics on ``host``'s own loopback ([] while not served)."""
    try:
        text = host.http_get(f"http://127.0.0.1:{port}/metrics").decode()
    except (urllib.error.URLError, ConnectionError):
        return []
    return [(s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]


def live_frame(url: str, headers: dict[str, str], timeout: float = 90.0) -> dict[str, Any]:
    """Watch CAMERA at the console's ``/api/live`` (web.live_socket) until a frame with its
    detections' boxes drawn comes; that frame's header."""
    import aiohttp

    async def watch() -> dict[str, Any]:
        async with aiohttp.ClientSession() as session, session.ws_connect(url, headers=headers) as ws:
            await ws.send_str(json.dumps({"watch": {CAMERA: {"width": 320, "fps": 4}}}))
            seen = []
            while True:
                msg = await ws.receive()
                if msg.type != aiohttp.WSMsgType.BINARY:
                    raise AssertionError(f"the live socket said {msg.type}: {msg.data}; frames so far: {seen[-5:]}")
                n = int.from_bytes(msg.data[:4], "big")
                head = json.loads(msg.data[4:4 + n])
                seen.append(head)
                if head["detected"] and head["boxes"] > 0:
                    return head

    return asyncio.run(asyncio.wait_for(watch(), timeout))


class Site:
    """The four hosts' files and keys, written as an operator would: on each host, by that host."""

    def __init__(self, net: Network) -> None:
        self.net = net
        self.a, self.b, self.c, self.d = (net[n] for n in "abcd")
        self.addr = {s: f"tcp://{net[SERVER_HOST[s]].addr}:{port}" for s, port in PORTS.items()}
        self.public: dict[str, Path] = {}
        self.secret: dict[str, Path] = {}
        for host in net.hosts.values():
            self.public[host.name], self.secret[host.name] = host.keygen()
        # the stranger: a pair made on C that no host lists
        self.public["rogue"], self.secret["rogue"] = self.c.keygen("rogue")
        self._distribute()
        self.clip = self.a.dir / "media" / CLIP.name  # the camera's video is A's alone
        self.clip.parent.mkdir()
        shutil.copy(CLIP, self.clip)
        self.token = secrets.token_urlsafe(24)
        (self.d.dir / ".env").write_text(f"CAMWIRE_WEB_TOKEN={self.token}\n")
        (self.d.dir / ".env").chmod(0o600)
        self.config = {h.name: h.dir / "camwire.toml" for h in net.hosts.values()}
        for host in net.hosts.values():
            self.config[host.name].write_text(self._toml(host))

    def _distribute(self) -> None:
        """Who may connect to whom: each binding host lists its clients' public keys, each
        connecting host pins its servers' (today by role: Host.pin)."""
        a, b, c, d = self.a, self.b, self.c, self.d
        for client in ("a", "d"):  # the recorders (and D's console) subscribe to A's frames
            a.allow(self.public[client], client)
        for client in ("a", "b"):  # A's extractor pushes, B's worker connects
            b.allow(self.public[client], client)
        b.allow(self.public["c"], "c")  # C's worker; not C's "rogue" key
        for client in ("a", "b", "c", "d"):  # workers' results, recorders' events, the console
            d.allow(self.public[client], client)
        a.allow(self.public["c"], "c")  # C's console: A's frames, and A's recorder and extractor asked
        # each server's key under its host's address (servers/10.R.0.X.key): no role key anywhere
        def pin(host: Host, server: Host) -> None:
            host.pin_host(self.public[server.name], server)

        for host in (a, b, c):
            pin(host, b)  # the ventilator (and B's daemons' serve, for C's console)
        for host in (a, b, c, d):
            pin(host, d)  # the sink (and D's recorder)
        for host in (a, c, d):
            pin(host, a)  # the extractor (and A's recorder)
        pin(c, c)  # C's console asks C's own worker too
        c.allow(self.public["c"], "c")

    def serve(self, host: str, section: str) -> str:
        return f"tcp://{self.net[host].addr}:{SERVE[host, section]}"

    def _toml(self, host: Host) -> str:
        sockets = "\n".join(f'{s} = "{self.addr[s]}"' for s in USES[host.name])
        daemons = ", ".join(f'"{section}={self.serve(h, section)}"' for h, section in SERVE)
        own = {
            "a": f"""
[extractor]
publish_enc = "passthrough"
serve = "{self.serve('a', 'extractor')}"

[recorder]
dir = "{host.dir / 'rec'}"
segment = "3s"
pre = "1s"
post = "1s"
serve = "{self.serve('a', 'recorder')}"

[cameras.{CAMERA}]
url = "{self.clip}"
realtime = true
loop = true
fps = 4
detect = "always"
""",
            "b": f"""
[ventilator]
metrics_port = {VENT_METRICS}
heartbeat_timeout = "3s"
serve = "{self.serve('b', 'ventilator')}"

[classifier]
detector = "onnx"
threads = 1
serve = "{self.serve('b', 'classifier')}"
""",
            "c": f"""
[classifier]
detector = "onnx"
threads = 1
serve = "{self.serve('c', 'classifier')}"

[web]                                   # a console of the whole site, with none of its files
port = 8080
daemons = [{daemons}]
""",
            "d": f"""
[sink]
data_dir = "{host.dir / 'data'}"
events = "{host.dir / 'data' / 'events.jsonl'}"
metrics_port = {SINK_METRICS}
serve = "{self.serve('d', 'sink')}"

[recorder]
dir = "{host.dir / 'rec'}"
segment = "3s"
pre = "1s"
post = "1s"
serve = "{self.serve('d', 'recorder')}"

[web]
port = 8080
token = "${{CAMWIRE_WEB_TOKEN}}"        # from D's own .env
""",
        }[host.name]
        return f"# host {host.name} ({host.addr})\n[sockets]\n{sockets}\n\n{host.security(self.secret[host.name])}{own}"

    def start(self, host: Host, name: str, command: str, *extra: str) -> None:
        host.start(name, command, "--config", str(self.config[host.name]), *extra)


@pytest.fixture
def net(tmp_path: Path):
    with Network(tmp_path, ["a", "b", "c", "d"]) as network:
        yield network
    assert network.leftovers() == []


def test_four_hosts_with_curve_on_every_link(net: Network) -> None:
    site = Site(net)
    a, b, c, d = site.a, site.b, site.c, site.d

    # no shared disk: each file names only its own host's folder, and no host sees another's
    for host in net.hosts.values():
        text = site.config[host.name].read_text()
        others = [str(o.dir) for o in net.hosts.values() if o is not host]
        assert str(host.dir) in text and not any(o in text for o in others), text
        host.camwire("check-config", str(site.config[host.name]), timeout=90)  # on its host: its keys, its paths
    for host in net.hosts.values():
        for other in net.hosts.values():
            if other is not host:
                assert host.run("ls", "-A", str(other.dir)).stdout == "", f"{host.name} sees {other.name}'s folder"
    assert d.run("test", "-e", str(site.clip)).returncode != 0  # the clip is on A only
    assert a.run("test", "-e", str(site.clip)).returncode == 0

    site.start(d, "sink", "sink")
    site.start(b, "ventilator", "ventilator")
    site.start(b, "worker", "classifier")
    site.start(c, "worker", "classifier")
    # the stranger on C: C's own file, but a key no host lists (and a cheap detector)
    site.start(c, "rogue", "classifier", "--curve-key", str(site.secret["rogue"]), "--detector", "covered",
               "--serve", f"tcp://{c.addr}:5575")
    site.start(a, "recorder", "recorder")
    site.start(d, "recorder", "recorder")
    site.start(d, "web", "web")
    site.start(c, "web", "web")  # a console of the whole site, on a host with none of its files
    site.start(a, "extractor", "extractor")
    workers = {h: f"{h.hostname}-{h.procs['worker'].pid}" for h in (b, c)}  # a worker's default name: host-pid
    rogue = f"{c.hostname}-{c.procs['rogue'].pid}"

    # the sink on D makes object events of A's camera from the workers' results
    events_file = d.dir / "data" / "events.jsonl"
    objects = until("an object event on D", lambda: [e for e in events_of(events_file)
                                                     if e["type"] == "object" and e["camera"] == CAMERA], net)
    assert objects[0]["phase"] == "start" and objects[0]["label"] == "person", objects[0]

    # both recorders record, each into its own folder
    for host in (a, d):
        index = host.dir / "rec" / "index.db"
        until(f"a closed segment in {host.name}'s recorder", lambda: sql(
            index, "SELECT frames FROM segments WHERE camera = ? AND closed = 1 AND frames > 0", CAMERA), net)
        assert list((host.dir / "rec" / CAMERA).glob("*.mkv"))

    # status.db on D: a worker from B and one from C, each having done work, and the camera online
    status = d.dir / "data" / "status.db"

    def served() -> dict[str, dict]:
        try:
            rows = read_status(status)[1]
        except sqlite3.Error:
            return {}
        done = {r["name"]: r for r in rows if (r["completed"] or 0) > 0}
        return done if set(workers.values()) <= set(done) else {}

    done = until("workers of B and C in D's status.db", served, net)
    assert rogue not in done

    def online() -> bool:
        try:
            return any(r["camera"] == CAMERA and r["state"] == "online" for r in read_status(status)[0])
        except sqlite3.Error:
            return False

    until(f"{CAMERA} online in D's status.db", online, net)  # as A's extractor reports it

    # the stranger is refused by the ventilator on B, named by its address and its key
    rogue_fp = fingerprint(read_keys(site.public["rogue"], secret=False)[0])
    backend = site.addr["backend"]

    def refused_rogue() -> float:
        return sum(v for labels, v in metric(b, VENT_METRICS, "camwire_ventilator_refused_peers_total")
                   if labels.get("socket") == backend and labels.get("reason") == "auth"
                   and labels.get("peer") == c.addr and labels.get("key") == rogue_fp)

    until("the ventilator's refusal of C's stranger in its metrics", refused_rogue, net)
    # ... and D's status.db tells it (the ventilator reports through the workers)
    until("the refusal in D's status.db", lambda: [
        p for r in read_refused(status) if r["daemon"] == "ventilator" and r["socket"] == backend
        for p in r["peers"] if p["peer"] == c.addr and p["key"] == rogue_fp], net)
    c_fp = fingerprint(read_keys(site.public["c"], secret=False)[0])
    assert not [p for r in read_refused(status) for p in r["peers"] if p["key"] == c_fp]  # C's worker: let in

    # the console on D (asked on D's own loopback): the camera as the sink reports it, and a live
    # view of A's frames (over CURVE from A) with the boxes of D's sink drawn on them
    auth = {"Authorization": f"Bearer {site.token}"}

    def console() -> dict | None:
        try:
            api = json.loads(d.http_get("http://127.0.0.1:8080/api/cameras", headers=auth))
        except (urllib.error.URLError, ConnectionError):
            return None  # not listening yet
        return api if any(c["camera"] == CAMERA and c["state"] == "online" for c in api["cameras"]) else None

    api = until("the camera online at D's console", console, net)
    assert api["switches"]["settable"], api  # the console reaches the sink
    frame = d.call(live_frame, "ws://127.0.0.1:8080/api/live", auth, timeout=120)
    assert frame["camera"] == CAMERA and frame["detected"] and frame["boxes"] > 0, frame

    one_console_for_the_site(site, c.addr, rogue_fp)

    net.stop_all()
    for host in net.hosts.values():
        bad = {n: rc for n, rc in host.exited().items() if rc != 0}
        assert not bad, {n: host.log(n) for n in bad}
    peers = b.stats("ventilator")["refused_peers"][backend]["auth"]
    assert peers.get(c.addr, {}).get(rogue_fp, 0) >= 1, peers
    assert c.stats("rogue").get("results", {}) == {}
    # no host's secret key in anything a run wrote: logs, stats, events
    written = [p for h in net.hosts.values() for p in h.dir.rglob("*")
               if p.is_file() and p.suffix in (".log", ".json", ".jsonl")]
    for name, path in site.secret.items():
        key = read_keys(path, secret=True)[1].decode()
        assert not [p for p in written if key in p.read_text(errors="replace")], name


def one_console_for_the_site(site: Site, rogue_addr: str, rogue_fp: str) -> None:
    """The console on C, which has none of the site's files, seen in Chromium from outside every
    host: the camera live (A's frames, D's boxes), its objects' events with their clips from
    whichever recorder keeps them, one timeline from the recorders of A and D, the pool's account,
    every daemon answering, the stranger named by address and key; a reload reaches every daemon,
    and B's typo is refused with its line."""
    from playwright.sync_api import expect, sync_playwright

    from console import CHROMIUM

    c = site.c
    url = f"http://127.0.0.1:{c.forward(8080)}"

    def api(path: str) -> Any:
        try:
            return json.loads(c.http_get(f"http://127.0.0.1:8080{path}", timeout=60))
        except (urllib.error.URLError, ConnectionError):
            return None

    # every object event, and the clip of each that has one, from the recorder that keeps it. An
    # object that has ended: its row's id (its newest phase's) no longer changes under the page
    def with_clip() -> list[dict]:
        page = api("/api/events?type=object&limit=100") or {"events": []}
        return [e for e in page["events"] if e["camera"] == CAMERA and e.get("clip_url") and e["phase"] == "end"]

    kept = until("an object with a kept clip at C's console", with_clip, site.net, timeout=150)
    clip = c.http_get(f"http://127.0.0.1:8080{kept[0]['clip_url']}", timeout=120)
    assert clip[4:8] == b"ftyp", clip[:64]
    # the timeline joins both recorders' ranges; each recorder holds the camera on its own host
    ranges = api(f"/api/recordings?camera={CAMERA}")["cameras"][CAMERA]["ranges"]
    assert ranges and all(b > a for a, b in ranges)
    for host in (site.a, site.d):
        assert sql(host.dir / "rec" / "index.db", "SELECT 1 FROM segments WHERE camera = ?", CAMERA)

    bad_line = None
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{url}/#/live")  # live: A's frames, drawn as they come (their seq on the canvas)
            page.locator(f'.tile[data-camera="{CAMERA}"] .state[data-state="online"]').wait_for(timeout=60_000)
            image = page.locator(f'.tile[data-camera="{CAMERA}"] .live-image')
            page.wait_for_function("el => el.dataset.seq !== undefined", arg=image.element_handle(), timeout=60_000)
            page.wait_for_function("([el, seq]) => el.dataset.seq !== seq",
                                   arg=[image.element_handle(), image.get_attribute("data-seq")], timeout=60_000)
            # an object's event opens with its clip, from whichever recorder keeps it
            page.goto(f"{url}/#/events?camera={CAMERA}&type=object")
            page.locator(f'.event[data-id="{kept[0]["id"]}"]').click()
            clip_video = page.locator(".event-detail video.clip")
            expect(clip_video).to_be_visible(timeout=60_000)
            page.wait_for_function("v => v.readyState >= 1 && v.duration > 0", arg=clip_video.element_handle(),
                                   timeout=60_000)
            # one timeline of the camera from both recorders
            page.goto(f"{url}/#/recordings")
            expect(page.locator(f'.timeline[data-camera="{CAMERA}"] .range').first).to_be_visible(timeout=60_000)
            page.goto(f"{url}/#/system")
            frames = page.locator("table.sys-frames tr", has_text=CAMERA)
            expect(frames).to_have_count(1, timeout=60_000)
            daemons = page.locator("table.sys-daemons [data-reachable]")
            expect(daemons).to_have_count(len(SERVE), timeout=60_000)
            expect(page.locator("table.sys-daemons [data-reachable=false]")).to_have_count(0, timeout=60_000)
            expect(page.locator("table.sys-refused")).to_contain_text(f"{rogue_addr} key={rogue_fp}", timeout=60_000)

            page.locator("button.reload").click()
            answers = page.locator(".reload-result li")
            expect(answers).to_have_count(len(SERVE), timeout=120_000)
            expect(page.locator(".reload-result li[data-outcome=applied]")).to_have_count(len(SERVE))

            # a typo saved on B: its ventilator and worker refuse it, each naming B's file and line
            text = site.config["b"].read_text()
            site.config["b"].write_text(text.replace('heartbeat_timeout = "3s"', 'heartbeat_timeout = "3 fortnights"'))
            bad_line = text.splitlines().index('heartbeat_timeout = "3s"') + 1
            page.locator("button.reload").click()
            refused = page.locator(".reload-result li[data-outcome=refused]")
            expect(refused).to_have_count(1, timeout=120_000)  # the ventilator's section: B's worker reads none of it
            expect(refused).to_contain_text(f"{site.config['b']}:{bad_line}")
            expect(refused).to_contain_text(site.serve("b", "ventilator"))
            site.config["b"].write_text(text)
        finally:
            browser.close()


def log_records(host: Host, name: str) -> list[dict[str, Any]]:
    """The JSON lines of a daemon's log on ``host`` so far."""
    return records_in(host.log_path(name))


def worker_metric(b: Host, worker: str, what: str) -> float:
    return sum(v for labels, v in metric(b, VENT_METRICS, "camwire_ventilator_workers_total")
               if labels.get("worker") == worker and labels.get("what") == what)


def test_a_link_cut_loses_the_frames_it_held_once(net: Network) -> None:
    """C's cable pulled for 30 s while its worker holds frames (the ventilator forgets the worker
    within seconds), then put back: the frames it held are counted lost once (worker_lost, or late
    where its answer came after the link was back), the account balances, and the worker serves
    again."""
    site = Site(net)
    a, b, c, d = site.a, site.b, site.c, site.d
    site.start(d, "sink", "sink")
    site.start(b, "ventilator", "ventilator")
    site.start(b, "worker", "classifier")
    site.start(c, "worker", "classifier")
    site.start(a, "extractor", "extractor")
    c_worker, b_worker = (f"{h.hostname}-{h.procs['worker'].pid}" for h in (c, b))
    until("C's worker serving", lambda: worker_metric(b, c_worker, "completed") > 0, net)

    cut_at = time.monotonic()
    net.cut("c")
    forgotten = until("the ventilator forgetting C's worker", lambda: [
        r for r in log_records(b, "ventilator") if r.get("event") == "worker forgotten"
        and r.get("worker") == c_worker], net, timeout=60)[0]
    lost = forgotten["frames_lost"]
    assert lost >= 1, forgotten  # frames go to C until its credits run out: it held some
    done_at_cut = worker_metric(b, c_worker, "completed")
    # the outage lasts CUT_S, as a cable pulled for half a minute would: not a wait for anything
    # (the loss is counted already), the scenario's length; heartbeats and reconnects live through it
    time.sleep(max(0.0, CUT_S - (time.monotonic() - cut_at)))
    net.restore("c")

    def rejoined() -> bool:
        records = log_records(b, "ventilator")
        cut_at = next(i for i, r in enumerate(records) if r.get("event") == "worker forgotten"
                      and r.get("worker") == c_worker)
        after = records[cut_at:]
        return any(r.get("event") == "worker joined" and r.get("worker") == c_worker for r in after)

    until("C's worker joining again", rejoined, net, timeout=90)
    until("C's worker serving again", lambda: worker_metric(b, c_worker, "completed") > done_at_cut, net, timeout=90)

    # D's status.db: the ventilator's account of the camera, as reported after the loss, counts
    # C's frames once (worker_lost, or late where C answered once its link was back), and balances
    status = d.dir / "data" / "status.db"
    buckets = ("superseded", "unserved", "worker_lost", "deadline", "processed", "late")

    def reported() -> dict | None:
        try:
            pool = next(r["pool"] for r in read_status(status)[0] if r["camera"] == CAMERA)
        except (sqlite3.Error, StopIteration):
            return None
        return pool if pool and pool["worker_lost"] + pool["late"] > 0 else None  # a report from after the cut

    pool = until("the loss in D's status.db", reported, net, timeout=60)
    assert pool["worker_lost"] + pool["late"] == lost, (pool, forgotten)  # each frame once, in one bucket
    assert pool["received"] == sum(pool[k] for k in buckets) + pool["waiting"] + pool["in_flight"], pool
    assert pool["deadline"] == 0 and pool["processed"] > 0, pool

    net.stop_all()
    stats = b.stats("ventilator")
    assert stats["workers"][c_worker].get("lost") == lost, stats["workers"]
    assert not stats["workers"][b_worker].get("lost"), stats["workers"]
    account = stats["accounts"][CAMERA]
    assert account["worker_lost"] + account["late"] == lost and account["received"] == sum(
        account[k] for k in buckets) + account["waiting"] + account["in_flight"], account
