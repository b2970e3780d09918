"""The sink encodes a JPEG only for what it keeps: a result brings its frame's pixels (an LZ4 block,
common.pixels.Pixels), checked on arrival without decompressing them; a snapshot or an object's
frame is encoded when written, timed and counted (``snapshot_pixels/received`` against
``.../encoded``); the box is drawn scaled to pixels smaller than the source."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from prometheus_client import REGISTRY

from camwire.common import wire
from camwire.common.counters import Counters
from camwire.common.logs import RepeatLimiter
from camwire.common.pixels import Pixels, decode_jpeg, lz4_bound, pack_pixels
from camwire.sink.store.disk import WriteErrors
from camwire.sink.store.frames import Frames
from camwire.sink.store.snapshots import SnapshotStore
from urllib.error import URLError

from conftest import free_port, scrape, value

SOURCE = (640, 360)  # the camera's pixels, which boxes are in
RESIZED = (320, 180)  # the pixels the detector saw, and the result brought
BOX = (200.0, 100.0, 400.0, 300.0)  # in SOURCE: (100, 50, 200, 150) in RESIZED


class _Log:
    def __getattr__(self, _name):
        return lambda *a, **k: None


def errors(counters: Counters) -> WriteErrors:
    return WriteErrors(counters, RepeatLimiter(_Log()))


def grey(size: tuple[int, int] = RESIZED, level: int = 90) -> np.ndarray:
    return np.full((size[1], size[0], 3), level, np.uint8)


def pixels_of(image: np.ndarray) -> Pixels:
    data, shape = pack_pixels(image)
    return Pixels.of(shape, data)


def encodes(what: str) -> float:
    return REGISTRY.get_sample_value("camwire_sink_snapshot_encode_seconds_count", {"what": what}) or 0.0


def event(i: int = 0, kind: str = "object") -> wire.Event:
    return wire.Event(id=f"20261121T051900.00000000{i}Z-yard-{kind}", type=kind, camera="yard",
                      ts=1_795_000_000.0 + i)


# -- the pixels on arrival, and when decoded -----------------------------------------------------

def test_pixels_that_cannot_be_what_they_claim_are_refused_before_decompressing() -> None:
    data, shape = pack_pixels(grey())
    assert shape == (320, 180, 3) and Pixels.of(shape, data).decode().shape == (180, 320, 3)
    refused = [(None, data),  # a part with no image field
               (shape, None),  # an image field with no part
               ((16384, 16384, 3), data),  # past the largest frame a daemon takes
               ((320, 180, 3), b"\0" * (320 * 180 * 3 // 256 - 1)),  # too short to hold that much
               ((8, 8, 3), b"\0" * (lz4_bound(192) + 1))]  # longer than any LZ4 block of it
    for image, part in refused:
        with pytest.raises(wire.MalformedMessage) as err:
            Pixels.of(image, part)
        assert err.value.reason == "bad_pixels"


def test_an_lz4_block_of_another_size_is_refused_when_decoded() -> None:
    data, _ = pack_pixels(np.random.default_rng(0).integers(0, 255, (180, 320, 3), dtype=np.uint8))
    for claimed in ((320, 179, 3), (320, 181, 3), (320, 180, 1)):  # one row short, one too many, grey
        with pytest.raises(wire.MalformedMessage) as err:
            Pixels.of(claimed, data).decode()
        assert err.value.reason == "bad_pixels"
    with pytest.raises(wire.MalformedMessage):
        Pixels.of((320, 180, 3), b"\xff" * len(data)).decode()  # not LZ4 at all


# -- snapshots and frames: encoded when written ---------------------------------------------------

def test_a_snapshot_of_resized_pixels_has_its_box_drawn_scaled_and_its_encoding_timed(tmp_path: Path) -> None:
    counters = Counters()
    store = SnapshotStore(tmp_path / "snapshots", counters, errors(counters), min_free=0.0)
    before = encodes("snapshot")
    named = store.save(event(1), pixels_of(grey()), SOURCE, BOX, None)  # no label: green is the box alone
    assert named is not None and encodes("snapshot") == before + 1
    assert counters.get("snapshot_pixels", "encoded") == 1
    jpg = tmp_path / named
    drawn = decode_jpeg(jpg.read_bytes(), size=RESIZED)
    clean = decode_jpeg(jpg.with_name(jpg.name.replace(".jpg", ".clean.jpg")).read_bytes(), size=RESIZED)
    assert drawn is not None and clean is not None  # the pixels' own size, not the source's
    green = (drawn[..., 1].astype(int) - drawn[..., 2]) > 100
    rows, cols = np.nonzero(green)
    # the box scaled to the pixels (100, 50)-(200, 150), not drawn where the source's numbers say
    assert [cols.min(), rows.min(), cols.max(), rows.max()] == pytest.approx([100, 50, 200, 150], abs=2)
    assert abs(int(clean[90, 160, 0]) - 90) <= 2  # the clean copy: the frame as it came
    thumb = jpg.with_name(jpg.name.replace(".jpg", ".thumb.jpg"))
    assert thumb.stat().st_size > 0
    plain = store.save(event(2, "camera_covered"), pixels_of(grey()), SOURCE)  # no box: one JPEG
    assert plain is not None and decode_jpeg((tmp_path / plain).read_bytes(), size=RESIZED) is not None
    assert counters.get("snapshot_pixels", "encoded") == 2


def test_pixels_that_do_not_decode_write_no_snapshot_and_are_counted(tmp_path: Path) -> None:
    counters = Counters()
    store = SnapshotStore(tmp_path / "snapshots", counters, errors(counters), min_free=0.0)
    data, _ = pack_pixels(grey())
    assert store.save(event(1), Pixels.of((320, 179, 3), data), SOURCE, BOX, "person") is None
    assert counters.get("malformed", "bad_pixels") == 1 and counters.get("snapshot_pixels", "encoded") == 0
    assert not any((tmp_path / "snapshots").rglob("*.jpg"))
    low = SnapshotStore(tmp_path / "low", counters, errors(counters), min_free=1.0)  # never that much free
    before = encodes("snapshot")
    assert low.save(event(3), pixels_of(grey()), SOURCE) is None and encodes("snapshot") == before  # not even encoded


def test_a_frame_two_objects_share_is_encoded_once(tmp_path: Path) -> None:
    from types import SimpleNamespace

    counters = Counters()
    frames = Frames(tmp_path / "frames", counters, errors(counters), min_free=0.0)
    walker, runner = SimpleNamespace(object_id="obj-1"), SimpleNamespace(object_id="obj-2")
    shared = pixels_of(grey(level=60))
    before = encodes("frame")
    frames.observe([(walker, 5, shared), (runner, 5, shared)], [])
    assert counters.get("snapshot_pixels", "encoded") == 1 and encodes("frame") == before + 1
    for name in ("obj-1", "obj-2"):
        got = decode_jpeg((tmp_path / "frames" / name / "5.jpg").read_bytes(), size=RESIZED)
        assert abs(int(got[0, 0, 0]) - 60) <= 2
    data, _ = pack_pixels(grey())
    frames.observe([(walker, 6, Pixels.of((320, 179, 3), data))], [])  # not what it claims: not written
    assert counters.get("malformed", "bad_pixels") == 1 and not (tmp_path / "frames" / "obj-1" / "6.jpg").exists()


# -- the sink as a process ------------------------------------------------------------------------

def wait(predicate, timeout: float = 60.0, what: str = "a state"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if got := predicate():
            return got
        time.sleep(0.1)  # files and metrics have no change notification to await
    raise AssertionError(f"never came: {what}")


def results(port: int) -> float | None:
    """The sink's results counted for the camera; None while it does not serve its metrics yet."""
    try:
        return value(scrape(port), "camwire_sink_results_total", camera="lane")
    except URLError:
        return None


