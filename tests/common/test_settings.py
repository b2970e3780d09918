"""Every setting of the typed model (common.settings), walked: from camwire.toml, from its flag, and
from ``camwire run`` (for the groups run hands its children), it reaches the command with the same
type and value; a value of the wrong type and an unknown key are refused at their line by
check-config's loader, by the command's start and by a reload (the daemon's config_loader)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from camwire.cli import parse
from camwire.common.config import ConfigError, load_config
from camwire.common.geometry import Polygon
from camwire.common.settings import SECTIONS
from camwire.common.settings.model import Field, settings_of
from camwire.common.settings.shared import DetectorOptions, RecordingOptions, SamplingOptions
from camwire.plan import plan
from conftest import ROOT

ADDR = "tcp://127.0.0.1:9"
# what each section needs to start at all (so that the one setting under test is all that varies)
REQUIRED = {"extractor": {"push": ADDR}, "ventilator": {"frontend": ADDR, "backend": "tcp://127.0.0.1:10"},
            "classifier": {"connect": ADDR, "sink": "tcp://127.0.0.1:10", "detector": "covered"},
            "sink": {"bind": ADDR, "events": "events.jsonl"}, "recorder": {"subscribe": [ADDR], "dir": "ring"},
            "web": {}, "run": {"camera": ["cam=clip.mp4"], "detector": "covered"}}
# values whose meaning only some text has: (as written, as the command gets it)
SPECIAL: dict[str, tuple[Any, Any]] = {
    "route": (["cam=objects"], [("cam", "objects")]),
    "kafka_option": (["sasl.username=camwire"], [("sasl.username", "camwire")]),
    "daemons": (["sink=tcp://10.0.0.4:5570"], [("sink", "tcp://10.0.0.4:5570")]),
    "mask": (["[[0, 0], [0.5, 0], [0.5, 0.5]]"], None),  # a Polygon, compared below
    "camera": (["cam=clip.mp4"], [("cam", ["clip.mp4"])]),
    "trusted_proxy": (["10.0.0.0/24"], ["10.0.0.0/24"]),
    "umask": ("0022", 0o022),
    "mqtt_discovery": ("ha", "ha"),
    "keep_types": ("object", "object"),
    "detector": ("covered", "covered"),
    "mqtt": ("mqtt://127.0.0.1:1883/camwire", "mqtt://127.0.0.1:1883/camwire"),
    "webhook": ("http://127.0.0.1:9/hook", "http://127.0.0.1:9/hook"),
    "kafka": ("127.0.0.1:9092/events", "127.0.0.1:9092/events"),
    "bind": ("tcp://127.0.0.1:11", "tcp://127.0.0.1:11"),
    "segment": ("7s", 7.0),
    "exit_when_drained": ("cam", "cam"),
    "exit_when_ended": ("cam", "cam"),
    "cameras": ("cam", "cam"),
}
ADDRESSES = {"push", "publish", "publish_detections", "frontend", "backend", "connect", "sink", "events",
             "subscribe", "detections"}
NOT_A_FLAG_VALUE = {"config_file"}  # --config itself


def sample(section: str, f: Field, tmp: Path) -> tuple[Any, Any]:
    """A value for ``f`` other than its default: (as camwire.toml writes it, as the command gets it)."""
    written, expected = _sample(section, f, tmp)
    if f.opt.repeat and not isinstance(written, list):  # type: ignore[union-attr]
        return [written], [expected]
    return written, expected


def _sample(section: str, f: Field, tmp: Path) -> tuple[Any, Any]:
    name, o = f.name, f.opt
    assert o is not None
    if name in ("rules", "labels"):  # a file the hooks read
        path = tmp / name
        path.write_text("" if name == "rules" else "person\n")
        return str(path), str(path)
    if name in ("curve_key", "curve_clients", "curve_servers"):
        return KEYS[name], KEYS[name]
    if section == "web" and name == "bind":
        return "127.0.0.2", "127.0.0.2"
    if section == "extractor" and name == "camera":
        return "cam", "cam"
    if section == "web" and name == "events":
        return "events.jsonl", "events.jsonl"
    if name in SPECIAL and not (section == "recorder" and name == "events"):
        return SPECIAL[name]
    if name in ADDRESSES:
        value = "tcp://127.0.0.1:12"
        return ([value], [value]) if o.repeat else (value, value)
    if o.choices:
        choice = next(c for c in reversed(o.choices) if c != f.default)
        return choice, choice
    kind = getattr(o.parse, "__name__", "") if o.parse else ""
    base = f.kind if f.kind in (int, float, str, bool) else next(
        (t for t in getattr(f.kind, "__args__", ()) if t in (int, float, str, bool)), str)
    if "duration" in kind:
        return "7s", 7.0
    if "size" in kind:
        return "3M", 3 << 20
    if "percent" in kind:
        return "7%", 0.07
    if "port" in kind:
        return 9123, 9123
    if base is bool:
        return (not f.default), (not f.default)
    if base is int or "int" in kind:
        return 7, 7
    if base is float:
        return 0.5, 0.5
    return "word", "word"


def toml(value: Any) -> str:
    return json.dumps(value)  # a string, a number, a list or a boolean is written alike in both


def words(f: Field, value: Any) -> list[str]:
    if value is True:
        return [f.flag]
    if value is False:
        return [f"--no-{f.flag[2:]}"]
    return [w for v in (value if isinstance(value, list) else [value]) for w in (f.flag, str(v))]


def same(got: Any, expected: Any, name: str) -> bool:
    if name == "mask":
        return [p.to_list() for p in got] == [[[0, 0], [0.5, 0], [0.5, 0.5]]]
    return got == expected and type(got) is type(expected)


def cases() -> list[tuple[str, str]]:
    return [(section, f.name) for section, cls in SECTIONS.items() for f in settings_of(cls, cli=True)
            if f.name not in NOT_A_FLAG_VALUE and not f.opt.deprecated]  # type: ignore[union-attr]


KEYS: dict[str, str] = {}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A real CURVE key pair (camwire keygen), made once: the servers' and clients' folders."""
    folder = tmp_path_factory.mktemp("keys")
    subprocess.run([sys.executable, "-m", "camwire", "keygen", "--dir", str(folder), "host"], check=True,
                   capture_output=True, cwd=ROOT)
    (folder / "clients").mkdir()
    for server in ("ventilator", "sink", "extractor"):  # the servers this host's daemons connect to
        (folder / f"{server}.key").write_bytes((folder / "host.key").read_bytes())
    return {"curve_key": str(folder / "host.key_secret"), "curve_clients": str(folder / "clients"),
            "curve_servers": str(folder)}


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keys: dict[str, str]) -> Path:
    """Each case in its own folder (relative paths land there)."""
    monkeypatch.chdir(tmp_path)
    KEYS.update(keys)
    (tmp_path / "clip.mp4").write_bytes(b"")
    return tmp_path


