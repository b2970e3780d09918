"""One config model: check-config refuses exactly what a daemon would, each mistake with FILE:LINE,
and the daemon started with that file refuses to start with the same line and exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from camwire import __version__
from camwire.cli import parse
from camwire.supervisor import plan
from camwire.common.config import ConfigError
from camwire.common.paths import safe_name
from conftest import ROOT, free_port

SOCKETS = '[sockets]\nresults = "tcp://127.0.0.1:5557"\nframes = "tcp://127.0.0.1:5559"\n\n'


def camwire(*argv: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "camwire", *argv], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


TWO_SINKS = '["tcp://10.0.0.2:5557", "tcp://10.0.0.1:5557"]'
# (the daemon the mistake belongs to, the file, the text on the line at fault, words of the reason)
FALSE_OKS = [
    ("recorder", '[recorder]\ndir = "ring"\nretain = "7d"\nmax_bytes = "lots"\n', 'max_bytes = "lots"', "a size"),
    ("recorder", '[recorder]\ndir = "ring"\nretian = "7d"\n', "retian", "no flag --retian"),
    ("recorder", '[recorder]\ndir = "ring"\nsegment = "soon"\n', "segment", "a duration"),
    ("classifier", '[classifier]\ndetector = "yolo"\n', 'detector = "yolo"', "unknown detector 'yolo'"),
    ("classifier", '[classifier]\ndetector = "covered"\nbatch = 2.5\n', "batch = 2.5", "batch"),
    ("sink", '[sink]\nevents = "e.jsonl"\ncooldown = "often"\n', "cooldown", "a duration"),
    ("sink", '[sink]\nevents = "e.jsonl"\nmqtt = true\n', "mqtt = true", "one value"),
    ("extractor", '[extractor]\npublish_enc = "h265"\n[cameras.a]\nurl = "a.mp4"\n', "publish_enc", "one of"),
    ("extractor", '[cameras.front]\nurl = "a.mp4"\n\nfps = 0\n', "fps = 0", "fps must be positive"),
    ("extractor", '[cameras."a/b"]\nurl = "a.mp4"\n', '[cameras."a/b"]', "camera name"),
    ("extractor", '[cameras.a]\nurl = "a.mp4"\npublish = "127.0.0.1:5561"\n', "publish =", "tcp://"),
    ("sink", '[cameras.a]\nurl = "a.mp4"\n[cameras.a.rules]\nmin_frames = 0\n', "min_frames", "min_frames"),
    # what a daemon's own check hook refuses: addresses, files it reads, URLs, limits
    ("sink", '[sink]\nevents = "e.jsonl"\nbind = "localhost:5557"\n', "bind =", "tcp://host:port"),
    ("sink", '[sink]\nevents = "e.jsonl"\nrules = "/nonexistent/rules.toml"\n', "rules =", "cannot read"),
    ("sink", '[sink]\nevents = "e.jsonl"\nmqtt = "http://x"\n', "mqtt =", "mqtt://host:1883"),
    ("sink", '[sink]\nevents = "e.jsonl"\nmqtt = "mqtt://broker:port"\n', "mqtt =", "mqtt://host:1883"),
    ("classifier", '[classifier]\ndetector = "onnx:/nonexistent.onnx"\n', "detector =", "no model file"),
    ("classifier", '[classifier]\ndetector = "hog+covered:frames=x"\n', "detector =", "'x'"),
    ("classifier", '[classifier]\ndetector = "covered"\nbatch = 0\n', "batch = 0", "at least 1"),
    ("classifier", '[classifier]\ndetector = "covered"\nconnect = "localhost:5558"\n', "connect =", "tcp://"),
    ("ventilator", '[ventilator]\nfrontend = "localhost:1"\n', "frontend =", "tcp://host:port"),
    ("ventilator", '[ventilator]\nmax_backlog = 0\n', "max_backlog", "at least 1"),
    ("run", '[run]\nworkers = 0\n', "workers = 0", "at least 1"),
    ("extractor", '[cameras]\nc1.url = "a.mp4"\nc1.every = 0\n', "c1.every = 0", "every must be at least 1"),
    ("extractor", '[cameras."cam#1"]  # a comment\nurl = "a.mp4"\n', '[cameras."cam#1"]', "camera name"),
    ("extractor", '[extractor]\npush = "127.0.0.1:17555"\n[cameras.a]\nurl = "a.mp4"\n', "push =", "tcp://"),
    ("sink", '[sink]\nevents = "e.jsonl"\nwebhook = "htp://x"\n', "webhook =", "http://"),
    ("sink", '[sink]\nevents = "e.jsonl"\nmetrics_port = 99999\n', "metrics_port", "a port number"),
    ("classifier", '[classifier]\ndetector = "covered"\nconfidence = 2\n', "confidence = 2", "from 0 to 1"),
    ("recorder", '[recorder]\ndir = "ring"\nkeep_types = "detecton"\n', "keep_types", "no event is of type"),
    ("sink", '[cameras.a]\nurl = "a.mp4"\nzones = { drive = [[0, 0], [9, 0], [9, 9]] }\n[cameras.a.rules]\n'
             'zones = ["driev"]\n', 'zones = ["driev"]', "not one of the camera's zones"),
    ("sink", '[sink]\nevents = "e.jsonl"\nsecurity = 1\n[security]\nkey = "/nonexistent.key_secret"\n',
     "security = 1", "no flag --security"),
    ("sink", '[sink]\nevents = "e.jsonl"\n[security]\nkey = "/nonexistent/host.key_secret"\n', 'key = "',
     "cannot read the key file"),
    ("sink", '[sink]\nevents = "e.jsonl"\n[security]\nkeys = "/etc/camwire/keys"\n', "keys =", "unknown key"),
    # a recorder or console given other sinks than the workers': a camera's messages to a sink not its own
    ("recorder", f'[classifier]\nsink = {TWO_SINKS}\n[recorder]\ndir = "ring"\nsink = ["tcp://10.0.0.1:5557"]\n',
     'sink = ["tcp://10.0.0.1:5557"]', "the workers to ['tcp://10.0.0.1:5557', 'tcp://10.0.0.2:5557']"),
    ("web", f'[classifier]\nsink = {TWO_SINKS}\n[recorder]\ndir = "ring"\nsink = {TWO_SINKS}\n[web]\ntoken = "t"\n',
     'results = "tcp://127.0.0.1:5557"', "give [web] sink the workers' list"),
]


@pytest.mark.parametrize("daemon, text, at, words", FALSE_OKS)
def test_check_config_and_the_daemon_refuse_the_same_line(tmp_path: Path, daemon: str, text: str, at: str,
                                                          words: str) -> None:
    path = tmp_path / "camwire.toml"
    path.write_text(SOCKETS + text)
    where = f"{path}:{line_of(SOCKETS + text, at)}:"
    checked = camwire("check-config", str(path))
    assert checked.returncode == 2 and where in checked.stderr and words in checked.stderr, checked.stderr
    refused = camwire(daemon, "--config", str(path))
    assert refused.returncode == 2, refused.stderr
    assert where in refused.stderr and words in refused.stderr and "Traceback" not in refused.stderr
    # the same one line: what check-config says after its own name is what the daemon says
    assert refused.stderr.strip().split(": error: ", 1)[1] == checked.stderr.strip().split(": error: ", 1)[1]


def test_the_same_sinks_in_any_order_pass_and_a_workers_host_is_not_refused_for_a_console(tmp_path: Path) -> None:
    path = tmp_path / "camwire.toml"
    path.write_text(SOCKETS + f'[classifier]\nsink = {TWO_SINKS}\n[recorder]\ndir = "ring"\n'
                    'sink = ["tcp://10.0.0.1:5557", "tcp://10.0.0.2:5557"]\n[web]\ntoken = "t"\n')
    assert camwire("check-config", "--daemons", "classifier", str(path)).returncode == 0  # no console here
    assert camwire("check-config", "--daemons", "recorder", str(path)).returncode == 0
    alone = tmp_path / "one.toml"  # one sink each: no choice to get wrong, whatever name each host knows it by
    alone.write_text(SOCKETS + '[classifier]\nsink = "tcp://10.0.0.4:5557"\n[recorder]\ndir = "ring"\n'
                     'sink = ["tcp://sinks.example:5557"]\n')
    assert camwire("check-config", str(alone)).returncode == 0
    # no [recorder] or [web] in the file: nothing of theirs to compare (a site that runs neither)
    workers_only = tmp_path / "workers.toml"
    workers_only.write_text(SOCKETS + f'[classifier]\nsink = {TWO_SINKS}\n')
    assert camwire("check-config", str(workers_only)).returncode == 0
    # the workers' list names a ${VAR} a recorder's host lacks: its own list is not judged against it
    by_var = tmp_path / "by_var.toml"
    by_var.write_text(SOCKETS + '[classifier]\nsink = ["tcp://${SINK_A}:5557", "tcp://10.0.0.2:5557"]\n'
                      '[recorder]\ndir = "ring"\nsink = ["tcp://10.0.0.1:5557", "tcp://10.0.0.2:5557"]\n')
    assert camwire("check-config", "--daemons", "recorder", str(by_var)).returncode == 0
    assert camwire("check-config", "--daemons", "recorder", str(by_var), env={"SINK_A": "10.0.0.9"}).returncode == 2
    refused = camwire("check-config", str(path))  # the whole file: its console would use [sockets] results
    assert refused.returncode == 2 and f"{path}:2:" in refused.stderr and "[web] sink" in refused.stderr, refused.stderr


def test_values_with_units_and_dashes_are_read_as_their_flags_would(tmp_path: Path) -> None:
    path = tmp_path / "camwire.toml"
    path.write_text(SOCKETS + '[sink]\nevents = "e.jsonl"\ncooldown = "5s"\n\n'
                    '[recorder]\ndir = "ring"\nretain = "7d"\nmax-bytes = "2G"\nsegment = 30\n')
    assert camwire("check-config", str(path)).returncode == 0
    assert parse(["sink", "--config", str(path)]).cooldown == 5.0
    args = parse(["recorder", "--config", str(path)])
    assert (args.retain, args.max_bytes, args.segment) == (7 * 86400, 2 << 30, 30.0)


def test_a_reload_is_judged_as_the_daemons_start_was(tmp_path: Path) -> None:
    """A daemon's ``config_loader`` (what common.daemon reloads through) refuses a mistake in what
    this daemon reads, with its line, and takes one in another daemon's section (issue 26: a
    host judges only what it runs); check-config still judges the file whole."""
    good = tmp_path / "camwire.toml"
    good.write_text(SOCKETS + '[sink]\nevents = "e.jsonl"\n')
    args = parse(["sink", "--config", str(good)])
    assert args.config_loader(good).sections["sink"]["events"] == "e.jsonl"
    good.write_text(SOCKETS + '[sink]\nevents = "e.jsonl"\n\n[recorder]\ndir = "ring"\nmax_bytes = "lots"\n')
    assert args.config_loader(good).sections["sink"]["events"] == "e.jsonl"  # the recorder's, not the sink's
    assert camwire("check-config", str(good)).returncode == 2
    good.write_text(SOCKETS + '[sink]\nevents = "e.jsonl"\nevents_max_bytes = "lots"\n')
    with pytest.raises(ConfigError) as err:
        args.config_loader(good)
    assert err.value.line == 7 and "events_max_bytes" in err.value.reason


def test_two_names_never_share_a_folder() -> None:
    names = ["door", "a/b", "a_b", "a%2Fb", "..", ".x", "", "_", "%", "20261121T051900.123Z-door-motion"]
    assert len({safe_name(n) for n in names}) == len(names)
    assert safe_name("front_door-2") == "front_door-2"  # a camera name is already safe: never renamed
    assert all("/" not in safe_name(n) and not safe_name(n).startswith(".") for n in names)


@pytest.mark.parametrize("argv", [["extractor", "--camera", "a/b", "--source", "x.mp4", "--push", "tcp://127.0.0.1:9"],
                                  ["run", "--camera", "a/b=x.mp4", "--detector", "covered"]])
def test_a_camera_name_flag_the_wire_would_refuse_is_refused(argv: list[str]) -> None:
    done = camwire(*argv)
    assert done.returncode == 2 and "camera name" in done.stderr and "Traceback" not in done.stderr


# -- operator mistakes: one line, exit 2 --------------------------------------------------------

def one_line_error(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and all(w in errors[0] for w in words), done.stderr


def test_an_address_in_use_is_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        addr = f"tcp://127.0.0.1:{busy.getsockname()[1]}"
        done = camwire("ventilator", "--frontend", addr, "--backend", f"tcp://127.0.0.1:{free_port()}")
    one_line_error(done, addr, "in use")


def test_an_address_without_a_transport_is_one_line(tmp_path: Path) -> None:
    done = camwire("sink", "--bind", "127.0.0.1:5557", "--events", str(tmp_path / "e.jsonl"))
    one_line_error(done, "127.0.0.1:5557", "tcp://")


def test_an_unwritable_data_dir_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a folder cannot be made under a file, even by root
    done = camwire("sink", "--bind", f"tcp://127.0.0.1:{free_port()}", "--events", str(tmp_path / "e.jsonl"),
                   "--data-dir", str(blocker / "data"))
    one_line_error(done, "--data-dir", str(blocker / "data"))
    done = camwire("sink", "--bind", f"tcp://127.0.0.1:{free_port()}", "--events", str(blocker / "e.jsonl"))
    one_line_error(done, "--events", str(blocker / "e.jsonl"))


def test_version_and_help() -> None:
    assert camwire("--version").stdout.strip() == f"camwire {__version__}"
    text = " ".join(camwire("recorder", "--help").stdout.split())  # as one line: help wraps
    assert "a duration: 30s" in text and "a size: 500M" in text and "(default: veryfast)" in text
    assert "(default: 1m)" in text and "(default: 1d)" in text  # --segment, --max-clock-skew: in units
    top = camwire("--help").stdout
    assert "cameras" in top and "PUSH" not in top and "PULL" not in top


@pytest.mark.parametrize("command", ["extractor", "ventilator", "classifier", "sink", "recorder", "run"])
def test_a_daemons_help_speaks_of_cameras_not_sockets(command: str) -> None:
    done = camwire(command, "--help")
    assert done.returncode == 0
    description = done.stdout.split("\n\n")[1]  # after the usage: what the command does
    assert "camera" in description, description
    for word in ("ROUTER", "DEALER", "PULL", "PUSH", "XPUB", "inproc", "peek_frame", "common."):
        assert word not in done.stdout, f"{command} --help says {word}"


# -- exit 2 is an operator's mistake; any other error is a crash, restarted ------------------------

def test_only_an_operators_mistake_exits_2(tmp_path: Path, monkeypatch) -> None:
    """A ValueError from a bug at run time is a crash (exit 1 with its traceback, which camwire
    run restarts), not "refused its options" (exit 2, which stops the run)."""
    import camwire.checkconfig
    from camwire import cli
    from camwire.common.sockets import OperatorError

    good = tmp_path / "camwire.toml"
    good.write_text(SOCKETS)

    def bug(_args):
        raise ValueError("a bug")

    monkeypatch.setattr(camwire.checkconfig, "main", bug)
    with pytest.raises(ValueError, match="a bug"):
        cli.main(["check-config", str(good)])

    def mistake(_args):
        raise OperatorError("cannot bind tcp://127.0.0.1:1: the address is in use")

    monkeypatch.setattr(camwire.checkconfig, "main", mistake)
    assert cli.main(["check-config", str(good)]) == 2


def test_a_bad_option_without_a_file_is_refused_before_the_daemon_starts(tmp_path: Path) -> None:
    """The check hooks judge flags too: one line, exit 2, no traceback, nothing started."""
    sink = ["sink", "--bind", f"tcp://127.0.0.1:{free_port()}", "--events", str(tmp_path / "e.jsonl")]
    one_line_error(camwire(*sink, "--rules", str(tmp_path / "missing.toml")), "--rules", "cannot read")
    one_line_error(camwire(*sink, "--mqtt", "http://x"), "--mqtt")
    worker = ["classifier", "--connect", f"tcp://127.0.0.1:{free_port()}", "--sink", f"tcp://127.0.0.1:{free_port()}"]
    one_line_error(camwire(*worker, "--detector", f"onnx:{tmp_path / 'none.onnx'}"), "no model file")
    one_line_error(camwire(*worker, "--detector", "yolo"), "unknown detector 'yolo'")
    one_line_error(camwire("ventilator", "--frontend", "tcp://127.0.0.1:1", "--backend", "tcp://127.0.0.1:2",
                           "--max-cameras", "0"), "--max-cameras", "at least 1")
    one_line_error(camwire("run", "--camera", "a=x.mp4", "--detector", "covered", "--rules",
                           str(tmp_path / "missing.toml")), "--rules", "cannot read")


# -- the shipped file --------------------------------------------------------------------------

SECRETS = {"FRONT_DOOR_PASSWORD": "pw-front", "CAR_PARK_PASSWORD": "pw-car"}


def test_the_shipped_file_runs_as_camwire_run_without_a_secret_on_a_command_line(tmp_path: Path,
                                                                                monkeypatch) -> None:
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    shipped = str(ROOT / "deploy" / "camwire.toml")
    assert camwire("check-config", shipped, env=SECRETS).returncode == 0
    args = parse(["run", "--config", shipped])
    children = plan(args, tmp_path)
    roles = [c.role for c in children]
    assert roles.count("classifier") == 2 and roles.count("extractor") == 2 and "recorder" in roles
    ports, publish = set(), set()
    for child in children:
        assert "--config" in child.argv and not any(s in " ".join(child.argv) for s in SECRETS.values())
        got = parse(child.argv)  # every child's command line is one its daemon takes
        port = got.metrics_port + (getattr(got, "instance", None) or 0)
        assert port not in ports, child.argv
        ports.add(port)
        if child.role == "extractor":
            publish.add(got.publish)
    recorder = parse(next(c for c in children if c.role == "recorder").argv)
    assert len(publish) == 2 and publish <= set(recorder.subscribe)


def test_the_shipped_file_runs_one_extractor_unit_per_camera(monkeypatch) -> None:
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    shipped = str(ROOT / "deploy" / "camwire.toml")
    front = parse(["extractor", "--config", shipped, "--cameras", "front_door"])
    car = parse(["extractor", "--config", shipped, "--cameras", "car_park"])
    everyone = parse(["extractor", "--config", shipped])
    assert len({front.publish, car.publish, everyone.publish}) == 3
    assert len({front.metrics_port, car.metrics_port, everyone.metrics_port}) == 3
    recorder = parse(["recorder", "--config", shipped])
    assert {front.publish, car.publish, everyone.publish} <= set(recorder.subscribe)
    # a flag still wins over the camera's own
    assert parse(["extractor", "--config", shipped, "--cameras", "car_park", "--metrics-port", "9999"]
                 ).metrics_port == 9999


def test_two_sockets_on_one_address_are_refused_at_the_second(tmp_path: Path) -> None:
    path = tmp_path / "camwire.toml"
    path.write_text('[sockets]\nfrontend = "tcp://127.0.0.1:5555"\nbackend = "tcp://127.0.0.1:5555"\n')
    checked = camwire("check-config", str(path))
    assert checked.returncode == 2 and f"{path}:3:" in checked.stderr and "sockets.frontend already" in checked.stderr
