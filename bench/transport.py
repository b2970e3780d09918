"""Transport and decode benchmarks, all measured side by side in one run.

1. Frames per second of 1920x1080 BGR frames from a sender process to a receiver process, over
   TCP loopback and ipc, for: camwire's wire format (msgpack header + raw buffer, PUSH/PULL,
   copy=False), imagezmq (ImageSender/ImageHub, REQ/REP: a reply per frame), JPEG+base64
   strings, and pickled dicts (send_pyobj). Every receiver ends with a numpy image in hand.
2. Source frames per second handled by the extractor's real camera loop (decode, sampling,
   colour conversion, encode, send) on a 1080p25 H.264 clip with a key frame every 2 s:
   ``--keyframes`` against full decode (``--every 1``), with ``--every 50`` beside them (it
   sends as many frames as ``--keyframes`` but must decode them all).

3. The per-frame framing cost, before and after typed messages: building a frame header and
   checking it as a relay does (the ventilator's ``peek_frame``), with the msgpack map and
   hand-written field checks camwire used before (reproduced below as the baseline) against the
   msgspec Structs of common.wire, which validate while they decode.

4. What ZeroMQ CURVE encryption costs camwire's links between hosts: messages and MB per second
   from a sender process to a receiver process over TCP loopback, PUSH/PULL with camwire's real
   framing, CURVE off and on side by side for each case: 1920x1080 and 640x360 frames sent
   ``raw``, ``lz4`` and ``jpeg`` (quality 90), encoded by the sender and decoded by the receiver
   per frame as the extractor and a worker do, on frames of a real clip (the shared street scene
   when present, else the built-in sample clip; the output says which); and a worker's result
   with 10 detections, alone and with the frame's pixels (LZ4, as between hosts) a result with
   detections carries for the sink's snapshots.

5. Shared memory on one host (common.shm): 1920x1080 BGR frames per second from a sender process
   through a relay process (PULL -> PUSH, checking each frame with ``wire.peek_frame`` as the
   ventilator does) to a receiver process, for camwire raw frames over TCP loopback and over ipc,
   and for frames in a ring of 8 shared-memory slots whose header alone (``shm=ShmRef``, empty
   part 1) crosses the sockets (TCP loopback); read in place (``shm``) or copied out of the slot
   first (``shm+copy``, an image the receiver owns). Beside them, the ceiling: one process copying
   the same frames with ``np.copyto``, as the sender copies each into its slot.

Run: ``.venv/bin/python bench/transport.py [--seconds S] [--only PART] [--out FILE]`` (``make
bench`` runs every part). Pickle appears here only as the thing to compare against; camwire
never pickles.
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing as mp
import platform
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import msgpack
import numpy as np
import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from camwire.sample import make_sample_clip  # noqa: E402
from camwire.common import pixels, shm, wire  # noqa: E402
from camwire.common.counters import Counters  # noqa: E402
from camwire.common.sampling import Sampling  # noqa: E402
from camwire.extractor.camera import CameraCounters, CameraLoop, CameraSpec  # noqa: E402

W, H = 1920, 1080
METHODS = ("camwire", "imagezmq", "jpeg_base64", "pickle")


def test_frame(i: int) -> np.ndarray:
    frame = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)  # incompressible
    frame[:8, :8] = i % 256
    return frame


# -- senders (run in a child process) ---------------------------------------------------------

def sender(method: str, addr: str, seconds: float) -> None:
    frames = [test_frame(i) for i in range(4)]
    deadline = time.monotonic() + seconds + 2.0  # outlive the receiver's window
    if method == "imagezmq":
        import imagezmq

        s = imagezmq.ImageSender(connect_to=addr)
        i = 0
        while time.monotonic() < deadline:
            s.send_image("cam", frames[i % 4])  # waits for the hub's reply
            i += 1
        return
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.SNDHWM, 4)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(addr)
    i = 0
    while time.monotonic() < deadline:
        frame = frames[i % 4]
        if method == "camwire":
            header = wire.FrameHeader(camera="cam", seq=i, ts_ns=time.time_ns(), width=W, height=H)
            sock.send_multipart(pixels.encode_frame(header, frame), copy=False)
        elif method == "jpeg_base64":
            sock.send_string(base64.b64encode(pixels.encode_jpeg(frame, 90)).decode("ascii"))
        else:
            sock.send_pyobj({"camera": "cam", "seq": i, "frame": frame})
        i += 1
    sock.close()
    ctx.term()


# -- receivers (in this process) --------------------------------------------------------------

def receive(method: str, addr: str, seconds: float) -> float:
    """Frames per second received and turned into a numpy image, over ``seconds`` after warm-up."""
    proc = mp.get_context("spawn").Process(target=sender, args=(method, addr, seconds + 1.0))
    if method == "imagezmq":
        import imagezmq

        hub = imagezmq.ImageHub(open_port=addr)
        recv = lambda: hub.recv_image()[1]  # noqa: E731
        after = lambda: hub.send_reply(b"OK")  # noqa: E731
        closer = hub.close
    else:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.PULL)
        sock.setsockopt(zmq.RCVHWM, 4)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(addr)
        after = lambda: None  # noqa: E731
        closer = lambda: (sock.close(), ctx.term())  # noqa: E731
        if method == "camwire":
            recv = lambda: pixels.decode_frame(sock.recv_multipart(copy=False))[1]  # noqa: E731
        elif method == "jpeg_base64":
            recv = lambda: cv2.imdecode(np.frombuffer(base64.b64decode(sock.recv_string()), np.uint8),  # noqa: E731
                                        cv2.IMREAD_COLOR)
        else:
            recv = lambda: sock.recv_pyobj()["frame"]  # noqa: E731
    proc.start()
    try:
        warm_until = None
        count = 0
        while True:
            image = recv()
            assert image.shape == (H, W, 3)
            after()
            now = time.monotonic()
            if warm_until is None:
                warm_until = now + 1.0
                continue
            if now < warm_until:
                continue
            if count == 0:
                start = now
            count += 1
            if now - start >= seconds:
                return (count - 1) / (now - start)
    finally:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.terminate()
        closer()


# -- keyframes vs full decode -----------------------------------------------------------------

def extractor_run(clip: Path, sampling: Sampling) -> tuple[float, int, int]:
    """Seconds to read the clip through the real camera loop into a PULL that discards;
    also the frames decoded and sent."""
    ctx = zmq.Context()
    addr = "inproc://bench-frontend"
    pull = ctx.socket(zmq.PULL)
    pull.bind(addr)
    done = threading.Event()

    def drain() -> None:
        while not done.is_set():
            if pull.poll(100):
                pull.recv_multipart(copy=False)

    t = threading.Thread(target=drain)
    t.start()
    counters = Counters()
    loop = CameraLoop(ctx, CameraSpec("bench", (str(clip),), sampling), addr, None, "lz4",
                      CameraCounters(counters, "bench"))
    started = time.perf_counter()
    loop.run()  # in this thread: returns at the end of the file
    elapsed = time.perf_counter() - started
    done.set()
    t.join()
    pull.close(linger=0)
    ctx.term()
    return elapsed, counters.get("decoded", "bench"), counters.get("sent", "bench")


# -- framing cost, before and after typed messages ---------------------------------------------

def _v0_pack(h: dict) -> bytes:
    """The header as camwire built it before common.wire's Structs: a msgpack map of a dataclass."""
    return msgpack.packb({"v": 1, "kind": "frame", **h}, use_bin_type=True)


