"""The suite's own guard (tests/leaks.py): a process started by the run and still running at its
end is found through the mark in its environment, however deep it was started."""

import os
import subprocess
import sys

import leaks


def test_a_grandchild_that_outlives_its_parent_is_found_and_killed() -> None:
    mark = os.environ[leaks.MARK]
    # the parent exits at once; its child lives on, re-parented away from pytest
    parent = subprocess.run([sys.executable, "-c", "import subprocess; print(subprocess.Popen(['sleep', '60'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid)"],
                            capture_output=True, text=True, check=True)
    orphan = int(parent.stdout)
    try:
        assert orphan in [pid for pid, _ in leaks.survivors(mark)]
    finally:
        leaks.kill([orphan])


def test_a_process_of_another_run_is_not_ours() -> None:
    other = subprocess.Popen(["sleep", "60"], env={**os.environ, leaks.MARK: "another-run"})
    try:
        assert other.pid not in [pid for pid, _ in leaks.survivors(os.environ[leaks.MARK])]
    finally:
        other.kill()
        other.wait()
