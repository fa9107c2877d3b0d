"""`rlp-tune offline-rlp DIR`: the paper's offline RLP validation (section 5.1, figure 2B).

    rlp-tune train cfg.toml --set run.keep_checkpoints=all --out runs/x
    rlp-tune offline-rlp runs/x --epochs 5        # K = 5 head-training epochs per checkpoint

For every saved epoch checkpoint the network is frozen, a fresh RLP head set — initialized with the
same parameters for every checkpoint, trained on the run's own fixed random labels — is trained for
K epochs on the frozen (unaugmented) training features, and its final random-label accuracy on
the training set is written as split "offline", metric "rand_acc" (per head, and head -1 = mean)
into the run's Parquet (`offline_epoch_NNNNN.parquet`: rerunning replaces the rows).
"""
from __future__ import annotations

import torch

from ..data.labels import derive_seed
from ..heads import RLPHeads
from ..results import ResultWriter
from ..train import CheckpointError, make_optimizer, read_checkpoint
from . import extract_features
from .offline import load_for_probing, run_context, run_identity, select_checkpoints


def train_offline_head(feats: torch.Tensor, labels: torch.Tensor, cfg, n: int, norm: bool, head_epochs: int,
                       seed: int, y_class: torch.Tensor | None = None) -> torch.Tensor:
    """Fresh heads (same init for a given seed) trained on frozen features → per-head train accuracy (h,)."""
    torch.manual_seed(seed)
    heads = RLPHeads(feats.shape[1], n, cfg.rlp.heads, cfg.rlp.hidden, norm=norm, layout=cfg.rlp.layout,
                     num_classes=int(y_class.max()) + 1 if y_class is not None else 1, reg=cfg.rlp.reg,
                     chunk=cfg.rlp.chunk).to(feats.device)
    opt = make_optimizer(cfg, heads.parameters())
    m, bs = len(feats), cfg.run.batch_size
    g = torch.Generator().manual_seed(seed)
    for _ in range(head_epochs):
        perm = torch.randperm(m, generator=g).to(feats.device)
        for i in range(0, m, bs):
            idx = perm[i:i + bs]
            out = heads(feats[idx], labels[idx], None if y_class is None else y_class[idx], regularize=False)
            opt.zero_grad(set_to_none=True)
            out.loss_rnd.backward()
            opt.step()
    correct = torch.zeros(cfg.rlp.heads, dtype=torch.long, device=feats.device)
    with torch.no_grad():
        for i in range(0, m, 4 * bs):
            sl = slice(i, i + 4 * bs)
            correct += heads(feats[sl], labels[sl], None if y_class is None else y_class[sl], regularize=False).correct
    return correct.double() / m


def offline_rlp(root, head_epochs: int = 5, epochs: str = "all") -> int:
    if head_epochs < 1:
        raise CheckpointError(f"--head-epochs: must be >= 1, got {head_epochs}")
    ck, results_root, sweep, trial_id = run_context(root)
    files = select_checkpoints(ck, epochs)
    trainer, first = load_for_probing(files[0])
    cfg, data = trainer.cfg, trainer.data
    if not trainer.rlp_taps:
        raise CheckpointError(f"{root}: this run has no RLP heads (rlp.heads = 0)")
    writer = ResultWriter(results_root, *run_identity(first, sweep, trial_id))
    bs = cfg.run.eval_batch_size or 2 * cfg.run.batch_size
    for f in files:
        state = read_checkpoint(f)
        trainer.net.load_state_dict(state["net"])
        tables = {t: v.to(data.device) for t, v in state.get("tables", {}).items()} or trainer.label_tables(1)
        feats = extract_features(trainer.net.model, data.eval_batches("train", bs), trainer.rlp_taps, device=data.device)
        rows = []
        for tap in trainer.rlp_taps:
            acc = train_offline_head(feats[tap], tables[tap], cfg, trainer.n, tap in trainer.net.model.token_taps,
                                     head_epochs, derive_seed(cfg.run.seed, "offline-head", tap),
                                     data.y["train"] if cfg.rlp.layout == "per_class" else None)
            rows += [dict(split="offline", layer=tap, head=h, metric="rand_acc", value=float(a))
                     for h, a in enumerate(acc.tolist())]
            rows.append(dict(split="offline", layer=tap, head=-1, metric="rand_acc", value=float(acc.mean())))
        writer.write_epoch(int(state["epoch"]), rows, kind="offline")
        print(f"epoch {state['epoch']}: " + ", ".join(f"{r['layer']} rand_acc {r['value']:.4f}"
                                                     for r in rows if r["head"] == -1))
    return len(files)
