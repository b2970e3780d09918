"""How ``camwire COMMAND --help`` writes a setting: its help as declared, its default in the
units people write (``7d``, ``1G``)."""

from __future__ import annotations

import argparse
from typing import Any


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; each option's default and, for durations and sizes, its units."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        kind = getattr(action.type, "__name__", "")
        if "duration" in kind and "30s" not in text:
            text += " (a duration: 30s, 5m, 2h, 7d)"
        elif "size" in kind and "200G" not in text:
            text += " (a size: 500M, 200G, 1.5T)"
        if ("default" not in text and action.option_strings and action.default not in (None, False)
                and action.default is not argparse.SUPPRESS):
            text += f" (default: {_in_units(action.default, kind)})"
        return text


def _in_units(default: Any, kind: str) -> str:
    """A numeric default as it would be written: 86400.0 seconds as ``1d``, 1073741824 bytes as
    ``1G``; anything else as argparse shows it."""
    if isinstance(default, (int, float)) and not isinstance(default, bool) and default > 0:
        if "duration" in kind:
            for unit, seconds in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1), ("ms", 0.001)):
                n = default / seconds
                if n >= 1 and abs(n - round(n)) < 1e-9:
                    return f"{round(n)}{unit}"
        elif "size" in kind:
            for unit, scale in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("k", 1 << 10)):
                if default >= scale and default % scale == 0 and (unit != "k" or default < 1 << 20):
                    return f"{default // scale}{unit}"
            if default >= 1 << 20:
                return f"{default} bytes, about {default / (1 << 20):.0f}M"
    return "%(default)s"