def field_of(section: str, name: str) -> Field:
    return next(f for f in settings_of(SECTIONS[section]) if f.name == name)


def needed(section: str, name: str) -> dict[str, Any]:
    """What the section needs besides ``name``: what it always needs, and ``name``'s companions
    (CURVE's three keys go together; a Kafka option needs Kafka)."""
    out = {k: v for k, v in REQUIRED[section].items() if k != name}
    if name.startswith("curve_"):
        out.update({k: v for k, v in KEYS.items() if k != name})
    if name == "kafka_option":
        out["kafka"] = "127.0.0.1:9092/events"
    return out


def required_file(section: str, name: str) -> str:
    return "".join(f"{k} = {toml(v)}\n" for k, v in needed(section, name).items())


def required_flags(section: str, name: str) -> list[str]:
    return [w for k, v in needed(section, name).items() for w in words(field_of(section, k), v)]


@pytest.mark.parametrize("section,name", cases())
def test_a_setting_from_the_file_and_from_its_flag_reaches_the_command_alike(section: str, name: str,
                                                                             in_tmp: Path) -> None:
    f = field_of(section, name)
    written, expected = sample(section, f, in_tmp)
    config = in_tmp / "camwire.toml"
    cameras = '[cameras.cam]\nurl = "clip.mp4"\n' if section == "run" else ""
    config.write_text(f"[{section}]\n{required_file(section, name)}{name} = {toml(written)}\n{cameras}")
    if section == "run" and name == "camera":
        config.write_text(f"[{section}]\n{required_file(section, name)}{name} = {toml(written)}\n")
    from_file = parse([section, "--config", str(config)])
    assert same(getattr(from_file, name), expected, name), (getattr(from_file, name), expected)
    from_flag = parse([section, *required_flags(section, name), *words(f, written)])
    assert same(getattr(from_flag, name), expected, name), (getattr(from_flag, name), expected)
    assert name in from_flag.given


