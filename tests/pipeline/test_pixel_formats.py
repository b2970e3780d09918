"""Frames in the pixel format a camera names (common.wire.PIXEL_FORMATS), resized once for
detection, with real daemons on the shipped clip (camwire/media, 768x576) and the built-in model:
every format finds the walkers with boxes in the source's pixels; a worker converts only what
its detector does not take, and counts it; the snapshots the sink keeps are at the source's
resolution (the extractor's source ring, sink.source_frames), or at the detection size when that
ring is off or the frame's pixels came from another host."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from camwire.common import pixels, shm, wire

ROOT = Path(__file__).resolve().parents[2]
CLIP = ROOT / "camwire" / "media" / "people-walking-30s.mp4"
W, H = 768, 576
DETECT = 416  # the long side the pool sees: 416x312
FAST = ("--fps", "1")  # 30 frames of the 30 s clip, read as fast as the pool takes them


def run_clip(pipeline_factory, daemons, camera: str, *extra: str) -> tuple[list[dict], dict, dict, Path]:
    """The clip through an extractor, the ventilator, one worker with the built-in model and the
    sink, which exits when the camera is drained; its events, the worker's and the sink's stats."""
    p = pipeline_factory(until=camera)
    p.worker("worker-1", "onnx")
    p.extractor(camera, str(CLIP), extra=(*FAST, "--detect-size", str(DETECT), *extra))
    assert daemons.wait("sink", timeout=180) == 0
    assert daemons.wait(f"extractor-{camera}") == 0
    assert daemons.stop("worker-1") == 0
    events = [e for e in p.events_written() if e["type"] == "object"]
    return events, daemons.stats("worker-1"), daemons.stats("sink"), p.data_dir


def people_in_source_pixels(events: list[dict]) -> None:
    people = [e for e in events if e["label"] == "person"]
    assert people, "no person found"
    boxes = np.array([e["box"] for e in people])
    assert boxes.min() >= 0 and boxes[:, 2].max() <= W and boxes[:, 3].max() <= H
    # scaled back from 416x312: walkers on the right of the picture are past the detector's width
    assert boxes[:, 2].max() > DETECT + 40


@pytest.mark.parametrize("fmt,converted", [("bgr", None), ("rgb", None), ("gray", None),
                                           ("yuv420", {"yuv420_to_bgr"})])
def test_each_pixel_format_finds_the_walkers_and_converts_only_what_the_model_does_not_take(
        pipeline_factory, daemons, fmt: str, converted: set[str] | None) -> None:
    """The built-in YOLOX takes BGR, RGB (flipped in its own input copy) and grey as they come;
    YUV 4:2:0 it does not: the worker converts each such frame, counted."""
    events, worker, sink, _ = run_clip(pipeline_factory, daemons, f"pix{fmt}", "--pixel-format", fmt)
    people_in_source_pixels(events)
    if converted is None:
        assert "converted" not in worker, worker.get("converted")
    else:
        assert set(worker["converted"]) == converted
        assert sum(worker["converted"].values()) == sum(worker["processed"].values())


def test_snapshots_are_made_at_the_sources_resolution(pipeline_factory, daemons) -> None:
    """Frames go to the pool at 416x312 in YUV 4:2:0 through shared memory (a loopback
    ventilator); the objects' snapshots are 768x576, copied from the extractor's source ring. The
    ring holds every frame of this run (the file is read as fast as the pool takes it, and a
    sink still starting while the extractor runs ahead would otherwise find the first ones
    overwritten: counted source_gone, their snapshots at the detection size)."""
    events, _, sink, data = run_clip(pipeline_factory, daemons, "srcres", "--pixel-format", "yuv420",
                                     "--source-slots", "40")
    people_in_source_pixels(events)
    assert sink["snapshot_pixels"]["source"] > 0 and "source_gone" not in sink["snapshot_pixels"]
    assert not list(Path(shm.DIRECTORY).glob("camwire-srcres-*"))  # both rings unlinked at the extractor's exit
    shots = {e["snapshot"] for e in events if e.get("snapshot")}
    assert shots
    for shot in shots:
        image = cv2.imread(str(data / shot))
        assert image.shape == (H, W, 3), shot
        meta = json.loads((data / shot).with_suffix(".json").read_text())
        assert meta["snapshot"] == shot


def test_without_a_source_ring_snapshots_are_at_the_detection_size(pipeline_factory, daemons) -> None:
    """And a result's pixels stay in the frame's slot, which the worker leaves held for the sink
    (on this host): every result with something found is copied out of shared memory by the
    sink, none by a socket, and every slot comes back (the extractor, reading the file as fast
    as the pool takes it, never found its ring full)."""
    events, worker, sink, data = run_clip(pipeline_factory, daemons, "detres", "--source-slots", "0")
    people_in_source_pixels(events)
    assert "source" not in sink.get("snapshot_pixels", {})
    shots = {e["snapshot"] for e in events if e.get("snapshot")}
    assert shots and all(cv2.imread(str(data / s)).shape == (312, DETECT, 3) for s in shots)
    got = sink["snapshot_pixels"]
    assert got["shm"] == got["received"] > 0 and "shm_gone" not in got, got
    assert daemons.stats("extractor-detres")["detres"]["shm"] == {"used": sum(worker["processed"].values())}


def test_a_sink_without_the_workers_shared_memory_loses_only_those_snapshots(pipeline_factory, daemons,
                                                                              monkeypatch) -> None:
    """A sink on the workers' host by its address but not sharing their /dev/shm (here its host id
    forced with CAMWIRE_SHM_HOST, as a container of its own would have): the pixels the results
    leave in shared memory cannot be copied, counted; their slots stay held until the ring's lease
    runs out, so the extractor, its ring full, sends the next frames by the socket, whose pixels
    the sink does get. The objects are all tracked and told, the clip goes through whole."""
    monkeypatch.setenv("CAMWIRE_SHM_HOST", "a-container")
    p = pipeline_factory(until="apart")
    monkeypatch.delenv("CAMWIRE_SHM_HOST")
    p.worker("worker-1", "onnx")
    p.extractor("apart", str(CLIP), extra=(*FAST, "--detect-size", str(DETECT), "--source-slots", "0"))
    assert daemons.wait("sink", timeout=180) == 0
    sink = daemons.stats("sink")
    people_in_source_pixels([e for e in p.events_written() if e["type"] == "object"])
    assert sink["snapshot_pixels"]["shm_elsewhere"] > 0 and sink["snapshot_pixels"]["received"] > 0
    assert daemons.wait("extractor-apart") == 0 and daemons.stop("worker-1") == 0
    assert daemons.stats("extractor-apart")["apart"]["shm"]["full"] > 0


def test_yuv420_pixels_and_conversions() -> None:
    """The one conversion (common.pixels.convert) on a real frame: YUV 4:2:0 back to BGR within a
    few levels of the decoder's own, in BT.601 and in BT.709 (an HD camera's frame says so); its
    grey is FFmpeg's grey (limited-range luma stretched to full); a result's YUV pixels are half of
    BGR's bytes and the sink gets BGR of them."""
    import av

    with av.open(str(CLIP)) as container:
        frame = next(container.decode(video=0))
    bgr, yuv = frame.to_ndarray(format="bgr24"), frame.to_ndarray(format="yuv420p")
    assert yuv.shape == (H * 3 // 2, W)
    back = pixels.convert(yuv, "yuv420", "bgr")
    assert np.abs(back.astype(int) - bgr).mean() < 3
    frame.colorspace = 1  # tagged BT.709, as HD cameras' streams are
    bgr709 = frame.to_ndarray(format="bgr24")
    assert np.abs(pixels.convert(yuv, "yuv420", "bgr", "bt709").astype(int) - bgr709).mean() < 1
    assert np.abs(back.astype(int) - bgr709).mean() > 2  # the matrix matters: BT.601 would be off
    grey = pixels.convert(yuv, "yuv420", "gray")
    assert grey.shape == (H, W) and np.abs(grey.astype(int) - frame.to_ndarray(format="gray")).mean() < 3
    assert (pixels.convert(bgr, "bgr", "rgb") == bgr[:, :, ::-1]).all()
    data, size = pixels.pack_pixels(yuv, "raw", "yuv420")
    assert size == (W, H, 1) and len(data) == W * H * 3 // 2
    assert pixels.Pixels.of(size, data, enc="raw", pix="yuv420").decode().shape == (H, W, 3)


def test_a_frame_whose_format_cannot_have_its_shape_is_refused() -> None:
    odd = wire.FrameHeader(camera="c", seq=1, ts_ns=1, width=641, height=360, channels=1, pix="yuv420")
    with pytest.raises(wire.MalformedMessage, match="bad_format"):
        wire.peek_frame([wire.pack(odd), b""])
    rgb_grey = wire.FrameHeader(camera="c", seq=1, ts_ns=1, width=4, height=4, channels=1, pix="rgb")
    with pytest.raises(wire.MalformedMessage, match="bad_format"):
        wire.peek_frame([wire.pack(rgb_grey), b"\0" * 16])
    with pytest.raises(wire.MalformedMessage, match="bad_pixels"):
        pixels.Pixels.of((5, 4, 1), b"\0" * 30, enc="raw", pix="yuv420")


def test_each_detector_gets_a_format_it_takes_converted_once_per_frame() -> None:
    """Real detectors side by side (covered + the built-in model) on YUV 4:2:0 frames: covered
    gets the Y plane (grey, no copy), the model BGR; one conversion each per frame, whatever the
    number of parts; an RGB frame goes to both as it is."""
    import av

    from camwire.classifier import detectors

    with av.open(str(CLIP)) as container:
        decoded = [f for _, f in zip(range(2), container.decode(video=0))]
    both = detectors.make_detector("covered+onnx")
    for fmt, pyav, want in (("yuv420", "yuv420p", {("yuv420", "gray"): 2, ("yuv420", "bgr"): 2}),
                            ("rgb", "rgb24", {})):
        frames = [(wire.FrameHeader(camera="c", seq=i, ts_ns=1, width=W, height=H, pix=fmt,
                                    channels=3 if fmt == "rgb" else 1), f.to_ndarray(format=pyav))
                  for i, f in enumerate(decoded)]
        told: dict[tuple[str, str], int] = {}
        results = detectors.detect(both, frames, lambda s, d: told.__setitem__((s, d), told.get((s, d), 0) + 1))
        assert told == want
        assert all(r.flags.get("scene") for r in results)  # covered judged every frame
        assert all(any(d.label == "person" for d in r.detections) for r in results)


def test_a_jpeg_link_with_yuv420_frames_is_refused_at_its_line(tmp_path: Path) -> None:
    """JPEG cannot carry YUV 4:2:0 planes: the extractor refuses the file at the camera's line,
    in one line, before it starts (a reload of such a file is refused the same way)."""
    import subprocess
    import sys

    path = tmp_path / "camwire.toml"
    path.write_text(f'[extractor]\nenc = "jpeg"\n\n[cameras.a]\nurl = "{CLIP}"\npixel_format = "yuv420"\n')
    done = subprocess.run([sys.executable, "-m", "camwire", "extractor", "--config", str(path), "--push",
                           "ipc:///nonexistent/x"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2
    assert f"{path}:6" in done.stderr and "cannot carry yuv420" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
