"""Layer probes on frozen features: k-NN (003), linear, MASC (004), nearest class mean, and the
normalized invariance measure (003 eq. 2).

    feats = extract_features(model, bundle.eval_batches("train", 512), taps=["input", "penultimate"], device=dev)
    tfeats = extract_features(model, bundle.eval_batches("test", 512), taps=["input", "penultimate"], device=dev)
    accs = run_probes(["knn", "masc"], feats["penultimate"], y_train, tfeats["penultimate"], y_test,
                      num_classes=10, k=20, masc_threshold=0.99)   # {"knn_acc": ..., "masc_acc": ...}

Every probe is a pure function of feature tensors that runs on their device. `PROBES[name]` has one
signature: (train_feats, train_labels, test_feats, test_labels, num_classes, **opts) -> accuracy.
"invariance" is not a feature probe (it needs the feature function and an augmentation): call
`rlp_tune.probes.invariance.invariance` directly.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch

from .invariance import invariance, invariance_per_sample
from .knn import knn_accuracy, knn_neighbors, knn_predict
from .linear import adam_probe, fit_adam_probe, fit_logreg, linear_predict, linear_probe
from .masc import MASC, explained_variance_k, masc_accuracy, masc_fit
from .ncm import ncm_accuracy, ncm_predict


def _knn(trf, trl, tef, tel, num_classes, k=20, **_):
    return knn_accuracy(trf, trl, tef, tel, k=k, num_classes=num_classes)


def _linear(trf, trl, tef, tel, num_classes, linear="l2", linear_C=1.0, linear_max_iter=200, seed=0, **_):
    if linear == "adam20":
        return adam_probe(trf, trl, tef, tel, num_classes=num_classes, seed=seed)
    if linear != "l2":
        raise ValueError(f"linear probe variant {linear!r}: expected 'l2' or 'adam20'")
    return linear_probe(trf, trl, tef, tel, C=linear_C, max_iter=linear_max_iter, num_classes=num_classes)


def _masc(trf, trl, tef, tel, num_classes, masc_threshold=0.99, **_):
    return masc_accuracy(trf, trl, tef, tel, num_classes=num_classes, threshold=masc_threshold)


def _ncm(trf, trl, tef, tel, num_classes, **_):
    return ncm_accuracy(trf, trl, tef, tel, num_classes=num_classes)


PROBES: dict[str, Callable[..., float]] = {"knn": _knn, "linear": _linear, "masc": _masc, "ncm": _ncm}


def run_probes(names: Iterable[str], train_feats: torch.Tensor, train_labels: torch.Tensor,
               test_feats: torch.Tensor, test_labels: torch.Tensor, num_classes: int, k: int = 20,
               masc_threshold: float = 0.99, linear_C: float = 1.0, linear_max_iter: int = 200,
               linear: str = "l2", seed: int = 0) -> dict[str, float]:
    """Run the named probes on one layer's features → {"knn_acc": ..., "linear_acc": ..., ...}
    (metric names as they go into the Parquet rows). linear: "l2" | "adam20" (seed: adam20's init
    and batch order)."""
    names = list(names)
    bad = [n for n in names if n not in PROBES]
    if bad:
        hint = (" ('invariance' needs a model and augmentation: use rlp_tune.probes.invariance)"
                if "invariance" in bad else "")
        raise ValueError(f"unknown probe(s) {', '.join(bad)} (known: {', '.join(PROBES)}){hint}")
    opts = dict(k=k, masc_threshold=masc_threshold, linear_C=linear_C, linear_max_iter=linear_max_iter,
                linear=linear, seed=seed)
    return {f"{n}_acc": PROBES[n](train_feats, train_labels, test_feats, test_labels, num_classes, **opts)
            for n in names}


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


__all__ = ["PROBES", "run_probes", "extract_features", "knn_predict", "knn_accuracy", "knn_neighbors",
           "linear_probe", "fit_logreg", "linear_predict", "adam_probe", "fit_adam_probe", "MASC", "masc_fit", "masc_accuracy",
           "explained_variance_k", "ncm_predict", "ncm_accuracy", "invariance", "invariance_per_sample"]
