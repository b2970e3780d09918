"""A host checks and needs only what it runs (issue 26): one camwire.toml copied to every host, each
daemon judging its own section and what it reads (common.config_scope), never another daemon's
model file, token or camera passwords; check-config whole by default, per host with --daemons."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from camwire.cli import parse
from camwire.common.config import load_config
from camwire.common.config_scope import Scope, run_starts
from camwire.supervisor import plan
from conftest import ROOT, wait_log

TOKEN = "CAMWIRE_TEST_ISSUE26_TOKEN"  # set nowhere: the console's host has it, no other
PASSWORD = "CAMWIRE_TEST_ISSUE26_PASSWORD"  # the yard camera's, on its extractor's host only


def camwire(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in (TOKEN, PASSWORD)}
    return subprocess.run([sys.executable, "-m", "camwire", *argv], capture_output=True, text=True, cwd=ROOT,
                          env={**clean, **(env or {})}, timeout=120)


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def site(tmp: Path, clip: Path) -> tuple[Path, str]:
    """A file for five hosts: a model file that exists on none of them, the console's token from a
    variable this host lacks, a camera whose password only its extractor's host has."""
    text = f"""[sockets]
frontend = "ipc://{tmp}/frontend"
backend = "ipc://{tmp}/backend"
results = "ipc://{tmp}/results"

[classifier]
detector = "onnx:{tmp}/models/missing.onnx"

[sink]
events = "{tmp}/events.jsonl"

[web]
bind = "0.0.0.0"
token = "${{{TOKEN}}}"

[cameras.lobby]
url = "{clip}"

[cameras.yard]
url = "rtsp://admin:${{{PASSWORD}}}@10.0.0.5/stream1"
"""
    path = tmp / "camwire.toml"
    path.write_text(text)
    return path, text


@pytest.fixture(autouse=True)
def unset(monkeypatch) -> None:
    monkeypatch.delenv(TOKEN, raising=False)
    monkeypatch.delenv(PASSWORD, raising=False)


def test_a_ventilator_starts_and_reloads_where_the_classifier_refuses_its_model(daemons, tmp_path: Path,
                                                                                sample_clip: Path) -> None:
    path, text = site(tmp_path, sample_clip)
    vent = daemons.start("ventilator", "ventilator", "--config", str(path))
    wait_log(tmp_path / "ventilator.log", lambda r: r.get("event") == "ventilator started", proc=vent)

    refused = camwire("classifier", "--config", str(path))
    assert refused.returncode == 2, refused.stderr
    where = f"{path}:{line_of(text, 'detector =')}:"
    assert where in refused.stderr and "no model file" in refused.stderr and "Traceback" not in refused.stderr
    web = camwire("web", "--config", str(path))  # the console's host lacks its token here: its own to refuse
    assert web.returncode == 2 and f"{path}:{line_of(text, 'token =')}:" in web.stderr and TOKEN in web.stderr

    # its reload judges what it reads, as its start did: the others' mistakes pass, its own are refused
    path.write_text(text.replace("[sink]\n", "[sink]\nmqtt = \"http://not-mqtt\"\n"))
    vent.send_signal(signal.SIGHUP)
    wait_log(tmp_path / "ventilator.log", lambda r: r.get("event") == "reloading", proc=vent)
    broken = text.replace("[classifier]", "[ventilator]\nmax_backlog = \"many\"\n\n[classifier]")
    path.write_text(broken)
    vent.send_signal(signal.SIGHUP)
    no = wait_log(tmp_path / "ventilator.log", lambda r: r.get("event") == "config refused; the running config stays",
                  proc=vent)
    assert (no["file"], no["line"]) == (str(path), line_of(broken, "max_backlog")), no
    assert daemons.stop("ventilator") == 0
    assert daemons.stats("ventilator")["reloads"] == {"applied": 1, "refused": 1}


