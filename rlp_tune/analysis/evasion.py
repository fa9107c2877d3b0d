"""Flags of an evaded co-trained head (issue 13): memorization the online rand_acc does not show.

    ev = check_evasion(tables.layers, d)     # Evasion: flagged, rows (which trial, tap, why)

Two signs, per tap with heads (split "train", heads collapsed):
- below chance: the online rand_acc is significantly below chance 1/rlp.n — the regularizer pushed
  the head's probability of the assigned label to 0, so the features may still carry the labels.
  Over the trials of one λ level and cell (≥ 2 trials): the 95% bootstrap CI of their mean lies
  below chance; a single trial: its value is below half of chance.
- audit above online: a fresh head trained on the frozen features (`rand_acc_audit`) beats the
  online value by more than AUDIT_MARGIN (accuracy fraction).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .bootstrap import boot_mean_ci, rng_for

AUDIT_MARGIN = 0.05
SINGLE_TRIAL_FRACTION = 0.5
RULE = (f"online rand_acc significantly below chance 1/n (the 95% CI of the mean over a λ level's trials "
        f"below chance; one trial: below {SINGLE_TRIAL_FRACTION:g}/n), or rand_acc_audit (a fresh head on the "
        f"frozen features) above the online rand_acc by more than {100 * AUDIT_MARGIN:g} points")


@dataclass
class EvasionRow:
    layer: str
    lam: float | None
    cell: str
    trial_ids: list[str]
    online: float
    chance: float | None
    audit: float | None
    why: str                    # "below chance" | "audit above online"

    def to_dict(self) -> dict:
        return {"layer": self.layer, "lam": self.lam, "cell": self.cell, "trial_ids": self.trial_ids,
                "online": self.online, "chance": self.chance, "audit": self.audit, "why": self.why}


@dataclass
class Evasion:
    rows: list[EvasionRow] = field(default_factory=list)
    audited: bool = False       # rand_acc_audit was recorded

    @property
    def flagged(self) -> bool:
        return bool(self.rows)

    def to_dict(self) -> dict:
        return {"flagged": self.flagged, "audited": self.audited, "rule": RULE,
                "rows": [r.to_dict() for r in self.rows]}


def check_evasion(layers, d, cell_of: dict[str, str] | None = None, *, n_boot: int = 200,
                  seed: int = 0) -> Evasion:
    """layers: Tables.layers; d: per_trial frame (lam, chance); cell_of: trial_id → cell key."""
    import pandas as pd

    out = Evasion()
    if layers is None or not len(layers):
        return out
    tr = layers[layers.split == "train"]
    online = tr[tr.metric == "rand_acc"][["trial_id", "layer", "value"]].rename(columns={"value": "online"})
    audit = tr[tr.metric == "rand_acc_audit"][["trial_id", "layer", "value"]].rename(columns={"value": "audit"})
    out.audited = bool(len(audit))
    m = online.merge(audit, on=["trial_id", "layer"], how="left") if len(online) else online.assign(audit=np.nan)
    m["trial_id"] = m.trial_id.astype(str)
    info = d.set_index("trial_id")
    m = m[m.trial_id.isin(info.index)]
    m["lam"] = m.trial_id.map(info.lam)
    m["chance"] = m.trial_id.map(info.chance)
    m["cell"] = [(cell_of or {}).get(t, "") for t in m.trial_id]
    rng = rng_for("evasion", seed)
    for (cell, layer, lam), g in m.groupby(["cell", "layer", m.lam.fillna(-1.0)], sort=True):
        ch = g.chance.dropna()
        if len(ch) and ch.nunique() == 1:
            c = float(ch.iloc[0])
            vals = g.online.to_numpy(float)
            if len(vals) >= 2:
                ci_ = boot_mean_ci(vals, rng, n_boot)
                below = ci_ is not None and ci_[1] < c
            else:
                below = bool(vals[0] < SINGLE_TRIAL_FRACTION * c)
            if below:
                out.rows.append(EvasionRow(str(layer), None if lam < 0 else float(lam), str(cell),
                                           sorted(g.trial_id), float(vals.mean()), c, None, "below chance"))
        for r in g.itertuples():
            if pd.notna(r.audit) and r.audit - r.online > AUDIT_MARGIN:
                out.rows.append(EvasionRow(str(layer), None if lam < 0 else float(lam), str(cell), [r.trial_id],
                                           float(r.online), None if pd.isna(r.chance) else float(r.chance),
                                           float(r.audit), "audit above online"))
    return out