def test_the_sink_encodes_only_the_snapshots_it_keeps(daemons, zctx, tmp_path: Path) -> None:
    bind, port = f"tcp://127.0.0.1:{free_port()}", free_port()
    events = tmp_path / "events.jsonl"
    daemons.start("sink", "sink", "--bind", bind, "--events", str(events), "--data-dir", str(tmp_path / "data"),
                  "--metrics-port", str(port))
    push = zctx.socket(zmq.PUSH)
    push.linger = 5000
    push.connect(bind)
    rng = np.random.default_rng(5)
    n = 12
    # one person walking, seen in every frame, surer than the rules' default threshold (0.7, a median) so
    # it starts: a worker's results for a resized camera
    for seq in range(n):
        data, image = pack_pixels(rng.integers(0, 255, (RESIZED[1], RESIZED[0], 3), dtype=np.uint8))
        x = 100.0 + 4 * seq
        r = wire.Result(camera="lane", seq=seq, ts_ns=time.time_ns(), width=SOURCE[0], height=SOURCE[1], prev=seq - 1,
                        worker="w1", detector="d", image=image,
                        detections=[wire.Detection("person", 0.75 + seq / 100, (x, 100.0, x + 80.0, 300.0))])
        push.send_multipart([wire.pack(r), data])
    # malformed pixels: the results still count, without them
    stray = wire.Result(camera="lane", seq=n, ts_ns=time.time_ns(), width=SOURCE[0], height=SOURCE[1], prev=n - 1)
    push.send_multipart([wire.pack(stray), b"pixels no image field declares"])
    huge = wire.Result(camera="lane", seq=n + 1, ts_ns=time.time_ns(), width=SOURCE[0], height=SOURCE[1], prev=n,
                       image=(16384, 16384, 3))
    push.send_multipart([wire.pack(huge), b"\0" * 100])
    wait(lambda: results(port) == n + 2, what="every result")
    metrics = scrape(port)
    assert 0 < value(metrics, "camwire_sink_capture_to_result_seconds", camera="lane") < 60
    assert value(metrics, "camwire_sink_snapshot_encode_seconds_count", what="snapshot") >= 1
    push.close()
    assert daemons.stop("sink") == 0
    stats = daemons.stats("sink")
    assert stats["malformed"] == {"bad_pixels": 2}
    assert stats["snapshot_pixels"]["received"] == n
    # a start and an end at most, each with its best frame: a few of the twelve encoded, not all
    assert 1 <= stats["snapshot_pixels"]["encoded"] <= 3 and stats["snapshots"]["written"] == stats[
        "snapshot_pixels"]["encoded"]
    objects = [json.loads(line) for line in events.read_text().splitlines() if '"object"' in line]
    shots = [e["snapshot"] for e in objects if e["snapshot"]]
    assert shots and all(decode_jpeg((tmp_path / "data" / s).read_bytes(), size=RESIZED) is not None for s in shots)
    assert [e["box"] for e in objects][-1] == [144.0, 100.0, 224.0, 300.0]  # events speak in source pixels