def _v0_peek(parts: list) -> tuple:
    """The checks camwire's relays made before, field by field (the baseline, kept only here)."""
    obj = msgpack.unpackb(parts[0], raw=False, strict_map_key=True, max_bin_len=65536, max_ext_len=0)
    if not isinstance(obj, dict) or obj.get("v") != 1 or obj.get("kind") != "frame":
        raise ValueError("bad header")
    for name, types in (("camera", str), ("seq", int), ("ts_ns", int), ("width", int), ("height", int),
                        ("channels", int), ("dtype", str), ("enc", str)):
        value = obj.get(name)
        if not isinstance(value, types) or isinstance(value, bool):
            raise ValueError(name)
    pts = obj.get("pts") if isinstance(obj.get("pts"), (int, float)) else None
    header = (obj["camera"], obj["seq"], obj["ts_ns"], pts, obj["width"], obj["height"], obj["channels"],
              obj["dtype"], obj["enc"], bool(obj.get("live", True)), bool(obj.get("key", False)))
    if not obj["camera"] or obj["seq"] < 0 or not (0 < obj["width"] <= 16384 and 0 < obj["height"] <= 16384):
        raise ValueError("values")
    if obj["channels"] not in (1, 3, 4) or obj["dtype"] not in ("uint8", "uint16") or obj["enc"] not in ("raw", "lz4"):
        raise ValueError("values")
    if obj["enc"] == "raw" and len(parts[1]) != obj["width"] * obj["height"] * obj["channels"]:
        raise ValueError("size")
    return header