HANDED_ON = {"classifier": DetectorOptions, "extractor": SamplingOptions, "recorder": RecordingOptions}


@pytest.mark.parametrize("role,name", [(role, f.name) for role, group in HANDED_ON.items()
                                       for f in settings_of(group, cli=True)
                                       if not (role == "classifier" and f.name == "detector")])
def test_a_setting_camwire_run_hands_on_reaches_its_child_alike(role: str, name: str, in_tmp: Path) -> None:
    f = field_of("run", name)
    written, expected = sample(role, f, in_tmp)
    if name in ("fps", "keyframes"):  # they exclude --every: the child gets only the one given
        written, expected = ("2.5", 2.5) if name == "fps" else (True, True)
    record = ["--record", str(in_tmp / "ring")] if role == "recorder" else []
    run = parse(["run", "--camera", "cam=clip.mp4", "--detector", "covered", *record, *words(f, written)])
    child = next(p for p in plan(run, in_tmp / "run") if p.role == role)
    got = parse(child.argv)
    assert same(getattr(got, name), expected, name), (child.argv, getattr(got, name), expected)


def bad_value(f: Field) -> Any:
    """A value no setting of ``f``'s type takes: a table for a value, text for a boolean."""
    return "yes" if f.kind is bool else {"a": 1}


