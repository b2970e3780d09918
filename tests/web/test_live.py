"""web.live: real frames (LZ4, JPEG, an H.264 stream published as the extractor's passthrough does)
and results into a LiveHub, its JPEGs decoded and looked at pixel by pixel, and real WebSocket
clients on a real aiohttp server over loopback. How fresh a result is is told by a clock the test
holds, not by waiting."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import av
import cv2
import numpy as np
import pytest
from aiohttp import web
from av.bitstream import BitStreamFilterContext

from camwire.common import wire
from camwire.common.geometry import parse_polygon
from camwire.common.pixels import encode_frame, encode_packet
from camwire.web.live import LiveHub
from camwire.web.live_ring import RESULTS_KEPT, RING_FRAMES
from camwire.web.live_socket import live_socket, parse_watch
from camwire.web.live_viewers import Viewer, Want

T0 = 1_700_000_000_000_000_000  # a capture time, ns
W, H = 640, 360


def grey(level: int = 100) -> np.ndarray:
    return np.full((H, W, 3), level, np.uint8)


def noise(seed: int) -> np.ndarray:
    """A picture that JPEG cannot shrink much: each message is hundreds of kilobytes."""
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def frame(camera: str, seq: int, image: np.ndarray, enc: str = "lz4", ts_ns: int | None = None,
          motion: list | None = None) -> list:
    header = wire.FrameHeader(camera=camera, seq=seq, ts_ns=T0 + seq * 40_000_000 if ts_ns is None else ts_ns,
                              width=image.shape[1], height=image.shape[0], enc=enc, motion=motion or [])
    return [bytes(p) for p in encode_frame(header, image)]


def watch(hub: LiveHub, cameras: dict[str, Want]) -> tuple[Viewer, asyncio.AbstractEventLoop]:
    """A viewer that watches ``cameras``, as live_socket registers one (its loop is not run:
    the hub's wake-ups just queue on it)."""
    loop = asyncio.new_event_loop()
    viewer = Viewer(loop)
    hub._add_viewer(viewer)
    hub._set_watch(viewer, cameras)
    return viewer, loop


def unjpeg(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def near(image: np.ndarray, x: int, y: int, colour: tuple[int, int, int], r: int = 2) -> bool:
    """Whether some pixel within ``r`` of (x, y) is ``colour`` (saturated BGR), allowing for JPEG."""
    patch = image[max(0, y - r):y + r + 1, max(0, x - r):x + r + 1].astype(int)
    want = np.array(colour)
    return bool(np.any(np.all(np.abs(patch - want) < 90, axis=2)))


GREEN, MAGENTA, YELLOW = (0, 255, 0), (255, 0, 255), (0, 255, 255)


class Clock:
    """The hub's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def result(camera: str, seq: int, boxes: list | None = None, ts_ns: int | None = None, **kw) -> wire.Result:
    """The worker's result for frame ``seq`` as made by ``frame`` (the same capture time)."""
    return wire.Result(camera=camera, seq=seq, ts_ns=T0 + seq * 40_000_000 if ts_ns is None else ts_ns,
                       width=W, height=H, detections=[wire.Detection(label="car", confidence=0.9, box=b)
                                                      for b in boxes or []], **kw)


def square_at(seq: int) -> tuple[float, float, float, float]:
    """Where frame ``seq`` of ``moving`` has its white square (a thing moving 30 px a frame)."""
    x = 20 + 30 * seq
    return (float(x), 140.0, float(x + 60), 200.0)


def moving(seq: int) -> np.ndarray:
    image = grey(60)
    x1, y1, x2, y2 = (int(v) for v in square_at(seq))
    image[y1:y2, x1:x2] = 255
    return image


def square_drawn_at(image: np.ndarray, seq: int, scale: float = 1.0) -> bool:
    """Whether ``image`` shows frame ``seq``'s square, at ``scale``: white inside, grey beside it."""
    x1, y1, x2, y2 = (round(v * scale) for v in square_at(seq))
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    return image[cy, cx].mean() > 230 and image[cy, x1 - 8].mean() < 90 and image[cy, x2 + 8].mean() < 90


# --- the hub, on the ZeroMQ thread's side and the renderer's ------------------------------------


def test_unwatched_frames_are_ignored_but_their_size_is_seen() -> None:
    hub = LiveHub(zones={})
    hub.on_frame(frame("cam1", 1, grey()))
    assert hub.counters["frames_in"] == 1 and hub.counters["frames_ignored"] == 1
    assert hub.cameras_seen() == {"cam1": (W, H)} and hub.wanted() == set()
    assert hub.jpeg("cam1", 320) is None


def test_malformed_parts_raise() -> None:
    hub = LiveHub(zones={})
    with pytest.raises(wire.MalformedMessage):
        hub.on_frame([b"\x80"])  # one part
    with pytest.raises(wire.MalformedMessage):
        hub.on_frame([b"not msgpack at all", b""])
    too_big = LiveHub(zones={}, max_frame_bytes=1000)
    with pytest.raises(wire.MalformedMessage) as exc:
        too_big.on_frame(frame("cam1", 1, grey()))
    assert exc.value.reason == "too_large"


def test_pixels_are_decoded_only_when_a_viewer_asks() -> None:
    hub = LiveHub(zones={})
    _, loop = watch(hub, {"cam1": Want(320, 5)})
    header = wire.FrameHeader(camera="cam1", seq=1, ts_ns=T0, width=W, height=H, enc="lz4")
    broken = [wire.pack(header), b"\x00" * 100]  # a valid header over a payload that is no LZ4 block
    hub.on_frame(broken)  # stored as it came: nothing decoded yet, so nothing to object to
    assert hub.counters["decode_errors"] == 0 and hub.counters["frames_ignored"] == 0
    assert hub.jpeg("cam1", 320) is None
    assert hub.counters["decode_errors"] == 1 and hub.counters["encodes"] == 0
    for seq in range(2, 12):
        hub.on_frame(frame("cam1", seq, grey(seq * 10)))
    assert hub.counters["encodes"] == 0
    meta, data = hub.jpeg("cam1", 320)
    assert meta["seq"] == 11 and hub.counters["encodes"] == 1 and hub.counters["decode_errors"] == 1
    assert abs(unjpeg(data).mean() - 110) < 3  # the newest frame's picture
    loop.close()


@pytest.mark.parametrize("enc", ["lz4", "jpeg"])
def test_boxes_zones_and_motion_are_drawn_where_they_are_scaled(enc: str) -> None:
    zones = {"cam1": {"drive": parse_polygon([[0.5, 0.5], [0.9, 0.5], [0.9, 0.9], [0.5, 0.9]], "z")}}
    hub = LiveHub(zones=zones, clock=Clock())
    _, loop = watch(hub, {"cam1": Want(320, 5)})
    hub.on_frame(frame("cam1", 7, grey(), enc, ts_ns=T0, motion=[(400.0, 20.0, 600.0, 100.0)]))
    person = wire.Detection(label="person", confidence=0.87, box=(100.0, 80.0, 300.0, 240.0))
    hub.on_result(wire.Result(camera="cam1", seq=7, ts_ns=T0, width=W, height=H, detections=[person]))
    meta, data = hub.jpeg("cam1", 320)
    assert meta == {"camera": "cam1", "seq": 7, "ts": T0 / 1e9, "width": 320, "height": 180, "boxes": 1,
                    "detected": True}
    image = unjpeg(data)
    assert image.shape == (180, 320, 3)
    # the detection [100, 80, 300, 240] at half size: its left and right edges, halfway down
    assert near(image, 50, 80, GREEN) and near(image, 150, 80, GREEN) and near(image, 100, 120, GREEN)
    assert not near(image, 100, 80, GREEN, r=10)  # inside the box: the picture
    # the zone: fractions 0.5..0.9 of 320x180; its left edge, halfway down
    assert near(image, 160, 126, YELLOW) and near(image, 288, 126, YELLOW)
    assert not near(image, 224, 140, YELLOW, r=8)
    # the motion box [400, 20, 600, 100] at half size
    assert near(image, 200, 30, MAGENTA) and near(image, 300, 30, MAGENTA)
    assert not near(image, 250, 30, MAGENTA, r=8)

    # a newer frame with no result yet: the frame with boxes is still the one shown
    hub.on_frame(frame("cam1", 8, grey(), enc, ts_ns=T0 + 40_000_000))
    assert hub.jpeg("cam1", 320)[0]["seq"] == 7
    # a result for another frame (same seq, another capture time: a restarted camera) is not frame 8's
    hub.on_result(wire.Result(camera="cam1", seq=8, ts_ns=T0, width=W, height=H, detections=[person]))
    assert hub.jpeg("cam1", 320)[0]["seq"] == 7
    # a result that says error has no boxes to draw: it is not kept
    hub.on_result(wire.Result(camera="cam1", seq=8, ts_ns=T0 + 40_000_000, width=W, height=H, error="decode"))
    assert hub.jpeg("cam1", 320)[0]["seq"] == 7 and hub.counters["results_in"] == 2

    # never upscaled: asked for more than the source has, it gets the source's size
    meta, data = hub.jpeg("cam1", 1920)
    assert (meta["width"], meta["height"]) == (W, H) and unjpeg(data).shape == (H, W, 3)
    loop.close()


def test_a_late_result_is_drawn_on_its_own_frame_and_stale_results_give_way_to_the_newest() -> None:
    clock = Clock()
    hub = LiveHub(zones={}, clock=clock)
    _, loop = watch(hub, {"cam1": Want(640, 5)})
    for seq in range(1, 10):  # a thing moving right 30 px a frame
        hub.on_frame(frame("cam1", seq, moving(seq)))
    # no results (yet): the newest frame, and no detection boxes
    meta, data = hub.jpeg("cam1", 640)
    assert (meta["seq"], meta["detected"], meta["boxes"]) == (9, False, 0)
    image = unjpeg(data)
    assert square_drawn_at(image, 9) and not near(image, *map(int, square_at(9)[:2]), GREEN, r=4)

    # the worker's answer for frame 5 comes after frames 6..9: frame 5 is drawn, its box on its square
    clock.now += 0.3
    hub.on_result(result("cam1", 5, [square_at(5)]))
    meta, data = hub.jpeg("cam1", 640)
    assert (meta["seq"], meta["detected"], meta["boxes"]) == (5, True, 1)
    image = unjpeg(data)
    x1, y1, x2, y2 = (int(v) for v in square_at(5))
    assert square_drawn_at(image, 5) and not square_drawn_at(image, 9)
    assert near(image, x1, (y1 + y2) // 2, GREEN) and near(image, x2, (y1 + y2) // 2, GREEN)
    assert near(image, (x1 + x2) // 2, y2, GREEN)
    assert not near(image, x1 - 6, (y1 + y2) // 2, GREEN, r=1) and not near(image, x2 + 6, (y1 + y2) // 2, GREEN, r=1)
    for seq in (6, 9):  # no box where the square is in later frames
        sx1, sy1, sx2, sy2 = (int(v) for v in square_at(seq))
        assert not near(image, sx2, (sy1 + sy2) // 2, GREEN, r=1)

    # results stop (the motion gate shut): once frame 5's is no longer fresh, the newest, without boxes
    clock.now += 1.5
    assert hub.jpeg("cam1", 640)[0]["seq"] == 5
    clock.now += 0.6
    meta, data = hub.jpeg("cam1", 640)
    assert (meta["seq"], meta["detected"]) == (9, False)
    assert not near(unjpeg(data), x1, (y1 + y2) // 2, GREEN, r=2)
    loop.close()


def test_the_ring_and_the_results_are_bounded_and_an_unwatched_camera_keeps_nothing() -> None:
    hub = LiveHub(zones={}, clock=Clock())
    viewer, loop = watch(hub, {"cam1": Want(320, 5)})
    for seq in range(1000):
        hub.on_frame(frame("cam1", seq, grey(seq % 200)))
        hub.on_result(result("cam1", seq))
    ring = hub._cameras["cam1"]
    assert len(ring.frames) == RING_FRAMES and [f.header.seq for f in ring.frames] == list(range(968, 1000))
    assert len(ring.by_seq) == RESULTS_KEPT and len(ring.by_pts) == 0
    # a slow camera: frames a second apart, at most 3 s of them
    for seq in range(1000, 1010):
        hub.on_frame(frame("cam1", seq, grey(), ts_ns=T0 + seq * 1_000_000_000))
    assert [f.header.seq for f in ring.frames] == [1006, 1007, 1008, 1009]
    # cam2 is watched by nobody: its frames and results are counted and dropped
    for seq in range(10):
        hub.on_frame(frame("cam2", seq, grey()))
        hub.on_result(result("cam2", seq))
    assert "cam2" not in hub._cameras and hub.counters["frames_ignored"] == 10
    assert hub.counters["results_in"] == 1000 and hub.jpeg("cam2", 320) is None
    # and cam1, once nobody watches it, keeps nothing either
    hub.jpeg("cam1", 320)
    hub._set_watch(viewer, {})
    assert hub._cameras == {} and hub._encodes == {} and hub._decoded == {}
    hub.on_frame(frame("cam1", 2000, grey()))
    assert hub._cameras == {} and hub.jpeg("cam1", 320) is None
    loop.close()


def test_one_encode_per_frame_and_width_for_any_number_of_viewers() -> None:
    hub = LiveHub(zones={})
    loops = [watch(hub, {"cam1": Want(320, 5)})[1] for _ in range(3)]
    hub.on_frame(frame("cam1", 1, noise(1)))
    start = threading.Barrier(16)

    def ask(width: int):
        start.wait()
        return hub.jpeg("cam1", width)

    with ThreadPoolExecutor(16) as pool:
        outs = list(pool.map(ask, [320] * 12 + [640] * 4))
    assert hub.counters["encodes"] == 2  # one per width, though 16 asked at once
    assert len({data for _, data in outs[:12]}) == 1 and len({data for _, data in outs[12:]}) == 1
    hub.on_frame(frame("cam1", 2, noise(2)))
    assert hub.jpeg("cam1", 320)[0]["seq"] == 2 and hub.jpeg("cam1", 320)[0]["seq"] == 2
    assert hub.counters["encodes"] == 3
    for loop in loops:
        loop.close()


def test_wanted_follows_viewers() -> None:
    hub = LiveHub(zones={})
    a, loop_a = watch(hub, {"cam1": Want(320, 5), "cam2": Want(320, 5)})
    b, loop_b = watch(hub, {"cam2": Want(640, 1)})
    assert hub.wanted() == {"cam1", "cam2"} and hub.viewer_count() == 2
    hub._set_watch(a, {})
    assert hub.wanted() == {"cam2"}
    hub._remove_viewer(b)
    assert hub.wanted() == set() and hub.viewer_count() == 1
    loop_a.close(), loop_b.close()


def test_parse_watch_bounds_and_refusals() -> None:
    assert parse_watch('{"watch": {"cam1": {"width": 10, "fps": 100}, "cam-2": {}}}') == {
        "cam1": Want(64, 30.0), "cam-2": Want(640, 5.0)}
    assert parse_watch('{"watch": {"cam1": {"width": 5000, "fps": 0.01}}}') == {"cam1": Want(1920, 0.2)}
    assert parse_watch('{"watch": {}}') == {}
    for bad in ["{", "[]", '{"watch": 3}', '{"watch": {"../x": {}}}', '{"watch": {"cam1": {"fps": "5"}}}',
                '{"watch": {"cam1": {"width": true}}}', '{"watch": {"cam1": 5}}']:
        with pytest.raises(ValueError):
            parse_watch(bad)


# --- H.264 packets, as the extractor publishes them with --publish-enc passthrough ----------------


def h264_stream(n: int = 30, gop: int = 10, fps: int = 25,
                size: tuple[int, int] = (320, 192)) -> list[tuple[list, int]]:
    """Encode ``n`` frames (frame i is all grey level 20 + 7 i, ``size`` pixels) with libx264 into an
    MP4, then read its packets back through h264_mp4toannexb as extractor.camera does: (parts, grey level of the
    picture each packet holds), in decode order."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        (stream.width, stream.height), stream.pix_fmt = size, "yuv420p"
        stream.codec_context.gop_size = gop
        for i in range(n):
            picture = av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), 20 + 7 * i, np.uint8), format="bgr24")
            picture.pts = i
            for packet in stream.encode(picture):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    buf.seek(0)
    packets = []
    with av.open(buf) as container:
        stream = container.streams.video[0]
        ctx, tb = stream.codec_context, stream.time_base
        bsf = BitStreamFilterContext("h264_mp4toannexb", in_stream=stream)
        for packet in container.demux(stream):
            for out in bsf.filter(packet) if packet.size else []:
                pts = float(out.pts * tb)
                header = wire.FrameHeader(camera="cam1", seq=len(packets), ts_ns=T0 + int(pts * 1e9), pts=pts,
                                          dts=float(out.dts * tb), width=ctx.width, height=ctx.height, enc="h264",
                                          key=out.is_keyframe, extradata=ctx.extradata if out.is_keyframe else None)
                packets.append(([bytes(p) for p in encode_packet(header, bytes(out))], 20 + 7 * round(pts * fps)))
    assert sum(1 for parts, _ in packets if wire.unpack(parts[0]).key) == n // gop
    return packets


def test_h264_packets_are_decoded_from_a_key_frame_and_after_an_error() -> None:
    packets = h264_stream()
    level = {wire.unpack(parts[0]).seq: grey_level for parts, grey_level in packets}
    hub = LiveHub(zones={})
    _, loop = watch(hub, {"cam1": Want(320, 5)})

    def shows() -> int:
        """The grey level of the picture the hub shows now, checked against its header's seq."""
        meta, data = hub.jpeg("cam1", 320)
        mean = unjpeg(data).mean()
        assert abs(mean - level[meta["seq"]]) < 4, (meta, mean)
        return meta["seq"]

    for parts, _ in packets[3:10]:  # joined mid-stream: nothing until the key packet at 10
        hub.on_frame(parts)
    assert hub.counters["waiting_key"] == 7 and hub.jpeg("cam1", 320) is None
    for parts, _ in packets[10:20]:
        hub.on_frame(parts)
    assert 10 <= shows() < 20 and hub.counters["decode_errors"] == 0

    header = wire.FrameHeader(camera="cam1", seq=20, ts_ns=T0, width=320, height=192, enc="h264")
    hub.on_frame(encode_packet(header, b"\x00\x00\x00\x01" + bytes(300)))  # not H.264
    assert hub.counters["decode_errors"] == 1
    hub.on_frame(packets[21][0])  # not a key packet: the decoder waits for one
    assert hub.counters["waiting_key"] == 8
    for parts, _ in packets[20:]:
        hub.on_frame(parts)
    assert shows() >= 20 and hub.counters["decode_errors"] == 1
    assert hub.cameras_seen() == {"cam1": (320, 192)}
    loop.close()


def test_h264_decoder_starts_again_when_a_camera_is_watched_again() -> None:
    packets = h264_stream()
    hub = LiveHub(zones={})
    viewer, loop = watch(hub, {"cam1": Want(320, 5)})
    for parts, _ in packets[:5]:
        hub.on_frame(parts)
    hub._set_watch(viewer, {})
    hub._set_watch(viewer, {"cam1": Want(320, 5)})  # packets 5..14 were never seen
    for parts, _ in packets[15:20]:
        hub.on_frame(parts)
    assert hub.counters["waiting_key"] == 5 and hub.counters["decode_errors"] == 0
    loop.close()


def test_a_packet_lost_on_the_way_restarts_the_decoder_at_the_next_key_packet() -> None:
    """A full receive buffer drops packets: decoding on past the hole would smear every picture to
    the next key frame, so the decoder waits for it instead."""
    packets = h264_stream()
    hub = LiveHub(zones={})
    _, loop = watch(hub, {"cam1": Want(320, 5)})
    for parts, _ in packets[:5] + packets[6:15]:  # packet 5 never came
        hub.on_frame(parts)
    assert hub.counters["gaps"] == 1 and hub.counters["waiting_key"] == 4  # 6..9 waited for the key at 10
    assert hub.counters["decode_errors"] == 0
    shown = [f.header.seq for f in hub._cameras["cam1"].frames]
    assert shown and all(seq < 5 or seq >= 10 for seq in shown)  # no picture decoded over the hole
    loop.close()


def test_pictures_wider_than_any_view_are_kept_scaled_down() -> None:
    packets = h264_stream(n=10, size=(2560, 1440))
    hub = LiveHub(zones={})
    _, loop = watch(hub, {"cam1": Want(1920, 5)})
    for parts, _ in packets:
        hub.on_frame(parts)
    kept = [f.picture for f in hub._cameras["cam1"].frames]
    assert kept and all((p.width, p.height, p.format.name) == (1920, 1080, "yuv420p") for p in kept)
    meta, data = hub.jpeg("cam1", 1920)
    assert (meta["width"], meta["height"]) == (1920, 1080) and unjpeg(data).shape == (1080, 1920, 3)
    assert hub.cameras_seen() == {"cam1": (2560, 1440)}
    loop.close()


def test_a_packet_streams_result_is_matched_to_its_picture_by_pts() -> None:
    """With B-frames the extractor numbers its decoded frames in output order (seq of the n-th
    packet for the n-th picture) while the hub names a picture by the packet that held it: the
    result's pts is what says which picture it was."""
    packets = h264_stream()
    headers = {wire.unpack(parts[0]).seq: (wire.unpack(parts[0]), grey_level) for parts, grey_level in packets}
    hub = LiveHub(zones={}, clock=Clock())
    _, loop = watch(hub, {"cam1": Want(320, 5)})
    for parts, _ in packets[:10]:
        hub.on_frame(parts)
    by_pts = sorted((h.pts, h.seq) for h, _ in headers.values() if h.seq < 10)
    assert [seq for _, seq in by_pts] != sorted(seq for _, seq in by_pts)  # B-frames: not in packet order
    pts, seq = by_pts[1]  # the second picture shown: the extractor's seq 1, held by another packet
    assert seq != 1
    hub.on_result(wire.Result(camera="cam1", seq=1, ts_ns=T0 + int(pts * 1e9), width=320, height=192, pts=pts,
                              detections=[wire.Detection(label="car", confidence=0.9, box=(40.0, 40.0, 200.0, 150.0))]))
    meta, data = hub.jpeg("cam1", 320)
    assert (meta["seq"], meta["detected"], meta["boxes"]) == (seq, True, 1)
    image = unjpeg(data)
    assert abs(image[100:140, 60:180].mean() - headers[seq][1]) < 4  # that picture, inside the box
    assert near(image, 40, 95, GREEN) and near(image, 200, 95, GREEN)
    loop.close()


# --- the WebSocket, on a real server ------------------------------------------------------------


class Server:
    """An aiohttp app serving ``/api/live`` on 127.0.0.1, port chosen by the system. Its listening
    socket has a small send buffer (accepted sockets inherit it), so a client that stops reading
    holds up the server's sends after a few frames, not after megabytes of kernel buffer."""

    def __init__(self, hub: LiveHub) -> None:
        self.hub = hub

    async def __aenter__(self) -> str:
        async def live(request: web.Request) -> web.WebSocketResponse:
            return await live_socket(self.hub, request)

        app = web.Application()
        app.router.add_get("/api/live", live)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(self.runner, sock).start()
        return f"http://127.0.0.1:{sock.getsockname()[1]}/api/live"

    async def __aexit__(self, *exc) -> None:
        await self.runner.cleanup()


def small_receive_buffer(addr_info) -> socket.socket:
    family, kind, proto, _, _ = addr_info
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    return sock


async def receive(ws: aiohttp.ClientWebSocketResponse, timeout: float = 20.0) -> tuple[dict, bytes]:
    msg = await ws.receive(timeout=timeout)
    assert msg.type == aiohttp.WSMsgType.BINARY, msg
    n = struct.unpack(">I", msg.data[:4])[0]
    return json.loads(msg.data[4:4 + n]), msg.data[4 + n:]


async def until(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_two_viewers_get_the_watched_camera_encoded_once() -> None:
    hub = LiveHub(zones={})

    async def main() -> None:
        async with Server(hub) as url, aiohttp.ClientSession() as session:
            a = await session.ws_connect(url)
            b = await session.ws_connect(url)
            await a.send_str(json.dumps({"watch": {"cam1": {"width": 320, "fps": 30}}}))
            await b.send_str(json.dumps({"watch": {"cam1": {"width": 320, "fps": 30}}}))
            await until(lambda: hub.wanted() == {"cam1"} and hub.viewer_count() == 2
                        and len(hub._watchers["cam1"]) == 2)
            got: dict[str, list[int]] = {"a": [], "b": []}
            for seq in range(1, 6):
                # from another thread, as the daemon's ZeroMQ thread calls it; cam2 is watched by nobody
                await asyncio.to_thread(hub.on_frame, frame("cam2", seq, grey()))
                await asyncio.to_thread(hub.on_frame, frame("cam1", seq, grey(40 * seq)))
                for name, ws in (("a", a), ("b", b)):
                    meta, data = await receive(ws)
                    assert meta["camera"] == "cam1" and (meta["width"], meta["height"]) == (320, 180)
                    assert abs(unjpeg(data).mean() - 40 * meta["seq"]) < 3
                    got[name].append(meta["seq"])
            assert got["a"] == got["b"] == [1, 2, 3, 4, 5]
            assert hub.counters["encodes"] == 5 and hub.counters["sent"] == 10
            assert hub.counters["frames_ignored"] == 5

            await a.close()
            await until(lambda: hub.viewer_count() == 1)
            assert hub.wanted() == {"cam1"}
            await b.send_str(json.dumps({"watch": {}}))
            await until(lambda: hub.wanted() == set())
            await b.close()
            await until(lambda: hub.viewer_count() == 0)

    asyncio.run(main())


def test_a_viewer_is_shown_frames_with_their_own_boxes_and_never_an_older_frame() -> None:
    clock = Clock()
    hub = LiveHub(zones={}, clock=clock)

    async def main() -> None:
        async with Server(hub) as url, aiohttp.ClientSession() as session:
            ws = await session.ws_connect(url)
            await ws.send_str(json.dumps({"watch": {"cam1": {"width": 640, "fps": 30}}}))
            await until(lambda: hub.wanted() == {"cam1"})

            async def feed(seq: int, with_result: bool = False) -> None:
                await asyncio.to_thread(hub.on_frame, frame("cam1", seq, moving(seq)))
                if with_result:
                    await asyncio.to_thread(hub.on_result, result("cam1", seq, [square_at(seq)]))

            async def next_frame() -> tuple[dict, np.ndarray]:
                meta, data = await receive(ws)
                image = unjpeg(data)
                assert square_drawn_at(image, meta["seq"]), meta  # the picture is the seq it says
                x1, y1, x2, y2 = (int(v) for v in square_at(meta["seq"]))
                # its own square's box, exactly there, when it has one; none at all when not
                assert near(image, x1, (y1 + y2) // 2, GREEN) == meta["detected"], meta
                assert near(image, x2, (y1 + y2) // 2, GREEN) == meta["detected"], meta
                return meta, image

            # results flowing: each frame is shown once its result came, with its box
            for seq in range(1, 5):
                await feed(seq, with_result=True)
                meta, _ = await next_frame()
                while (meta["seq"], meta["detected"]) < (seq, True):  # frame 1 may go out before its result
                    meta, _ = await next_frame()
                assert (meta["seq"], meta["detected"]) == (seq, True)
            # frames 5..9 wait for their results; frame 5's comes (late): frame 5 is what is sent next
            for seq in range(5, 10):
                await feed(seq)
            await asyncio.to_thread(hub.on_result, result("cam1", 5, [square_at(5)]))
            meta, _ = await next_frame()
            assert (meta["seq"], meta["detected"]) == (5, True)

            # results stop (motion gate shut): the newest frame, without boxes
            clock.now += 3.0
            await feed(10)
            meta, _ = await next_frame()
            if meta["seq"] == 9:  # a slow machine: the viewer looked again when frame 5's result went stale
                assert not meta["detected"]
                meta, _ = await next_frame()
            assert (meta["seq"], meta["detected"]) == (10, False)
            # a result for frame 9 now (older than what it was shown) is not sent: the viewer waits
            # for a newer one; frame 11 has none yet, and 12 has one
            await asyncio.to_thread(hub.on_result, result("cam1", 9, [square_at(9)]))
            await feed(11)
            await feed(12, with_result=True)
            meta, _ = await next_frame()
            assert (meta["seq"], meta["detected"]) == (12, True)
            assert hub.counters["sent"] == hub.counters["encodes"]
            await ws.close()

    asyncio.run(main())


def test_a_slow_viewer_gets_the_newest_frame_not_a_backlog() -> None:
    hub = LiveHub(zones={})

    async def main() -> None:
        connector = aiohttp.TCPConnector(socket_factory=small_receive_buffer)
        async with Server(hub) as url, aiohttp.ClientSession(connector=connector) as session:
            slow = await session.ws_connect(url, max_msg_size=0)
            fast = await session.ws_connect(url, max_msg_size=0)
            for ws in (slow, fast):
                await ws.send_str(json.dumps({"watch": {"cam1": {"width": 640, "fps": 30}}}))
            await until(lambda: len(hub._watchers.get("cam1", ())) == 2)
            # frames 1..50, each as soon as the fast viewer has had the one before; the slow one reads nothing
            for seq in range(1, 51):
                await asyncio.to_thread(hub.on_frame, frame("cam1", seq, noise(seq)))
                while (await receive(fast))[0]["seq"] < seq:
                    pass
            seqs = []
            while not seqs or seqs[-1] < 50:
                seqs.append((await receive(slow))[0]["seq"])
            # what it reads: what the socket's buffers held when it stopped reading (a few frames,
            # however many came), then the newest; never the frames that came while it was stuck
            assert seqs == sorted(seqs) and seqs[-1] == 50 and len(seqs) < 10, seqs
            assert hub.counters["skipped_slow"] > 0 and hub.counters["sent"] == 50 + len(seqs)
            assert hub.counters["encodes"] == 50  # the slow viewer's frames were the fast one's JPEGs
            await slow.close()
            await fast.close()

    asyncio.run(main())


def test_bad_json_closes_the_socket_with_a_reason() -> None:
    hub = LiveHub(zones={})

    async def main() -> None:
        async with Server(hub) as url, aiohttp.ClientSession() as session:
            ws = await session.ws_connect(url)
            await ws.send_str('{"watch": {"cam1": {"width": 320}}')
            msg = await ws.receive(timeout=20)
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == aiohttp.WSCloseCode.UNSUPPORTED_DATA
            assert msg.extra == "not JSON"
            await until(lambda: hub.viewer_count() == 0)
            assert hub.counters["bad_requests"] == 1 and hub.wanted() == set()
            ws2 = await session.ws_connect(url)
            await ws2.send_str(json.dumps({"watch": {"../etc": {}}}))
            msg = await ws2.receive(timeout=20)
            assert msg.type == aiohttp.WSMsgType.CLOSE and "not a camera name" in msg.extra
            assert hub.counters["bad_requests"] == 2

    asyncio.run(main())


@pytest.mark.parametrize("with_results", [False, True])
def test_viewers_at_one_fps_share_a_grid_of_capture_time_and_every_jpeg(
        with_results: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ten 5 fps viewers of a 25 fps camera are sent the frames one is (those that start a 1/5 s
    slot of capture time: every 5th), cost its encodes exactly, and are woken only for them. With
    results flowing (each 3 frames after its frame) the frames are those with boxes, on the same grid."""
    # no result goes stale while this runs, however slow the machine: a viewer looks only when woken
    monkeypatch.setattr("camwire.web.live_ring.RESULT_FRESH_S", 3600.0)

    async def run(viewers: int) -> tuple[list[tuple[int, bool]], dict[str, int]]:
        hub = LiveHub(zones={}, clock=Clock())
        async with Server(hub) as url, aiohttp.ClientSession() as session:
            sockets = [await session.ws_connect(url) for _ in range(viewers)]
            for ws in sockets:
                await ws.send_str(json.dumps({"watch": {"cam1": {"width": 320, "fps": 5}}}))
            await until(lambda: len(hub._watchers.get("cam1", ())) == viewers)
            shown: list[tuple[int, bool]] = []

            async def event(call, *args) -> None:
                """A frame or result in, from another thread; the viewers it woke each get one
                message (all or none: they were all sent the same), and nothing comes unwoken (a
                message sent with no wake-up would arrive in place of the next one expected)."""
                wakes = hub.counters["wakes"]
                await asyncio.to_thread(call, *args)
                woken = hub.counters["wakes"] - wakes
                assert woken in (0, viewers)
                if woken:
                    metas = [(await receive(ws))[0] for ws in sockets]
                    assert len({(m["seq"], m["detected"]) for m in metas}) == 1
                    shown.append((metas[0]["seq"], metas[0]["detected"]))

            for seq in range(254):  # 0 .. 10.16 s of capture time at 25 fps
                await event(hub.on_frame, frame("cam1", seq, grey(seq % 200)))
                if with_results and seq >= 3:
                    await event(hub.on_result, result("cam1", seq - 3, [(10.0, 10.0, 50.0, 50.0)]))
            for ws in sockets:
                await ws.close()
        return shown, hub.counters_snapshot()

    one, counters_one = asyncio.run(run(1))
    ten, counters_ten = asyncio.run(run(10))
    # the grid: T0 starts a slot, so frames 0, 5, 10, ... (with results: frame 0 first without its
    # boxes, then with them once its result came)
    grid = [(seq, with_results) for seq in range(0, 251, 5)]
    assert one == ten == ([(0, False)] + grid if with_results else grid)
    per_second = [sum(1 for seq, _ in one if s * 25 <= seq < (s + 1) * 25) for s in range(10)]
    assert per_second == [5 + with_results] + [5] * 9
    assert counters_ten["encodes"] == counters_one["encodes"] == len(one)
    assert counters_ten["sent"] == 10 * len(one) and counters_ten["wakes"] == 10 * len(one)
