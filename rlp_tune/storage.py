"""Where results live: one filesystem door over `pyarrow.fs` for local folders and URIs.

    fs, path = filesystem("runs/demo")        # LocalFileSystem, "/abs/runs/demo"
    fs, path = filesystem("s3://bucket/x")    # S3FileSystem, "bucket/x"
    is_remote("gs://b/x") -> True             # the one test for what only works on a local folder

`pyarrow.fs.FileSystem.from_uri` returns a LocalFileSystem for an absolute plain path, so the writer
and the reader (rlp_tune/reader.py) have one code path for both; a relative path is made absolute
first (from_uri needs a scheme or an absolute path). Where behaviour really differs (Tune's local
files, the driver marker), callers ask `is_remote`. Credentials come from the environment (AWS_*,
GOOGLE_APPLICATION_CREDENTIALS, an instance role) as pyarrow reads them; `display` keeps any that a
URI carries out of messages.
"""
from __future__ import annotations

import os


def is_remote(root: str | os.PathLike) -> bool:
    """True for a URI with a scheme (s3://, gs://, ...), False for a local path."""
    return "://" in str(root)


# pyarrow's GCS client retries an unreachable store or missing credentials for many minutes by
# default (measured here without a network: `rlp-tune query gs://...` still waiting after 60 s); a
# URI that names its own `retry_limit_seconds` keeps it
GCS_RETRY_S = 30


def filesystem(root: str | os.PathLike):
    """(pyarrow FileSystem, path inside it) for a local folder or a URI pyarrow understands."""
    from pyarrow import fs as pafs
    r = str(root)
    if r.startswith(("gs://", "gcs://")) and "retry_limit_seconds=" not in r:
        r += ("&" if "?" in r else "?") + f"retry_limit_seconds={GCS_RETRY_S}"
    return pafs.FileSystem.from_uri(r if is_remote(r) else os.path.abspath(r))


def exists(fs, path: str) -> bool:
    from pyarrow import fs as pafs
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def list_files(fs, folder: str) -> list[str]:
    """The plain files directly in `folder` (sorted paths; empty if it does not exist)."""
    from pyarrow import fs as pafs
    infos = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    return sorted(i.path for i in infos if i.type == pafs.FileType.File)


def list_tree(fs, folder: str) -> list:
    """FileInfo of every plain file under `folder`, recursively (one LIST on an object store; empty
    if the folder does not exist)."""
    from pyarrow import fs as pafs
    infos = fs.get_file_info(pafs.FileSelector(folder, recursive=True, allow_not_found=True))
    return [i for i in infos if i.type == pafs.FileType.File]


def is_dir(fs, path: str) -> bool:
    from pyarrow import fs as pafs
    return fs.get_file_info(path).type == pafs.FileType.Directory


def read_bytes(root: str | os.PathLike, name: str) -> bytes | None:
    """The bytes of ROOT/name (a folder or a URI), or None when there is no such file."""
    fs, base = filesystem(root)
    path = f"{base.rstrip('/')}/{name}"
    try:
        with fs.open_input_stream(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


def read_text(root: str | os.PathLike, name: str) -> str | None:
    """The text of ROOT/name (a folder or a URI), or None when there is no such file."""
    data = read_bytes(root, name)
    return None if data is None else data.decode("utf-8", errors="replace")


def display(root: str | os.PathLike) -> str:
    """ROOT for messages: a URI loses any user:password@ and ?query part (credentials are never printed)."""
    r = str(root)
    if not is_remote(r):
        return r
    scheme, _, rest = r.partition("://")
    rest = rest.split("?", 1)[0]
    host, sep, path = rest.partition("/")
    return f"{scheme}://{host.rpartition('@')[2]}{sep}{path}"


def name(root: str | os.PathLike) -> str:
    """The last part of ROOT's path (a sweep's name), for a folder or a URI."""
    return display(root).rstrip("/").rpartition("/")[2]


def write_text(root: str | os.PathLike, name: str, text: str) -> None:
    """Write ROOT/name whole (see write_bytes)."""
    write_bytes(root, name, text.encode("utf-8"))


def write_bytes(root: str | os.PathLike, name: str, data: bytes) -> None:
    """Write ROOT/name whole, so that a reader (or a kill) never sees half of it: a temporary file in
    ROOT/.tmp/ renamed into place (one PUT on an object store, which is atomic there)."""
    import uuid
    fs, base = filesystem(root)
    base = base.rstrip("/")
    path = f"{base}/{name}"
    tmp = f"{base}/.tmp/{name.replace('/', '_')}.tmp-{uuid.uuid4().hex[:8]}"
    fs.create_dir(f"{base}/.tmp", recursive=True)
    if "/" in name:
        fs.create_dir(path.rpartition("/")[0], recursive=True)
    with fs.open_output_stream(tmp) as f:
        f.write(data)
    fs.move(tmp, path)


def resolve(root: str | os.PathLike) -> str:
    """ROOT as the one name a sweep goes by: an absolute path for a folder, a URI as it is."""
    r = str(root)
    return r if is_remote(r) else os.path.realpath(os.path.expanduser(r))
