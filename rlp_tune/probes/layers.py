"""Probing a network's taps the way 003/004 do: features of the (unaugmented) training split fit
each probe, the test split scores it; plus 003's invariance of each tap under the augmentation.

    rows = probe_rows(model, bundle, cfg)     # Parquet rows: split "test", layer = tap, metric = knn_acc, ...

Used during training (`probe.every = k`, and at epoch 0 as the baseline) and after training
(`rlp-tune probe DIR`, see offline.py).
"""
from __future__ import annotations

import torch

from . import extract_features, invariance, run_probes


def probe_taps(model, names) -> list[str]:
    """`probe.layers` → taps: 'all' = the input and every tap; 'input' is the flattened input."""
    names = list(names)
    if names == ["all"]:
        return ["input"] + list(model.tap_names)
    bad = [n for n in names if n != "input" and n not in model.tap_names]
    if bad:
        from ..models import ModelInputError
        raise ModelInputError(f"probe.layers: unknown tap(s) {', '.join(bad)} "
                              f"(taps: input, {', '.join(model.tap_names)})")
    return names


def probe_rows(model, data, cfg, probes=None, layers=None, labels=None, augment=None) -> list[dict]:
    """Run the configured probes on every chosen tap → long-format rows (split "test")."""
    p = cfg.probe
    probes = list(probes or p.probes)
    taps = probe_taps(model, layers or p.layers)
    labels = labels or p.labels
    bs = cfg.run.eval_batch_size or 2 * cfg.run.batch_size
    m = data.m
    # a fixed, seeded subset bounds the cost on large datasets (probe.max_train)
    keep = None
    if m > p.max_train and data.streamed is None:   # features come back in index order: keep sorted
        keep = torch.randperm(m, generator=torch.Generator().manual_seed(cfg.run.seed))[:p.max_train].sort().values
    train_batches = _subset_batches(data, keep, bs)
    tr = extract_features(model, train_batches, taps, device=data.device)
    te = extract_features(model, data.eval_batches("test", bs), taps, device=data.device)
    y_tr = (data.y_clean if labels == "clean" else data.y["train"])
    y_tr = y_tr if keep is None else y_tr[keep.to(y_tr.device)]
    y_te = data.y["test"]
    feature_probes = [n for n in probes if n != "invariance"]
    rows = []
    for tap in taps:
        if feature_probes:
            accs = run_probes(feature_probes, tr[tap], y_tr, te[tap], y_te, data.num_classes, k=p.k,
                              masc_threshold=p.masc_threshold)
            rows += [dict(split="test", layer=tap, head=-1, metric=k, value=float(v)) for k, v in accs.items()]
    if "invariance" in probes and augment is not None:
        x, _, _ = next(iter(data.eval_batches("train", min(256, m))))
        gen = torch.Generator(device=data.device).manual_seed(cfg.run.seed)
        for tap in taps:
            fn = _tap_fn(model, tap)
            rows.append(dict(split="train", layer=tap, head=-1, metric="invariance",
                             value=float(invariance(fn, x, augment, n_views=4, generator=gen))))
    return rows


def _tap_fn(model, tap):
    def fn(x):
        was = model.training
        model.eval()
        with torch.no_grad():
            out = x.flatten(1) if tap == "input" else model(x, taps=(tap,))[1][tap]
        model.train(was)
        return out.float()
    return fn


def _subset_batches(data, keep, bs):
    if keep is None:
        yield from data.eval_batches("train", bs)
        return
    keep = keep.to(data.device)
    for i in range(0, len(keep), bs):
        idx = keep[i:i + bs]
        yield data.prepare(data.x["train"][idx]), data.y["train"][idx], idx
