"""Probing a network's taps the way 003/004 do: features of the (unaugmented) training split fit
each probe, the test split scores it; plus 003's invariance of each tap under the augmentation.

    rows = probe_rows(model, bundle, cfg)     # Parquet rows: split "test", layer = tap, metric = knn_acc, ...

Every row names its protocol (`ProbeSpec.protocol`, from the probe's registry entry): the label set
the probe was fitted on, and the settings that change its number — k-NN "labels=clean;k=20", MASC "labels=train;threshold=0.99",
linear "labels=clean;linear=adam20", NCM "labels=clean", plus ";max_train=N" when a subset of N
training samples was used (probe.max_train > 0 and smaller than the training set). Probes are fitted
on the whole training split by default (probe.max_train = 0), as 003 and 004 do; memory stays
bounded on an accelerator by keeping the extracted features in host memory and moving one tap at a
time to the device (the k-NN probe is chunked internally).

Used during training (`probe.every = k`, and at epoch 0 as the baseline) and after training
(`rlp-tune probe DIR`, see rlp_tune/offline/probe.py).
"""
from __future__ import annotations

import torch

from . import extract_features, invariance, probe_spec, run_probes


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
    # probe.max_train > 0: a fixed, seeded subset bounds the cost on large datasets
    keep = None
    if 0 < p.max_train < m and data.streamed is None:   # features come back in index order: keep sorted
        keep = torch.randperm(m, generator=torch.Generator().manual_seed(cfg.run.seed))[:p.max_train].sort().values
    train_batches = _subset_batches(data, keep, bs)
    host = torch.device("cpu") if data.device.type != "cpu" else None   # features wait in host memory
    tr = extract_features(model, train_batches, taps, device=data.device, out_device=host)
    te = extract_features(model, data.eval_batches("test", bs), taps, device=data.device, out_device=host)
    y_tr = (data.y_clean if labels == "clean" else data.y["train"])
    y_tr = y_tr if keep is None else y_tr[keep.to(y_tr.device)]
    y_te = data.y["test"]
    feature_probes = [n for n in probes if probe_spec(n).features]
    n_subset = 0 if keep is None else len(keep)
    rows = []
    for tap in taps:
        if feature_probes:
            f_tr, f_te = tr.pop(tap).to(data.device), te.pop(tap).to(data.device)   # one tap on the device
            accs = run_probes(feature_probes, f_tr, y_tr, f_te, y_te, data.num_classes, probe_cfg=p,
                              seed=cfg.run.seed)
            rows += [dict(split="test", layer=tap, head=-1, metric=f"{n}_acc", value=float(accs[f"{n}_acc"]),
                          protocol=probe_spec(n).protocol(labels, p, n_subset)) for n in feature_probes]
            del f_tr, f_te
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
