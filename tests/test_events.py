"""What results and status become: events, debounced."""

from __future__ import annotations

from classifier.events import Events


def result(seq: int, covered: bool | None = None, labels=(), ts: float | None = None, after: int = 3) -> dict:
    flags = {} if covered is None else {"covered": covered, "covered_after": after}
    return {"camera": "c", "seq": seq, "ts_ns": int((ts if ts is not None else seq / 10) * 1e9),
            "detections": [{"label": lab, "confidence": 0.9, "box": [0, 0, 1, 1]} for lab in labels],
            "flags": flags}


def types(events: Events, results) -> list[str]:
    return [e["type"] for r in results for e in events.on_result(r)]


def test_covered_fires_once_after_n_frames_and_uncovered_once() -> None:
    seq = [False] * 3 + [True] * 10 + [False] * 10
    assert types(Events(), [result(i, c) for i, c in enumerate(seq)]) == ["camera_covered", "camera_uncovered"]


def test_short_covered_blip_is_ignored() -> None:
    seq = [False, True, True, False, True, False]
    assert types(Events(), [result(i, c) for i, c in enumerate(seq)]) == []


def test_stale_result_does_not_move_state_back() -> None:
    ev = Events()
    assert types(ev, [result(i, True, after=2) for i in (1, 2)]) == ["camera_covered"]
    assert types(ev, [result(0, False, after=1)]) == []


def test_detection_and_motion_cooldown() -> None:
    ev = Events(cooldown_s=1.0)
    got = types(ev, [result(i, labels=("motion", "person"), ts=i * 0.3) for i in range(8)])
    assert got == ["motion", "detection"] * 2  # at 0 s and 1.2 s; 2.1 s is within 1 s of 1.2 s
    assert ev.counters.get("suppressed", "c", "motion") == 6


def test_status_changes_only() -> None:
    ev = Events()
    out = [e["type"] for s in ("online", "online", "offline", "offline", "online")
           for e in ev.on_status({"camera": "c", "state": s, "ts_ns": 0, "reason": "x"})]
    assert out == ["camera_online", "camera_offline", "camera_online"]


def test_drained_when_all_expected_results_are_in() -> None:
    ev = Events()
    ev.on_result(result(0))
    ev.on_eos({"camera": "c", "results": 2})
    assert not ev.drained("c")
    ev.on_result(result(1))
    assert ev.drained("c")
