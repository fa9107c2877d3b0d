"""Fresh-head memorization audit and the eval-mode random-label accuracy (docs/measurements.md).

    from rlp_tune.run.audit import AuditSettings, train_fresh_heads, audit_rows, rand_eval_rows
    acc = train_fresh_heads(feats, labels, n=10, heads=1, seed=0, settings=AuditSettings())  # (heads,)
    rows = audit_rows(trainer, tables)      # rand_acc_audit rows of every RLP tap (what the Trainer logs)
    rows = rand_eval_rows(trainer, tables)  # rand_acc_eval rows (the Trainer: every epoch)

`rand_eval_rows`: the co-trained heads in eval mode on the unaugmented inputs of a fixed, seeded
sample of `rlp.eval_samples` training samples (drawn from run.seed alone, the same every epoch) —
the online `rand_acc` is measured in train mode on augmented views, so dropout and augmentation
lower it without lowering memorization.

The co-trained RLP head can be evaded: the regularizer pushes the head's probability of the assigned
label down while the features still carry the labels. The audit asks the features directly: a
fresh head set — the run's head architecture (rlp.hidden, rlp.heads, rlp.layout, LayerNorm on token
taps) and init scheme (nn.Linear's U(±1/√fan_in)), the same init for a given (run.seed, tap) every
time — is trained on the frozen, unaugmented training features with the run's own random-label
tables, and its random-label accuracy on the training set is the memorization measure.

Its optimizer is fixed and independent of the run's (so runs that differ in optim.* are audited with
the same instrument): Adam (lr 1e-2, betas (0.9, 0.999), no weight decay), batch 128, reshuffled
each epoch from a seeded generator, `rlp.audit_epochs` epochs (default 20), L_rnd only (no
regularizer). `rlp.audit_standardize` scales the features by one scalar so the mean row L2 norm is
√d (every coordinate RMS 1 on average): the geometry is kept, the overall scale — which label
smoothing or weight decay change — is taken out. Global RNG state is untouched (forked), so a run
with the audit on trains bit-identically to one with it off.

The Trainer logs `rand_acc_audit` (split train, layer tap, head −1 = mean over the heads) every
`rlp.audit_every` epochs; `rlp-tune offline-rlp` runs the same function on saved checkpoints.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.labels import derive_seed
from ..heads import RLPHeads


@dataclass(frozen=True)
class AuditSettings:
    epochs: int = 20                 # rlp.audit_epochs
    standardize: bool = False        # rlp.audit_standardize
    lr: float = 1e-2                 # fixed: Adam, no weight decay
    batch_size: int = 128            # fixed
    eval_batch: int = 4096           # rows per no-grad scoring chunk (memory bound only)

    @classmethod
    def from_config(cls, cfg, epochs: int | None = None) -> "AuditSettings":
        return cls(epochs=cfg.rlp.audit_epochs if epochs is None else epochs,
                   standardize=cfg.rlp.audit_standardize)


def standardize_norm(feats: torch.Tensor) -> torch.Tensor:
    """feats · (√d / mean_i ‖feats_i‖): one scalar, mean row norm √d (unchanged if all rows are 0)."""
    mean_norm = feats.norm(dim=1).mean()
    if mean_norm <= 0:
        return feats
    return feats * (feats.shape[1] ** 0.5 / mean_norm)


def train_fresh_heads(feats: torch.Tensor, labels: torch.Tensor, n: int, heads: int = 1, hidden: int = 0,
                      norm: bool = False, layout: str = "shared", y_class: torch.Tensor | None = None,
                      num_classes: int = 1, seed: int = 0, settings: AuditSettings = AuditSettings(),
                      chunk: int = 0) -> torch.Tensor:
    """Fresh RLP heads trained on frozen features (m, d) to their random labels (m, heads) →
    per-head training-set random-label accuracy (heads,) float64. Deterministic for a given seed."""
    if feats.ndim != 2 or labels.shape[0] != feats.shape[0]:
        raise ValueError(f"audit: want feats (m, d) and labels (m, heads); got {tuple(feats.shape)}, "
                         f"{tuple(labels.shape)}")
    feats = feats.detach().float()
    if settings.standardize:
        feats = standardize_norm(feats)
    labels = labels.reshape(len(labels), -1)
    dev = feats.device
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)      # the init: the same fresh head for every call with this seed
        head = RLPHeads(feats.shape[1], n, heads, hidden, norm=norm, layout=layout, num_classes=num_classes,
                        chunk=chunk).to(dev)
    opt = torch.optim.Adam(head.parameters(), lr=settings.lr, betas=(0.9, 0.999), weight_decay=0.0)
    m, bs = len(feats), settings.batch_size
    g = torch.Generator().manual_seed(derive_seed(seed, "audit-order"))
    with torch.enable_grad():
        for _ in range(settings.epochs):
            perm = torch.randperm(m, generator=g).to(dev)
            for i in range(0, m, bs):
                idx = perm[i:i + bs]
                out = head(feats[idx], labels[idx], None if y_class is None else y_class[idx], regularize=False)
                opt.zero_grad(set_to_none=True)
                out.loss_rnd.backward()
                opt.step()
    correct = torch.zeros(heads, dtype=torch.long, device=dev)
    with torch.no_grad():
        for i in range(0, m, settings.eval_batch):
            sl = slice(i, i + settings.eval_batch)
            correct += head(feats[sl], labels[sl], None if y_class is None else y_class[sl],
                            regularize=False).correct
    return correct.double().cpu() / m


def audit_accuracies(model, data, taps, tables, cfg, n: int, settings: AuditSettings,
                     batch_size: int) -> dict[str, torch.Tensor]:
    """tap → per-head audit accuracy (heads,) on the frozen, unaugmented training features."""
    from ..probes import extract_features
    host = torch.device("cpu") if data.device.type != "cpu" else None   # features wait in host memory
    feats = extract_features(model, data.eval_batches("train", batch_size), taps, device=data.device,
                             out_device=host)
    per_class = cfg.rlp.layout == "per_class"
    out = {}
    for tap in taps:                                                     # one tap on the device at a time
        out[tap] = train_fresh_heads(
            feats.pop(tap).to(data.device), tables[tap], n, cfg.rlp.heads, cfg.rlp.hidden, norm=tap in model.token_taps,
            layout=cfg.rlp.layout, y_class=data.y["train"] if per_class else None,
            num_classes=data.num_classes if per_class else 1, seed=derive_seed(cfg.run.seed, "audit-head", tap),
            settings=settings, chunk=cfg.rlp.chunk)
    return out


def audit_rows(trainer, tables: dict[str, torch.Tensor]) -> list[dict]:
    """`rand_acc_audit` rows (split train, layer tap, head −1) of a Trainer's current network;
    tables: tap → (m, heads) random labels of the current epoch."""
    cfg = trainer.cfg
    bs = cfg.run.eval_batch_size or 2 * cfg.run.batch_size
    accs = audit_accuracies(trainer.net.model, trainer.data, trainer.rlp_taps, tables, cfg, trainer.n,
                            AuditSettings.from_config(cfg), bs)
    return [dict(split="train", layer=t, head=-1, metric="rand_acc_audit", value=float(a.mean()))
            for t, a in accs.items()]


def eval_sample(seed: int, m: int, k: int) -> torch.Tensor:
    """rand_acc_eval's sample: k of m training indices (sorted), from the run seed alone."""
    g = torch.Generator().manual_seed(derive_seed(seed, "rand-acc-eval"))
    return torch.randperm(m, generator=g)[:k].sort().values


