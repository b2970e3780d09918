"""``camwire run``'s planner (camwire.plan) and its command line: flags and a file plan the same
children; an abbreviated flag is refused, never taken for a longer one; ``--cooldown`` is
accepted with a warning and passed on to no one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from camwire.cli import parse
from camwire.supervisor import plan
from conftest import ROOT

ENV = {**os.environ, "CAMWIRE_LOG_FORMAT": "json"}


def without_config(argv: list[str]) -> list[str]:
    """``argv`` less its ``--config FILE``: what a child is told besides the file."""
    i = argv.index("--config") if "--config" in argv else None
    return argv if i is None else argv[:i] + argv[i + 2:]


def test_flags_and_the_same_cameras_in_a_file_plan_the_same_children(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / name).write_bytes(b"")
    cfg = tmp_path / "camwire.toml"
    cfg.write_text(f'[cameras.a]\nurl = "{tmp_path / "a.mp4"}"\n\n[cameras.b]\nurl = "{tmp_path / "b.mp4"}"\n')
    common = ["--detector", "covered", "--once", "--record", "rec", "--web", "8081"]
    by_flags = plan(parse(["run", "--camera", f"a={tmp_path / 'a.mp4'}", "--camera", f"b={tmp_path / 'b.mp4'}",
                           *common]), tmp_path / "run")
    by_file = plan(parse(["run", "--config", str(cfg), *common]), tmp_path / "run")
    assert [(c.name, c.role) for c in by_flags] == [(c.name, c.role) for c in by_file] == [
        ("sink", "sink"), ("ventilator", "ventilator"), ("classifier-1", "classifier"), ("classifier-2", "classifier"),
        ("recorder", "recorder"), ("extractor-a", "extractor"), ("extractor-b", "extractor"), ("web", "web")]
    for flags, file in zip(by_flags, by_file):
        if flags.role in ("classifier", "recorder"):
            continue  # with a file they take their settings from it: only what run was given is on their line
        assert flags.argv == without_config(file.argv), flags.name
        assert flags.env == file.env, flags.name
    extractor = next(c for c in by_file if c.name == "extractor-a")
    assert str(tmp_path / "a.mp4") not in extractor.argv  # the URL is in its environment, never in ps
    assert extractor.env == {"CAMWIRE_SOURCE_0": str(tmp_path / "a.mp4")}


def test_cooldown_is_passed_to_no_child(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.mp4").write_bytes(b"")
    cfg = tmp_path / "camwire.toml"
    cfg.write_text(f'[run]\ncooldown = "2s"\n\n[classifier]\ndetector = "covered"\n\n'
                   f'[cameras.a]\nurl = "{tmp_path / "a.mp4"}"\n')
    for argv in (["--camera", "a=a.mp4", "--detector", "covered", "--cooldown", "2"], ["--config", str(cfg)]):
        children = plan(parse(["run", *argv]), tmp_path / "run")
        assert not [c.name for c in children if "--cooldown" in c.argv]


@pytest.mark.parametrize("where", ["flag", "file"])
def test_cooldown_is_accepted_with_a_warning(tmp_path: Path, where: str) -> None:
    cfg = tmp_path / "camwire.toml"
    cfg.write_text('[run]\ncooldown = "2s"\n')  # no cameras: run stops there, after the warning
    argv = ["--cooldown", "2"] if where == "flag" else ["--config", str(cfg)]
    done = subprocess.run([sys.executable, "-m", "camwire", "run", *argv], cwd=tmp_path, env=ENV,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr  # for having no camera, not for the cooldown
    warnings = [line for line in done.stderr.splitlines() if "cooldown does nothing" in line]
    assert len(warnings) == 1 and '"level": "warning"' in warnings[0], done.stderr
    assert "cannot start" in done.stderr.splitlines()[-1]


@pytest.mark.parametrize("argv", [
    ["run", "--camera", "a=a.mp4", "--detector", "covered", "--detect", "always"],
    ["run", "--camera", "a=a.mp4", "--detect", "always", "--detector", "covered"],
    ["sink", "--bind", "ipc:///nowhere", "--events", "e.jsonl", "--even", "events.jsonl"],
])
def test_an_abbreviated_flag_is_refused_naming_it(tmp_path: Path, argv: list[str]) -> None:
    """``--detect`` is not taken for ``--detector`` (nor ``--even`` for ``--events``)."""
    done = subprocess.run([sys.executable, "-m", "camwire", *argv], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    error = done.stderr.strip().splitlines()[-1]
    unknown = argv[argv.index("--detect" if "--detect" in argv else "--even")]
    assert error.startswith("camwire: error: unrecognized arguments:") and unknown in error.split(), done.stderr
    assert "Traceback" not in done.stderr


def test_a_cameras_detection_size_and_pixels_reach_its_own_extractor(tmp_path: Path, monkeypatch) -> None:
    """With --once each camera has an extractor given its camera as flags: its detect_size and
    pixel_format go with them, after [extractor]'s (the camera's own win, as in the file)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.mp4").write_bytes(b"")
    cfg = tmp_path / "camwire.toml"
    cfg.write_text(f'[classifier]\ndetector = "covered"\n\n[extractor]\ndetect_size = 640\n\n'
                   f'[cameras.a]\nurl = "{tmp_path / "a.mp4"}"\ndetect_size = 416\npixel_format = "yuv420"\n')
    extractor = next(c for c in plan(parse(["run", "--config", str(cfg), "--once"]), tmp_path / "run")
                     if c.role == "extractor")
    args = parse(extractor.argv)
    assert args.detect_size == 416 and args.pixel_format == "yuv420"