def framing_cost(n: int = 200_000) -> dict[str, float]:
    """Microseconds per frame to build a header and check it as a relay does, old and new, side by side."""
    payload = b"\0" * (64 * 48 * 3)
    out = {}
    for label in ("before: msgpack map + checks", "after: msgspec Structs"):
        started = time.perf_counter()
        for i in range(n):
            ts = 1_700_000_000_000_000_000 + i
            if label.startswith("before"):
                head = _v0_pack({"camera": "door", "seq": i, "ts_ns": ts, "pts": i / 25, "width": 64, "height": 48,
                                 "channels": 3, "dtype": "uint8", "enc": "raw", "live": True, "key": False,
                                 "dts": None, "extradata": None})
                _v0_peek([head, payload])
            else:
                head = wire.pack(wire.FrameHeader(camera="door", seq=i, ts_ns=ts, pts=i / 25, width=64, height=48))
                wire.peek_frame([head, payload])
        out[label] = round((time.perf_counter() - started) / n * 1e6, 3)
    return out


# -- what CURVE costs a link between hosts ---------------------------------------------------

SHARED_CLIP = ROOT.parent / "shared" / "media" / "car-detection.mp4"  # a real street scene, 768x432
CURVE_SIZES = ((1920, 1080), (640, 360))
CURVE_ENCODINGS = ("raw", "lz4", "jpeg")
FRAME_HWM = 4  # as in part 1
RESULT_HWM = 1000  # the worker's towards the sink (classifier.worker.SINK_HWM)
N_DETECTIONS = 10


@dataclass(frozen=True)
class CurveKeys:
    """One run's keys, used as camwire uses them (this mirrors common/curve.py, not imported, so
    the bench measures plain pyzmq): the binding side is the CURVE server with its own key pair
    and a ZAP authenticator that admits only the client keys in ``authorized_dir``; the
    connecting side has its own key pair and pins the server's public key."""

    server_public: bytes
    server_secret: bytes
    client_secret_file: str  # the client's certificate with its secret key (zmq.auth format)
    authorized_dir: str  # the client's public certificate only


def make_curve_keys(tmp: Path) -> CurveKeys:
    server_public, server_secret = zmq.curve_keypair()
    (tmp / "client-keys").mkdir()
    public_file, secret_file = zmq.auth.create_certificates(str(tmp / "client-keys"), "sender")
    authorized = tmp / "authorized"
    authorized.mkdir()
    shutil.copy(public_file, authorized)
    return CurveKeys(server_public, server_secret, secret_file, str(authorized))


