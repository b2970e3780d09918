"""A protocol stand-in for a Roboflow Inference server (no real one is reachable from the tests).

It speaks the server's documented v1 HTTP API as inference-sdk uses it:
  - ``GET /model/registry`` -> ``{"models": [{"model_id", "task_type", ...}]}``
  - ``POST /model/add`` ``{"model_id"}`` -> the registry, with that model loaded
  - ``POST /infer/object_detection`` ``{"model_id", "image": {"type": "base64", "value"} | [..]}``
    -> ``{"predictions": [{"x", "y", "width", "height", "confidence", "class", "class_id"}],
    "image": {"width", "height"}}``, or a list of those for a list of images.
Its "model" finds one ``person`` in the middle quarter of every image (centre at w/2, h/2, size
w/4 x h/4), so every answer is known. ``mode`` makes it slow, answer 503, or hold requests until
``gather`` of them are in flight at once. Every request is recorded for the tests to inspect.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cv2
import numpy as np


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None


@dataclass
class Behaviour:
    mode: str = "ok"  # ok | slow | unavailable | gather
    delay_s: float = 0.0
    gather: int = 0
    barrier: threading.Barrier | None = None
    requests: list[Seen] = field(default_factory=list)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    in_flight: int = 0
    most_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class InferenceStandIn:
    def __init__(self, port: int) -> None:
        self.port = port
        self.state = Behaviour()
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "InferenceStandIn":
        state = self.state

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self, body: dict | None) -> None:
                with state.lock:
                    state.requests.append(Seen(self.command, self.path, dict(self.headers), body))

            def do_GET(self) -> None:
                self._record(None)
                if self.path.split("?")[0] == "/model/registry":
                    self._reply(200, {"models": list(state.models.values())})
                else:
                    self._reply(404, {"message": "not found"})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                self._record(body)
                path = self.path.split("?")[0]
                if path == "/model/add":
                    state.models[body["model_id"]] = {"model_id": body["model_id"], "task_type": "object-detection",
                                                      "batch_size": 16, "input_width": 640, "input_height": 640}
                    self._reply(200, {"models": list(state.models.values())})
                    return
                if path != "/infer/object_detection":
                    self._reply(404, {"message": "not found"})
                    return
                if state.mode == "unavailable":
                    self._reply(503, {"message": "model server busy"})
                    return
                with state.lock:
                    state.in_flight += 1
                    state.most_in_flight = max(state.most_in_flight, state.in_flight)
                try:
                    if state.mode == "slow":
                        time.sleep(state.delay_s)
                    elif state.mode == "gather":
                        state.barrier.wait(timeout=10)  # raises unless `gather` requests are here at once
                    images = body["image"] if isinstance(body["image"], list) else [body["image"]]
                    answers = [_answer(img) for img in images]
                    self._reply(200, answers if isinstance(body["image"], list) else answers[0])
                except threading.BrokenBarrierError:
                    self._reply(500, {"message": "requests did not arrive together"})
                finally:
                    with state.lock:
                        state.in_flight -= 1

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def set_mode(self, mode: str, delay_s: float = 0.0, gather: int = 0) -> None:
        self.state.mode, self.state.delay_s = mode, delay_s
        if mode == "gather":
            self.state.barrier = threading.Barrier(gather)

    def infer_requests(self) -> list[Seen]:
        return [r for r in self.state.requests if r.path.startswith("/infer/")]


def _answer(image: dict[str, Any]) -> dict[str, Any]:
    assert image["type"] == "base64"
    pixels = cv2.imdecode(np.frombuffer(base64.b64decode(image["value"]), np.uint8), cv2.IMREAD_COLOR)
    h, w = pixels.shape[:2]
    return {"predictions": [{"x": w / 2, "y": h / 2, "width": w / 4, "height": h / 4, "confidence": 0.9,
                             "class": "person", "class_id": 0, "detection_id": "d"}],
            "image": {"width": w, "height": h}, "time": 0.01}
