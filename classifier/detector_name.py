"""The name a worker serves its detector under, the same on every host: what a worker says in
its ``ready`` (common.wire.Ready.detector) and what a camera's ``detector`` in camwire.toml is
matched against by the ventilator (classifier.dispatch). Light: the ventilator imports it."""

from __future__ import annotations

import os


def served_name(spec: str | None) -> str | None:
    """The detector name a worker serves without ``--serves``: its ``--detector`` spec with each
    ``onnx`` model named by its file name, not its path (``onnx:/opt/m/yolov8n.onnx`` ->
    ``onnx:yolov8n.onnx``; ``onnx:path=/opt/m/x.onnx,layout=v8`` -> ``onnx:path=x.onnx,layout=v8``),
    so workers on two hosts with the same model in different folders serve one detector, and a
    camera's ``detector`` in camwire.toml names it the same way everywhere."""
    if not spec:
        return spec
    parts = []
    for item in spec.split("+"):
        name, sep, arg = item.strip().partition(":")
        if name == "onnx" and arg:
            if "=" not in arg:
                arg = os.path.basename(arg)
            else:  # options: only the path's value is a host's own
                arg = ",".join(f"path={os.path.basename(v)}" if k.strip() == "path" else f"{k}{eq}{v}"
                               for k, eq, v in (o.partition("=") for o in arg.split(",") if o))
        parts.append(f"{name}{sep}{arg}")
    return "+".join(parts)
