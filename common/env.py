"""Secrets from the environment: a ``.env`` file (python-dotenv) fills in what is not already set."""

from __future__ import annotations

import os
import re

from dotenv import find_dotenv, load_dotenv


def load_env() -> None:
    """Read the nearest ``.env`` from the working folder upwards; the real environment wins."""
    load_dotenv(find_dotenv(usecwd=True), override=False)


def secret(name: str) -> str | None:
    load_env()
    return os.environ.get(name) or None


VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")  # ${VAR}, here and in camwire.toml (common.config)


def expand(text: str, flag: str) -> str:
    """``text`` with each ``${VAR}`` filled in from the environment (a .env too), as camwire.toml's
    values are: a secret given so never shows in ``ps`` (camwire run hands its extractors their
    URLs this way). ValueError naming ``flag`` for a variable set nowhere."""
    if "${" not in text:
        return text
    load_env()
    missing = [m.group(1) for m in VAR.finditer(text) if m.group(1) not in os.environ]
    if missing:
        raise ValueError(f"{flag}: ${{{missing[0]}}} is not set in the environment")
    return VAR.sub(lambda m: os.environ[m.group(1)], text)
