"""Noticing that camwire.toml changed, for the daemon skeleton's reload without SIGHUP."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from camwire.common.config import Config, load_config


class ConfigWatcher:
    """Notices when the file changes (its inode, size or mtime); ``poll`` then loads it again,
    once, through ``load`` (the daemon's loader: the file judged as at its start)."""

    def __init__(self, cfg: Config, every_s: float = 1.0, load: Callable[[Path], Config] | None = None) -> None:
        self.path, self.digest, self.every_s = cfg.path, cfg.digest, every_s
        self.load: Callable[[Path], Config] = load or load_config
        self._stamp = self._now()
        self._next = time.monotonic() + every_s

    def _now(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None  # mid-replace, or removed: the running config stays
        return st.st_ino, st.st_size, st.st_mtime_ns

    def poll_now(self, force: bool = False) -> Config | None:
        """For the daemon skeleton: at most every ``every_s``, the file again if it changed (or
        at once, changed or not, when ``force``: SIGHUP). Raises ConfigError for a bad file."""
        if force:
            self._stamp = self._now()
            cfg = self.load(self.path)
            self.digest = cfg.digest
            return cfg
        if time.monotonic() < self._next:
            return None
        self._next = time.monotonic() + self.every_s
        return self.poll()

    def poll(self) -> Config | None:
        """A changed, valid config; None when nothing changed. A changed file that does not
        load raises ConfigError once (not again until the file changes once more)."""
        stamp = self._now()
        if stamp is None or stamp == self._stamp:
            return None
        self._stamp = stamp
        cfg = self.load(self.path)
        if cfg.digest == self.digest:
            return None
        self.digest = cfg.digest
        return cfg
