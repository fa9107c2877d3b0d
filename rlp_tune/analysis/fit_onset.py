"""Onset of memorization vs train/test divergence (paper fig. 2A), per trial and summarized.

    on = onset_epochs(tables.epochs, chance_by_trial)        # trial_id, onset, divergence (epochs)
    s = onset_summary(on, trial_ids)                         # OnsetSummary: medians, lag with CI

onset: first epoch rand_acc > chance + delta_rand; divergence: first epoch train acc − test acc >
delta_gap (val acc when test is absent); lag = onset − divergence.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .bootstrap import ci, rng_for
from .fits import fit_lines, register_fit
from .numtext import num, pct, with_ci
from .identify import NotIdentified

DELTA_RAND = 0.05   # onset: rand_acc above chance by this much (accuracy fraction)
DELTA_GAP = 0.05    # divergence: train − test accuracy above this


def onset_epochs(epochs, chance_by_trial: dict, *, delta_rand: float = DELTA_RAND,
                 delta_gap: float = DELTA_GAP, rand_col: str = "train.rand_acc"):
    """Per trial: onset and divergence epochs (NaN when never reached). `epochs` is Tables.epochs."""
    import pandas as pd

    if epochs is None or epochs.empty:
        return pd.DataFrame(columns=["trial_id", "onset", "divergence"])
    # trials in the order given (Tables.epochs: content order), epochs ascending within each
    ids = epochs.trial_id.astype(str)
    w = epochs.iloc[np.lexsort((epochs.epoch.to_numpy(), pd.factorize(ids)[0]))]
    ids = w.trial_id.astype(str)
    out = pd.DataFrame({"trial_id": ids.unique()})
    rand = w[rand_col] if rand_col in w else None
    if rand is not None and rand.notna().any():
        ch = ids.map(chance_by_trial).astype(float)
        # unknown chance (no rlp.n): the trial's own first-epoch rand_acc stands in
        ch = ch.fillna(rand.groupby(ids).transform("first"))
        hit = w.epoch[(rand > ch + delta_rand).to_numpy()]
        out["onset"] = out.trial_id.map(hit.groupby(ids[hit.index]).min())
    else:
        out["onset"] = np.nan
    held = next((c for c in ("test.acc", "val.acc") if c in w and w[c].notna().any()), None)
    if "train.acc" in w and held:
        hit = w.epoch[((w["train.acc"] - w[held]) > delta_gap).to_numpy()]
        out["divergence"] = out.trial_id.map(hit.groupby(ids[hit.index]).min())
    else:
        out["divergence"] = np.nan
    return out


@dataclass
class OnsetSummary:
    n_trials: int
    n_onset: int
    n_divergence: int
    n_both: int
    onset_median: float | None
    divergence_median: float | None
    lag_median: float | None
    frac_onset_before_divergence: float | None
    frac_onset_same_epoch: float | None
    ci: dict[str, list[float] | None] = field(default_factory=dict)

    fitted = True

    def to_dict(self) -> dict:
        return {"fitted": True, "n_trials": self.n_trials, "n_onset": self.n_onset,
                "n_divergence": self.n_divergence, "n_both": self.n_both,
                "params": {k: getattr(self, k) for k in ("onset_median", "divergence_median", "lag_median",
                                                         "frac_onset_before_divergence", "frac_onset_same_epoch")},
                "ci": dict(self.ci)}


def onset_summary(on, trial_ids, *, n_boot: int = 200, seed: int = 0,
                  label: str = "all") -> OnsetSummary | NotIdentified:
    o = on[on.trial_id.isin(set(map(str, trial_ids)))]
    if o.empty:
        return NotIdentified("no per-epoch curves for these trials")
    both = o.dropna(subset=["onset", "divergence"])
    lag = (both.onset - both.divergence).to_numpy(float)
    out = OnsetSummary(
        n_trials=int(len(o)), n_onset=int(o.onset.notna().sum()), n_divergence=int(o.divergence.notna().sum()),
        n_both=int(len(both)), onset_median=float(o.onset.median()) if o.onset.notna().any() else None,
        divergence_median=float(o.divergence.median()) if o.divergence.notna().any() else None,
        lag_median=float(np.median(lag)) if len(lag) else None,
        frac_onset_before_divergence=float((lag < 0).mean()) if len(lag) else None,
        frac_onset_same_epoch=float((lag == 0).mean()) if len(lag) else None)
    if len(lag) >= 2:
        idx = rng_for(f"onset:{label}", seed).integers(0, len(lag), size=(n_boot, len(lag)))
        out.ci["lag_median"] = ci(np.median(lag[idx], axis=1))
    return out


@dataclass
class Onset:
    """Onset summaries of the least-regularized trials and of all trials, with the definition."""
    baseline: OnsetSummary | NotIdentified
    all: OnsetSummary | NotIdentified
    definition: str

    @property
    def fitted(self) -> bool:
        return bool(self.baseline.fitted or self.all.fitted)

    def to_dict(self) -> dict:
        return {"baseline": self.baseline.to_dict(), "all": self.all.to_dict(), "definition": self.definition}


def fit_onset(on, base_ids, all_ids, *, n_boot: int = 200, seed: int = 0, definition: str = "") -> Onset:
    """The onset summaries of the least-regularized trials (base_ids) and of all trials (all_ids)."""
    return Onset(onset_summary(on, base_ids, n_boot=n_boot, seed=seed, label="base"),
                 onset_summary(on, all_ids, n_boot=n_boot, seed=seed, label="all"), definition)


# ---- text and registration ------------------------------------------------------------------
def summary_lines(fit: OnsetSummary | NotIdentified, name: str) -> list[str]:
    if isinstance(fit, NotIdentified):
        return fit_lines(fit, name)
    if not fit.n_onset:
        return [f"{name}, {fit.n_trials} trials: rand_acc never rose above chance + the onset margin in any trial; "
                f"train/test diverge at epoch {num(fit.divergence_median)} (median, {fit.n_divergence} trials)"]
    return [f"{name}, {fit.n_trials} trials: rand_acc rises at epoch {num(fit.onset_median)} (median), train/test "
            f"diverge at {num(fit.divergence_median)}; lag {with_ci(fit.lag_median, fit.ci.get('lag_median'))} "
            f"epochs; onset first in {pct(fit.frac_onset_before_divergence)} of {fit.n_both}"]


def onset_lines(fit: Onset, name: str) -> list[str]:
    return summary_lines(fit.baseline, "onset (baseline)") + summary_lines(fit.all, "onset (all)")


register_fit("onset", fit=fit_onset, result=Onset, lines=onset_lines)
