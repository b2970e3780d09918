"""``camwire extractor``: the process around the camera threads.

The main thread owns the publish socket (``--publish``, an XPUB so it can tell when a subscriber
is there): camera threads hand it every decoded frame, or every compressed packet with
``--publish-enc passthrough``, over an inproc PUSH, and it forwards them without blocking. Each camera thread owns its own
PUSH socket to the ventilator, so one slow or dead camera never holds up another.
"""

from __future__ import annotations

import argparse

import zmq

from common import wire
from common.counters import write_stats
from common.lifecycle import StopFlag
from common.logs import configure
from common.sockets import make_socket
from extractor.camera import PASSTHROUGH, RELAY_HWM, CameraLoop, CameraSpec
from extractor.sampling import Sampling

RELAY_ADDR = "inproc://publish-relay"
PUB_HWM = 50  # frames per subscriber; a slow recorder loses frames (it sees the seq gap), we never wait


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--camera", required=True, help="camera name, used in every message and event")
    p.add_argument("--source", action="append", required=True, metavar="URL",
                   help="file, rtsp://, http(s)://, HLS .m3u8; repeat for fallbacks in order of preference")
    p.add_argument("--push", required=True, metavar="ADDR", help="ventilator frontend, e.g. tcp://host:5555")
    add_sampling_arguments(p)
    p.add_argument("--publish", metavar="ADDR", help="bind a PUB socket of every decoded frame (for the recorder)")
    p.add_argument("--publish-enc", default="lz4", choices=(*wire.ENCODINGS, PASSTHROUGH),
                   help="encoding on --publish; passthrough sends the source's H.264/HEVC packets undecoded")
    p.add_argument("--publish-wait", type=float, default=0.0, metavar="S",
                   help="before reading, wait up to S seconds for a subscriber (a file recorded from its first frame)")
    p.add_argument("--enc", default="raw", choices=wire.ENCODINGS, help="encoding towards the ventilator")
    p.add_argument("--open-timeout", type=float, default=10.0, metavar="S")
    p.add_argument("--read-timeout", type=float, default=10.0, metavar="S")
    p.add_argument("--stats", metavar="PATH", help="write counters as JSON here at exit")


def add_sampling_arguments(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--every", type=int, default=1, metavar="N", help="send every N-th frame")
    group.add_argument("--fps", type=float, metavar="F", help="send about F frames a second")
    group.add_argument("--keyframes", action="store_true", help="decode and send key frames only")
    p.add_argument("--realtime", action="store_true", help="pace a file at its native rate, as a camera would be")


def sampling_from_args(args: argparse.Namespace) -> Sampling:
    return Sampling(every=args.every, fps=args.fps, keyframes=args.keyframes)


def main(args: argparse.Namespace) -> int:
    log = configure("extractor")
    spec = CameraSpec(name=args.camera, sources=tuple(args.source), sampling=sampling_from_args(args),
                      realtime=args.realtime, enc=args.enc, open_timeout=args.open_timeout,
                      read_timeout=args.read_timeout)
    stop = StopFlag().install()
    with zmq.Context() as ctx:
        stats = run_cameras(ctx, [spec], args.push, args.publish, args.publish_enc, stop, log,
                            publish_wait=args.publish_wait)
    write_stats(args.stats, stats)
    return 0


def run_cameras(ctx: zmq.Context, specs: list[CameraSpec], push: str, publish: str | None,
                publish_enc: str, stop: StopFlag, log, publish_wait: float = 0.0) -> dict:
    """Run camera threads until all end (files) or a stop is asked; returns their counters."""
    pub = relay = None
    if publish:
        pub = make_socket(ctx, zmq.XPUB, bind=publish, sndhwm=PUB_HWM, linger=1000)
        relay = make_socket(ctx, zmq.PULL, bind=RELAY_ADDR, rcvhwm=RELAY_HWM, linger=0)
        if publish_wait > 0:
            subscribed = pub.poll(int(publish_wait * 1000))
            log.info("subscriber present" if subscribed else "no subscriber yet; going on", publish=publish)
    if publish and publish_enc != PASSTHROUGH and any(s.sampling.keyframes for s in specs):
        log.warning("with --keyframes, --publish carries key frames only; "
                    "--publish-enc passthrough records every frame without decoding")
    cameras = [CameraLoop(ctx, spec, push, RELAY_ADDR if publish else None, publish_enc, stop) for spec in specs]
    log.info("extractor started", cameras=[s.name for s in specs], push=push, publish=publish,
             sampling={s.name: s.sampling.describe() for s in specs})
    for cam in cameras:
        cam.start()
    poller = zmq.Poller()
    if relay is not None:
        poller.register(relay, zmq.POLLIN)
        poller.register(pub, zmq.POLLIN)
    try:
        while any(cam.is_alive() for cam in cameras) and not stop.is_set():
            if relay is None:
                stop.wait(0.2)
                continue
            for sock, _ in poller.poll(200):
                if sock is relay:
                    _forward(relay, pub)
                else:
                    pub.recv_multipart()  # a (un)subscription: nothing to do with it
    finally:
        stop.set()
        for cam in cameras:
            cam.join(timeout=5.0)
        if relay is not None:
            _forward(relay, pub)  # what the cameras handed over last (a file's final frames, its eos)
            relay.close()
            pub.close()
    stats = {cam.spec.name: cam.counters.snapshot() for cam in cameras}
    log.info("extractor stopped", stats=stats)
    return stats


def _forward(relay: zmq.Socket, pub: zmq.Socket) -> None:
    """Move every frame waiting on the relay to the PUB socket (PUB never blocks; it drops at HWM)."""
    while True:
        try:
            parts = relay.recv_multipart(flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return
        pub.send_multipart(parts, copy=False)
