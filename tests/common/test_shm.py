"""Shared-memory frame rings (common.shm): what a reader reads is the frame its ref names, or it is
told so; slots come back from readers that release them and from readers that died; segments of
writers that died are reclaimed, a live writer's never. Every test works in a directory of its
own (one checks the default, /dev/shm, and leaves nothing there)."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import tempfile
import time

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from camwire.common import shm, wire

SECOND = 1_000_000_000


def frame(value: int, n: int = 4096) -> np.ndarray:
    return np.full(n, value % 256, np.uint8)


def reason(exc: pytest.ExceptionInfo) -> str:
    return exc.value.reason


# -- real processes: a reader or a writer on the other side ------------------------------------

_children: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_child_left() -> None:
    """A test that failed half-way leaves no child behind (nor its segment locked)."""
    yield
    while _children:
        proc = _children.pop()
        if proc.poll() is None:
            kill(proc)
        for pipe in (proc.stdin, proc.stdout):
            pipe.close()


def child(code: str, *args: str) -> subprocess.Popen:
    """``python -c code args`` with pipes: it says what it did one line at a time."""
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            bufsize=0)
    proc.pending = b""  # read but not yet taken: line() reads the pipe itself, so select() sees the truth
    _children.append(proc)
    return proc


def line(proc: subprocess.Popen, timeout: float = 30.0) -> str:
    """The child's next line; fails (with its exit code) when none comes."""
    deadline = time.monotonic() + timeout
    while b"\n" not in proc.pending:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(proc.stdout.fileno(), 65536) if ready else b""
        assert chunk, f"child said nothing more (exit code {proc.poll()})"
        proc.pending += chunk
    text, proc.pending = proc.pending.split(b"\n", 1)
    return text.decode().strip()


def tell(proc: subprocess.Popen, text: str) -> None:
    proc.stdin.write(text.encode() + b"\n")


def kill(proc: subprocess.Popen) -> None:
    proc.kill()  # SIGKILL: no finally, no atexit
    proc.wait(timeout=30)


def encode(ref: wire.ShmRef) -> str:
    return msgspec.json.encode(ref).decode()


def decode(text: str) -> wire.ShmRef:
    return msgspec.json.decode(text, type=wire.ShmRef)


# -- interleavings of one writer and two readers, with the clock passed in -----------------------

SLOTS, SLOT_BYTES, LEASE_S = 3, 64, 1.0
LEASE_NS = int(LEASE_S * SECOND)


