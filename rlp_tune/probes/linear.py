"""Linear probe: multinomial logistic regression on standardized frozen features (003, 004).

    acc = linear_probe(train_feats, train_labels, test_feats, test_labels, C=1.0)
    W, b, mean, std = fit_logreg(train_feats, train_labels, num_classes, C=1.0)

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