def realistic_frames(tmp: Path, n: int = 8) -> tuple[np.ndarray, str]:
    """``n`` BGR frames spread over a real clip (the shared street scene when present, else the
    built-in sample clip), at their own size, and which clip it was."""
    if SHARED_CLIP.exists():
        clip, what = SHARED_CLIP, f"{SHARED_CLIP.name} (shared media, real street scene)"
    else:
        clip = tmp / "sample-1080p.mp4"
        make_sample_clip(clip, seconds=4, fps=25, width=1920, height=1080, covered=None)
        what = "the built-in sample clip (camwire sample-clip: a flat synthetic scene that flatters LZ4 and JPEG)"
    with av.open(str(clip)) as container:
        decoded = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    step = max(1, len(decoded) // n)
    frames = np.stack(decoded[::step][:n])
    return frames, f"{what}, {frames.shape[2]}x{frames.shape[1]}, resized to each size"


def result_message(i: int) -> wire.Result:
    """A worker's result with ``N_DETECTIONS`` detections, as the sink receives it."""
    detections = [wire.Detection(label="person" if k % 2 else "car", confidence=0.5 + k / 40,
                                 box=(100.0 + 90 * k, 200.0, 180.0 + 90 * k, 420.5)) for k in range(N_DETECTIONS)]
    return wire.Result(camera="cam", seq=i, ts_ns=time.time_ns(), width=W, height=H, pts=i / 25, worker="w1",
                       detector="onnx", detections=detections, infer_ms=12.5)


def curve_sender(case: str, size: tuple[int, int], addr: str, keys: CurveKeys | None, frames_file: str,
                 seconds: float, progress) -> None:
    """Send ``case`` messages to ``addr`` as fast as the link takes them, encoding each frame;
    ``progress`` holds this process's CPU seconds and the messages sent, for the receiver."""
    width, height = size
    frames = np.load(frames_file) if case in CURVE_ENCODINGS else None
    # a result with a detection carries its frame's pixels for the sink's snapshots: LZ4 between
    # hosts, where CURVE is used (common.pixels.pack_pixels; raw on one host)
    snapshot = pixels.pack_pixels(np.load(frames_file)[0], "lz4")[0] if case == "result+snapshot" else b""
    every = 1 if frames is not None else 16  # how often to publish progress: cheap next to a frame
    deadline = time.monotonic() + seconds + 2.0  # outlive the receiver's window; it ends us
    with zmq.Context() as ctx, ctx.socket(zmq.PUSH) as sock:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDTIMEO, 200)  # never stuck in a send once the receiver is gone
        sock.setsockopt(zmq.SNDHWM, FRAME_HWM if frames is not None else RESULT_HWM)
        if keys is not None:
            public, secret = zmq.auth.load_certificate(keys.client_secret_file)
            sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
            sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
            sock.setsockopt(zmq.CURVE_SERVERKEY, keys.server_public)
        sock.connect(addr)
        i = 0
        while time.monotonic() < deadline:
            if frames is not None:
                header = wire.FrameHeader(camera="cam", seq=i, ts_ns=time.time_ns(), width=width, height=height,
                                          enc=case)
                parts = pixels.encode_frame(header, frames[i % len(frames)], jpeg_quality=90)
            else:
                parts = [wire.pack(result_message(i))] + ([snapshot] if snapshot else [])
            try:
                sock.send_multipart(parts, copy=False)
            except zmq.Again:
                continue
            i += 1
            if i % every == 0:
                progress[0], progress[1] = time.process_time(), i


def curve_receive(case: str, size: tuple[int, int], keys: CurveKeys | None, frames_file: str,
                  seconds: float) -> dict[str, float]:
    """Messages and MB per second received and decoded over ``seconds`` after 1 s of warm-up,
    and the CPU milliseconds per message of each side (every thread: ZeroMQ's I/O threads are
    where CURVE encrypts and decrypts)."""
    width, height = size
    ctx = zmq.Context()
    auth = None
    if keys is not None:
        auth = ThreadAuthenticator(ctx)
        auth.start()
        auth.configure_curve(domain="*", location=keys.authorized_dir)
    sock = ctx.socket(zmq.PULL)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 20_000)  # a sender that died or a refused handshake fails the run
    sock.setsockopt(zmq.RCVHWM, FRAME_HWM if case in CURVE_ENCODINGS else RESULT_HWM)
    if keys is not None:
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_SECRETKEY, keys.server_secret)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.server_public)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    spawn = mp.get_context("spawn")
    progress = spawn.RawArray("d", 2)  # the sender's CPU seconds and messages sent
    proc = spawn.Process(target=curve_sender,
                         args=(case, size, f"tcp://127.0.0.1:{port}", keys, frames_file, seconds + 1.0, progress))
    proc.start()
    try:
        try:
            first = sock.recv_multipart(copy=False)
        except zmq.Again:
            raise RuntimeError(f"{case}: nothing received in 20 s (sender exit code {proc.exitcode})") from None
        if keys is not None:  # the authenticator admitted exactly our client: CURVE is really on
            assert sock.getsockopt(zmq.MECHANISM) == zmq.CURVE
            assert first[0].get("User-Id") == zmq.auth.load_certificate(keys.client_secret_file)[0].decode()
        warm_until = time.monotonic() + 1.0
        count = nbytes = 0
        start = None
        while True:
            parts = [p.buffer for p in sock.recv_multipart(copy=False)]  # as the worker reads them
            if case in CURVE_ENCODINGS:
                assert pixels.decode_frame(parts)[1].shape == (height, width, 3)
            else:
                assert len(wire.unpack(parts[0]).detections) == N_DETECTIONS
            now = time.monotonic()
            if now < warm_until:
                continue
            if start is None:  # this message only opens the window
                start, cpu0, (sender_cpu0, sent0) = now, time.process_time(), tuple(progress)
                continue
            count += 1
            nbytes += sum(p.nbytes for p in parts)
            if now - start >= seconds:
                sender_cpu, sent = tuple(progress)
                return {"per_s": count / (now - start), "MB_s": nbytes / (now - start) / 1e6,
                        "sender_cpu_ms": (sender_cpu - sender_cpu0) / max(sent - sent0, 1) * 1e3,
                        "receiver_cpu_ms": (time.process_time() - cpu0) / count * 1e3}
    finally:
        proc.terminate()
        proc.join(timeout=10)
        sock.close()
        if auth is not None:
            auth.stop()
        ctx.term()


