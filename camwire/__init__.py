"""camwire: watch many video cameras at once. ``camwire --help`` lists the daemons."""

import signal as _signal

__version__ = "0.1.0"

# Every daemon reloads on SIGHUP once its skeleton runs (common.daemon); until then (imports, a
# model loading) a SIGHUP, such as `systemctl reload` right after a start, must not kill it.
try:
    if _signal.getsignal(_signal.SIGHUP) == _signal.SIG_DFL:
        _signal.signal(_signal.SIGHUP, _signal.SIG_IGN)
except ValueError:  # imported from a thread other than the main one: not a daemon starting
    pass
