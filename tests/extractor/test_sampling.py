from __future__ import annotations

import pytest

from camwire.common.lifecycle import backoff_delay
from camwire.extractor.sampling import Sampler, Sampling


def test_every_n() -> None:
    s = Sampler(Sampling(every=3))
    assert [s.take(i / 25) for i in range(7)] == [True, False, False, True, False, False, True]


def test_target_fps_from_25() -> None:
    s = Sampler(Sampling(fps=5))
    taken = [i for i in range(50) if s.take(i / 25)]
    assert taken == list(range(0, 50, 5))


def test_target_fps_does_not_burst_after_a_stall() -> None:
    s = Sampler(Sampling(fps=2))
    times = [0.0, 0.1, 5.0, 5.1, 5.5, 5.6]  # a 5 s hole in the stream
    assert [s.take(t) for t in times] == [True, False, True, False, True, False]


def test_one_mode_only() -> None:
    with pytest.raises(ValueError):
        Sampling(every=2, keyframes=True)


def test_backoff_is_capped_exponential() -> None:
    assert [backoff_delay(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert backoff_delay(50) == 30.0
