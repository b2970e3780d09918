"""What a killed recorder left: the index rows of files it had open, completed from the files.

A file is deleted only when it reads and holds no frame (the recorder died before its first
cluster); one that cannot be read keeps its row, and is logged and counted (``recover_failed``).
A recovered row's ``last_seq`` is its first seq plus the frames the file holds (and the gaps its
row had): a hole after that, or frames lost with the kill, are counted as a gap at the camera's
first frame after the restart (recorder.ring), so every seq is in a file or counted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av

from camwire.common.counters import Counters
from camwire.common.logs import RepeatLimiter
from camwire.recorder.index import Index


def recover(root: Path, index: Index, ours: set[int], counters: Counters, log: Any, repeats: RepeatLimiter) -> None:
    """Complete the index rows of files a killed recorder left open (not ``ours``: this run's)."""
    for seg in index.open_segments():
        if seg.id in ours:
            continue
        path = root / seg.path
        try:
            frames, last_ms = probe(path)
            size = path.stat().st_size
        except FileNotFoundError:
            frames, last_ms, size = 0, 0, 0
        except OSError as exc:
            counters.add("recover_failed", type(exc).__name__)
            repeats(f"probe:{seg.path}", "segment from an earlier run not readable; its row kept",
                    level="error", path=seg.path, error=str(exc))
            continue
        if frames == 0:
            path.unlink(missing_ok=True)
            index.delete_segment(seg.id)
            log.warning("empty segment from an earlier run removed", path=seg.path)
            continue
        end_ns = end_of(seg.start_ns, frames, last_ms)
        # its last seq as far as the file tells (see the module's doc)
        first_seq = index.first_seq(seg.id)
        last_seq = None if first_seq is None else first_seq + frames - 1 + seg.gaps
        index.close_segment(seg.id, end_ns, size, frames, seg.gaps, last_seq)
        counters.add("recovered")
        log.info("segment recovered", path=seg.path, frames=frames)


def probe(path: Path) -> tuple[int, int]:
    """Packets in a (possibly truncated) segment file, and its last timestamp in ms.

    A file cut off mid-cluster reads up to the cut; one that is not Matroska at all (a header
    never written) holds no frame. An OSError (unreadable, an I/O error) is raised: such a file
    is not known to be empty."""
    frames, last = 0, 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for packet in container.demux(stream):
                if packet.size and packet.pts is not None:
                    frames += 1
                    last = max(last, int(packet.pts * packet.time_base * 1000))
    except av.error.FFmpegError as exc:
        if isinstance(exc, OSError):
            raise
    except IndexError:
        pass  # no video stream: the header was cut off
    return frames, last


def end_of(start_ns: int, frames: int, last_ms: int) -> int:
    """Where a file that starts at ``start_ns`` ends, from what :func:`probe` found in it: past
    its newest frame by the mean frame interval; its start when it holds no frame."""
    step_ms = last_ms / max(1, frames - 1)
    return start_ns + int((last_ms + step_ms) * 1e6)
