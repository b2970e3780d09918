"""What ``make demo`` runs: the shipped clip (camwire/media) through every daemon with the
built-in model (``--detector onnx``), as ``camwire run --once`` starts them: people are tracked
as objects with snapshots, and the clip is kept around them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

DEMO_CLIP = ROOT / "camwire" / "media" / "people-walking-30s.mp4"


def test_the_demo_tracks_the_people_of_its_clip_with_the_built_in_model(tmp_path: Path) -> None:
    assert DEMO_CLIP.is_file() and (DEMO_CLIP.parent / "ATTRIBUTION.md").is_file()
    events = tmp_path / "events.jsonl"
    env = {**os.environ, "CAMWIRE_LOG_FORMAT": "json"}
    done = subprocess.run([sys.executable, "-m", "camwire", "run", "--camera", f"demo={DEMO_CLIP}", "--detector",
                           "onnx", "--workers", "2", "--once", "--events", str(events), "--data-dir",
                           str(tmp_path), "--record", str(tmp_path / "recordings"), "--segment", "4", "--pre", "2",
                           "--post", "2", "--keep-types", "object", "--stats", str(tmp_path / "stats.json")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    written = [json.loads(line) for line in events.read_text().splitlines()]
    people = [e for e in written if e["type"] == "object" and e["label"] == "person" and e["phase"] == "start"]
    assert len(people) >= 5  # pedestrians cross the square all through its 30 s
    assert all((tmp_path / e["snapshot"]).is_file() for e in people if e["snapshot"])
    assert any(e["snapshot"] for e in people)
    kept = list((tmp_path / "recordings").rglob("kept/**/*.mkv")) or list((tmp_path / "recordings").rglob("kept/*"))
    assert kept  # the clips around the people's events