class Interleavings(RuleBasedStateMachine):
    """A model of every slot next to the real ring: each put takes the slot the model says is
    free (round-robin), free() agrees, and a view that valid() vouches for after reading holds
    exactly the bytes put for its ref."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="camwire-shm-test-")
        self.now = 1_000 * SECOND
        self.readers = [shm.Readers(self.dir), shm.Readers(self.dir)]
        self.mapped: list[set[str]] = [set(), set()]  # the rings each reader maps
        self.written: dict[wire.ShmRef, bytes] = {}  # every frame ever put, by its ref
        self.refs: list[wire.ShmRef] = []
        self.holds: dict[str, list[int]] = {}  # ring -> the gen each slot holds (0: none); closed rings frozen
        self.closed: set[str] = set()
        self.views: list[tuple[int, wire.ShmRef, memoryview]] = []
        self.ring: shm.Ring | None = None
        self._new_ring()

    def _new_ring(self) -> None:
        self.ring = shm.Ring("cam", SLOTS, SLOT_BYTES, lease_s=LEASE_S, directory=self.dir)
        self.holds[self.ring.name] = [0] * SLOTS
        self.released = [0] * SLOTS
        self.written_ns = [0] * SLOTS
        self.last = SLOTS - 1

    def _free(self, slot: int) -> bool:
        gen = self.holds[self.ring.name][slot]
        return gen == 0 or self.released[slot] == gen or self.now - self.written_ns[slot] > LEASE_NS

    def _maps(self, r: int, ring: str) -> bool:
        """Whether reader ``r`` can reach ``ring``: mapped already, or there to be mapped."""
        return ring in self.mapped[r] or ring not in self.closed

    @rule(data=st.binary(max_size=SLOT_BYTES + 8))
    def put(self, data: bytes) -> None:
        held = {ref.slot for _, ref, _ in self.views if ref.ring == self.ring.name and not self._free(ref.slot)
                and self.holds[ref.ring][ref.slot] == ref.gen}
        ref = self.ring.put(np.frombuffer(data, np.uint8), now_ns=self.now)
        order = [(self.last + k) % SLOTS for k in range(1, SLOTS + 1)]
        free = [slot for slot in order if self._free(slot)]
        if len(data) > SLOT_BYTES or not free:
            assert ref is None
            return
        assert ref is not None and ref.slot == free[0] and ref.slot not in held
        assert ref.ring == self.ring.name and ref.host == shm.host_id(self.dir)
        assert all(ref.gen > old.gen for old in self.refs if old.ring == ref.ring)
        self.holds[ref.ring][ref.slot] = ref.gen
        self.written_ns[ref.slot], self.last = self.now, ref.slot
        self.written[ref] = data
        self.refs.append(ref)

    @precondition(lambda self: self.refs)
    @rule(r=st.integers(0, 1), pick=st.integers(0, 10**6), more=st.booleans())
    def view(self, r: int, pick: int, more: bool) -> None:
        ref = self.refs[pick % len(self.refs)]
        nbytes = len(self.written[ref]) + more  # one byte more than was written: refused
        if not self._maps(r, ref.ring):
            with pytest.raises(shm.ShmError) as exc:
                self.readers[r].view(ref, nbytes)
            assert reason(exc) == "unknown_ring"
            return
        self.mapped[r].add(ref.ring)
        if self.holds[ref.ring][ref.slot] != ref.gen:
            with pytest.raises(shm.ShmError) as exc:
                self.readers[r].view(ref, nbytes)
            assert reason(exc) == "recycled"
        elif more:
            with pytest.raises(shm.ShmError) as exc:
                self.readers[r].view(ref, nbytes)
            assert reason(exc) == "bad_slot"
        else:
            view = self.readers[r].view(ref, nbytes)
            assert view.readonly and len(view) == nbytes
            self.views.append((r, ref, view))

    @precondition(lambda self: self.views)
    @rule(pick=st.integers(0, 10**6))
    def read(self, pick: int) -> None:
        r, ref, view = self.views.pop(pick % len(self.views))
        got = bytes(view)  # the detector's read
        ok = self.readers[r].valid(ref)  # then the check
        assert ok == (ref.ring in self.mapped[r] and self.holds[ref.ring][ref.slot] == ref.gen)
        if ok:
            assert got == self.written[ref]  # never a recycled slot's bytes taken for this frame

    @precondition(lambda self: self.refs)
    @rule(r=st.integers(0, 1), pick=st.integers(0, 10**6))
    def release(self, r: int, pick: int) -> None:
        ref = self.refs[pick % len(self.refs)]
        self.readers[r].release(ref)
        if self._maps(r, ref.ring):
            self.mapped[r].add(ref.ring)  # release maps a ring not mapped yet: a relay drops frames unread
            if ref.ring == self.ring.name and self.holds[ref.ring][ref.slot] == ref.gen:
                self.released[ref.slot] = ref.gen

    @rule(dt=st.sampled_from([0, 1, LEASE_NS // 2, LEASE_NS, LEASE_NS + 1, 5 * LEASE_NS]))
    def advance(self, dt: int) -> None:
        self.now += dt

    @rule()
    def restart_writer(self) -> None:
        self.ring.close()
        self.closed.add(self.ring.name)
        assert not os.path.exists(os.path.join(self.dir, self.ring.name))
        self._new_ring()

    @rule(r=st.integers(0, 1))
    def sweep(self, r: int) -> None:
        swept = self.readers[r].sweep(now=time.monotonic() + 61.0)
        assert swept == len(self.mapped[r])
        self.mapped[r].clear()

    @invariant()
    def free_agrees(self) -> None:
        assert self.ring.free(now_ns=self.now) == sum(self._free(slot) for slot in range(SLOTS))

    def teardown(self) -> None:
        self.views.clear()
        for readers in self.readers:
            readers.close()
        self.ring.close()
        assert os.listdir(self.dir) == []  # only the live ring was there, and it went with close()
        shutil.rmtree(self.dir)


Interleavings.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None,
                                           suppress_health_check=[HealthCheck.too_slow])
test_interleavings = Interleavings.TestCase


# -- a reader that dies holding a slot, a writer that dies, restarts ----------------------------

READER = """
import sys, msgspec
from camwire.common import shm, wire
readers = shm.Readers(sys.argv[1])
a, b = (msgspec.json.decode(x, type=wire.ShmRef) for x in sys.argv[2:4])
views = [readers.view(ref, 4096) for ref in (a, b)]
ok = all(bytes(v) == bytes([ref.gen]) * 4096 and readers.valid(ref) for v, ref in zip(views, (a, b)))
readers.release(a)  # done with a; b still held
print("holding", ok, flush=True)
sys.stdin.readline()
"""


def test_a_slot_released_by_another_process_is_free_and_one_held_by_a_dead_reader_after_the_lease(tmp_path) -> None:
    ring = shm.Ring("cam", 2, 4096, lease_s=0.5, directory=str(tmp_path))
    t0 = time.monotonic_ns()
    a, b = ring.put(frame(1), now_ns=t0), ring.put(frame(2), now_ns=t0)
    assert (a.gen, b.gen) == (1, 2)  # the reader checks bytes == gen
    reader = child(READER, str(tmp_path), encode(a), encode(b))
    assert line(reader) == "holding True"
    kill(reader)
    lease = int(0.5 * SECOND)
    assert ring.free(now_ns=t0) == 1  # a: released from the other process
    c = ring.put(frame(3), now_ns=t0)
    assert c.slot == a.slot
    assert ring.put(frame(4), now_ns=t0 + lease // 2) is None  # b: its reader is dead, but within the lease
    d = ring.put(frame(4), now_ns=t0 + lease + 1)  # after it: reused
    assert d.slot == b.slot and d.gen == 4
    with shm.Readers(str(tmp_path)) as readers:
        assert bytes(readers.view(d, 4096)) == bytes(frame(4)) and readers.valid(d)
        with pytest.raises(shm.ShmError) as exc:
            readers.view(b, 4096)
        assert reason(exc) == "recycled"
    ring.close()


WRITER = """
import sys, msgspec, numpy as np
from camwire.common import shm
ring = shm.Ring("cam", 2, 4096, lease_s=0.0, directory=sys.argv[1])
for value in (1, 2):
    print(msgspec.json.encode(ring.put(np.full(4096, value, np.uint8))).decode(), flush=True)
