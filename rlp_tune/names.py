"""The one check for names that become a path component: a run's name (`run.name`), a trial id
(from a config, a folder or a checkpoint), a sweep's name (a space file's `[sweep] name`, `--name`).

    check_name("run.name", "lam-1e3")        # → "lam-1e3"
    check_name("run.name", "../../x")         # UnsafeNameError: one line, exit 2 in the CLI

A safe name is one path component that stays inside its parent folder: 1 to 200 characters, no
`/` or `\\`, no control characters (NUL included), not starting with "." (so not "." or ".." and
not hidden) nor with "-" (not an option). Everything else is allowed (spaces, "=", ":", "[",
unicode): the readers treat names as data, not patterns (docs/reliability.md "Threat model").
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import UserError

MAX_NAME = 200
_BAD = re.compile(r"[/\\\x00-\x1f\x7f]")
NAME_RULE = "a name must be one folder name (no / \\ or control characters, not starting with . or -)"


class UnsafeNameError(UserError, ValueError):
    """A name that would leave its folder as a path; one line naming where it came from."""


def name_problem(name) -> str | None:
    """Why `name` is not a safe path component, or None when it is."""
    if not isinstance(name, str):
        return f"expected text, got {type(name).__name__}"
    if not name:
        return "is empty"
    if len(name) > MAX_NAME:
        return f"is {len(name)} characters long (at most {MAX_NAME})"
    bad = _BAD.search(name)
    if bad:
        return f"contains {bad.group()!r} (a name is one folder, not a path)"
    if name.startswith((".", "-")):
        return f"starts with {name[0]!r}"
    return None


def check_name(what: str, name) -> str:
    """`name` if it is a safe path component (see the module docstring), else UnsafeNameError
    '<what>: <name> <why>; a name must be one folder name (...)'."""
    why = name_problem(name)
    if why:
        raise UnsafeNameError(f"{what}: {name!r} {why}; {NAME_RULE}")
    return name


def default_trial_id(out_dir: str | Path) -> str:
    """A run's trial id when run.name is empty: its folder's name (`--out .` names the folder)."""
    return Path(os.path.abspath(out_dir)).name
