"""A camwire.toml judged before anything runs, each mistake refused with its line: the typed
model first (common.config: types, unknown keys, cameras, rules, upload), then each judged
command's own ``check`` hook on the settings the file gives it (an address without a transport,
a detector spec, a rules file, the CURVE keys of the servers it connects to).

Judged whole by ``check-config`` (:func:`load_full`), or for the daemons one host runs
(:func:`load_for`: common.config_scope says what each reads): a daemon's start and its reload
judge its own section and what it uses, never another daemon's files, token or keys;
``camwire run`` judges the daemons it starts; ``check-config --daemons`` those named."""

from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path
from typing import Callable, Iterable

from camwire.commands import COMMANDS
from camwire.common.config import SECURITY, Config, load_config
from camwire.common.config_scope import Scope, run_starts
from camwire.common.curve import Curve
from camwire.common.settings import DAEMONS, SECTIONS, Settings
from camwire.common.sockets import OperatorError


def run_check(section: str, settings: Settings, build_detectors: bool = True) -> None:
    """The command's own ``check(settings)`` hook, if its module has one: what the daemon would
    refuse, judged before it starts, without opening a socket or loading a model; and its CURVE
    key files. ``build_detectors``: whether a built-in detector spec is built to judge its
    options (not where a daemon that decodes no pixels judges the file: that would load OpenCV).
    Raises ValueError naming the flag."""
    module = importlib.import_module(COMMANDS[section][0])
    check: Callable[..., None] | None = getattr(module, "check", None)
    try:
        if check is not None:
            if section in ("classifier", "run"):
                check(settings, build_detectors=build_detectors)
            else:
                check(settings)
        if section in DAEMONS:
            Curve.from_args(settings)  # the key files: readable, keys, and the secret one private
    except (argparse.ArgumentTypeError, OperatorError) as exc:
        raise ValueError(str(exc)) from None


def load_full(path: str | Path, running: str | None = None) -> Config:
    """``path`` loaded and judged whole, as check-config does by default: the typed model, then
    the check hook of every section the file has. Raises ConfigError at the line at fault.
    ``running``: the daemon that asks; one that decodes no pixels judges detector specs without
    building them. A daemon judges only what it runs (:func:`load_for`)."""
    cfg = load_config(path)
    for section in SECTIONS:
        if not cfg.sections.get(section):
            continue  # nothing of this command's own in the file: its hook has nothing to judge
        _hook(cfg, section, build_detectors=running in (None, "classifier", "run"))
    return cfg


def load_for(path: str | Path, daemons: Iterable[str] | None = None, *, cameras: str | None = None,
             record: bool = False, web: bool = False) -> Config:
    """``path`` judged for the ``daemons`` one host runs (None: whole, :func:`load_full`): what
    each reads of the file (common.config_scope), then each one's check hook on what the file
    gives it (its sockets, [security] and own section), so its keys are judged even where its
    section is empty. ``run`` brings the daemons it starts (``record``, ``web``: run was given
    ``--record``, ``--web``). ``cameras``: an extractor's ``--cameras``, the cameras whose URLs
    it opens. What a daemon's ``config_loader`` is, so its reload is judged as its start was.
    Raises ConfigError at the line at fault; ValueError for a name that is no daemon."""
    if daemons is None:
        return load_full(path)
    wanted = set(daemons)
    Scope.of(wanted)  # a name that is no daemon: refused before the file is read
    if "run" in wanted:  # what run starts depends on the file: read it as run alone first
        wanted |= run_starts(load_config(path, Scope.of({"run"})), record, web)
    cfg = load_config(path, Scope.of(wanted, cameras))
    for section in SECTIONS:
        if section in wanted and cfg.daemon_defaults(section):
            _hook(cfg, section, build_detectors=bool(wanted & {"classifier", "run"}))
    return cfg


def _hook(cfg: Config, section: str, build_detectors: bool) -> None:
    """``section``'s check hook on the settings the file gives it; its mistake at its line."""
    try:
        run_check(section, cfg.settings(section), build_detectors=build_detectors)
    except ValueError as exc:
        raise cfg.error(key_named(str(exc), section, cfg), f"[{section}] {exc}") from None


def key_named(message: str, section: str, cfg: Config) -> str:
    """The dotted key a hook's message is about: the first ``--flag`` it names that the section
    sets, else the section itself."""
    security = {dest: key for key, dest in SECURITY.items()}  # [security] fills every daemon's --curve-*
    for flag in re.findall(r"--([a-z][a-z0-9-]*)", message):
        dest = flag.replace("-", "_")
        if dest in cfg.sections.get(section, {}):
            return f"{section}.{dest}"
        if dest in security and security[dest] in cfg.sections.get("security", {}):
            return f"security.{security[dest]}"
    return section
