"""The S3 side of uploads: the one boto3 client the upload pool shares (requests signed with the
``[upload]`` keys, or boto3's own chain without them) and one line saying why a PUT failed."""

from __future__ import annotations

from typing import Any

from camwire.common.upload.settings import UploadConfig


def make_client(cfg: UploadConfig) -> Any:
    """One boto3 S3 client for the pool (thread-safe), path-style, no retries of its own (ours are
    counted), with timeouts so a hung store holds up one worker at most that long."""
    import boto3
    from botocore.config import Config as BotoConfig

    return boto3.session.Session().client(
        "s3", endpoint_url=cfg.endpoint, aws_access_key_id=cfg.access_key, aws_secret_access_key=cfg.secret_key,
        region_name=cfg.region or "us-east-1",
        config=BotoConfig(max_pool_connections=cfg.workers, connect_timeout=5, read_timeout=30,
                          retries={"total_max_attempts": 1}, s3={"addressing_style": "path"}))


def failure_reason(exc: BaseException) -> str:
    """One line for a failed PUT: the store's error code (NoSuchBucket, InvalidAccessKeyId ...) or the exception."""
    code = getattr(exc, "response", {}).get("Error", {}).get("Code") if hasattr(exc, "response") else None
    if code:
        return f"{code}: {exc.response['Error'].get('Message', '')}".strip()  # type: ignore[attr-defined]
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
