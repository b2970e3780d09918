"""Durations, sizes and percentages as written in flags and camwire.toml; event ids."""

from __future__ import annotations

import argparse

import pytest

from camwire.common.ids import event_id
from camwire.common.units import duration, percent, positive, size


@pytest.mark.parametrize("text, seconds", [("30", 30), (30, 30), (1.5, 1.5), ("500ms", 0.5), ("30s", 30), ("5m", 300),
                                           ("2h", 7200), ("7d", 604800), ("1w", 604800), (" 2 h ", 7200)])
def test_durations(text, seconds) -> None:
    assert duration(text) == seconds


@pytest.mark.parametrize("text, n", [("1048576", 1 << 20), (1024, 1024), ("1M", 1 << 20), ("200G", 200 << 30),
                                     ("1.5T", int(1.5 * (1 << 40))), ("64k", 65536), ("500MB", 500 << 20),
                                     ("2GiB", 2 << 30), ("10b", 10)])
def test_sizes(text, n) -> None:
    assert size(text) == n


@pytest.mark.parametrize("convert, text", [(duration, "5 parsecs"), (duration, "-1s"), (duration, "nan"),
                                           (duration, True), (size, "lots"), (size, "5x"), (size, "inf"),
                                           (percent, "150%"), (percent, "5 apples"), (positive(duration), "0s")])
def test_refusals_say_what_would_do(convert, text) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="like|more than|up to"):
        convert(text)


def test_percent() -> None:
    assert percent("5%") == 0.05 and percent(0.1) == 0.1


def test_event_ids_are_unique_and_sort_in_time_order() -> None:
    a = event_id(1_700_000_000_000_000_001, "door", "detection")
    b = event_id(1_700_000_000_000_000_002, "door", "detection")
    assert a == "20231114T221320.000000001Z-door-detection" and a < b
    assert event_id(1_700_000_000_000_000_001, "door", "detection", n=1) != a
    assert event_id(1_700_000_000_000_000_001, "door", "motion") != a
