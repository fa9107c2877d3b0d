"""A run folder: checked before any work, and held by one process at a time.

    check_folder("runs/x", "--out")        # UserError if it is a file, or cannot be made / written
    lock = RunLock.acquire(Path("runs/x"))  # RunLockedError (one line, exit 2) if another process holds it
    ...                                     # train: the lock is held for the whole run
    lock.release()

The lock is `fcntl.flock` on `FOLDER/.lock` (the holder's pid inside, for the message). The kernel
drops it when the holder exits, however it exits (crash, SIGKILL): a stale lock file locks nothing.
On a filesystem without flock support the run proceeds unlocked, with a warning.
"""
from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

from ..errors import UserError

LOCK_FILE = ".lock"


class FolderError(UserError, OSError):
    """An output folder that is a file, or cannot be made or written."""


class RunLockedError(UserError, RuntimeError):
    """Another process runs in this folder."""


def check_folder(path: str | Path, what: str) -> None:
    """`path` is a writable folder, or can be made as one (its nearest existing parent is a
    writable folder). Makes nothing."""
    p = Path(path).expanduser().absolute()
    probe = p
    while not probe.exists():
        if probe.is_symlink():
            raise FolderError(f"{what} {path}: is a broken symbolic link")
        probe = probe.parent
    if not probe.is_dir():
        where = "" if probe == p else f" ({probe} is a file)"
        raise FolderError(f"{what} {path}: not a folder{where}")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise FolderError(f"{what} {path}: {probe} is not writable")


class RunLock:
    """An exclusive lock on a run folder, held until `release()` (or the process ends)."""

    def __init__(self, folder: Path, fd: int | None):
        self.folder, self.fd = folder, fd

    @classmethod
    def acquire(cls, folder: str | Path, write_pid: bool = True) -> "RunLock":
        """The lock on FOLDER/.lock; `write_pid`: write this process's pid into it now (else call
        `write_pid()` later: a run that has nothing to do leaves the file as it was)."""
        import fcntl
        folder = Path(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise FolderError(f"{folder}: cannot create the run folder's lock file ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                who = f" (pid {holder})" if holder else ""
                raise RunLockedError(f"{folder}: another process{who} is running in this folder; wait for it "
                                     "to end or use another --out folder") from None
            print(f"rlp-tune: warning: {folder}: cannot lock the folder ({e.strerror}); make sure no other "
                  "process runs in it", file=sys.stderr)
            return cls(folder, None)
        lock = cls(folder, fd)
        if write_pid:
            lock.write_pid()
        return lock

    def write_pid(self) -> None:
        """This process's pid into the lock file (what a second process names); a full disk leaves
        it out (the flock is the lock, the pid only names its holder)."""
        if self.fd is not None:
            try:
                os.ftruncate(self.fd, 0)
                os.pwrite(self.fd, str(os.getpid()).encode(), 0)
            except OSError:
                pass

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)     # closing drops the flock
            self.fd = None

    def __del__(self):
        self.release()


def write_fault(folder: str | Path) -> OSError | None:
    """The OSError that writing 64 KiB into FOLDER raises now (full disk, quota, read-only), naming
    FOLDER; None when the write succeeds (the probe file is removed either way)."""
    import tempfile
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".rlp_tune_write_probe-")
        try:
            os.write(fd, bytes(65536))
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as e:
        return OSError(e.errno, e.strerror or str(e), str(folder))
    return None
