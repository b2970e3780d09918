"""A worker's results (classifier.detection): the frame's pixels ride along as an LZ4 block (no
JPEG) only when something was found, boxes come back in source pixels when the extractor resized
the frame for detection, and a shared-memory frame whose slot was reused gets an error instead."""

from __future__ import annotations

import queue

import lz4.block
import msgspec
import numpy as np
import pytest
import zmq

from camwire.classifier.detection import SHM_RECYCLED, Detection, result_parts
from camwire.classifier.detectors import Detection as Found, FrameResult
from camwire.common import pixels, wire
from camwire.common.counters import Counters

BOX = (10.0, 20.0, 110.0, 220.0)


def header(seq: int = 0, width: int = 640, height: int = 360, **kw) -> wire.FrameHeader:
    return wire.FrameHeader(camera="c", seq=seq, ts_ns=1, width=width, height=height, **kw)


def frame(width: int = 640, height: int = 360, value: int = 90) -> np.ndarray:
    image = np.full((height, width, 3), value, np.uint8)
    image[::7, ::5] = 200  # not flat: LZ4 has something to keep
    return image


def found(*boxes: tuple[float, float, float, float]) -> FrameResult:
    return FrameResult([Found("person", 0.9, box) for box in boxes])


def parsed(parts: list[bytes]) -> wire.Result:
    result = wire.unpack(parts[0])
    assert isinstance(result, wire.Result)
    return result


def test_a_resized_frames_boxes_come_back_in_source_pixels_with_the_pixels_it_saw() -> None:
    image = frame()
    parts = result_parts(header(source=(1280, 720)), "w", "d", found(BOX), image)
    result = parsed(parts)
    assert [d.box for d in result.detections] == [(20.0, 40.0, 220.0, 440.0)]
    assert (result.width, result.height) == (1280, 720)
    assert result.image == (640, 360, 3)  # the pixels' own size: what the detector saw
    assert len(parts) == 2 and len(parts[1]) < image.nbytes / 4
    assert lz4.block.decompress(parts[1], uncompressed_size=image.nbytes) == image.tobytes()


def test_without_a_source_the_boxes_and_size_are_the_frames() -> None:
    parts = result_parts(header(), "w", "d", found(BOX), frame())
    result = parsed(parts)
    assert [d.box for d in result.detections] == [BOX] and (result.width, result.height) == (640, 360)
    assert result.image == (640, 360, 3)


def test_pixels_ride_along_only_with_something_found_or_a_covered_lens() -> None:
    image = frame()
    nothing = result_parts(header(), "w", "d", FrameResult(), image)
    assert len(nothing) == 1 and parsed(nothing).image is None
    covered = result_parts(header(), "w", "d", FrameResult(flags={"covered": True}), image)
    assert len(covered) == 2 and parsed(covered).image == (640, 360, 3)
    failed = result_parts(header(source=(1280, 720)), "w", "d", found(BOX), image, error="broken")
    assert len(failed) == 1 and parsed(failed).error == "broken"
    assert (parsed(failed).width, parsed(failed).height) == (1280, 720)  # an error speaks of the source too


def test_what_a_snapshot_cannot_show_is_left_out() -> None:
    bgra = np.dstack([frame(64, 48), np.full((48, 64), 255, np.uint8)])
    parts = result_parts(header(width=64, height=48, channels=4), "w", "d", found(BOX), bgra)
    assert parsed(parts).image == (64, 48, 3)  # the alpha dropped
    assert pixels.Pixels(parts[1], 64, 48, 3).decode().tobytes() == frame(64, 48).tobytes()
    grey = frame(64, 48)[..., 0]
    assert parsed(result_parts(header(width=64, height=48, channels=1), "w", "d", found(BOX), grey)).image == (64, 48, 1)
    deep = np.zeros((48, 64, 3), np.uint16)
    parts = result_parts(header(width=64, height=48, dtype="uint16"), "w", "d", found(BOX), deep)
    assert len(parts) == 1 and parsed(parts).image is None and parsed(parts).detections


def test_an_absurd_box_scaled_up_stays_a_result_the_sink_takes() -> None:
    parts = result_parts(header(width=1, height=1, source=(16384, 16384)), "w", "d", found((0, 0, 9e11, 9e11)))
    assert parsed(parts).detections[0].box == (0.0, 0.0, wire.LIMIT, wire.LIMIT)


class Fixed:
    """A detector that finds one person at BOX in every frame."""

    name = "fixed"

    def detect(self, frames):
        return [found(BOX) for _ in frames]


def detection(still_valid=None) -> tuple[Detection, Counters]:
    counters = Counters()
    thread = Detection(zmq.Context.instance(), Fixed(), "inproc://unused", "w", queue.Queue(), counters,
                       wire.DEFAULT_MAX_FRAME_BYTES, log=None, still_valid=still_valid)
    return thread, counters


