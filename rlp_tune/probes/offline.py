"""`rlp-tune probe DIR`: layer probes on a run's saved checkpoints, rows into the same Parquet.

    rlp-tune train cfg.toml --set run.keep_checkpoints=all --out runs/x     # one checkpoint per epoch
    rlp-tune probe runs/x --probes knn,masc,ncm --layers all --epochs 0,5,10
    rlp-tune probe runs/x --probes masc,knn,linear --labels clean --set probe.k=5 --set probe.linear=adam20

Rows are written into `probe_epoch_NNNNN.parquet` beside the training rows (split "test", layer =
tap, metric knn_acc / masc_acc / ..., protocol "labels=clean;k=5" ...: see layers.py). A run adds
its rows to the file or replaces only the rows of the same (probe, layer, protocol), so probes with
other label sets or settings coexist; `rlp-tune query` / `analyze` / `report` and
`rlp_tune.results.read_metrics` all read them. `--set` takes probe.* keys (k, masc_threshold,
linear, max_train); the other settings come from the checkpoint's config.
DIR may be a single run's folder or a sweep trial's folder (STORAGE/NAME/trials/<id>).
"""
from __future__ import annotations

from pathlib import Path



from ..config import Config
from ..results import ResultWriter
from ..train import CheckpointError, Trainer, read_checkpoint


def run_context(root: str | Path) -> tuple[Path, Path, str, str]:
    """(checkpoint folder, results root, sweep, trial_id) of a run folder or a sweep trial folder."""
    root = Path(root)
    ck = root / "checkpoints"
    if not ck.is_dir():
        raise CheckpointError(f"{root}: no checkpoints/ folder (is this an `rlp-tune train --out` folder?)")
    if root.parent.name == "trials" and (root.parent.parent / "parquet").is_dir():
        return ck, root.parent.parent, root.parent.parent.name, root.name
    return ck, root, "", root.name


def select_checkpoints(ck: Path, epochs: str) -> list[Path]:
    files = sorted(ck.glob("epoch_*.pt"))
    if not files:
        files = [ck / "last.pt"] if (ck / "last.pt").exists() else []
    if not files:
        raise CheckpointError(f"{ck}: no checkpoint files")
    if epochs != "all":
        want = {int(e) for e in epochs.split(",") if e.strip()}
        files = [f for f in files if f.stem.startswith("epoch_") and int(f.stem.split("_")[1]) in want]
        if not files:
            raise CheckpointError(f"{ck}: no epoch_*.pt for epochs {epochs} (train with run.keep_checkpoints=all)")
    return files


def run_identity(state: dict, sweep: str, trial_id: str) -> tuple[str, str]:
    """(sweep, trial_id) the run's checkpoint was made under (older checkpoints: the folder's names),
    so rows of a moved or renamed run folder join its own trial."""
    return state.get("sweep", sweep), state.get("trial_id") or trial_id


def load_for_probing(ck_file: Path) -> tuple[Trainer, dict]:
    state = read_checkpoint(ck_file)
    cfg = Config.from_flat(state["config"]).replace(**{"run.device": "auto"})
    trainer = Trainer(cfg)     # no out_dir: builds data and network, touches no file
    return trainer, state


def probe_checkpoints(root, epochs: str = "all", probes=("knn",), layers=("penultimate",), labels=None,
                      settings: list[str] | None = None) -> int:
    """settings: ["probe.k=5", ...] overrides of probe.* keys (checked before any work)."""
    from ..config import ConfigError, parse_overrides
    from .layers import probe_rows
    ov = parse_overrides(settings)
    bad = [k for k in ov if not k.startswith("probe.")]
    if bad:
        raise ConfigError(f"{bad[0]}: `rlp-tune probe --set` takes probe.* keys only")
    Config().replace(**ov)     # values checked now, before the checkpoint and the data are loaded
    ck, results_root, sweep, trial_id = run_context(root)
    files = select_checkpoints(ck, epochs)
    trainer, first = load_for_probing(files[0])
    if ov:
        from ..checks import check_run
        trainer.cfg = trainer.cfg.replace(**ov)
        check_run(trainer.cfg, trainer.data, None)     # e.g. probe.k against the training set's size
    writer = ResultWriter(results_root, *run_identity(first, sweep, trial_id))
    for f in files:
        state = read_checkpoint(f)
        trainer.net.load_state_dict(state["net"])
        rows = probe_rows(trainer.net.model, trainer.data, trainer.cfg, probes=list(probes), layers=list(layers),
                          labels=labels)
        writer.write_epoch(int(state["epoch"]), rows, kind="probe")
        summary = ", ".join(f"{r['layer']}:{r['metric']}={r['value']:.3f}" for r in rows)
        print(f"epoch {state['epoch']}: {summary}")
    return len(files)



