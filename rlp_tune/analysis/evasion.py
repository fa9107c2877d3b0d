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
    # numpy columns and one grouping pass: per-group DataFrame work cost seconds with many taps × λ
    online_v, audit_v = m.online.to_numpy(float), m.audit.to_numpy(float)
    chance_v, lam_v = m.chance.to_numpy(float), m.lam.fillna(-1.0).to_numpy(float)
    tids, layer_v, cell_v = m.trial_id.to_numpy(), m.layer.astype(str).to_numpy(), m.cell.to_numpy()

    def lam_of(i):
        return None if lam_v[i] < 0 else float(lam_v[i])

    groups = pd.DataFrame({"c": cell_v, "l": layer_v, "x": lam_v}).groupby(["c", "l", "x"], sort=True).indices
    for idx in groups.values():
        ch = chance_v[idx]
        if not np.isfinite(ch).all() or np.ptp(ch) > 0:
            continue                                # unknown or mixed chance: no test
        c, vals = float(ch[0]), online_v[idx]
        if len(vals) >= 2:
            ci_ = boot_mean_ci(vals, rng, n_boot)
            below = ci_ is not None and ci_[1] < c
        else:
            below = bool(vals[0] < SINGLE_TRIAL_FRACTION * c)
        if below:
            i0 = idx[0]
            out.rows.append(EvasionRow(layer_v[i0], lam_of(i0), str(cell_v[i0]), sorted(tids[idx]),
                                       float(vals.mean()), c, None, "below chance"))
    for i in np.flatnonzero(np.isfinite(audit_v) & (audit_v - online_v > AUDIT_MARGIN)):
        out.rows.append(EvasionRow(layer_v[i], lam_of(i), str(cell_v[i]), [tids[i]], float(online_v[i]),
                                   float(chance_v[i]) if np.isfinite(chance_v[i]) else None, float(audit_v[i]),
                                   "audit above online"))
    return out
