"""Durations and sizes as people write them: ``30s``, ``5m``, ``7d``, ``200G``, ``1.5T``, ``5%``.

One reading for flags and ``camwire.toml`` alike (each is an argparse ``type``); a bare number is
seconds or bytes. A value that does not read raises ``argparse.ArgumentTypeError`` with a message
that says what would, so the CLI and check-config print the same line.
"""

from __future__ import annotations

import argparse
import math
import re

DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_NUMBER_UNIT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z%]*)\s*$")


def _split(text: object, what: str, example: str) -> tuple[float, str]:
    if isinstance(text, bool):
        raise argparse.ArgumentTypeError(f"{what} like {example}, not {text!r}")
    if isinstance(text, (int, float)):
        number, unit = float(text), ""
    else:
        m = _NUMBER_UNIT.match(str(text))
        if not m:
            raise argparse.ArgumentTypeError(f"{what} like {example}, not {text!r}")
        number, unit = float(m.group(1)), m.group(2).lower()
    if not math.isfinite(number) or number < 0:
        raise argparse.ArgumentTypeError(f"{what} like {example}, not {text!r}")
    return number, unit


def duration(text: object) -> float:
    """Seconds: ``30`` or ``30s``, ``500ms``, ``5m``, ``2h``, ``7d``, ``1w``."""
    number, unit = _split(text, "a duration", "30s, 5m, 7d")
    if unit not in DURATION_UNITS and unit != "":
        raise argparse.ArgumentTypeError(f"a duration like 30s, 5m, 7d, not {text!r} "
                                         f"(units: {', '.join(DURATION_UNITS)})")
    return number * DURATION_UNITS.get(unit, 1.0)


def size(text: object) -> int:
    """Bytes: ``1048576`` or ``1M``, ``200G``, ``1.5T``, ``64k`` (binary: k = 1024); ``B``/``iB`` allowed."""
    number, unit = _split(text, "a size", "500M, 200G")
    unit = unit.removesuffix("ib").removesuffix("b") if unit not in ("b", "") else ""
    if unit not in SIZE_UNITS:
        raise argparse.ArgumentTypeError(f"a size like 500M, 200G, not {text!r} (units: k, M, G, T)")
    return int(number * SIZE_UNITS[unit])


def percent(text: object) -> float:
    """A share of a volume: ``5%`` or ``0.05`` -> 0.05."""
    number, unit = _split(text, "a percentage", "5%")
    if unit == "%":
        number /= 100.0
    elif unit:
        raise argparse.ArgumentTypeError(f"a percentage like 5%, not {text!r}")
    if number > 1:
        raise argparse.ArgumentTypeError(f"a percentage up to 100%, not {text!r}")
    return number


def nonnegative(convert):
    """``convert``, refusing a number below 0: a count where 0 turns a thing off."""
    def checked(text: object):
        value = convert(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"0 or more, not {text!r}")
        return value
    checked.__name__ = f"nonnegative {convert.__name__}"
    return checked


def positive(convert):
    """``convert``, refusing 0: for a segment length, a heartbeat."""
    def checked(text: object):
        value = convert(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"more than 0, not {text!r}")
        return value
    checked.__name__ = f"positive {convert.__name__}"
    return checked
