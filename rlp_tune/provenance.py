"""Provenance: where a run came from (git commit, command line) and where it ran (host, device).

    from rlp_tune.provenance import provenance
    provenance(device)   # {"prov.git_commit": "3f2c…", "prov.git_dirty": False, "prov.command": "rlp-tune train …",
                         #  "prov.host": "node07", "prov.device_name": "NVIDIA H200", "prov.cwd": "/home/me/exp"}

The Trainer adds these columns to every trials row (beside the `version.*` columns of
rlp_tune/results.py: rlp_tune, torch, Ray, Python) and `rlp-tune train`
writes them into the run's config.toml as a `[provenance]` table (ignored when the file is read back
as a config). A sweep takes the origin (git, command line) from its driver — a Tune trial's working
directory and argv are Ray's, not the user's — and the machine part from the node each trial runs on.
"""
from __future__ import annotations

import functools
import os
import platform
import shlex
import socket
import subprocess
import sys
from pathlib import Path


@functools.lru_cache(maxsize=8)
def git_state(cwd: str) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git work tree holding `cwd`; (None, None) outside one or without git.
    Dirty = tracked files differ from the commit (untracked files do not count)."""
    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return r.stdout.strip() if r.returncode == 0 else None
    commit = git("rev-parse", "HEAD")
    if not commit:
        return None, None
    status = git("status", "--porcelain", "--untracked-files=no")
    return commit, (None if status is None else bool(status))


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed, as far as Python can tell (`rlp-tune` for the console script)."""
    argv = list(sys.argv if argv is None else argv)
    if not argv:
        return ""
    prog = shlex.quote(argv[0])
    if Path(argv[0]).name in ("rlp-tune", "__main__.py", "cli.py"):
        prog = "rlp-tune" if Path(argv[0]).name == "rlp-tune" else "python -m rlp_tune.cli"
    return " ".join([prog, *map(shlex.quote, argv[1:])])


def origin(cwd: str | None = None, argv: list[str] | None = None) -> dict:
    """The part that belongs to the process the user started (a sweep's driver passes it to its trials)."""
    cwd = cwd or os.getcwd()
    commit, dirty = git_state(cwd)
    return {"prov.git_commit": commit, "prov.git_dirty": dirty, "prov.command": command_line(argv), "prov.cwd": cwd}


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device=None) -> str:
    """GPU name for a CUDA device, else the CPU model."""
    import torch
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(dev)
    return cpu_model()


@functools.lru_cache(maxsize=16)
def package_version(name: str) -> str | None:
    """Installed version without importing the package (Ray's import alone takes seconds)."""
    from importlib import metadata
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def machine(device=None) -> dict:
    """The part that belongs to the machine the training runs on."""
    return {"prov.host": socket.gethostname(), "prov.device_name": device_name(device)}


def provenance(device=None) -> dict:
    """This process's origin + this machine (a sweep trial's Trainer gets the driver's origin on top)."""
    return {**origin(), **machine(device)}


def toml_table(extra: dict) -> str:
    """The `prov.*` and `version.*` entries of a trials row as a `[provenance]` TOML table (config.toml)."""
    from .config import PROVENANCE_TABLE, toml_literal
    rows = [f'"{k}" = {toml_literal(v)}' for k, v in extra.items()
            if k.startswith(("prov.", "version.")) and isinstance(v, (str, bool, int, float))]
    return f"\n# where this run came from and where it ran (not a config section; ignored when read back)\n" \
           f"[{PROVENANCE_TABLE}]\n" + "\n".join(rows) + "\n"
