"""``[upload]`` of camwire.toml: the table's keys, what may be uploaded, and :func:`upload_from_config`,
which judges the table at load into an :class:`UploadConfig` (common.upload says what each key does)."""

from __future__ import annotations

from argparse import ArgumentTypeError
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from camwire.common.env import VAR, expand
from camwire.common.logs import redact_url
from camwire.common.units import duration

WHAT = ("snapshots", "clips", "frames")
SINK_WHAT = ("snapshots", "frames")  # uploaded by the sink; clips by the recorder
KEYS = ("endpoint", "bucket", "prefix", "access_key", "secret_key", "region", "what", "retry_for", "retry_max",
        "workers")


@dataclass(frozen=True)
class UploadConfig:
    endpoint: str
    bucket: str
    prefix: str = ""
    access_key: str | None = field(default=None, repr=False)  # resolved secrets: never shown
    secret_key: str | None = field(default=None, repr=False)
    region: str | None = None
    what: tuple[str, ...] = ("snapshots",)
    retry_for: float = 86400.0
    retry_max: float = 300.0
    workers: int = 8


def upload_from_config(data: dict[str, Any], env: dict[str, str] | None = None) -> UploadConfig | None:
    """The file's ``[upload]`` table judged (registered with common.config by camwire.cli), or
    None without one; its ``${VAR}`` from ``env`` (common.config: the environment over the .env
    beside the file), else the environment and the working folder's .env. ValueError starting with
    the dotted key at fault."""
    table = data.get("upload")
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ValueError("upload: [upload] must be a table")
    for key in table:
        if key not in KEYS:
            raise ValueError(f"upload.{key}: unknown key {key!r}; known: {', '.join(KEYS)}")
    for key in ("endpoint", "bucket"):
        if not isinstance(table.get(key), str) or not table[key]:
            raise ValueError(f"upload.{key if key in table else 'endpoint'}: [upload] needs {key} = \"...\"")
    endpoint = table["endpoint"]
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"upload.endpoint: an http:// or https:// URL, not {redact_url(endpoint)!r}")
    bucket = table["bucket"]
    if not (3 <= len(bucket) <= 63 and all(c.islower() or c.isdigit() or c in ".-" for c in bucket)
            and bucket[0].isalnum() and bucket[-1].isalnum()):
        raise ValueError(f"upload.bucket: a bucket name is 3 to 63 of a-z 0-9 . - , not {bucket!r}")
    prefix = table.get("prefix", "")
    if not isinstance(prefix, str):
        raise ValueError("upload.prefix: a string")
    keys = {k: _secret(table, k, env) for k in ("access_key", "secret_key")}
    if (keys["access_key"] is None) != (keys["secret_key"] is None):
        raise ValueError("upload.access_key: give both access_key and secret_key, or neither (boto3's own chain)")
    region = table.get("region")
    if region is not None and (not isinstance(region, str) or not region):
        raise ValueError("upload.region: a region name such as \"us-east-1\"")
    what = table.get("what", ["snapshots"])
    if not isinstance(what, list) or not what or not all(isinstance(w, str) for w in what):
        raise ValueError("upload.what: a list such as [\"snapshots\", \"clips\"]")
    other = [w for w in what if w not in WHAT]
    if other:
        raise ValueError(f"upload.what: {other[0]!r} is not uploaded; any of {', '.join(WHAT)}")
    timing = {}
    for key, default in (("retry_for", "24h"), ("retry_max", "5m")):
        try:
            timing[key] = duration(table.get(key, default))
        except (ValueError, TypeError, ArgumentTypeError) as exc:
            raise ValueError(f"upload.{key}: {exc}") from None
        if timing[key] <= 0:
            raise ValueError(f"upload.{key}: must be positive")
    workers = table.get("workers", 8)
    if not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= 256:
        raise ValueError(f"upload.workers: a number from 1 to 256, not {workers!r}")
    return UploadConfig(endpoint.rstrip("/"), bucket, prefix.strip("/"), keys["access_key"], keys["secret_key"],
                        region, tuple(dict.fromkeys(what)), timing["retry_for"], timing["retry_max"], workers)


def _secret(table: dict[str, Any], key: str, env: dict[str, str] | None) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not VAR.fullmatch(value):
        raise ValueError(f"upload.{key}: give it as \"${{VAR}}\" (set in the environment or a .env), "
                         f"never written in the file")
    name = VAR.fullmatch(value).group(1)
    if env is not None and name in env:
        return env[name]
    return expand(value, f"upload.{key}")