sys.stdin.readline()
print(msgspec.json.encode(ring.put(np.full(4096, 3, np.uint8))).decode(), flush=True)
sys.stdin.readline()
"""


def test_a_writer_killed_and_restarted(tmp_path) -> None:
    directory = str(tmp_path)
    writer = child(WRITER, directory)
    one, two = decode(line(writer)), decode(line(writer))
    readers = shm.Readers(directory)
    held = readers.view(one, 4096)  # mapped while the writer lives
    assert bytes(held) == bytes(frame(1)) and readers.valid(one)
    tell(writer, "more")
    three = decode(line(writer))  # lease 0: slot 0 rewritten under the reader's view
    assert three.slot == one.slot and three.gen == 3
    assert not readers.valid(one)  # what the view shows now is frame 3's: thrown away
    with pytest.raises(shm.ShmError) as exc:
        readers.view(one, 4096)
    assert reason(exc) == "recycled"
    kill(writer)  # SIGKILL: its segment stays until reclaimed
    assert bytes(readers.view(two, 4096)) == bytes(frame(2)) and readers.valid(two)
    assert shm.reclaim(directory) == [two.ring]
    assert os.listdir(directory) == []
    # the old ring's frames stay right where mapped; elsewhere it is gone
    assert bytes(readers.view(three, 4096)) == bytes(frame(3)) and readers.valid(three)
    with shm.Readers(directory) as fresh:
        with pytest.raises(shm.ShmError) as exc:
            fresh.view(three, 4096)
        assert reason(exc) == "unknown_ring" and not fresh.valid(three)
    # the writer restarted: a new name, its own generations, the same readers
    with shm.Ring("cam", 2, 4096, directory=directory) as ring:
        assert ring.name != two.ring
        new = ring.put(frame(9))
        assert new.gen == 1 and bytes(readers.view(new, 4096)) == bytes(frame(9)) and readers.valid(new)
        assert bytes(readers.view(two, 4096)) == bytes(frame(2))  # never the new ring's frame
        readers.release(new)
        assert ring.free() == 2
        assert readers.sweep(now=time.monotonic() + 61.0) == 2
        assert not readers.valid(two) and not readers.valid(new)  # let go: no longer vouched for
    readers.close()
    assert os.listdir(directory) == []


TORN = """
import sys, time, numpy as np
from camwire.common import shm
ring = shm.Ring("cam", 2, 1 << 18, lease_s=0.0, directory=sys.argv[1])
print(ring.name, flush=True)
sys.stdin.readline()
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    data = np.full(1 << 18, (ring._gen + 1) % 251, np.uint8)  # the byte names the generation
    ring.put(data)
