"""`rlp-tune probe DIR`: layer probes on a run's saved checkpoints, rows into the same Parquet.

    rlp-tune train cfg.toml --set run.keep_checkpoints=all --out runs/x     # one checkpoint per epoch
    rlp-tune probe runs/x --probes knn,masc,ncm --layers all --epochs 0,5,10
    rlp-tune probe runs/x --probes masc,knn,linear --labels clean --set probe.k=5 --set probe.linear=adam20

Rows are written into `probe_epoch_NNNNN.parquet` beside the training rows (split "test", layer =
tap, metric knn_acc / masc_acc / ..., protocol "labels=clean;k=5" ...: see probes/layers.py). A run adds
its rows to the file or replaces only the rows of the same (probe, layer, protocol), so probes with
other label sets or settings coexist; `rlp-tune query` / `analyze` / `report` and
`rlp_tune.reader.read_metrics` all read them. `--set` takes probe.* keys (k, masc_threshold,
linear, max_train); the other settings come from the checkpoint's config.
DIR may be a single run's folder or a sweep trial's folder (STORAGE/NAME/trials/<id>).
"""
from __future__ import annotations

from ..checkpoint import read_checkpoint
from ..run.checks import check_run
from ..config import Config, ConfigError, parse_overrides
from ..probes.layers import probe_rows
from ..results import ResultWriter
from .frozen import load_frozen, run_context, run_identity, select_checkpoints


def probe_checkpoints(root, epochs: str = "all", probes=("knn",), layers=("penultimate",), labels=None,
                      settings: list[str] | None = None) -> int:
    """settings: ["probe.k=5", ...] overrides of probe.* keys (checked before any work)."""
    ov = parse_overrides(settings)
    bad = [k for k in ov if not k.startswith("probe.")]
    if bad:
        raise ConfigError(f"{bad[0]}: `rlp-tune probe --set` takes probe.* keys only")
    Config().replace(**ov)     # values checked now, before the checkpoint and the data are loaded
    ck, results_root, sweep, trial_id = run_context(root)
    files = select_checkpoints(ck, epochs)
    run = load_frozen(files[0])
    cfg = run.cfg
    if ov:
        cfg = cfg.replace(**ov)
        check_run(cfg, run.data, None)     # e.g. probe.k against the training set's size
    writer = ResultWriter(results_root, *run_identity(run.state, sweep, trial_id))
    for f in files:
        state = read_checkpoint(f)
        run.load(state)
        rows = probe_rows(run.net.model, run.data, cfg, probes=list(probes), layers=list(layers), labels=labels)
        writer.write_epoch(int(state["epoch"]), rows, kind="probe")
        summary = ", ".join(f"{r['layer']}:{r['metric']}={r['value']:.3f}" for r in rows)
        print(f"epoch {state['epoch']}: {summary}")
    return len(files)