@torch.no_grad()
def rand_eval_rows(trainer, tables: dict[str, torch.Tensor]) -> list[dict]:
    """`rand_acc_eval` rows (split train, layer tap, head h and −1) of a Trainer's co-trained heads;
    leaves the network in eval mode (the next epoch sets train mode)."""
    cfg, data = trainer.cfg, trainer.data
    k = min(cfg.rlp.eval_samples, data.m)
    if not k or not trainer.rlp_taps or data.streamed is not None:
        return []
    if trainer.eval_idx is None:
        trainer.eval_idx = eval_sample(cfg.run.seed, data.m, k).to(trainer.device)
    net, taps = trainer.net, tuple(trainer.rlp_taps)
    net.eval()
    bs = cfg.run.eval_batch_size or 2 * cfg.run.batch_size
    correct = {t: 0 for t in taps}
    for lo in range(0, k, bs):
        idx = trainer.eval_idx[lo:lo + bs]
        x = data.prepare(data.x["train"][idx])
        if cfg.model.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(**trainer.autocast):
            _, feats = net.model(x, taps=taps)
        for t in taps:
            out = net.heads[t](feats[t].float(), tables[t][idx], data.y["train"][idx], regularize=False)
            correct[t] = correct[t] + out.correct
    rows = []
    for t in taps:
        acc = (correct[t].double() / k).tolist()
        rows += [dict(split="train", layer=t, head=h, metric="rand_acc_eval", value=a) for h, a in enumerate(acc)]
        rows.append(dict(split="train", layer=t, head=-1, metric="rand_acc_eval", value=sum(acc) / len(acc)))
    return rows