def curve_cost(tmp: Path, seconds: float, rounds: int) -> dict:
    """Every case with CURVE off and on back to back, ``rounds`` times (the order swapped each
    round); of each figure the best is kept (most messages, least CPU), the least disturbed by
    whatever else the machine runs. The ratios on / off are what count."""
    keys = make_curve_keys(tmp)
    source, source_text = realistic_frames(tmp)
    print(f"curve frames: {source_text}; CPU ms per message: sender + receiver, all threads", flush=True)
    out: dict = {"frames": source_text, "rounds": rounds, "cases": {}}
    cases = [(f"{w}x{h} {enc}", enc, (w, h)) for w, h in CURVE_SIZES for enc in CURVE_ENCODINGS]
    cases += [(f"result ({N_DETECTIONS} detections)", "result", (W, H)),
              (f"result + {W}x{H} pixels (LZ4)", "result+snapshot", (W, H))]
    for label, case, (w, h) in cases:
        frames_file = tmp / f"frames-{w}x{h}.npy"
        if not frames_file.exists():
            interp = cv2.INTER_AREA if w < source.shape[2] else cv2.INTER_LINEAR
            np.save(frames_file, np.stack([cv2.resize(f, (w, h), interpolation=interp) for f in source]))
        runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
        for r in range(rounds):
            for on in ((False, True) if r % 2 == 0 else (True, False)):
                runs["on" if on else "off"].append(
                    curve_receive(case, (w, h), keys if on else None, str(frames_file), seconds))
        row: dict = {}
        for side, got in runs.items():
            row[side] = {k: round((max if k in ("per_s", "MB_s") else min)(g[k] for g in got), 3)
                         for k in got[0]}
        for side in ("off", "on"):
            row[side]["cpu_ms"] = round(row[side]["sender_cpu_ms"] + row[side]["receiver_cpu_ms"], 3)
        row["rate on/off"] = round(row["on"]["per_s"] / row["off"]["per_s"], 2)
        row["cpu on/off"] = round(row["on"]["cpu_ms"] / row["off"]["cpu_ms"], 2)
        out["cases"][label] = row
        unit = "frames/s" if case in CURVE_ENCODINGS else "msgs/s"
        print(f"curve {label:34} " + "   ".join(
            f"{side} {row[side]['per_s']:8.0f} {unit} {row[side]['MB_s']:7.1f} MB/s {row[side]['cpu_ms']:7.3f} CPU ms"
            for side in ("off", "on")) + f"   on/off: rate {row['rate on/off']:4.2f}x CPU {row['cpu on/off']:4.2f}x",
            flush=True)
    return out


# -- shared memory against sockets, through a relay as the ventilator -------------------------

SHM_SLOTS = 8
SHM_CASES = ("tcp", "ipc", "shm", "shm+copy")  # how the pixels travel; "memcpy" is measured apart
SHM_HEADERS = "tcp"  # the transport a shared-memory frame's header takes (the default deployment's)
SHM_WAIT_S = 0.0002  # the sender's pause when every slot is held


