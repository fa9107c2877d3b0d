"""`rlp-tune sweep | resume | status | dashboard` (wired from rlp_tune/cli.py; `rlp-tune sweep --help`).

sweep and resume stop cleanly on SIGUSR1 / SIGTERM / Ctrl-C (rlp_tune/tune/signals.py) and then exit
with 3 (RESUME_EXIT: "stopped before the end, `rlp-tune resume` continues") or 130 (Ctrl-C); a
finished sweep exits 0. Env RLP_TUNE_PIDFILE / RLP_TUNE_STOPFILE: see signals.py.
"""
from __future__ import annotations

from ..storage import is_remote
from .signals import StopRequest
from .space import SPACE_FILE, load_space, space_path


def cmd_sweep(args) -> int:
    stop = StopRequest().install()     # first: a wall-time signal during start-up is not fatal
    try:
        from ..trackers import check_available
        from .sweep import run_sweep
        space = load_space(args.target, args.overrides)   # validated before Ray starts
        check_available(space.base.logging.trackers, sweep=True)
        if getattr(args, "fresh", False):
            fresh_sweep_dir(args.storage or "results", args.name or space.name)
        out = run_sweep(space, storage=args.storage or "results", name=args.name, address=args.address, stop=stop,
                        verbose=args.verbose)
        return out["exit_code"]
    finally:
        stop.uninstall()


def cmd_resume(args) -> int:
    space_path(args.target)            # not a sweep folder: say so before importing Ray and torch
    stop = StopRequest().install()
    try:
        from .sweep import resume_sweep
        return resume_sweep(args.target, address=args.address, stop=stop, verbose=args.verbose,
                            space_file=getattr(args, "space", None))["exit_code"]
    finally:
        stop.uninstall()


def cmd_status(args) -> int:
    from .status import format_status
    space = load_space(space_path(args.target))   # a folder or a URI; no Ray, no torch
    print(format_status(args.target, space.metric, space.mode, [d.key for d in space.search],
                        expected=space.total_trials()))
    return 0


def cmd_dashboard(args) -> int:
    """optuna-dashboard on the sweep's study, on 127.0.0.1 (the optional extra `dashboard`)."""
    from pathlib import Path

    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from ..errors import UserError
    from .designs.study import JOURNAL
    if is_remote(args.target):
        raise UserError(f"{args.target}: optuna-dashboard reads a local journal; copy {JOURNAL} from there first")
    path = Path(args.target) / JOURNAL
    if not path.exists():
        raise UserError(f"{args.target}: no Optuna study ({path.name}) in this folder; is it a TPE sweep's folder?")
    try:
        import optuna_dashboard
    except ImportError:
        raise UserError("optuna-dashboard is not installed: pip install 'rlp_tune[dashboard]'") from None
    print(f"optuna-dashboard for study {Path(args.target).resolve().name}: http://127.0.0.1:{args.port}/ (Ctrl-C ends it)")
    optuna_dashboard.run_server(JournalStorage(JournalFileBackend(str(path))), host="127.0.0.1", port=args.port)
    return 0


def fresh_sweep_dir(storage: str, name: str) -> None:
    """--fresh: delete the local sweep folder STORAGE/NAME (only if it holds a sweep), printing what goes."""
    import shutil
    import sys
    from pathlib import Path

    from ..errors import UserError
    if is_remote(storage):
        raise UserError(f"--fresh: {storage} is not a local folder; delete {storage}/{name} with your storage's tools")
    from ..names import check_name
    check_name("--name", name)   # one folder under --storage: `../x` would delete outside it
    root = Path(storage) / name
    if not root.exists() and not root.is_symlink():
        return
    if root.is_symlink() or root.resolve().parent != Path(storage).resolve():
        raise UserError(f"--fresh: {root} is a link out of {storage}; not deleting it")
    if not (root / SPACE_FILE).exists() and not (root / "tuner.pkl").exists():
        raise UserError(f"--fresh: {root} does not hold a sweep ({SPACE_FILE}); not deleting it")
    files = [f for f in root.rglob("*") if f.is_file()]
    trials = len(list((root / "parquet" / "trials").glob("*.parquet"))) if (root / "parquet" / "trials").is_dir() else 0
    mb = sum(f.stat().st_size for f in files) / 1e6
    print(f"--fresh: deleting sweep folder {root}/ ({len(files)} files, {mb:.1f} MB, {trials} trials file(s))",
          file=sys.stderr)
    shutil.rmtree(root)
