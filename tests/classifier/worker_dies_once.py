"""``camwire classifier`` with two more detectors: ``dies``, whose first call ends the detection
thread (a BaseException, past the worker's per-batch error handling, as a bug in a runtime
would) and every later call finds nothing; and ``fails``, which raises on every call. Run as a script: ``python worker_dies_once.py
classifier --detector dies ...``."""

from __future__ import annotations

import sys
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


detectors.NAMES = (*detectors.NAMES, "dies", "fails")  # so the worker's check knows them too
_builtin = detectors._registry
detectors._registry = lambda: {**_builtin(), "dies": lambda _arg, _extra: DiesOnce(),
                               "fails": lambda _arg, _extra: AlwaysFails()}

if __name__ == "__main__":
    from camwire.cli import main

    sys.exit(main(sys.argv[1:]))
