"""``WS /api/live``: one viewer's watch requests in, its frames out, paced and chosen by the hub
(web.live; pacing in web.live_viewers). Runs on the aiohttp thread's event loop; rendering goes
through the loop's executor.

The client sends text JSON ``{"watch": {CAMERA: {"width": 320, "fps": 5}, ...}}``, which replaces
what it watched (``{}``: nothing; width is held to 64..1920 and never above the source's, fps to
0.2..30). The server sends one binary message per frame per watched camera, at most ``fps`` a second
of capture time (see Pacing, web.live_viewers): a 4-byte big-endian length N, N bytes of UTF-8 JSON
``{"camera", "seq", "ts", "width", "height", "boxes", "detected"}`` (``ts`` the capture time in
seconds since the epoch, ``width``/``height`` the JPEG's, ``boxes`` the number of detections drawn,
``detected`` whether the frame carries its result's boxes), then the JPEG. A viewer is never sent a
frame older than one it was sent (the order frames came in; from a packet stream, the decoder's
output order), and a frame again only to add its boxes: when the newest frame with a result is older
than what it got, it gets nothing until a newer one is drawable. Text that is not such JSON closes
the socket (1003, with the reason). From a packet stream ``seq`` is that of the packet that held the
picture: with B-frames it may step back while the pictures go forward.
"""

from __future__ import annotations

import asyncio
import json
import re
import struct

import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from camwire.common import wire
from camwire.web.live import LiveHub
from camwire.web.live_viewers import (DEFAULT_FPS, DEFAULT_WIDTH, MAX_FPS, MAX_WATCHED, MAX_WIDTH, MIN_FPS, MIN_WIDTH, Got,
                              Viewer, Want, is_due)

MAX_CLIENT_TEXT = 65536  # a watch request is tens of bytes a camera
# a send waits for the socket to drain once this much was written since the last wait (aiohttp's
# default is 256 KiB): small, so that a slow viewer holds up its own sender after a frame, and what
# it gets next is the frame chosen then, not the few that would otherwise have piled up in the buffer
WRITER_LIMIT = 65536
CAMERA_NAME = re.compile(wire.CAMERA_NAME_PATTERN)


def parse_watch(text: str) -> dict[str, Want]:
    """A client's ``{"watch": {CAMERA: {"width": W, "fps": F}}}``; ValueError saying what is wrong.
    Width and fps are held to their bounds rather than refused."""
    try:
        msg = json.loads(text)
    except ValueError:
        raise ValueError("not JSON") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("watch"), dict):
        raise ValueError('expected {"watch": {CAMERA: {"width": W, "fps": F}}}')
    if len(msg["watch"]) > MAX_WATCHED:
        raise ValueError(f"at most {MAX_WATCHED} cameras")
    watch = {}
    for camera, want in msg["watch"].items():
        if not CAMERA_NAME.fullmatch(camera):
            raise ValueError(f"{camera[:70]!r} is not a camera name")
        if not isinstance(want, dict):
            raise ValueError(f"{camera}: expected {{\"width\": W, \"fps\": F}}")
        width, fps = want.get("width", DEFAULT_WIDTH), want.get("fps", DEFAULT_FPS)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v == v for v in (width, fps)):
            raise ValueError(f"{camera}: width and fps are numbers")
        watch[camera] = Want(int(min(max(width, MIN_WIDTH), MAX_WIDTH)), float(min(max(fps, MIN_FPS), MAX_FPS)))
    return watch


def pack_message(meta: dict, jpeg: bytes) -> bytes:
    """One binary message of ``/api/live``: length, JSON, JPEG."""
    head = json.dumps(meta, separators=(",", ":")).encode()
    return struct.pack(">I", len(head)) + head + jpeg


async def live_socket(hub: LiveHub, request: web.Request) -> web.WebSocketResponse:
    """``WS /api/live``: the viewer's watch requests in, its frames out (see the module's docstring)."""
    ws = web.WebSocketResponse(heartbeat=20.0, compress=False, max_msg_size=MAX_CLIENT_TEXT,
                               writer_limit=WRITER_LIMIT)
    await ws.prepare(request)
    viewer = Viewer(asyncio.get_running_loop())
    hub._add_viewer(viewer)
    sender = asyncio.create_task(_send_frames(hub, ws, viewer))
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                try:
                    watch = parse_watch(msg.data)
                except ValueError as exc:
                    hub._count("bad_requests")
                    await ws.close(code=WSCloseCode.UNSUPPORTED_DATA, message=str(exc).encode()[:120])
                    break
                hub._set_watch(viewer, watch)
                viewer.look(watch)
            elif msg.type == WSMsgType.BINARY:
                hub._count("bad_requests")
                await ws.close(code=WSCloseCode.UNSUPPORTED_DATA, message=b"send text JSON")
                break
    finally:
        hub._remove_viewer(viewer)  # wanted() forgets it at once
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
    return ws


async def _send_frames(hub: LiveHub, ws: web.WebSocketResponse, viewer: Viewer) -> None:
    """One viewer's sender: whenever woken, each camera it was woken for whose chosen frame is due to
    it (``is_due``): the frame the hub chose when it woke it (so every viewer woken by one frame is
    sent that frame, however late it gets to it, and they share its JPEG), else the one chosen now.
    The frames of all its cameras are rendered side by side, then sent one at a time; a viewer woken
    again before it got to it takes the newer choice: what arrives meanwhile replaces, never queues."""
    loop = asyncio.get_running_loop()
    # camera -> when to look again: the result of the frame chosen stops being fresh then, and the
    # choice may move on with no new frame or result to wake it
    stale_at: dict[str, float] = {}
    try:
        while not ws.closed:
            viewer.wake.clear()
            cameras, viewer.look_at = viewer.look_at, {}
            now = loop.time()
            for camera, at in stale_at.items():
                if at <= now:
                    cameras.setdefault(camera, None)
            renders = []
            for camera, choice in cameras.items():
                stale_at.pop(camera, None)
                want = viewer.watch.get(camera)
                if want is None:
                    continue
                if choice is None:
                    choice = hub._choose(camera)
                if choice is None:
                    continue
                if choice.changes_in is not None:
                    stale_at[camera] = now + choice.changes_in + 0.01
                if not is_due(choice, viewer.got.get(camera), want.fps):
                    continue
                # one that does not decode is not tried again either
                viewer.got[camera] = Got(choice.mark, choice.frame.header.ts_ns)
                renders.append((camera, loop.run_in_executor(None, hub._render, choice, want.width)))
            for camera, render in renders:
                rendered = await render
                if rendered is None:
                    continue
                before = hub._arrived(camera)
                await ws.send_bytes(pack_message(*rendered))
                hub._count("sent")
                # frames that came while this one was being taken, less the one shown next
                if (during := hub._arrived(camera) - before) > 1:
                    hub._count("skipped_slow", during - 1)
            for camera in stale_at.keys() - viewer.watch.keys():
                del stale_at[camera]
            if not stale_at:
                await viewer.wake.wait()
                continue
            try:
                await asyncio.wait_for(viewer.wake.wait(), max(0.0, min(stale_at.values()) - loop.time()))
            except asyncio.TimeoutError:
                pass
    except ConnectionError:  # the client went away mid-send; the reading side sees the close
        pass
    except Exception:  # a bug, not the viewer's doing: say so, and end this viewer rather than freeze it
        structlog.get_logger().exception("live view failed", cameras=sorted(viewer.watch))
        await ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"server error")
