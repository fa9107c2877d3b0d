"""Extend a sweep: `rlp-tune resume ROOT --space NEW.toml` runs only what NEW.toml adds.

    new = extended(stored, load_space("more_seeds.toml"))   # SpaceError naming the key, or the new space

What may grow: the seeds (the stored ones first, in their order: a trial's replicate index names its
seed), a grid factor's values (the stored ones kept), `num_samples`; resources, concurrency,
`max_failures` and `time_budget` may change. Everything that defines the cells already run — the
base config (every fixed key and the epochs), the design, the metric, the scheduler, each searched
key and its range — must be the stored one, else the trials already run would not be the cells the
new space names. The analysis pools old and new trials: they are one sweep.
"""
from __future__ import annotations

import json
import re
from dataclasses import replace

from .space import SearchSpace, SpaceError


def extended(old: SearchSpace, new: SearchSpace) -> SearchSpace:
    def refuse(key: str, why: str):
        raise SpaceError(f"{key}: {why}; a sweep can only be extended (more seeds, grid values or samples) — "
                         "start a new sweep for another experiment")

    for key, a, b in (("sweep.design", old.design, new.design), ("sweep.metric", old.metric, new.metric),
                      ("sweep.mode", old.mode, new.mode), ("scheduler", old.scheduler, new.scheduler),
                      ("resources.workers_per_trial", old.workers_per_trial, new.workers_per_trial)):
        if a != b:
            refuse(key, f"{b!r} differs from the sweep's {a!r}")
    fa, fb = old.base.to_flat(), new.base.to_flat()
    for key in sorted(set(fa) | set(fb)):
        if fa.get(key) != fb.get(key) and key not in {d.key for d in old.search}:
            refuse(key, f"{fb.get(key)!r} differs from the sweep's {fa.get(key)!r} (base config / [fixed])")
    olds, news = {d.key: d for d in old.search}, {d.key: d for d in new.search}
    for key in sorted(set(olds) | set(news)):
        a, b = olds.get(key), news.get(key)
        if a is None or b is None:
            refuse(key, "searched in one space and not in the other")
        if a.dist == b.dist == "grid":
            gone = [v for v in a.values if v not in b.values]
            if gone:
                refuse(key, f"the new values drop {gone} that the sweep ran")
        elif a != b:
            refuse(key, f"{b.dist} [{b.low}, {b.high}] {list(b.values)} differs from the sweep's")
    if tuple(new.seeds[:len(old.seeds)]) != tuple(old.seeds):
        refuse("sweep.seeds", f"must start with the sweep's seeds {list(old.seeds)} (got {list(new.seeds)})")
    if new.num_samples < old.num_samples and old.design != "grid":
        refuse("sweep.num_samples", f"{new.num_samples} is fewer than the sweep's {old.num_samples}")
    # the stored space keeps the sweep's name (its folder's), whatever NEW.toml calls it
    text, n = re.subn(r"(?m)^name\s*=.*$", f"name = {json.dumps(old.name)}", new.text, count=1)
    return replace(new, name=old.name, text=text if n else new.text)
