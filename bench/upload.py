"""Snapshots per second to object storage: one at a time against in parallel, in one run against
one local S3 protocol server (moto's server mode, tests/s3_server.py: a stand-in for AWS, MinIO or
Ceph, over loopback, so the figures are of camwire's side and the protocol, not of a network).

The recipe this answers uploaded 50 OpenCV frames one by one (1.05 s each), then in parallel. Here:

1. ``--n`` snapshots (a 640x480 frame as a JPEG, as the sink writes them), one ``put_object`` after
   another on one client;
2. the same, from a pool of ``--workers`` threads sharing one client (common.upload.make_client:
   ``max_pool_connections = workers``);
3. the recipe's 50 frames in parallel the same way: its wall time (the recipe wants under 1 s);
4. the whole path, common.upload.Uploader: ``--n`` events queued in SQLite, each its snapshot
   and its manifest, until every ``uploaded`` event is out.

Run: ``.venv/bin/python bench/upload.py [--n 200] [--workers 8]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from camwire.sink.store.disk import WriteErrors  # noqa: E402
from camwire.sink.store.snapshots import SnapshotStore  # noqa: E402
from camwire.common import wire  # noqa: E402
from camwire.common.counters import Counters  # noqa: E402
from camwire.common.logs import RepeatLimiter  # noqa: E402
from camwire.common.pixels import encode_jpeg  # noqa: E402
from camwire.common.upload import UploadConfig, Uploader, make_client, snapshot_parts  # noqa: E402
from s3_server import ACCESS_KEY, SECRET_KEY, S3Server  # noqa: E402

BUCKET = "camwire-bench"


class _Quiet:
    def bind(self, **_kw):
        return self

    def __getattr__(self, _level):
        return lambda *_a, **_kw: None


def frame_jpeg(seed: int) -> bytes:
    """A 640x480 frame with some texture (a flat one compresses to nothing)."""
    rng = np.random.default_rng(seed)
    img = np.repeat(np.repeat(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8), 8, 0), 8, 1)
    return encode_jpeg(img)


def put_all(client, jpegs: list[bytes], tag: str, workers: int) -> float:
    """Seconds to PUT every JPEG, ``workers`` at a time (1: one after another)."""
    def put(i: int) -> None:
        client.put_object(Bucket=BUCKET, Key=f"{tag}/{i:05d}.jpg", Body=jpegs[i], ContentType="image/jpeg")

    t0 = time.perf_counter()
    if workers == 1:
        for i in range(len(jpegs)):
            put(i)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(put, range(len(jpegs))))
    return time.perf_counter() - t0


def whole_path(cfg: UploadConfig, n: int, jpeg: bytes, tmp: Path) -> float:
    """Seconds from queueing ``n`` events (snapshots already on disk) to the last ``uploaded`` event."""
    counters = Counters()
    store = SnapshotStore(tmp / "data" / "snapshots", counters, WriteErrors(counters, RepeatLimiter(_Quiet())))
    events = []
    now = time.time()
    for i in range(n):
        ev = wire.Event(id=f"bench-{i:05d}", type="camera_covered", camera="bench", ts=now, seq=i)
        events.append(msgspec.structs.replace(ev, snapshot=store.save(ev, jpeg, (640, 480))))
    up = Uploader(cfg, tmp / "data", counters, _Quiet())
    try:
        t0 = time.perf_counter()
        for ev in events:
            up.enqueue(ev, msgspec.json.encode(ev), snapshot_parts(tmp / "data", ev))
        told = 0
        deadline = time.monotonic() + 300
        while told < n and time.monotonic() < deadline:
            got = up.take()
            told += len(got)
            if not got:
                time.sleep(0.005)
        if told < n:
            raise SystemExit(f"only {told} of {n} uploaded events came")
        return time.perf_counter() - t0
    finally:
        up.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--n", type=int, default=200, help="snapshots in each of runs 1, 2 and 4")
    ap.add_argument("--workers", type=int, default=8)
    args = ap.parse_args()
    jpegs = [frame_jpeg(i) for i in range(args.n)]
    print(f"a 640x480 JPEG: {len(jpegs[0]) / 1024:.0f} KiB; n={args.n}, workers={args.workers}")
    with tempfile.TemporaryDirectory() as tmp, S3Server(Path(tmp) / "moto.log") as server:
        cfg = UploadConfig(server.endpoint, BUCKET, "", ACCESS_KEY, SECRET_KEY, workers=args.workers)
        client = make_client(cfg)
        client.create_bucket(Bucket=BUCKET)
        put_all(client, jpegs[:10], "warm", args.workers)  # connections opened, moto's first-request costs paid
        one = put_all(client, jpegs, "one", 1)
        par = put_all(client, jpegs, "par", args.workers)
        fifty = put_all(client, jpegs[:50], "fifty", args.workers)
        path = whole_path(cfg, args.n, jpegs[0], Path(tmp))
    print(f"one at a time : {args.n / one:8.1f} snapshots/s ({one:.2f} s)")
    print(f"in parallel   : {args.n / par:8.1f} snapshots/s ({par:.2f} s), {one / par:.1f}x")
    print(f"recipe's 50 frames in parallel: {fifty:.3f} s ({'under' if fifty < 1.0 else 'NOT under'} 1 s)")
    print(f"through the Uploader (SQLite queue, snapshot + manifest, uploaded event): "
          f"{args.n / path:.1f} events/s ({path:.2f} s for {args.n})")


if __name__ == "__main__":
    main()
