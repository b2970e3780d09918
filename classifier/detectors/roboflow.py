"""``roboflow:MODEL_ID``: detections from a self-hosted Roboflow Inference server, through
inference-sdk's ``InferenceHTTPClient`` (the server's v1 API: ``/model/registry``,
``/model/add``, ``/infer/object_detection``).

- The API key comes from ``ROBOFLOW_API_KEY`` (environment or ``.env``) and travels in the
  ``Authorization`` header, never in a URL, a log line or an event.
- A batch of frames is one ``infer`` call: the SDK splits it into requests of
  ``ceil(batch / concurrency)`` images and keeps up to ``--concurrency`` of them in flight.
- The SDK sets no timeout and retries some failures itself, so every call is bounded here by
  ``--infer-timeout``: a hung or dead server turns into an error for that batch (the worker
  reports it and takes the next frames), never a worker blocked for good. Calls still hung on
  the server hold one of a few caller threads; when all are held, a batch fails at once
  instead of queueing behind them. When the server answers again, detections resume.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Sequence

import structlog
from inference_sdk import InferenceConfiguration, InferenceHTTPClient

from camwire.classifier.detectors import Detection, Frame, FrameResult
from camwire.common.env import secret
from camwire.common.paths import name_list

DEFAULT_API_URL = "http://localhost:9001"
CALLERS = 2  # threads that may be waiting on the server at once (one in use, one spare)


class RoboflowDetector:
    def __init__(self, model_id: str, api_url: str = DEFAULT_API_URL, api_key: str | None = None,
                 confidence: float = 0.25, iou: float = 0.45, timeout_s: float = 10.0, concurrency: int = 4,
                 batch: int = 1, allowed: Sequence[str] | None = None) -> None:
        if not model_id:
            raise ValueError("roboflow needs a model id: --detector roboflow:MODEL_ID")
        self.model_id, self.timeout_s = model_id, timeout_s
        self.allowed = set(allowed) if allowed else None
        self.client = InferenceHTTPClient(api_url=api_url, api_key=api_key)
        self.client.configure(InferenceConfiguration(
            confidence_threshold=confidence, iou_threshold=iou,
            max_concurrent_requests=max(1, concurrency), max_batch_size=max(1, math.ceil(batch / max(1, concurrency))),
            class_filter=sorted(self.allowed) if self.allowed else None, api_key_transport="header"))
        self.client.select_api_v1()
        self.callers = ThreadPoolExecutor(max_workers=CALLERS, thread_name_prefix="roboflow")
        self.free = threading.Semaphore(CALLERS)
        self.name = f"roboflow:{model_id}"
        structlog.get_logger().info("roboflow client ready", model=model_id, api_url=api_url,
                                    api_key="set" if api_key else "none", concurrency=concurrency)

    def detect(self, frames: Sequence[Frame]) -> list[FrameResult]:
        if not self.free.acquire(blocking=False):
            raise TimeoutError(f"inference server has not answered {CALLERS} earlier calls")
        future: Future = self.callers.submit(self.client.infer, [image for _, image in frames], self.model_id)
        future.add_done_callback(lambda _: self.free.release())
        try:
            answer = future.result(timeout=self.timeout_s)
        except FutureTimeout:
            raise TimeoutError(f"inference server gave no answer within {self.timeout_s:g}s") from None
        answers = answer if isinstance(answer, list) else [answer]
        if len(answers) != len(frames):
            raise ValueError(f"inference server answered {len(answers)} results for {len(frames)} images")
        return [FrameResult(self._detections(a)) for a in answers]

    def _detections(self, answer: dict[str, Any]) -> list[Detection]:
        out = []
        for p in answer.get("predictions", []):
            label = str(p.get("class", p.get("class_id", "")))
            if self.allowed is not None and label not in self.allowed:
                continue
            x, y, w, h = (float(p[k]) for k in ("x", "y", "width", "height"))  # box centre and size
            out.append(Detection(label, float(p["confidence"]), (x - w / 2, y - h / 2, x + w / 2, y + h / 2)))
        return out


def build(arg: str, extra: dict[str, Any]) -> RoboflowDetector:
    allowed = name_list(extra.get("classes")) or None
    return RoboflowDetector(arg, api_url=extra.get("api_url") or DEFAULT_API_URL,
                            api_key=secret("ROBOFLOW_API_KEY"),
                            confidence=float(extra.get("confidence") or 0.25), iou=float(extra.get("iou") or 0.45),
                            timeout_s=float(extra.get("infer_timeout") or 10.0),
                            concurrency=int(extra.get("concurrency") or 4), batch=int(extra.get("batch") or 1),
                            allowed=allowed)
