"""`rlp-tune offline-rlp DIR`: the paper's offline RLP validation (section 5.1, figure 2B).

    rlp-tune train cfg.toml --set run.keep_checkpoints=all --out runs/x
    rlp-tune offline-rlp runs/x                   # K = rlp.audit_epochs head-training epochs per checkpoint
    rlp-tune offline-rlp runs/x --head-epochs 5   # another K: rows carry protocol "head_epochs=5"

For every saved epoch checkpoint the network is frozen and the fresh-head audit of
`rlp_tune.run.audit` (the same code and settings the Trainer uses for `rlp.audit_every`: the run's head
architecture and init scheme, the same init for every checkpoint, its own fixed Adam optimizer, the
run's own random-label tables, `rlp.audit_standardize`) is trained on the frozen (unaugmented)
training features; its final random-label accuracy on the training set is written as split
"offline", metric "rand_acc" (per head, and head -1 = mean) into the run's Parquet
(`offline_epoch_NNNNN.parquet`). Rows made with the run's own audit settings have protocol "";
another --head-epochs is recorded as protocol "head_epochs=K", so both coexist; rerunning with the
same settings replaces only those rows.
"""
from __future__ import annotations

from ..run.audit import AuditSettings, audit_accuracies
from ..results import ResultWriter
from ..checkpoint import CheckpointError, read_checkpoint
from .frozen import load_frozen, run_context, run_identity, select_checkpoints


def offline_rlp(root, head_epochs: int | None = None, epochs: str = "all") -> int:
    if head_epochs is not None and head_epochs < 1:
        raise CheckpointError(f"--head-epochs: must be >= 1, got {head_epochs}")
    ck, results_root, sweep, trial_id = run_context(root)
    files = select_checkpoints(ck, epochs)
    run = load_frozen(files[0])
    cfg, data = run.cfg, run.data
    if not run.rlp_taps:
        raise CheckpointError(f"{root}: this run has no RLP heads (rlp.heads = 0)")
    settings = AuditSettings.from_config(cfg, head_epochs)
    protocol = "" if settings.epochs == cfg.rlp.audit_epochs else f"head_epochs={settings.epochs}"
    writer = ResultWriter(results_root, *run_identity(run.state, sweep, trial_id))
    bs = cfg.run.eval_batch_size or 2 * cfg.run.batch_size
    for f in files:
        state = read_checkpoint(f)
        run.load(state)
        tables = {t: v.to(data.device) for t, v in state.get("tables", {}).items()} or run.label_tables(1)
        accs = audit_accuracies(run.net.model, data, run.rlp_taps, tables, cfg, run.n, settings, bs)
        rows = []
        for tap, acc in accs.items():
            rows += [dict(split="offline", layer=tap, head=h, metric="rand_acc", value=float(a), protocol=protocol)
                     for h, a in enumerate(acc.tolist())]
            rows.append(dict(split="offline", layer=tap, head=-1, metric="rand_acc", value=float(acc.mean()),
                             protocol=protocol))
        writer.write_epoch(int(state["epoch"]), rows, kind="offline")
        print(f"epoch {state['epoch']}: " + ", ".join(f"{r['layer']} rand_acc {r['value']:.4f}"
                                                     for r in rows if r["head"] == -1))
    return len(files)
