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

Run: ``.venv/bin/python bench/transport.py [--seconds S] [--out FILE]`` (``make bench``).
Pickle appears here only as the thing to compare against; camwire never pickles.
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing as mp
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import msgpack
import numpy as np
import zmq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from camwire.sample import make_sample_clip  # noqa: E402
from common import pixels, wire  # noqa: E402
from common.counters import Counters  # noqa: E402
from common.sampling import Sampling  # noqa: E402
from extractor.camera import CameraCounters, CameraLoop, CameraSpec  # noqa: E402

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0, help="measuring window per transport case")
    ap.add_argument("--clip-seconds", type=float, default=20.0)
    ap.add_argument("--out", help="write the figures as JSON here too")
    args = ap.parse_args()
    results: dict = {"machine": f"{platform.processor() or platform.machine()}, {mp.cpu_count()} cores",
                     "transport_fps": {}, "decode": {}}
    results["framing_us"] = framing_cost()
    for label, us in results["framing_us"].items():
        print(f"framing {label:30} {us:7.3f} us/frame", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
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
        clip = Path(tmp) / "bench-1080p25.mp4"
        make_sample_clip(clip, seconds=args.clip_seconds, fps=25, width=W, height=H, gop=50, covered=None)
        total = None  # source frames in the clip: what full decode decodes
        for label, sampling in (("every 1 (full decode)", Sampling()), ("every 50", Sampling(every=50)),
                                ("keyframes", Sampling(keyframes=True))):
            elapsed, decoded, sent = extractor_run(clip, sampling)
            total = total or decoded
            rate = total / elapsed
            results["decode"][label] = {"source_fps": round(rate, 1), "decoded": decoded, "sent": sent}
            print(f"{label:22} {rate:8.1f} source frames/s  (decoded {decoded}, sent {sent})", flush=True)
    tcp = results["transport_fps"]["tcp"]
    dec = results["decode"]
    results["ratios"] = {
        "tcp camwire / jpeg_base64": round(tcp["camwire"] / tcp["jpeg_base64"], 2),
        "tcp camwire / pickle": round(tcp["camwire"] / tcp["pickle"], 2),
        "tcp camwire / imagezmq": round(tcp["camwire"] / tcp["imagezmq"], 2),
        "framing before / after": round(results["framing_us"]["before: msgpack map + checks"]
                                        / results["framing_us"]["after: msgspec Structs"], 2),
        "keyframes / full decode": round(dec["keyframes"]["source_fps"] / dec["every 1 (full decode)"]["source_fps"], 2),
    }
    for k, v in results["ratios"].items():
        print(f"{k:28} {v:6.2f}x")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
