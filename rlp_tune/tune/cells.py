"""Searchers that assign design cells (grid points × replicate seeds) and rebuild what they assigned
from the sweep folder on resume: `CellSearcher` (the base), `GridSearcher` (design grid) and, in
tune/adaptive.py, `AdaptiveSearcher`.

    g = GridSearcher(space, root, max_concurrent=2)
    g.suggest("t1")   # {"rlp.lam": 0.1, "rlp.heads": 1, "__trial_index__": 0}: one cell, one seed

On resume (`CellSearcher._sync`) what was assigned comes from the trials in Tune's newest saved
experiment state (the ones a resume continues) and the Parquet trial rows of those trials. Tune's
own searcher pickle is not trusted alone: a driver killed between Tune's periodic saves leaves a
trial that the restored sweep will not continue (its rows go to ROOT/orphans/), and its cell must
run again, while a trial Tune did save must not run twice.
"""
from __future__ import annotations

import itertools
from typing import Any

from ray.tune.search import Searcher

from .space import REPLICATE, SearchSpace
from .state import saved_trials

Point = tuple[tuple, int]      # (values of the grid keys, replicate seed index)


def norm_value(v: Any) -> Any:
    """A searched value as a comparable key: numbers as float (Parquet may store 1 as 1.0), lists as
    the comma-joined text the trials rows hold, the rest as text."""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v))
    return str(v)


def trial_rows(root: str, trial_ids) -> list[dict]:
    """The Parquet trial rows (flat config, seed, status) of the given trials under ROOT."""
    from ..reader import read_trials
    df = read_trials(root)
    if not len(df):
        return []
    return df[df["trial_id"].astype(str).isin(set(trial_ids))].to_dict("records")


class CellSearcher(Searcher):
    """Shared bookkeeping of the deterministic designs: which trial runs which point, which trials are
    live (it limits concurrency itself, so a resume can repair the live set), and the resume sync."""

    def __init__(self, space: SearchSpace, root: str, max_concurrent: int):
        super().__init__(metric=space.metric, mode=space.mode)
        self.space, self.root, self.max_concurrent = space, root, max(1, int(max_concurrent))
        self.grid_keys = [d.key for d in space.grid_dists()]
        self.cells = list(itertools.product(*(d.values for d in space.grid_dists())))
        self.assigned: dict[str, dict] = {}    # trial_id -> the config it was given (searched keys + REPLICATE)
        self.live: set[str] = set()
        self._synced = False                   # not saved: every process syncs once with the folder

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self.max_concurrent = max(1, int(max_concurrent))
        return True        # handled here: a ConcurrencyLimiter's live set could not be repaired on resume

    # -- state --
    def get_state(self) -> dict:
        return {"assigned": dict(self.assigned), "live": set(self.live)}

    def set_state(self, state: dict) -> None:
        self.assigned, self.live = dict(state["assigned"]), set(state["live"])
        self._synced = False

    def save(self, checkpoint_path: str) -> None:
        import pickle
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        import pickle
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))

    def __getstate__(self):
        d = self.__dict__.copy()
        d["_synced"] = False
        return d

    # -- resume --
    def _sync(self) -> None:
        """Once per process: if ROOT holds a saved experiment state, what was assigned is exactly the
        trials in it (plus their Parquet rows); trials not in it will not be continued, so their
        points are free again. Unfinished saved trials are live (Tune continues them)."""
        if self._synced:
            return
        self._synced = True
        saved = saved_trials(self.root)
        if saved is None:
            return
        self.assigned = {}
        for tid, (cfg, _) in saved.items():
            if all(k in cfg for k in self._point_keys()):
                self.assigned[tid] = {k: cfg[k] for k in self._point_keys()} | {REPLICATE: int(cfg.get(REPLICATE, 0))}
        seeds = [norm_value(s) for s in self.space.seeds]
        for row in trial_rows(self.root, set(saved) - set(self.assigned)):   # a config Tune's state lacks
            if all(k in row for k in self._point_keys()) and norm_value(row.get("seed")) in seeds:
                self.assigned[str(row["trial_id"])] = ({k: row[k] for k in self._point_keys()}
                                                       | {REPLICATE: seeds.index(norm_value(row["seed"]))})
        self.live = {tid for tid, (_, status) in saved.items() if status != "TERMINATED" and tid in self.assigned}
        self._on_sync(saved)

    def _point_keys(self) -> list[str]:
        return self.grid_keys

    def _on_sync(self, saved) -> None:
        """Subclasses rebuild what else they derive from the folder."""

    def point_of(self, cfg: dict) -> Point:
        return tuple(norm_value(cfg[k]) for k in self.grid_keys), int(cfg.get(REPLICATE, 0))

    # -- Tune's calls --
    def suggest(self, trial_id: str):
        self._sync()
        if len(self.live) >= self.max_concurrent:
            return None
        cfg = self._next(trial_id)
        if cfg is None or cfg is Searcher.FINISHED:
            return cfg
        self.assigned[trial_id] = cfg
        self.live.add(trial_id)
        return dict(cfg)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self._sync()
        self.live.discard(trial_id)
        if trial_id in self.assigned:
            self._on_result(trial_id, None if error else result)

    def _on_result(self, trial_id: str, result: dict | None) -> None:
        """Subclasses take the evidence of a finished trial."""

    def _next(self, trial_id: str):
        raise NotImplementedError


class GridSearcher(CellSearcher):
    """Every cell of the factorial x every replicate seed, exactly once, in a fixed order (cells in
    the order of the TOML values, the seeds of one cell next to each other)."""

    def __init__(self, space: SearchSpace, root: str, max_concurrent: int):
        super().__init__(space, root, max_concurrent)
        self.order: list[Point] = [(tuple(norm_value(v) for v in cell), s)
                                   for cell in self.cells for s in range(len(space.seeds))]
        self._values = {p: cell for p, cell in zip(self.order, (c for c in self.cells for _ in space.seeds))}

    def _next(self, trial_id: str):
        taken = {self.point_of(c) for c in self.assigned.values()}
        for p in self.order:
            if p not in taken:
                return dict(zip(self.grid_keys, self._values[p])) | {REPLICATE: p[1]}
        return Searcher.FINISHED

    def remaining(self) -> int:
        """Points not yet assigned (after syncing with the folder)."""
        self._sync()
        taken = {self.point_of(c) for c in self.assigned.values()}
        return sum(p not in taken for p in self.order)