print("done", flush=True)
sys.stdin.readline()
ring.close()
"""


def test_reads_racing_a_writer_in_another_process_are_right_or_refused(tmp_path) -> None:
    """A writer rewriting two slots as fast as it can (lease 0: nobody's reads hold it back) while
    this process reads them: every read valid() vouches for is one whole frame."""
    writer = child(TORN, str(tmp_path), "1.0")
    name = line(writer)
    host = shm.host_id(str(tmp_path))
    counts = {"right": 0, "thrown away": 0, "recycled": 0}
    with shm.Readers(str(tmp_path)) as readers:
        probe = wire.ShmRef(host=host, ring=name, slot=0, gen=1)
        with pytest.raises(shm.ShmError):
            readers.view(probe, 1)  # maps the ring (nothing written yet)
        headers = readers._rings[name].headers  # the slots' gen words, to know what to ask for
        tell(writer, "go")
        done = False
        while not done:
            done = bool(writer.pending or select.select([writer.stdout], [], [], 0)[0])  # one more round after it
            for slot in (0, 1):
                gen = int(headers[slot, 0])
                if gen == 0:
                    continue
                ref = wire.ShmRef(host=host, ring=name, slot=slot, gen=gen)
                try:
                    got = np.array(readers.view(ref, 1 << 18))  # a copy, as a detector's input
                except shm.ShmError as exc:
                    assert exc.reason == "recycled"
                    counts["recycled"] += 1
                    continue
                if readers.valid(ref):
                    assert (got == gen % 251).all(), f"generation {gen}: bytes of another frame"
                    counts["right"] += 1
                else:
                    counts["thrown away"] += 1
        assert line(writer) == "done"
    writer.stdin.close()
    writer.wait(timeout=30)
    assert counts["right"] > 0, counts
    print(counts)


def test_reclaim_takes_dead_writers_segments_only(tmp_path) -> None:
    directory = str(tmp_path)
    live = shm.Ring("live", 1, 64, directory=directory)
    writer = child(WRITER, directory)
    dead = decode(line(writer)).ring
    assert shm.reclaim(directory) == []  # both writers alive
    kill(writer)
    assert dead in os.listdir(directory)  # SIGKILL ran no cleanup
    being_made = tmp_path / "camwire-new-1-00000000"  # no magic yet, just created: a ring being made
    being_made.touch()
    abandoned = tmp_path / "camwire-old-1-00000000"  # no magic, untouched for long: its creator died
    abandoned.write_bytes(b"\0" * 64)
    os.utime(abandoned, (time.time() - 3600,) * 2)
    (tmp_path / "not-ours").write_bytes(b"x")
    assert sorted(shm.reclaim(directory)) == sorted([abandoned.name, dead])
    assert sorted(os.listdir(directory)) == sorted([live.name, being_made.name, "not-ours"])
    live.close()
    assert sorted(os.listdir(directory)) == sorted([being_made.name, "not-ours"])


# -- what readers refuse ----------------------------------------------------------------------

def test_readers_refuse_what_is_not_a_camwire_ring(tmp_path) -> None:
    directory = str(tmp_path)
    host = shm.host_id(directory)
    ring = shm.Ring("cam", 2, 100, directory=directory)
    assert ring.slot_bytes == 128  # rounded up to 64
    ref = ring.put(b"x" * 100)

    def refused(ref: wire.ShmRef, nbytes: int = 1) -> str:
        with shm.Readers(directory) as readers:
            with pytest.raises(shm.ShmError) as exc:
                readers.view(ref, nbytes)
            if exc.value.reason != "bad_slot" or nbytes == 1:  # the slot is fine: only the size asked was not
                assert not readers.valid(ref)
            readers.release(ref)  # nothing, and no error
            return reason(exc)

    def named(name: str, **kw) -> wire.ShmRef:
        return wire.ShmRef(**{**dict(host=host, ring=name, slot=0, gen=1), **kw})

    (tmp_path.parent / "camwire-outside").write_bytes(b"x")
    for name in ("../camwire-outside", "camwire-a/../../etc", "/etc/passwd", "camwire-", "x", "camwire-a b",
                 ring.name + "\n"):
        assert refused(named(name)) == "bad_ring", name
    (tmp_path / "camwire-junk").write_bytes(os.urandom(4096))
    (tmp_path / "camwire-short").write_bytes(b"CWRING01")
    (tmp_path / "camwire-dir").mkdir()
    (tmp_path / "camwire-link").symlink_to(tmp_path / ring.name)
    grown = tmp_path / "camwire-grown"
    grown.write_bytes((tmp_path / ring.name).read_bytes() + b"\0" * 64)  # a ring's header, the wrong size
    for name in ("camwire-junk", "camwire-short", "camwire-dir", "camwire-link", "camwire-grown"):
        assert refused(named(name)) == "bad_ring", name
    assert refused(named("camwire-nothing-here")) == "unknown_ring"
    assert refused(named(ring.name, host="another-host")) == "unknown_ring"
    assert refused(named(ring.name, slot=2)) == "bad_slot"
    assert refused(named(ring.name, gen=0)) == "bad_slot"
    assert refused(ref, 129) == "bad_slot"  # more than a slot
    assert refused(ref, 101) == "bad_slot"  # more than was written
    assert refused(named(ring.name, gen=2)) == "recycled"
    assert refused(named(ring.name, slot=1)) == "recycled"  # never written
    with shm.Readers(directory) as readers:
        assert bytes(readers.view(ref, 100)) == b"x" * 100
    # the wire itself refuses a ring name outside the pattern
    header = wire.pack(wire.FrameHeader(camera="cam", seq=1, ts_ns=1, width=1, height=1, shm=named("../x")))
    with pytest.raises(wire.MalformedMessage):
        wire.unpack(header)
    ring.close()


def test_put_refuses_what_does_not_fit_and_copies_strided_arrays(tmp_path) -> None:
    with shm.Ring("cam", 1, 64, directory=str(tmp_path)) as ring, shm.Readers(str(tmp_path)) as readers:
        assert ring.put(np.zeros(65, np.uint8)) is None  # larger than a slot: the caller sends it inline
        crop = np.arange(200, dtype=np.uint16).reshape(10, 20)[2:6, 1:9:2]  # not contiguous
        ref = ring.put(crop)
        got = np.frombuffer(readers.view(ref, crop.nbytes), np.uint16).reshape(crop.shape)
        assert np.array_equal(got, crop) and not got.flags.writeable
        assert ring.put(b"y") is None and ring.free() == 0  # one slot, held
        readers.release(ref)
        assert ring.put(b"y") is not None


def test_the_default_directory_works_and_is_left_clean() -> None:
    assert shm.host_id() == shm.host_id(shm.DIRECTORY)
    ring = shm.Ring("shm-test", 1, 64)
    try:
        assert os.path.exists(os.path.join(shm.DIRECTORY, ring.name))
        assert os.stat(os.path.join(shm.DIRECTORY, ring.name)).st_mode & 0o777 == 0o600
        with shm.Readers() as readers:
            ref = ring.put(b"hello")
            assert bytes(readers.view(ref, 5)) == b"hello" and readers.valid(ref)
    finally:
        ring.close()
    assert not os.path.exists(os.path.join(shm.DIRECTORY, ring.name))


def test_ring_names_are_fresh_and_refuse_odd_cameras() -> None:
    names = {shm.ring_name("cam") for _ in range(100)}
    assert len(names) == 100 and all(n.startswith(f"camwire-cam-{os.getpid()}-") for n in names)
    with pytest.raises(ValueError):
        shm.ring_name("a/b")


def test_a_frame_its_writer_could_not_send_frees_its_slot_at_once(tmp_path) -> None:
    """The extractor's socket was full after the frame went into the ring: nobody will read it."""
    ring = shm.Ring("cam", 2, 64, directory=str(tmp_path))
    try:
        a, b = ring.put(b"a" * 64), ring.put(b"b" * 64)
        assert ring.free() == 0 and ring.put(b"c" * 64) is None
        ring.release(a)
        assert ring.free() == 1
        ring.release(a)  # twice: nothing more
        c = ring.put(b"c" * 64)
        assert c is not None and c.slot == a.slot
        ring.release(a)  # a late give-back of the slot's earlier frame frees nothing
        assert ring.free() == 0 and b is not None
    finally:
        ring.close()
