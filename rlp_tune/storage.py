"""Where results live: one filesystem door over `pyarrow.fs` for local folders and URIs.

    fs, path = filesystem("runs/demo")        # LocalFileSystem, "/abs/runs/demo"
    fs, path = filesystem("s3://bucket/x")    # S3FileSystem, "bucket/x"
    is_remote("gs://b/x") -> True             # the one test for what only works on a local folder

`pyarrow.fs.FileSystem.from_uri` returns a LocalFileSystem for an absolute plain path, so the writer
has one code path for both; a relative path is made absolute first (from_uri needs a scheme or an
absolute path). Where behaviour really differs (DuckDB reads local folders only, Tune's tuner.pkl,
the driver marker), callers ask `is_remote`.
"""
from __future__ import annotations

import os


def is_remote(root: str | os.PathLike) -> bool:
    """True for a URI with a scheme (s3://, gs://, ...), False for a local path."""
    return "://" in str(root)


def filesystem(root: str | os.PathLike):
    """(pyarrow FileSystem, path inside it) for a local folder or a URI pyarrow understands."""
    from pyarrow import fs as pafs
    r = str(root)
    return pafs.FileSystem.from_uri(r if is_remote(r) else os.path.abspath(r))


def exists(fs, path: str) -> bool:
    from pyarrow import fs as pafs
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def list_files(fs, folder: str) -> list[str]:
    """The plain files directly in `folder` (sorted paths; empty if it does not exist)."""
    from pyarrow import fs as pafs
    infos = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    return sorted(i.path for i in infos if i.type == pafs.FileType.File)
