"""A camwire.toml judged whole, as check-config does and as every daemon's reload does: the typed
model first (common.config: every section's types, unknown keys, cameras, rules, upload), then
each command's own ``check`` hook on the settings the file gives it (an address without a
transport, a detector spec, a rules file), so a mistake in any section is refused with its line
before anything runs."""

from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path
from typing import Callable

from camwire.commands import COMMANDS
from camwire.common.config import SECURITY, Config, load_config
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
    """``path`` loaded and judged whole, as check-config does: the typed model, then every
    section's check hook. What a daemon's ``config_loader`` is, so a reload with a mistake in any
    section is refused whole. Raises ConfigError at the line at fault. ``running``: the daemon
    that asks; one that decodes no pixels judges detector specs without building them."""
    cfg = load_config(path)
    for section in SECTIONS:
        if not cfg.sections.get(section):
            continue  # nothing of this command's own in the file: its hook has nothing to judge
        try:
            run_check(section, cfg.settings(section), build_detectors=running in (None, "classifier", "run"))
        except ValueError as exc:
            raise cfg.error(key_named(str(exc), section, cfg), f"[{section}] {exc}") from None
    return cfg


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
