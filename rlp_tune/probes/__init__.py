"""Layer probes on frozen features: k-NN (003), linear, MASC (004), nearest class mean, and the
normalized invariance measure (003 eq. 2).

    feats = extract_features(model, bundle.eval_batches("train", 512), taps=["input", "penultimate"], device=dev)
    tfeats = extract_features(model, bundle.eval_batches("test", 512), taps=["input", "penultimate"], device=dev)
    accs = run_probes(["knn", "masc"], feats["penultimate"], y_train, tfeats["penultimate"], y_test,
                      num_classes=10, probe_cfg=cfg.probe)   # {"knn_acc": ..., "masc_acc": ...}

Every probe is a pure function of feature tensors that runs on their device, registered by its own
file in `PROBES` (base.py: the entry's signature, its options and the protocol they name).
"invariance" is registered too but is not a feature probe (it needs the feature function and an
augmentation): probes/layers.py runs it, or call `rlp_tune.probes.invariance.invariance` directly.
"""
from __future__ import annotations

from typing import Iterable

import torch

from .base import PROBES, ProbeSpec, list_probes, probe_spec, register_probe
# each import registers its probe (base.py); a new probe is one file and its line here
from .invariance import invariance, invariance_per_sample
from .knn import knn_accuracy, knn_neighbors, knn_predict
from .linear import adam_probe, fit_adam_probe, fit_logreg, linear_predict, linear_probe
from .masc import MASC, explained_variance_k, masc_accuracy, masc_fit
from .ncm import ncm_accuracy, ncm_predict


def run_probes(names: Iterable[str], train_feats: torch.Tensor, train_labels: torch.Tensor,
               test_feats: torch.Tensor, test_labels: torch.Tensor, num_classes: int, probe_cfg=None,
               seed: int = 0) -> dict[str, float]:
    """Run the named feature probes on one layer's features → {"knn_acc": ..., "linear_acc": ..., ...}
    (metric names as they go into the Parquet rows). Each probe's options come from `probe_cfg` (a
    `[probe]` section, default `rlp_tune.config.Probe()`) as its registry entry says; seed: the
    probes that draw (adam20's init and batch order)."""
    if probe_cfg is None:
        from ..config import Probe
        probe_cfg = Probe()
    specs = [probe_spec(n) for n in names]
    bad = [s.name for s in specs if not s.features]
    if bad:
        raise ValueError(f"{', '.join(bad)}: not a feature probe (it needs a model and augmentation: "
                         "rlp_tune.probes.layers.probe_rows runs it)")
    return {f"{s.name}_acc": s.fn(train_feats, train_labels, test_feats, test_labels, num_classes, seed,
                                  **s.kwargs(probe_cfg)) for s in specs}


def extract_features(model, batches: Iterable, taps: Iterable[str], device=None, out_device=None,
                     with_labels: bool = False):
    """Run a TapModel over (x, y, idx) batches in eval mode under no_grad → {tap: (n, d_t) float32}
    with rows sorted by idx (ascending sample index, whatever order the batches came in).

    Tap "input" is the flattened model input x.flatten(1). `device`: where the model runs (default:
    the model's parameters' device); `out_device`: where features are kept (default: `device`).
    with_labels=True returns (features, labels (n,)) with labels in the same order. The model's
    train/eval mode is restored afterwards."""
    taps = list(taps)
    if not taps:
        raise ValueError("extract_features: no taps given")
    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    device = torch.device(device)
    out_device = torch.device(out_device) if out_device is not None else device
    model_taps = tuple(t for t in taps if t != "input")
    unknown = [t for t in model_taps if t not in getattr(model, "tap_names", model_taps)]
    if unknown:
        raise ValueError(f"extract_features: unknown tap(s) {', '.join(unknown)} "
                         f"(model taps: {', '.join(model.tap_names)}, plus 'input')")
    parts: dict[str, list[torch.Tensor]] = {t: [] for t in taps}
    ys, idxs = [], []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for x, y, idx in batches:
                x = x.to(device, non_blocking=True)
                _, feats = model(x, taps=model_taps)
                for t in taps:
                    f = x.flatten(1) if t == "input" else feats[t]
                    parts[t].append(f.float().to(out_device))
                ys.append(torch.as_tensor(y).to(out_device))
                idxs.append(torch.as_tensor(idx).to(out_device))
    finally:
        model.train(was_training)
    if not idxs:
        raise ValueError("extract_features: the batch iterable was empty")
    order = torch.argsort(torch.cat(idxs), stable=True)
    out = {t: torch.cat(parts[t])[order] for t in taps}
    return (out, torch.cat(ys)[order].long()) if with_labels else out


__all__ = ["PROBES", "ProbeSpec", "list_probes", "probe_spec", "register_probe", "run_probes", "extract_features", "knn_predict", "knn_accuracy", "knn_neighbors",
           "linear_probe", "fit_logreg", "linear_predict", "adam_probe", "fit_adam_probe", "MASC", "masc_fit", "masc_accuracy",
           "explained_variance_k", "ncm_predict", "ncm_accuracy", "invariance", "invariance_per_sample"]
