"""`rlp-tune sweep | resume | status` (wired from rlp_tune/cli.py)."""
from __future__ import annotations

from .space import load_space


def cmd_sweep(args) -> int:
    from .sweep import run_sweep
    space = load_space(args.target, args.overrides)   # validated before Ray starts
    run_sweep(space, storage=args.storage or "results", name=args.name, address=args.address)
    return 0


def cmd_resume(args) -> int:
    from .sweep import resume_sweep
    resume_sweep(args.target, address=args.address)
    return 0


def cmd_status(args) -> int:
    from .status import format_status
    from .sweep import _space_path
    space = load_space(_space_path(args.target))
    print(format_status(args.target, space.metric, space.mode, [d.key for d in space.search]))
    return 0