def _exit_on_sigterm() -> None:
    """A terminated child still runs its finally (a ring is unlinked, not left in /dev/shm)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))


def _send_until(sock: zmq.Socket, parts: list, stop) -> bool:
    """Send ``parts`` once (waiting for room as long as it takes), unless ``stop`` comes first."""
    while not stop.is_set():
        try:
            sock.send_multipart(parts, copy=False)
            return True
        except zmq.Again:
            continue
    return False


def shm_sender(case: str, addr: str, stop, stats) -> None:
    """camwire frames to ``addr`` until ``stop``: pixels inline (tcp, ipc) or put in a ring with
    only the header sent (shm). ``stats``: ring-full waits and this process's CPU seconds, for
    the receiver."""
    _exit_on_sigterm()
    frames = [test_frame(i) for i in range(4)]
    ring = shm.Ring("bench", SHM_SLOTS, frames[0].nbytes) if case.startswith("shm") else None
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.SNDHWM, FRAME_HWM)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDTIMEO, 100)  # never stuck in a send once the run is over
    sock.connect(addr)
    try:
        i = 0
        while not stop.is_set():
            frame = frames[i % len(frames)]
            ref = None
            if ring is not None:
                ref = ring.put(frame)
                if ref is None:  # the ring's back-pressure: every slot is still held downstream
                    stats[0] += 1
                    time.sleep(SHM_WAIT_S)
                    continue
            header = wire.FrameHeader(camera="cam", seq=i, ts_ns=time.time_ns(), width=W, height=H, shm=ref)
            parts = pixels.encode_frame(header, frame) if ref is None else wire.frame_parts(header, b"")
            if not _send_until(sock, parts, stop):
                break
            i += 1
            stats[1] = time.process_time()
    finally:
        if ring is not None:
            ring.close()
        sock.close()
        ctx.term()


def shm_relay(front: str, back: str, stop, stats) -> None:
    """The ventilator's part in the path: PULL, check the header (``peek_frame``), PUSH on, the
    frames' buffers forwarded as they came (no copy). ``stats``: this process's CPU seconds."""
    _exit_on_sigterm()
    ctx = zmq.Context()
    pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    for sock, opt in ((pull, zmq.RCVHWM), (push, zmq.SNDHWM)):
        sock.setsockopt(opt, FRAME_HWM)
        sock.setsockopt(zmq.LINGER, 0)
    push.setsockopt(zmq.SNDTIMEO, 100)
    pull.bind(front)
    push.bind(back)
    try:
        while not stop.is_set():
            if not pull.poll(100):
                continue
            parts = pull.recv_multipart(copy=False)
            wire.peek_frame([p.buffer for p in parts])
            _send_until(push, parts, stop)
            stats[0] = time.process_time()
    finally:
        pull.close()
        push.close()
        ctx.term()


def _addresses(case: str, tmp: Path) -> tuple[str, str]:
    if case == "ipc":
        return f"ipc://{tmp}/shm-front", f"ipc://{tmp}/shm-back"
    ports = []
    with zmq.Context() as c:
        for _ in range(2):
            with c.socket(zmq.PULL) as s:
                ports.append(s.bind_to_random_port("tcp://127.0.0.1"))
    return tuple(f"tcp://127.0.0.1:{p}" for p in ports)


def shm_receive(case: str, tmp: Path, seconds: float) -> dict[str, float]:
    """Frames per second the receiver has in hand (a numpy image, touched as a detector would
    start on it: a sum over every 64th row and column) over ``seconds`` after 1 s of warm-up; also
    the bytes per frame that crossed the sockets, the CPU milliseconds per frame of the three
    processes together (every thread: ZeroMQ's I/O threads copy the inline pixels), ring-full
    waits and frames thrown away."""
    front, back = _addresses(case, tmp)
    spawn = mp.get_context("spawn")
    stop = spawn.Event()
    stats = spawn.RawArray("d", 2)  # the sender's ring-full waits and CPU seconds
    relay_stats = spawn.RawArray("d", 1)  # the relay's CPU seconds
    relay = spawn.Process(target=shm_relay, args=(front, back, stop, relay_stats))
    sender = spawn.Process(target=shm_sender, args=(case, front, stop, stats))
    readers = shm.Readers()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    sock.setsockopt(zmq.RCVHWM, FRAME_HWM)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 20_000)  # a child that died fails the run
    relay.start()
    sender.start()
    sock.connect(back)
    try:
        warm_until = start = None
        count = nbytes = thrown = 0
        while True:
            try:
                parts = [p.buffer for p in sock.recv_multipart(copy=False)]
            except zmq.Again:
                raise RuntimeError(f"shm {case}: nothing for 20 s (sender {sender.exitcode}, "
                                   f"relay {relay.exitcode})") from None
            header = wire.unpack(parts[0])
            ref = header.shm
            if ref is None:
                image = pixels.decode_frame(parts)[1]
            else:
                image = np.frombuffer(readers.view(ref, header.raw_size), np.uint8).reshape(header.shape)
                if case == "shm+copy":
                    image = image.copy()  # then the slot goes back at once: the image is the receiver's
            int(image[::64, ::64].sum())
            if ref is not None:
                if not readers.valid(ref):  # the slot was reused while read: never with the lease
                    thrown += 1
                readers.release(ref)
            del image
            now = time.monotonic()
            if warm_until is None:
                warm_until = now + 1.0
            if now < warm_until:
                continue
            if start is None:  # this frame only opens the window
                start, full0, cpu0 = now, stats[0], stats[1] + relay_stats[0] + time.process_time()
                continue
            count += 1
            nbytes += sum(p.nbytes for p in parts)
            if now - start >= seconds:
                cpu = stats[1] + relay_stats[0] + time.process_time() - cpu0
                return {"fps": count / (now - start), "wire_bytes": nbytes / count, "cpu_ms": cpu / count * 1e3,
                        "ring_full": int(stats[0] - full0), "thrown_away": thrown}
    finally:
        stop.set()
        for proc in (sender, relay):
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=10)
        sock.close()
        ctx.term()
        readers.close()


def memcpy_rate(seconds: float) -> dict[str, float]:
    """Frames per second one process copies with ``np.copyto``, and CPU ms per frame: the same
    frames into 8 frame-sized places in turn, as the sender copies each into the next slot (the
    ceiling)."""
    frames = [test_frame(i) for i in range(4)]
    places = np.empty((SHM_SLOTS, H, W, 3), np.uint8)
    places[:] = 1  # touched: no first-touch page faults in the window
    count = 0
    start, cpu0 = time.monotonic(), time.process_time()
    while (elapsed := time.monotonic() - start) < seconds:
        np.copyto(places[count % SHM_SLOTS], frames[count % len(frames)])
        count += 1
    return {"fps": count / elapsed, "wire_bytes": 0, "cpu_ms": (time.process_time() - cpu0) / count * 1e3,
            "ring_full": 0, "thrown_away": 0}


def shm_bench(tmp: Path, seconds: float, rounds: int) -> dict:
    """Every case and the memcpy ceiling, ``rounds`` times, the order turned each round; of each
    case the best round is kept (the least disturbed by whatever else the machine runs)."""
    if reclaimed := shm.reclaim():
        print(f"shm: reclaimed {len(reclaimed)} segment(s) of a run that died", flush=True)
    cases = (*SHM_CASES, "memcpy")
    runs: dict[str, list[dict]] = {case: [] for case in cases}
    for r in range(rounds):
        order = cases[r % len(cases):] + cases[:r % len(cases)]
        for case in order:
            got = memcpy_rate(seconds) if case == "memcpy" else shm_receive(case, tmp, seconds)
            runs[case].append(got)
            print(f"shm round {r + 1} {case:9} {got['fps']:8.1f} frames/s  {got['cpu_ms']:6.2f} CPU ms/frame  "
                  f"{got['wire_bytes']:8.0f} B/frame on the wire  ring full {got['ring_full']}  "
                  f"thrown away {got['thrown_away']}", flush=True)
    best = {case: max(got, key=lambda g: g["fps"]) for case, got in runs.items()}
    least_cpu = {case: min(g["cpu_ms"] for g in got) for case, got in runs.items()}
    out: dict = {"rounds": rounds, "seconds": seconds, "headers_over": SHM_HEADERS, "slots": SHM_SLOTS,
                 "touch": "sum of image[::64, ::64] (shm+copy: a full copy out of the slot first)",
                 "best": {case: {k: round(v, 1) for k, v in got.items()} for case, got in best.items()},
                 "least_cpu_ms": {case: round(v, 3) for case, v in least_cpu.items()},
                 "every_round_fps": {case: [round(g["fps"], 1) for g in got] for case, got in runs.items()}}
    fps = {case: got["fps"] for case, got in best.items()}
    out["ratios"] = {"shm / tcp": round(fps["shm"] / fps["tcp"], 2), "shm / ipc": round(fps["shm"] / fps["ipc"], 2),
                     "shm / memcpy": round(fps["shm"] / fps["memcpy"], 2),
                     "shm+copy / tcp": round(fps["shm+copy"] / fps["tcp"], 2),
                     "shm+copy / memcpy": round(fps["shm+copy"] / fps["memcpy"], 2)}
    # the same ratios within each round (its cases ran back to back): less at the mercy of one lucky round
    out["per_round"] = [{"shm / tcp": round(runs["shm"][r]["fps"] / runs["tcp"][r]["fps"], 2),
                         "shm / memcpy": round(runs["shm"][r]["fps"] / runs["memcpy"][r]["fps"], 2)}
                        for r in range(rounds)]
    for r, ratios in enumerate(out["per_round"]):
        print(f"shm round {r + 1} ratios: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()), flush=True)
    for case in cases:
        print(f"shm best {case:9} {fps[case]:8.1f} frames/s  least CPU {least_cpu[case]:6.2f} ms/frame  "
              f"{best[case]['wire_bytes']:8.0f} B/frame on the wire", flush=True)
    for k, v in out["ratios"].items():
        print(f"shm {k:18} {v:6.2f}x", flush=True)
    return out


PARTS = ("framing", "transport", "decode", "curve", "shm")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 allow_abbrev=False)
    ap.add_argument("--seconds", type=float, default=3.0, help="measuring window per transport case")
    ap.add_argument("--clip-seconds", type=float, default=20.0)
    ap.add_argument("--only", choices=PARTS, action="append",
                    help="run only this part (1 framing, 2 transport, 3 decode, 4 curve, 5 shm; repeatable); "
                         "default: all")
    ap.add_argument("--rounds", type=int, default=1,
                    help="curve: off/on pairs per case; shm: rounds of every case; the best kept")
    ap.add_argument("--out", help="write the figures as JSON here too")
    args = ap.parse_args()
    parts = args.only or PARTS
    results: dict = {"machine": f"{platform.processor() or platform.machine()}, {mp.cpu_count()} cores"}
    ratios: dict[str, float] = {}
    if "framing" in parts:
        results["framing_us"] = framing_cost()
        for label, us in results["framing_us"].items():
            print(f"framing {label:30} {us:7.3f} us/frame", flush=True)
        ratios["framing before / after"] = round(results["framing_us"]["before: msgpack map + checks"]
                                                 / results["framing_us"]["after: msgspec Structs"], 2)
    with tempfile.TemporaryDirectory() as tmp:
        if "transport" in parts:
            results["transport_fps"] = {}
            for transport in ("tcp", "ipc"):
                for method in METHODS:
                    if transport == "tcp":
                        with zmq.Context() as c, c.socket(zmq.PULL) as s:
                            port = s.bind_to_random_port("tcp://127.0.0.1")
                        addr = f"tcp://127.0.0.1:{port}"
                    else:
                        addr = f"ipc://{tmp}/{method}"
                    fps = receive(method, addr, args.seconds)
                    results["transport_fps"].setdefault(transport, {})[method] = round(fps, 1)
                    print(f"{transport:4} {method:12} {fps:8.1f} frames/s", flush=True)
            tcp = results["transport_fps"]["tcp"]
            ratios["tcp camwire / jpeg_base64"] = round(tcp["camwire"] / tcp["jpeg_base64"], 2)
            ratios["tcp camwire / pickle"] = round(tcp["camwire"] / tcp["pickle"], 2)
            ratios["tcp camwire / imagezmq"] = round(tcp["camwire"] / tcp["imagezmq"], 2)
        if "decode" in parts:
            results["decode"] = dec = {}
            clip = Path(tmp) / "bench-1080p25.mp4"
            make_sample_clip(clip, seconds=args.clip_seconds, fps=25, width=W, height=H, gop=50, covered=None)
            total = None  # source frames in the clip: what full decode decodes
            for label, sampling in (("every 1 (full decode)", Sampling()), ("every 50", Sampling(every=50)),
                                    ("keyframes", Sampling(keyframes=True))):
                elapsed, decoded, sent = extractor_run(clip, sampling)
                total = total or decoded
                rate = total / elapsed
                dec[label] = {"source_fps": round(rate, 1), "decoded": decoded, "sent": sent}
                print(f"{label:22} {rate:8.1f} source frames/s  (decoded {decoded}, sent {sent})", flush=True)
            ratios["keyframes / full decode"] = round(dec["keyframes"]["source_fps"]
                                                      / dec["every 1 (full decode)"]["source_fps"], 2)
        if "curve" in parts:
            results["curve"] = curve_cost(Path(tmp), args.seconds, args.rounds)  # its ratios are in its rows
        if "shm" in parts:
            results["shm"] = shm_bench(Path(tmp), args.seconds, args.rounds)  # its ratios are in it
    results["ratios"] = ratios
    for k, v in ratios.items():
        print(f"{k:28} {v:6.2f}x")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
