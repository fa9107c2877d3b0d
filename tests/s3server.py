"""A real S3 endpoint on 127.0.0.1 for tests and benchmarks: moto's server (the S3 protocol over HTTP),
started as a subprocess; pyarrow (and any process started afterwards: Ray trials) reach it through
AWS_ENDPOINT_URL.

    with s3server.running() as new_bucket:     # sets AWS_ENDPOINT_URL & co. for this process
        uri = new_bucket()                     # "s3://b1a2b3..."

tests/conftest.py's `s3_endpoint` fixture and bench/storage.py use it. Needs the test extra (`moto[server]`).
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid


@contextlib.contextmanager
def running(timeout: float = 30.0):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        deadline = time.time() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto's S3 server did not start") from None
                time.sleep(0.1)

        def bucket() -> str:
            from pyarrow import fs as pafs
            name = f"b{uuid.uuid4().hex[:12]}"
            pafs.S3FileSystem(endpoint_override=env["AWS_ENDPOINT_URL"], allow_bucket_creation=True).create_dir(name)
            return f"s3://{name}"

        yield bucket
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def upload(local: os.PathLike, uri: str) -> None:
    """Copy a local folder to a URI (pyarrow.fs), as a user's `aws s3 sync` would."""
    from pyarrow import fs as pafs
    fs, path = pafs.FileSystem.from_uri(uri)
    pafs.copy_files(str(local), path, destination_filesystem=fs, use_threads=True)
