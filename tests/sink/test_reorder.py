"""The reorder window: one camera's results back in seq order, bounded by count and by time."""

from __future__ import annotations

from camwire.sink.reorder import Reorder


def push_all(window: Reorder, seqs, now: float = 0.0, ts=None) -> tuple[list[int], list[int]]:
    out, late = [], []
    for seq in seqs:
        released, was_late = window.push(seq, (ts or (lambda s: 1000 + s))(seq), seq, now)
        out += released
        if was_late:
            late.append(seq)
    return out, late


def test_out_of_order_results_come_out_in_seq_order() -> None:
    w = Reorder(window=4, max_wait_s=10.0)
    out, late = push_all(w, [1, 0, 2, 3])
    # the first release waits for the window to fill (nothing says which seq comes first) ...
    assert out == [] and len(w) == 4
    out, late = push_all(w, [5, 4, 6, 8])
    assert out == [0, 1, 2, 3, 4, 5, 6] and late == []  # ... then each goes as soon as those before it are in
    assert w.flush() == [8]


def test_a_gap_is_skipped_once_the_window_is_full() -> None:
    w = Reorder(window=3, max_wait_s=10.0)
    push_all(w, [0, 1, 2, 3])  # 0 released by the fill; 1, 2, 3 follow in order
    out, _ = push_all(w, [5, 6, 7])  # 4 never comes
    assert out == [] and len(w) == 3
    out, _ = push_all(w, [8])
    assert out == [5, 6, 7, 8] and w.skipped == 1


def test_a_gap_is_skipped_after_the_time_bound() -> None:
    w = Reorder(window=100, max_wait_s=1.0)
    assert push_all(w, [0, 1, 2], now=0.0)[0] == []
    assert w.expire(now=0.5) == []
    assert w.expire(now=1.0) == [0, 1, 2]  # the oldest waited its bound; the rest follow it in order
    out, _ = push_all(w, [4, 5], now=2.0)  # 3 is lost
    assert out == [] and w.expire(now=2.9) == [] and w.expire(now=3.0) == [4, 5]


def test_late_and_duplicate_results_are_counted_not_released() -> None:
    w = Reorder(window=2, max_wait_s=10.0)
    out, late = push_all(w, [0, 1, 2, 5, 6, 1, 5])  # 5, 6 wait for 3 and 4
    assert out == [0, 1, 2] and late == [1, 5] and w.late == 2  # 1 was released already, 5 is held
    assert w.flush() == [5, 6]


def test_an_extractor_restart_starts_the_order_afresh() -> None:
    w = Reorder(window=2, max_wait_s=10.0)
    assert push_all(w, [10, 11, 12, 14])[0] == [10, 11, 12]  # 14 waits for 13
    # seq runs from 0 again with a later capture time: what is held goes out, nothing is late
    out, late = push_all(w, [0, 1, 2], ts=lambda s: 5000 + s)
    assert out == [14, 0, 1, 2] and late == []


def test_the_same_frame_twice_is_a_duplicate_counted_late() -> None:
    w = Reorder(window=2, max_wait_s=10.0)
    w.push(1, 1001, "a", 0.0)
    assert w.push(1, 1001, "again", 0.0) == ([], True) and w.late == 1
    assert w.push(0, 1000, "b", 0.0) == ([], False) and w.out_of_order == 1
    assert w.flush() == ["b", "a"]

def test_a_sampling_gap_named_by_prev_costs_no_wait() -> None:
    """``--fps`` or the motion gate leave gaps in seq; each frame names the one sent before it."""
    w = Reorder(window=8, max_wait_s=10.0)
    assert w.push(0, 1000, "a", 0.0, prev=-1) == (["a"], False)  # the first its extractor sent
    assert w.push(10, 1010, "c", 0.0, prev=5) == ([], False)  # 5 is still to come
    assert w.push(5, 1005, "b", 0.0, prev=0) == (["b", "c"], False)
    assert w.skipped == 0
    assert w.push(20, 1020, "e", 0.0, prev=15) == ([], False)  # 15 was lost: waits for the bounds
    assert w.expire(10.0) == ["e"] and w.skipped == 9  # seqs 11-19 given up on
