"""`rlp-tune sweep | resume | status | dashboard` (wired from rlp_tune/cli.py; `rlp-tune sweep --help`).

sweep and resume stop cleanly on SIGUSR1 / SIGTERM / Ctrl-C (rlp_tune/tune/signals.py) and then exit
with 3 (RESUME_EXIT: "stopped before the end, `rlp-tune resume` continues") or 130 (Ctrl-C); a
finished sweep exits 0. Env RLP_TUNE_PIDFILE / RLP_TUNE_STOPFILE: see signals.py.
"""
from __future__ import annotations

from ..storage import is_remote, name
from .signals import StopRequest
from .space import SPACE_FILE, load_space, space_path


def cmd_sweep(args) -> int:
    stop = StopRequest().install()     # first: a wall-time signal during start-up is not fatal
    try:
        from ..run.trackers import check_available
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

    import tempfile

    from ..errors import UserError
    from ..storage import display, read_bytes
    from .designs.study import JOURNAL
    data = read_bytes(args.target, JOURNAL)     # a folder or a URI: the dashboard reads a copy
    if data is None:
        raise UserError(f"{display(args.target)}: no Optuna study ({JOURNAL}) in this folder; is it a tpe / random / "
                        "qmc sweep's folder?")
    path = Path(args.target) / JOURNAL     # a folder: the live export, updated as the sweep runs
    if is_remote(args.target):             # a bucket: a copy, as of now
        path = Path(tempfile.mkdtemp(prefix="rlp_tune_dashboard_")) / JOURNAL
        path.write_bytes(data)
    try:
        import optuna_dashboard
    except ImportError:
        raise UserError("optuna-dashboard is not installed: pip install 'rlp_tune[dashboard]'") from None
    print(f"optuna-dashboard for study {name(args.target)}: http://127.0.0.1:{args.port}/ (Ctrl-C ends it)")
    optuna_dashboard.run_server(JournalStorage(JournalFileBackend(str(path))), host="127.0.0.1", port=args.port)
    return 0


# what a sweep writes in its folder: rlp_tune's own, and Tune's record of each driver session
OWN = {SPACE_FILE, "ledger", "parquet", "trials", "optuna.journal", "tracking", "train", ".driver", ".lock",
       ".tmp", "tuner.pkl", ".validate_storage_marker"}
TUNE_SESSION_FILES = ("experiment_state-", "search_gen_state-", "basic-variant-state-", "searcher-state-")


def fresh_sweep_dir(storage: str, name: str) -> None:
    """--fresh: delete what the toolkit wrote in the local sweep folder STORAGE/NAME (only if it holds
    a sweep, never through a link), printing what goes; anything else there is kept and named."""
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
    if not (root / SPACE_FILE).is_file():
        raise UserError(f"--fresh: {root} does not hold a sweep ({SPACE_FILE}); not deleting it")
    from .ledger import Ledger, LedgerError
    try:
        ids = set(Ledger(str(root)).read().trials)
    except LedgerError:
        ids = set()

    def ours(p: Path) -> bool:   # Tune's trial folders are named <trial id>_<searched values>
        return (p.name in OWN or p.name.startswith(TUNE_SESSION_FILES)
                or (p.is_dir() and not p.is_symlink() and p.name.partition("_")[0] in ids))
    gone = [p for p in root.iterdir() if ours(p)]
    kept = sorted(p.name for p in root.iterdir() if p not in gone)
    files = [f for p in gone for f in ([p] if not p.is_dir() or p.is_symlink() else p.rglob("*")) if f.is_file()]
    mb = sum(f.stat().st_size for f in files) / 1e6
    print(f"--fresh: deleting sweep {root}/ ({len(files)} files, {mb:.1f} MB)"
          + (f"; keeping what rlp_tune did not write: {', '.join(kept)}" if kept else ""), file=sys.stderr)
    for p in gone:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
    if not kept:
        root.rmdir()
