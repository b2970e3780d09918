"""``camwire classifier`` with three more detectors: ``dies``, whose first call ends the detection
thread (a BaseException, past the worker's per-batch error handling, as a bug in a runtime
would) and every later call finds nothing; ``fails``, which raises on every call; and ``holds``,
whose first call never returns (a worker that holds the frames it took until it is killed). Run
as a script: ``python worker_dies_once.py classifier --detector dies ...``."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from camwire.classifier import detectors  # noqa: E402
from camwire.classifier.detectors import FrameResult  # noqa: E402


class DiesOnce:
    name = "dies"
    died = False

    def detect(self, frames):
        if not DiesOnce.died:
            DiesOnce.died = True
            raise SystemExit("the detection thread ends here")
        return [FrameResult() for _ in frames]


class AlwaysFails:
    name = "fails"

    def detect(self, frames):
        raise RuntimeError("the model is broken")


class Holds:
    name = "holds"

    def detect(self, frames):
        threading.Event().wait()  # never set: the frame is held until the process is killed


detectors.NAMES = (*detectors.NAMES, "dies", "fails", "holds")  # so the worker's check knows them too
_builtin = detectors._registry
detectors._registry = lambda: {**_builtin(), "dies": lambda _arg, _extra: DiesOnce(),
                               "fails": lambda _arg, _extra: AlwaysFails(), "holds": lambda _arg, _extra: Holds()}

if __name__ == "__main__":
    from camwire.cli import main

    sys.exit(main(sys.argv[1:]))
