"""Shared-memory frame rings: a frame's pixels cross processes on one host without a socket.

A camera thread of the extractor owns one :class:`Ring`, a POSIX shared-memory segment (a file in
/dev/shm on Linux) cut into slots. It copies each frame into a free slot and sends the frame's
header with ``shm=ShmRef(host, ring, slot, gen)`` and an empty part 1 (common.wire): **only that
small header crosses ZeroMQ**. The ventilator relays it as it is; a worker on the same host maps
the ring once (:class:`Readers`), reads the pixels in place, checks that the slot still holds
that generation, and releases the slot, or, when it found something and its sink is on this
host, leaves it held and names it in the result: the sink maps the ring too, copies the pixels
out and releases it (sink.source_frames). A worker on another host (``ShmRef.host`` differs from
its :func:`host_id`) cannot map it: the extractor sends those frames inline.

Layout of a segment (all words little-endian u64 on the machine itself; nothing here travels)::

    offset 0       ring header, 64 bytes: magic b"CWRING01", version, slots, slot_bytes, owner pid
    offset 64      slot 0: header, 64 bytes: gen, released, written_ns, nbytes (then padding)
    offset 128     slot 0: payload, slot_bytes (a multiple of 64, so every payload is 64-aligned)
    ...            slot i at 64 + i * (64 + slot_bytes)

``gen``: the generation the slot holds (0 while it is being written, or never written); the ring
counts generations from 1 and never repeats one, and ring names are never reused, so a ShmRef
names one frame forever. ``released``: the generation a reader has finished with (the slot is
free again). ``written_ns``: CLOCK_MONOTONIC (system-wide on Linux) when it was written; a slot
nobody released is reused ``lease_s`` after that, so a reader that died holding it costs a slot
for a while, never the ring.

Writing is a seqlock: the writer stores ``gen = 0``, copies the payload, then stores ``nbytes``,
``written_ns`` and the new ``gen``. A reader checks ``gen`` before it hands out a view
(:meth:`Readers.view`) and again after the caller has read it (:meth:`Readers.valid`): if both
saw the frame's generation, no rewrite of the slot overlapped the read. Memory ordering: the
header words are aligned 8-byte loads and stores (a numpy uint64 view), and the writer puts a
full barrier (a lock's atomic instruction) between ``gen = 0`` and the copy and between the copy
and the new ``gen``, because a large memcpy uses non-temporal stores that x86 may otherwise make
visible before an earlier plain store. That makes it correct on x86-64 (TSO: loads are not
reordered with loads, so the reader's payload loads come before its second ``gen`` load). On a
weakly ordered CPU (aarch64) the reader's side has no load barrier that Python can issue: the
check after the copy still catches every slot reused in the ordinary way (the lease ran out
long before), but a read racing a rewrite of the very slot is not formally excluded there.

Segments are created mode 0600: only processes of the same user map them. A writer holds an
exclusive ``flock`` on its segment for its whole life; :func:`reclaim` (every extractor calls it
at start) unlinks the segments whose lock it can take, so a writer killed with SIGKILL leaves
nothing behind for long. Nothing here pickles; a segment holds raw bytes only.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import mmap
import os
import re
import secrets
import stat
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from camwire.common import wire

# where rings live (tmpfs); every camwire daemon of a host must agree. CAMWIRE_SHM_DIR moves them all
# (a container whose /dev/shm is small can point them at a larger tmpfs; the tests use a small one)
DIRECTORY = os.environ.get("CAMWIRE_SHM_DIR") or "/dev/shm"
# a slot no reader released is reused after this long: a reader that died holding it, or a result
# naming it that its sink could not read (a sink without this /dev/shm, one that dropped the result)
LEASE_S = 10.0
MAGIC = b"CWRING01"
VERSION = 1
ALIGN = 64  # a cache line: headers and payloads start on one
RING_HEADER = 64
SLOT_HEADER = 64
MAX_SLOTS = 4096  # as ShmRef.slot allows
MAX_SLOT_BYTES = 1 << 34  # far above any frame; stops a forged ring header from asking for more
MAX_GEN = wire.MAX_SEQ
STALE_CREATION_S = 60.0  # a segment still without its magic this long after its last change: its creator died
# the words of a ring header and of a slot header (u64 indexes)
_R_VERSION, _R_SLOTS, _R_SLOT_BYTES, _R_PID = 1, 2, 3, 4
_GEN, _RELEASED, _WRITTEN, _NBYTES = 0, 1, 2, 3
_RING_NAME = re.compile(wire.SHM_RING_PATTERN)
# a segment someone else made: never through a symlink, and never waiting (a FIFO by that name)
_OPEN_EXISTING = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK

_fence_lock = threading.Lock()


def _fence() -> None:
    """A full memory barrier: acquiring a lock is an atomic read-modify-write (``lock cmpxchg``
    on x86-64, which orders every earlier load and store, non-temporal ones included, before
    every later one). Python has no fence of its own."""
    _fence_lock.acquire()
    _fence_lock.release()


class ShmError(wire.MalformedMessage):
    """A ShmRef that cannot be read here; ``reason`` (a counter label) is ``unknown_ring`` (no
    such segment, or not mappable from this host), ``denied`` (another user's: every daemon runs
    as one user, the units' ``User=camwire``), ``bad_ring`` (not a camwire ring: its name,
    magic, version or size), ``bad_slot`` (slot out of range, or more bytes asked than the slot
    has or holds) or ``recycled`` (the slot no longer holds that generation)."""


@functools.lru_cache(maxsize=None)
def host_id(directory: str = DIRECTORY) -> str:
    """Processes with the same value map the same segments: the kernel's boot id and the device
    number of ``directory`` (containers with a /dev/shm of their own differ, those sharing the
    host's do not). Cached: neither changes while a process lives. ``CAMWIRE_SHM_HOST`` in the
    environment replaces it (a test's worker "on another host")."""
    if forced := os.environ.get("CAMWIRE_SHM_HOST"):
        return forced[:128]
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:  # no /proc (not Linux): the host's name is the best left
        boot = os.uname().nodename
    try:
        device = f"{os.stat(directory).st_dev:x}"
    except OSError:  # no such directory: no ring is made here, and no writer's host is this
        device = "none"
    return f"{boot[:100]}-{device}"


def free_bytes(directory: str = DIRECTORY) -> int | None:
    """What ``directory`` (tmpfs) has free, or None when it cannot be asked."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def ring_name(camera: str) -> str:
    """A fresh segment name for ``camera``: its pid and 32 random bits make it never reused, even
    where pids repeat (containers)."""
    name = f"camwire-{camera}-{os.getpid()}-{secrets.token_hex(4)}"
    if not _RING_NAME.fullmatch(name):
        raise ValueError(f"camera name {camera!r} cannot name a ring")
    return name


def _stride(slot_bytes: int) -> int:
    return SLOT_HEADER + slot_bytes


def _size(slots: int, slot_bytes: int) -> int:
    return RING_HEADER + slots * _stride(slot_bytes)


def _views(mm: mmap.mmap, slots: int, slot_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """The slot headers as u64 words ``[slot, word]`` and the slots as bytes ``[slot, offset]``
    (header then payload), both over the mapping itself."""
    stride = _stride(slot_bytes)
    headers = np.ndarray((slots, SLOT_HEADER // 8), np.uint64, buffer=mm, offset=RING_HEADER, strides=(stride, 8))
    data = np.ndarray((slots, stride), np.uint8, buffer=mm, offset=RING_HEADER)
    return headers, data


def _flat_bytes(data: Any) -> np.ndarray | None:
    """``data`` as a flat uint8 array without a copy; None for a numpy array that is not
    C-contiguous (copied element-wise into the slot instead)."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.flags.c_contiguous else None
    view = memoryview(data)
    if not view.c_contiguous:
        raise ValueError("put() takes a C-contiguous buffer")
    return np.frombuffer(view.cast("B") if view.ndim != 1 or view.format != "B" else view, np.uint8)


class Ring:
    """One writer's ring (one camera thread owns it; not thread-safe)."""

    def __init__(self, camera: str, slots: int, slot_bytes: int, lease_s: float = LEASE_S,
                 directory: str = DIRECTORY) -> None:
        if not 1 <= slots <= MAX_SLOTS:
            raise ValueError(f"slots must be 1..{MAX_SLOTS}, not {slots}")
        if not 0 < slot_bytes <= MAX_SLOT_BYTES:
            raise ValueError(f"slot_bytes must be 1..{MAX_SLOT_BYTES}, not {slot_bytes}")
        self.host = host_id(directory)
        self.slots = slots
        self.slot_bytes = -(-slot_bytes // ALIGN) * ALIGN  # rounded up: every payload starts aligned
        self._lease_ns = int(lease_s * 1e9)
        self._gen = 0  # the last generation written
        self._last = slots - 1  # the slot written last: the next put tries the one after it
        for attempt in range(3):  # a name taken (32 random bits drawn twice for one pid): another
            self.name = ring_name(camera)
            self.path = os.path.join(directory, self.name)
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
                break
            except FileExistsError:
                if attempt == 2:
                    raise
        try:
            # before the magic is written: reclaim() takes a segment only with the magic in it and
            # the lock free, so it never mistakes one being created for one whose writer died
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            size = _size(slots, self.slot_bytes)
            os.ftruncate(self._fd, size)
            # reserve the pages now: tmpfs full (Docker's 64 MiB /dev/shm) is an OSError here,
            # not a SIGBUS on the first copy into a page that cannot be had
            os.posix_fallocate(self._fd, 0, size)
            self._mm = mmap.mmap(self._fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            self._unlink()
            os.close(self._fd)
            raise
        self._headers, self._data = _views(self._mm, slots, self.slot_bytes)
        words = np.ndarray((RING_HEADER // 8,), np.uint64, buffer=self._mm)
        words[[_R_VERSION, _R_SLOTS, _R_SLOT_BYTES, _R_PID]] = VERSION, slots, self.slot_bytes, os.getpid()
        self._mm[:len(MAGIC)] = MAGIC  # last: the segment is a camwire ring from here on
        self._closed = False

    def __enter__(self) -> "Ring":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _is_free(self, slot: int, now_ns: int) -> bool:
        words = self._headers[slot]
        gen = int(words[_GEN])
        return gen == 0 or int(words[_RELEASED]) == gen or now_ns - int(words[_WRITTEN]) > self._lease_ns

    def free(self, now_ns: int | None = None) -> int:
        """Slots a put() could take now."""
        now_ns = time.monotonic_ns() if now_ns is None else now_ns
        return sum(self._is_free(slot, now_ns) for slot in range(self.slots))

    def put(self, data: Any, now_ns: int | None = None) -> wire.ShmRef | None:
        """Copy ``data`` (a numpy array or any C-contiguous buffer) into a free slot and return
        where it is; None when every slot is held or ``data`` is larger than a slot (the caller
        then sends the pixels inline, and counts it)."""
        if self._closed:
            raise ValueError(f"ring {self.name} is closed")
        flat = _flat_bytes(data)
        nbytes = flat.nbytes if flat is not None else data.nbytes
        if nbytes > self.slot_bytes:
            return None
        now_ns = time.monotonic_ns() if now_ns is None else now_ns
        for k in range(1, self.slots + 1):  # round-robin from the one after the last written
            slot = (self._last + k) % self.slots
            if self._is_free(slot, now_ns):
                break
        else:
            return None
        words = self._headers[slot]
        words[_GEN] = 0  # invalid from here until the new gen: a reader's valid() fails meanwhile
        _fence()
        payload = self._data[slot, SLOT_HEADER:SLOT_HEADER + nbytes]
        if flat is not None:
            np.copyto(payload, flat)
        else:  # a strided numpy array (a crop): copied straight into its C-ordered place
            np.copyto(payload.view(data.dtype).reshape(data.shape), data)
        _fence()
        self._gen += 1
        words[_NBYTES], words[_WRITTEN], words[_RELEASED] = nbytes, now_ns, 0
        words[_GEN] = self._gen
        self._last = slot
        return wire.ShmRef(host=self.host, ring=self.name, slot=slot, gen=self._gen)

    def release(self, ref: wire.ShmRef) -> None:
        """The writer's own give-back: a frame written and then not sent (its socket was full) frees
        its slot at once, if it still holds that generation."""
        if ref.ring == self.name and 0 <= ref.slot < self.slots and not self._closed:
            words = self._headers[ref.slot]
            if int(words[_GEN]) == ref.gen:
                words[_RELEASED] = ref.gen

    def _unlink(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:  # removed by hand: nothing left to do
            pass

    def close(self) -> None:
        """Unlink and unmap (idempotent). Readers that map it keep a valid mapping (POSIX): a
        frame they hold stays readable until they let the ring go."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        self._unlink()  # before the lock goes: reclaim() never sees it unlocked while it exists
        del self._headers, self._data
        try:
            self._mm.close()
        except BufferError:  # a view of it still exists here: unmapped when the last one goes
            pass
        os.close(self._fd)


@dataclass
class _Mapped:
    """A ring a reader has mapped: its slot headers and bytes, and when it was last used."""

    headers: np.ndarray
    data: memoryview
    slots: int
    slot_bytes: int
    used: float


class Readers:
    """A reader process's rings, mapped once each (a worker, the ventilator, the sink); used from one
    thread, except :meth:`valid`, which may be called from another."""

    def __init__(self, directory: str = DIRECTORY, idle_s: float = 60.0, max_rings: int = 1024) -> None:
        self.directory = directory
        self.host = host_id(directory)
        self.idle_s = idle_s
        self.max_rings = max_rings
        self._rings: dict[str, _Mapped] = {}

    def __enter__(self) -> "Readers":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def view(self, ref: wire.ShmRef, nbytes: int) -> memoryview:
        """A read-only view, without a copy, of the first ``nbytes`` of the slot ``ref`` names.
        Call :meth:`valid` after reading it: only then is what was read known to be this frame's."""
        ring = self._ring(ref)
        words = self._slot(ring, ref)
        if int(words[_GEN]) != ref.gen:
            raise ShmError("recycled", f"{ref.ring} slot {ref.slot} no longer holds generation {ref.gen}")
        if not 0 <= nbytes <= min(ring.slot_bytes, int(words[_NBYTES])):
            raise ShmError("bad_slot", f"{nbytes} bytes asked of {ref.ring} slot {ref.slot}, "
                                       f"which holds {int(words[_NBYTES])}")
        start = ref.slot * _stride(ring.slot_bytes) + SLOT_HEADER
        return ring.data[start:start + nbytes]

    def valid(self, ref: wire.ShmRef) -> bool:
        """Whether the slot still holds ``ref.gen``: call it after using a view; if False, what
        was read may be another frame's and must be thrown away. Never maps a ring (it may run
        on another thread than the one mapping them): a ring not mapped here is not valid."""
        ring = self._rings.get(ref.ring)
        if ring is None or not 0 <= ref.slot < ring.slots or ref.gen < 1:
            return False
        ring.used = time.monotonic()
        return int(ring.headers[ref.slot, _GEN]) == ref.gen

    def release(self, ref: wire.ShmRef) -> None:
        """Tell the writer the slot is free again (when the frame was read, or dropped unread).
        Only while the slot still holds ``ref.gen``: a late release of a slot since rewritten does
        nothing. A ring that cannot be mapped here: nothing."""
        try:
            words = self._slot(self._ring(ref), ref)
        except ShmError:
            return
        if int(words[_GEN]) == ref.gen:
            # the writer may rewrite the slot between the check and this store (its lease ran
            # out); it then compares released with a newer gen, so the stale store frees nothing
            words[_RELEASED] = ref.gen

    def sweep(self, now: float | None = None) -> int:
        """Let go of the rings not used for ``idle_s`` (a writer gone, or restarted under a new
        name); how many. A view still held keeps its mapping alive until it goes."""
        now = time.monotonic() if now is None else now
        idle = [name for name, ring in self._rings.items() if now - ring.used > self.idle_s]
        for name in idle:
            del self._rings[name]
        return len(idle)

    def close(self) -> None:
        self._rings.clear()  # the mappings go with the last reference to each (views included)

    def _slot(self, ring: _Mapped, ref: wire.ShmRef) -> np.ndarray:
        if not 0 <= ref.slot < ring.slots:
            raise ShmError("bad_slot", f"slot {ref.slot} of {ref.ring}, which has {ring.slots}")
        if not 1 <= ref.gen <= MAX_GEN:  # 0 is a slot being written: never a frame (a ShmRef built, not decoded)
            raise ShmError("bad_slot", f"generation {ref.gen}")
        return ring.headers[ref.slot]

    def _ring(self, ref: wire.ShmRef) -> _Mapped:
        """The ring ``ref`` names, mapped on first use; ShmError when it cannot be."""
        ring = self._rings.get(ref.ring)
        if ring is None:
            # never another path: no "/", so no ".." either; fullmatch, since "$" lets a "\n" through
            if not isinstance(ref.ring, str) or not _RING_NAME.fullmatch(ref.ring):
                raise ShmError("bad_ring", f"{ref.ring!r} is not a camwire ring's name")
            if ref.host != self.host:
                raise ShmError("unknown_ring", f"{ref.ring} is on host {ref.host!r}, this is {self.host!r}")
            ring = self._map(ref.ring)
            if len(self._rings) >= self.max_rings:  # the least recently used goes
                del self._rings[min(self._rings, key=lambda name: self._rings[name].used)]
            self._rings[ref.ring] = ring
        ring.used = time.monotonic()
        return ring

    def _map(self, name: str) -> _Mapped:
        try:
            fd = os.open(os.path.join(self.directory, name), _OPEN_EXISTING)
        except FileNotFoundError as exc:
            raise ShmError("unknown_ring", f"{name}: {exc.strerror}") from None
        except PermissionError as exc:  # mode 0600: its writer runs as another user
            raise ShmError("denied", f"{name}: {exc.strerror} (another user's ring: run every daemon "
                                     "as one user)") from None
        except OSError as exc:  # a directory, a symlink (ELOOP), ...
            raise ShmError("bad_ring", f"{name}: {exc.strerror}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size < RING_HEADER:
                raise ShmError("bad_ring", f"{name}: not a ring segment")
            head = os.pread(fd, RING_HEADER, 0)
            words = np.frombuffer(head, np.uint64)
            slots, slot_bytes = int(words[_R_SLOTS]), int(words[_R_SLOT_BYTES])
            if head[:len(MAGIC)] != MAGIC or int(words[_R_VERSION]) != VERSION:
                raise ShmError("bad_ring", f"{name}: no camwire ring header (magic, version)")
            if (not 1 <= slots <= MAX_SLOTS or not 0 < slot_bytes <= MAX_SLOT_BYTES or slot_bytes % ALIGN
                    or info.st_size != _size(slots, slot_bytes)):
                raise ShmError("bad_ring", f"{name}: {slots} slots of {slot_bytes} bytes in {info.st_size} bytes")
            mm = mmap.mmap(fd, info.st_size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)  # the mapping outlives it
        headers, _ = _views(mm, slots, slot_bytes)
        data = memoryview(mm)[RING_HEADER:].toreadonly()
        return _Mapped(headers=headers, data=data, slots=slots, slot_bytes=slot_bytes, used=time.monotonic())


def _owner_gone(path: str) -> bool | None:
    """Whether the segment at ``path`` is a ring whose writer is gone (its lock free): True, also
    for one whose creator died before writing its magic (untouched for STALE_CREATION_S); one
    alive or being created: False; None: not ours to open."""
    try:
        fd = os.open(path, _OPEN_EXISTING)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False  # its writer holds it
            raise
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return False
        if os.pread(fd, len(MAGIC), 0) == MAGIC:
            return True  # a complete ring and nobody holds it: its writer is gone
        # a ring being created takes its lock before it writes its magic: this one is being
        # created (we took the lock first; its writer waits for us), or its creator died before
        # the magic. Only one untouched for long goes.
        return time.time() - info.st_mtime > STALE_CREATION_S
    finally:
        os.close(fd)  # drops our lock


def reclaim(directory: str = DIRECTORY) -> list[str]:
    """Unlink the camwire rings in ``directory`` whose writer is gone (their lock is free); a live
    writer's are left alone, and so is anything not a camwire ring. Every extractor calls it at
    start, so a writer killed with SIGKILL leaves nothing behind for long. The names unlinked."""
    gone = []
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return gone
    for name in names:
        if not _RING_NAME.fullmatch(name):
            continue
        path = os.path.join(directory, name)
        if _owner_gone(path):
            try:
                os.unlink(path)
            except FileNotFoundError:  # another extractor's reclaim was first
                continue
            gone.append(name)
    return gone
