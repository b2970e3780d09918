"""How many threads a worker's libraries may use: ONNX Runtime (intra-op), OpenCV, and numpy's
BLAS (through threadpoolctl, which reaches a BLAS already loaded). Each starts a thread per core
by default, so two workers on one host would fight over every core; ``--threads`` (default: all
of them, or under ``camwire run`` the host's cores shared among the workers it starts) sets them
all, and :func:`limit_threads` reports what each library took, for the log and ``--stats``."""

from __future__ import annotations

import os


def cores() -> int:
    """The cores this process may run on (its affinity), not merely those the host has."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def share(workers: int) -> int:
    """Threads for each of ``workers`` workers on this host: its cores shared, at least one."""
    return max(1, cores() // max(1, workers))


def limit_threads(threads: int | None) -> dict[str, int]:
    """Set OpenCV's and the BLAS's threads to ``threads`` (None: every core) and return what each
    library has now; ONNX Runtime takes the same number per session (classifier.detectors.onnx)."""
    import cv2  # here: camwire run plans its workers' threads without loading OpenCV
    from threadpoolctl import threadpool_info, threadpool_limits

    n = threads or cores()
    cv2.setNumThreads(n)
    threadpool_limits(limits=n, user_api="blas")  # kept for the process's life, not a with-block
    blas = [pool["num_threads"] for pool in threadpool_info() if pool.get("user_api") == "blas"]
    return {"onnxruntime": n, "opencv": cv2.getNumThreads(), "blas": min(blas) if blas else n}
