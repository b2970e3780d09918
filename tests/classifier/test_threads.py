"""A worker's libraries use the threads its ``--threads`` says (classifier.threads): a real worker
process reports what ONNX Runtime, OpenCV and numpy's BLAS took; an ONNX session is made with that
many; ``camwire run`` shares this host's cores among the workers it starts."""

from __future__ import annotations

from pathlib import Path

from camwire.classifier.detectors.onnx import OnnxDetector
from camwire.classifier.threads import share
from camwire.cli import parse
from camwire.plan import plan
from conftest import tcp, wait_log
from onnx_models import build_model, v8_rows

NAMES = ["person", "car"]


def tiny_model(tmp: Path) -> Path:
    return build_model(tmp / "v8.onnx", v8_rows((320, 320, 50, 80, 0, 0.9), classes=len(NAMES)), names=NAMES)


def test_a_workers_libraries_take_its_threads(daemons, tmp_path: Path) -> None:
    model = tiny_model(tmp_path)
    daemons.start("classifier", "classifier", "--connect", tcp(), "--sink", tcp(), "--detector", f"onnx:{model}",
                  "--threads", "1")
    started = wait_log(daemons.tmp / "classifier.log", lambda r: r.get("event") == "classifier started",
                       proc=daemons.procs["classifier"])
    assert started["threads"] == {"onnxruntime": 1, "opencv": 1, "blas": 1}
    assert daemons.stop("classifier") == 0
    assert daemons.stats("classifier")["threads"] == {"onnxruntime": 1, "opencv": 1, "blas": 1}


def test_an_onnx_session_is_made_with_the_threads_given(tmp_path: Path) -> None:
    detector = OnnxDetector(str(tiny_model(tmp_path)), threads=1)
    options = detector.session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)


def test_run_shares_the_hosts_cores_among_its_workers(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")
    for workers in (1, 2, 3):
        run = parse(["run", "--camera", f"a={clip}", "--detector", "covered", "--workers", str(workers)])
        argvs = [p.argv for p in plan(run, tmp_path / "run") if p.role == "classifier"]
        assert [parse(argv).threads for argv in argvs] == [share(workers)] * workers
    given = parse(["run", "--camera", f"a={clip}", "--detector", "covered", "--threads", "3"])
    assert {parse(p.argv).threads for p in plan(given, tmp_path / "run") if p.role == "classifier"} == {3}
