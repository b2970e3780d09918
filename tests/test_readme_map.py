"""The README's map of the code matches the tree: every module it names exists, and every module
of camwire's packages is named (itself, or a folder of it as a whole)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "extractor", "classifier", "sink", "recorder", "web", "camwire")


def _mapped() -> set[Path]:
    """The paths the map's rows name: a name with a ``/`` sets the folder the bare names after it
    are in (``sink/daemon.py``, ``events.py`` is sink/events.py)."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("### Map of the code"):]
    found: set[Path] = set()
    for row in (line for line in table.splitlines() if line.startswith("| `")):
        first = row.split(" | ")[0]
        folder = Path(".")
        for name in re.findall(r"`([^`]+)`", first):
            if "/" in name.rstrip("/"):  # from the top: sets the folder
                path = Path(name.rstrip("/"))
                folder = path if name.endswith("/") else path.parent
                found.add(path)
            else:  # in the folder named last: a module, or a folder of it (``detectors/``)
                found.add(folder / name.rstrip("/"))
    return found


def test_every_module_the_map_names_exists() -> None:
    missing = sorted(str(p) for p in _mapped() if not (ROOT / p).exists())
    assert missing == []


def test_every_module_is_on_the_map() -> None:
    mapped = _mapped()
    unmapped = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if rel.name == "__init__.py" or rel.name == "__main__.py":
                continue
            if not any(rel == m or m in rel.parents for m in mapped):
                unmapped.append(str(rel))
    assert unmapped == []