def test_a_frame_whose_shared_memory_slot_was_reused_gets_an_error_instead() -> None:
    asked = []

    def still_valid(h: wire.FrameHeader) -> bool:
        asked.append(h.seq)
        return h.seq != 1

    thread, counters = detection(still_valid)
    batch = [(h, pixels.encode_frame(h, frame())) for h in (header(0), header(1), header(2, source=(1280, 720)))]
    out = [parsed(parts) for parts in thread.process(batch)]
    assert asked == [0, 1, 2]  # asked after the detector, of every frame it ran on
    assert [(r.seq, r.error) for r in out] == [(0, None), (1, SHM_RECYCLED), (2, None)]
    assert SHM_RECYCLED.startswith("shm_recycled: ")
    assert out[1].detections == [] and out[1].image is None  # nothing of another frame's pixels goes out
    assert [d.box for d in out[2].detections] == [(20.0, 40.0, 220.0, 440.0)]
    assert counters.get("failed", "shm_recycled") == 1
    assert counters.get("processed", "c") == 2


def test_without_the_hook_every_frame_is_its_own() -> None:
    thread, counters = detection()
    h = header()
    [parts] = thread.process([(h, [zmq.Frame(p) for p in pixels.encode_frame(h, frame())])])
    assert parsed(parts).error is None and len(parts) == 2 and counters.get("processed", "c") == 1
    assert all(isinstance(p, bytes) for p in parts)  # bytes only: no view of the frame leaves


def test_the_hook_is_asked_of_the_batchs_header_which_names_the_slot() -> None:
    """A shared-memory frame's pixels may reach the thread as an inline part (decoded from a header
    without ``shm``); the hook still gets the header that names the slot and its generation."""
    seen = []
    thread, counters = detection(lambda h: seen.append(h.shm) or True)
    slot = wire.ShmRef(host="h", ring="camwire-c-1-x", slot=3, gen=7)
    h = header(shm=slot)
    inline = pixels.encode_frame(msgspec.structs.replace(h, shm=None), frame())
    [parts] = thread.process([(h, inline)])
    assert seen == [slot] and parsed(parts).error is None and counters.get("processed", "c") == 1


def test_raw_pixels_go_to_a_sink_on_this_host_and_are_checked_exactly() -> None:
    image = np.arange(2 * 4 * 3, dtype=np.uint8).reshape(2, 4, 3)
    header = wire.FrameHeader(camera="c", seq=1, ts_ns=1, width=4, height=2)
    result = FrameResult([Found("person", 0.9, (0, 0, 2, 2))])
    parts = result_parts(header, "w", "d", result, image, pixel_enc="raw")
    body = wire.unpack(parts[0])
    assert body.image == (4, 2, 3) and body.image_enc == "raw" and parts[1] == image.tobytes()
    held = pixels.Pixels.of(body.image, parts[1], enc=body.image_enc)
    assert (held.decode() == image).all()
    with pytest.raises(wire.MalformedMessage, match="raw bytes"):
        pixels.Pixels.of(body.image, parts[1][:-1], enc="raw")


@pytest.mark.parametrize("fmt,channels,image", [("bgr", 3, (640, 360, 3)), ("gray", 1, (640, 360, 1)),
                                                ("yuv420", 1, (640, 360, 1))])
def test_a_shared_memory_frames_pixels_stay_in_its_slot_for_a_sink_on_this_host(fmt, channels, image) -> None:
    """To a sink on this host the result names the slot instead of carrying the pixels (the sink
    copies them out and releases it); to one across a network they go as an LZ4 block as ever."""
    slot = wire.ShmRef(host="h", ring="camwire-c-1-x", slot=3, gen=7)
    h = header(shm=slot, pix="bgr" if fmt == "gray" else fmt, channels=channels)
    found = FrameResult([Found("person", 0.9, BOX)])
    pixels_of = frame()[:, :, 0] if channels == 1 else frame()
    if fmt == "yuv420":
        pixels_of = np.zeros((540, 640), np.uint8)
    parts = result_parts(h, "w", "d", found, pixels_of, pixel_enc="raw")
    body = wire.unpack(parts[0])
    assert len(parts) == 1 and body.image_enc == "shm" and body.image_shm == slot and body.image == image
    assert body.image_pix == fmt
    far = result_parts(h, "w", "d", found, pixels_of, pixel_enc="lz4")
    assert len(far) == 2 and wire.unpack(far[0]).image_enc == "lz4" and wire.unpack(far[0]).image_shm is None
    nothing = result_parts(h, "w", "d", FrameResult(), pixels_of, pixel_enc="raw")
    assert len(nothing) == 1 and wire.unpack(nothing[0]).image is None  # nothing found: no pixels, no slot named
