"""A local S3 protocol stand-in for tests and bench/upload.py: moto's server mode (``moto.server``),
run as a child process on a loopback port. It speaks the S3 REST protocol boto3 speaks to AWS,
MinIO or Ceph, keeps everything in memory (a restart starts empty: create the bucket again),
and reaches nothing outside this machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from processes import free_port, stop_process

ACCESS_KEY, SECRET_KEY = "AKIDUPLOADTEST", "upload-secret-never-logged"  # moto takes any keys


class S3Server:
    """``start()`` / ``stop()`` moto's server on ``port`` (a free one unless given: the same port
    again after a stop, to play a store that went away and came back)."""

    def __init__(self, log: Path | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> "S3Server":
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL
        env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {self.proc.returncode}")
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)  # the port is not listening yet: nothing to wait on but trying again
        raise RuntimeError("moto server did not answer")

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
                            config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}))

    def __enter__(self) -> "S3Server":
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