@pytest.mark.parametrize("section,name", cases())
def test_a_value_of_the_wrong_type_is_refused_at_its_line_everywhere(section: str, name: str, in_tmp: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    f = field_of(section, name)
    config = in_tmp / "camwire.toml"
    good = f"[{section}]\n" + "".join(f"{k} = {toml(v)}\n" for k, v in REQUIRED[section].items() if k != name)
    config.write_text(good)
    own = words(f, REQUIRED[section][name]) if name in REQUIRED[section] else []  # a required one as a flag
    running = parse([section, "--config", str(config), *own]) if section != "run" else None
    bad = good + ("\n# the mistake:\n" + (f"{name} = {{a = 1}}\n" if f.kind is not bool else f"{name} = \"yes\"\n"))
    config.write_text(bad)
    line = bad.splitlines().index(next(x for x in bad.splitlines() if x.startswith(f"{name} ="))) + 1
    with pytest.raises(ConfigError) as refused:  # check-config's loader
        load_config(config)
    assert refused.value.line == line and name in refused.value.reason
    with pytest.raises(SystemExit) as start:  # the command's start
        parse([section, "--config", str(config), *own])
    assert start.value.code == 2 and f"camwire.toml:{line}:" in capsys.readouterr().err
    if running is not None:  # a reload of the running daemon
        with pytest.raises(ConfigError) as reload:
            running.config_loader(config)
        assert reload.value.line == line


# what each way of reading a value refuses (a value of the right shape)
REFUSED_BY = {"duration": "soon", "size": "big", "percent": "most", "port": 70000, "umask": "rw", "positive duration": 0,
              "daemon_address": "sink", "positive int": 0, "nonnegative int": -1, "positive size": 0, "camera_name": "a/b", "camera_url": "no-equals",
              "discovery_prefix": "a/+/b", "kafka_option": "no-equals", "mask_polygon": "[[0, 0]]", "proxy": "nowhere",
              "route": "no-equals", "review_name": "a\tb"}


def unreadable(f: Field) -> Any:
    """A value of the right shape that ``f``'s own reading refuses, or None where any text goes."""
    o = f.opt
    assert o is not None
    if o.choices:
        return "nonsense"
    if o.parse is not None:
        return REFUSED_BY[o.parse.__name__]
    if f.kind in (int, float) or any(t in (int, float) for t in getattr(f.kind, "__args__", ())):
        return "abc"
    return None


@pytest.mark.parametrize("section,name", [c for c in cases() if unreadable(field_of(*c)) is not None])
def test_a_value_the_setting_cannot_read_is_refused_at_its_line(section: str, name: str, in_tmp: Path) -> None:
    """Not only a wrong type: each setting's own reading (its units, positive, its choices) refuses."""
    f = field_of(section, name)
    config = in_tmp / "camwire.toml"
    text = f"[{section}]\n{name} = {toml(unreadable(f))}\n"
    config.write_text(text)
    with pytest.raises(ConfigError) as refused:
        load_config(config)
    assert refused.value.line == 2 and name in refused.value.reason
    with pytest.raises(SystemExit):  # and as a flag, by the command's start
        parse([section, *required_flags(section, name), f.flag, str(unreadable(f))])


@pytest.mark.parametrize("section", list(SECTIONS))
@pytest.mark.parametrize("key", ["retian", "config", "config_file"])
def test_an_unknown_key_is_refused_at_its_line_everywhere(section: str, key: str, in_tmp: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    """A misspelt key, and ``config`` itself (the file names no other file), by check-config's
    loader, the command's start and a reload."""
    config = in_tmp / "camwire.toml"
    good = f"[{section}]\n" + "".join(f"{k} = {toml(v)}\n" for k, v in REQUIRED[section].items())
    config.write_text(good)
    running = parse([section, "--config", str(config)]) if section != "run" else None
    config.write_text(good + f'{key} = "7d"\n')
    line = len(REQUIRED[section]) + 2
    with pytest.raises(ConfigError) as refused:
        load_config(config)
    assert refused.value.line == line and key in refused.value.reason
    with pytest.raises(SystemExit):
        parse([section, "--config", str(config)])
    assert f"camwire.toml:{line}:" in capsys.readouterr().err
    if running is not None:
        with pytest.raises(ConfigError):
            running.config_loader(config)


def test_a_flag_wins_over_the_file_and_a_reload_keeps_it(in_tmp: Path) -> None:
    """Flags over the file, the file over defaults; a reload takes the new file but keeps what the
    command line gave (Config.reloaded, what the recorder's reload applies)."""
    config = in_tmp / "camwire.toml"
    config.write_text('[recorder]\nsubscribe = ["tcp://127.0.0.1:9"]\ndir = "ring"\nretain = "3d"\nsegment = "30s"\n')
    running = parse(["recorder", "--config", str(config), "--retain", "1d", "--subscribe", "tcp://127.0.0.1:8"])
    assert (running.retain, running.segment, running.subscribe) == (86400.0, 30.0, ["tcp://127.0.0.1:8"])
    assert running.given == {"retain", "subscribe", "config_file"}  # the file's values are not "given"
    config.write_text('[recorder]\nsubscribe = ["tcp://127.0.0.1:9"]\ndir = "ring"\nretain = "5d"\nsegment = "9s"\n')
    new = running.config_loader(config).reloaded(running)
    assert (new.retain, new.segment, new.subscribe, new.dir) == (86400.0, 9.0, ["tcp://127.0.0.1:8"], "ring")


def test_an_extractor_serving_one_camera_takes_its_address_and_port(in_tmp: Path) -> None:
    config = in_tmp / "camwire.toml"
    config.write_text('[extractor]\npush = "tcp://127.0.0.1:9"\n\n'
                      '[cameras.a]\nurl = "clip.mp4"\npublish = "tcp://127.0.0.1:11"\nmetrics_port = 9211\n\n'
                      '[cameras.b]\nurl = "clip.mp4"\n')
    alone = parse(["extractor", "--config", str(config), "--cameras", "a"])
    both = parse(["extractor", "--config", str(config)])
    assert (alone.publish, alone.metrics_port) == ("tcp://127.0.0.1:11", 9211)
    assert (both.publish, both.metrics_port) == (None, None)


def test_run_takes_its_own_section_and_hands_the_file_to_its_children(in_tmp: Path) -> None:
    config = in_tmp / "camwire.toml"
    config.write_text('[run]\nworkers = 3\n\n[classifier]\ndetector = "covered"\nbatch = 4\n\n'
                      '[cameras.a]\nurl = "clip.mp4"\n')
    run = parse(["run", "--config", str(config)])
    workers = [p for p in plan(run, in_tmp / "run") if p.role == "classifier"]
    assert run.workers == 3 and len(workers) == 3
    assert all(parse(w.argv).batch == 4 for w in workers)  # each reads the file itself


def test_a_deprecated_setting_still_loads(in_tmp: Path) -> None:
    """``cooldown`` does nothing: an old file keeps working (camwire.cli logs a warning)."""
    config = in_tmp / "camwire.toml"
    config.write_text('[sink]\nbind = "tcp://127.0.0.1:9"\nevents = "e.jsonl"\ncooldown = "2s"\n')
    assert parse(["sink", "--config", str(config)]).cooldown == 2.0
    assert "--cooldown" not in subprocess.run([sys.executable, "-m", "camwire", "sink", "--help"], cwd=ROOT,
                                              capture_output=True, text=True, check=True).stdout
