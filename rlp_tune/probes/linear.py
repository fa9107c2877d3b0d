"""Linear probes on frozen features, two variants side by side (`probe.linear`, docs/measurements.md).

    acc = linear_probe(train_feats, train_labels, test_feats, test_labels, C=1.0)     # "l2"
    W, b, mean, std = fit_logreg(train_feats, train_labels, num_classes, C=1.0)
    acc = adam_probe(train_feats, train_labels, test_feats, test_labels, seed=0)      # "adam20" (004's)

"l2" (the default) is the regularized optimum: multinomial logistic regression on standardized
features solved to convergence. "adam20" is 004's probe: unregularized Adam (lr 1e-3, 20 epochs,
batch 128) on raw features, effectively early-stopped (`fit_adam_probe`). On noisy training labels
the two can disagree strongly (the optimum fits the noise; the short Adam run mostly does not).

"l2":

Same objective as scikit-learn's LogisticRegression(C=C, solver="lbfgs") on StandardScaler'd
features: minimize  C · Σ_i CE(W x_i + b, y_i) + ½‖W‖²  (intercept not penalized), computed as
mean CE + ‖W‖² / (2 C N) so the scale does not depend on N. Standardization uses the training
mean and population std (ddof = 0; constant features get std 1).

Deterministic: full-batch L-BFGS (torch.optim.LBFGS, strong-Wolfe line search) from W = 0, b = 0,
fixed `max_iter` and tolerances; no sampling anywhere. Runs on the features' device; float64 in,
float64 math, else float32.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import register_probe


def _standardize_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = x.mean(0)
    std = x.std(0, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))  # constant feature: leave it centred at 0
    return mean, std


def fit_logreg(train_feats: torch.Tensor, train_labels: torch.Tensor, num_classes: int | None = None,
               C: float = 1.0, max_iter: int = 200, tol: float = 1e-6):
    """Fit the probe. Returns (W (C, d), b (C,), mean (d,), std (d,)); predict with
    ((x - mean) / std) @ W.T + b."""
    if train_feats.ndim != 2 or train_labels.shape != (train_feats.shape[0],):
        raise ValueError(f"linear_probe: want train_feats (N, d) and train_labels (N,); got "
                         f"{tuple(train_feats.shape)} and {tuple(train_labels.shape)}")
    if C <= 0:
        raise ValueError(f"linear_probe: C must be > 0, got {C}")
    dt = torch.float64 if train_feats.dtype == torch.float64 else torch.float32
    x = train_feats.to(dt)
    y = train_labels.to(x.device).long()
    if num_classes is None:
        num_classes = int(y.max()) + 1
    n, d = x.shape
    mean, std = _standardize_stats(x)
    z = (x - mean) / std                                                     # (N, d)
    W = torch.zeros(num_classes, d, dtype=dt, device=x.device, requires_grad=True)
    b = torch.zeros(num_classes, dtype=dt, device=x.device, requires_grad=True)
    reg = 1.0 / (2.0 * C * n)
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter, tolerance_grad=tol, tolerance_change=tol * 1e-3,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad(set_to_none=False)
        loss = F.cross_entropy(z @ W.T + b, y) + reg * (W * W).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)  # one step = up to max_iter L-BFGS iterations
    return W.detach(), b.detach(), mean, std


def linear_predict(params, test_feats: torch.Tensor) -> torch.Tensor:
    W, b, mean, std = params
    z = (test_feats.to(W.dtype) - mean) / std
    return (z @ W.T + b).argmax(1)


def linear_probe(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
                 test_labels: torch.Tensor, C: float = 1.0, max_iter: int = 200, num_classes: int | None = None,
                 tol: float = 1e-6) -> float:
    """Test accuracy of the L2 multinomial logistic-regression probe fitted on (train_feats, train_labels)."""
    params = fit_logreg(train_feats, train_labels, num_classes, C=C, max_iter=max_iter, tol=tol)
    pred = linear_predict(params, test_feats)
    return float((pred == test_labels.to(pred.device).long()).double().mean()) if len(pred) else float("nan")


# ---- 004's linear probe: unregularized Adam on raw features, a fixed short budget ---------------
def fit_adam_probe(train_feats: torch.Tensor, train_labels: torch.Tensor, num_classes: int | None = None,
                   epochs: int = 20, lr: float = 1e-3, batch_size: int = 128, seed: int = 0):
    """004's linear probe ("adam20"): nn.Linear(d, C) with PyTorch's default init, trained with
    unregularized Adam (lr 1e-3, betas (0.9, 0.999)) on the RAW features for `epochs` epochs of
    shuffled mini-batches of `batch_size` (cross-entropy, mean over the batch). No standardization,
    no weight decay, no convergence test: the fixed budget acts as early stopping. Deterministic for
    a given seed (init and batch order), global RNG untouched. Returns (W (C, d), b (C,))."""
    if train_feats.ndim != 2 or train_labels.shape != (train_feats.shape[0],):
        raise ValueError(f"linear_probe: want train_feats (N, d) and train_labels (N,); got "
                         f"{tuple(train_feats.shape)} and {tuple(train_labels.shape)}")
    dt = torch.float64 if train_feats.dtype == torch.float64 else torch.float32
    x = train_feats.to(dt)
    y = train_labels.to(x.device).long()
    if num_classes is None:
        num_classes = int(y.max()) + 1
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        lin = torch.nn.Linear(x.shape[1], num_classes).to(device=x.device, dtype=dt)
    opt = torch.optim.Adam(lin.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    with torch.enable_grad():
        for _ in range(epochs):
            perm = torch.randperm(len(x), generator=g).to(x.device)
            for i in range(0, len(x), batch_size):
                idx = perm[i:i + batch_size]
                loss = F.cross_entropy(lin(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return lin.weight.detach(), lin.bias.detach()


def adam_probe(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
               test_labels: torch.Tensor, num_classes: int | None = None, seed: int = 0, **kw) -> float:
    """Test accuracy of 004's linear probe (`fit_adam_probe`); test rows scored 8192 at a time."""
    W, b = fit_adam_probe(train_feats, train_labels, num_classes, seed=seed, **kw)
    pred = torch.cat([(test_feats[i:i + 8192].to(W) @ W.T + b).argmax(1) for i in range(0, len(test_feats), 8192)]) \
        if len(test_feats) else torch.empty(0, dtype=torch.long)
    return float((pred == test_labels.to(pred.device).long()).double().mean()) if len(pred) else float("nan")


@register_probe("linear", options={"linear": "linear"})
def linear_probe_entry(train_feats, train_labels, test_feats, test_labels, num_classes, seed, linear):
    """The registered linear probe: `linear` = "l2" (linear_probe, C = 1) or "adam20" (004's, seeded)."""
    if linear == "adam20":
        return adam_probe(train_feats, train_labels, test_feats, test_labels, num_classes=num_classes, seed=seed)
    if linear != "l2":
        raise ValueError(f"linear probe variant {linear!r}: expected 'l2' or 'adam20'")
    return linear_probe(train_feats, train_labels, test_feats, test_labels, num_classes=num_classes)
