"""Nothing lost to a restart: an extractor killed mid-run and started again (its seq back at 0)."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from pathlib import Path

from conftest import tcp

KEEP = ("motion_start", "camera_covered", "camera_uncovered")


def keeps(root: Path) -> dict[str, int]:
    """event id -> complete, as the recorder's index says."""
    try:
        with sqlite3.connect(root / "index.db") as db:
            return dict(db.execute("SELECT event_id, complete FROM keeps"))
    except sqlite3.OperationalError:  # the recorder is still creating its tables
        return {}


def test_extractor_restart_repeats_no_id_and_keeps_every_clip(pipeline_factory, daemons, sample_clip: Path,
                                                              tmp_path: Path) -> None:
    p = pipeline_factory()
    p.worker("worker-1", "covered")
    root, publish = tmp_path / "ring", tcp()
    daemons.start("recorder", "recorder", "--subscribe", publish, "--dir", str(root), "--events", p.events_pub,
                  "--segment", "2", "--pre", "1", "--post", "1", "--keep-types", ",".join(KEEP))
    extra = ("--publish", publish, "--publish-enc", "passthrough", "--publish-wait", "30", "--realtime")
    first = p.extractor("cam", str(sample_clip), extra=extra)
    covered = p.events.wait_type("camera_covered")
    first.send_signal(signal.SIGKILL)  # a crash mid-run: the next start begins at seq 0 again
    first.wait(timeout=10)
    since = len(p.events.seen)
    p.extractor("cam", str(sample_clip), extra=extra)
    again = p.events.wait_type("camera_covered", since=since)
    assert again["seq"] <= covered["seq"] + 25 and again["id"] != covered["id"]
    assert daemons.wait("extractor-cam", timeout=60) == 0  # the second run reads the file to its end

    # every event the sink made after the whole file: each id once, each snapshot its own file
    p.events.wait_type("camera_uncovered", since=since)
    events = p.events_written()
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids)), f"repeated ids: {sorted(i for i in ids if ids.count(i) > 1)[:5]}"
    snapshots = [e for e in events if e.get("snapshot")]
    assert snapshots and len({e["snapshot"] for e in snapshots}) == len(snapshots)
    for e in snapshots:
        assert not Path(e["snapshot"]).is_absolute()  # relative to the data dir, never a host path
        assert json.loads((p.data_dir / e["snapshot"]).with_suffix(".json").read_text())["id"] == e["id"]

    # and the recorder keeps a complete clip for every one of them, none refused as a repeat
    wanted = {e["id"] for e in events if e["type"] in KEEP}
    deadline = time.monotonic() + 60
    while not (wanted <= {i for i, done in keeps(root).items() if done}) and time.monotonic() < deadline:
        time.sleep(0.2)  # the index is a file: poll it
    done = {i for i, complete in keeps(root).items() if complete}
    assert wanted <= done, f"{len(wanted - done)} of {len(wanted)} clips not kept"
    for event_id in wanted:
        folder = next((root / "kept").glob(f"*/{event_id}"))
        kept = json.loads((folder / "event.json").read_text())
        assert kept["complete"] and kept["files"] and all((folder / f).exists() for f in kept["files"])
    daemons.stop("recorder")
    assert "keeps_refused" not in daemons.stats("recorder")  # no keep refused as a repeat
