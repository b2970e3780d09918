"""Secrets from the environment: a ``.env`` file (python-dotenv) fills in what is not already set."""

from __future__ import annotations

import os

from dotenv import find_dotenv, load_dotenv


def load_env() -> None:
    """Read the nearest ``.env`` from the working folder upwards; the real environment wins."""
    load_dotenv(find_dotenv(usecwd=True), override=False)


def secret(name: str) -> str | None:
    load_env()
    return os.environ.get(name) or None