def test_check_config_for_one_host_judges_only_the_daemons_it_runs(tmp_path: Path, sample_clip: Path) -> None:
    path, text = site(tmp_path, sample_clip)
    whole = camwire("check-config", str(path))
    assert whole.returncode == 2, whole.stderr  # the whole file, as before: every daemon on one host
    ok = camwire("check-config", str(path), "--daemons", "ventilator,sink,recorder")
    assert ok.returncode == 0, ok.stderr
    assert '"checked_for": [' in ok.stdout and '"classifier"' not in ok.stdout
    model = camwire("check-config", str(path), "--daemons", "ventilator,classifier")
    assert model.returncode == 2 and f"{path}:{line_of(text, 'detector =')}:" in model.stderr
    assert "no model file" in model.stderr
    console = camwire("check-config", str(path), "--daemons", "web")
    assert console.returncode == 2 and f"{path}:{line_of(text, 'token =')}:" in console.stderr
    assert camwire("check-config", str(path), "--daemons", "web", env={TOKEN: "t0ken-of-the-console"}
                   ).returncode == 0
    # an extractor opens the URLs of the cameras it serves, and only those need their passwords here
    assert camwire("check-config", str(path), "--daemons", "extractor", "--cameras", "lobby").returncode == 0
    yard = camwire("check-config", str(path), "--daemons", "extractor")
    assert yard.returncode == 2 and f"{path}:{line_of(text, 'admin:')}:" in yard.stderr and PASSWORD in yard.stderr
    named = camwire("check-config", str(path), "--daemons", "ventilator,sinks")
    assert named.returncode == 2 and "no daemon 'sinks'" in named.stderr


def test_a_daemon_takes_from_the_file_only_what_it_reads(tmp_path: Path, sample_clip: Path, monkeypatch) -> None:
    path, text = site(tmp_path, sample_clip)
    vent = parse(["ventilator", "--config", str(path)])  # the classifier's model, the console's token: not its
    assert set(vent.config.cameras) == {"lobby", "yard"}  # it routes them; a URL's password it never needs
    assert "***" in vent.config.cameras["yard"].sources[0] and "token" not in vent.config.sections["web"]
    assert parse(["extractor", "--config", str(path), "--cameras", "lobby"]).cameras == "lobby"
    with pytest.raises(SystemExit) as refused:
        parse(["extractor", "--config", str(path), "--cameras", "yard"])
    assert refused.value.code == 2
    monkeypatch.setenv(PASSWORD, "s3cret")
    yard = parse(["extractor", "--config", str(path), "--cameras", "yard"])
    assert yard.config.cameras["yard"].sources == ("rtsp://admin:s3cret@10.0.0.5/stream1",)


def test_run_judges_the_daemons_it_starts(tmp_path: Path, sample_clip: Path, monkeypatch, capsys) -> None:
    path, text = site(tmp_path, sample_clip)
    monkeypatch.setenv(PASSWORD, "s3cret")
    with pytest.raises(SystemExit):  # run starts the console, as the file has a [web]: its token is needed
        parse(["run", "--config", str(path)])
    assert f"{path}:{line_of(text, 'token =')}:" in capsys.readouterr().err
    monkeypatch.setenv(TOKEN, "t0ken-of-the-console")
    with pytest.raises(SystemExit):  # ... and classifiers: their model is this host's to have
        parse(["run", "--config", str(path)])
    assert f"{path}:{line_of(text, 'detector =')}:" in capsys.readouterr().err
    path.write_text(text.replace(f'onnx:{tmp_path}/models/missing.onnx', "covered"))
    args = parse(["run", "--config", str(path)])
    assert {c.role for c in plan(args, tmp_path)} == {"sink", "ventilator", "classifier", "extractor", "web"}


@pytest.mark.parametrize("sections, flags, roles", [
    ("", [], set()),
    ('[recorder]\ndir = "${CAMWIRE_TEST_ISSUE26_DIR}"\n', [], {"recorder"}),  # written, though set nowhere here
    ('[recorder]\nretain = "7d"\n', ["--record", "rec"], {"recorder"}),
    ("[web]\nport = 8089\n", [], {"web"}),
    ("", ["--web", "8089"], {"web"}),
])
def test_what_run_is_judged_for_is_what_it_starts(tmp_path: Path, sample_clip: Path, monkeypatch, sections: str,
                                                  flags: list[str], roles: set[str]) -> None:
    monkeypatch.setenv("CAMWIRE_TEST_ISSUE26_DIR", str(tmp_path / "rec"))
    path = tmp_path / "camwire.toml"
    path.write_text(f'[cameras.lobby]\nurl = "{sample_clip}"\n[classifier]\ndetector = "covered"\n' + sections)
    planned = {c.role for c in plan(parse(["run", "--config", str(path), *flags]), tmp_path)}
    monkeypatch.delenv("CAMWIRE_TEST_ISSUE26_DIR")
    judged = run_starts(load_config(path, Scope.of({"run"})), record="--record" in flags, web="--web" in flags)
    assert planned == judged == {"sink", "ventilator", "classifier", "extractor", *roles}
