"""Search-space TOML → a validated `SearchSpace` (Optuna distributions for Ray Tune).

    space = load_space("search_spaces/demo.toml")     # fails before Ray starts, naming the key
    space.optuna_space()   # {"rlp.lam": FloatDistribution(1e-3, 1e3, log=True), ...}

Format (docs/search-spaces.md has the whole reference):

    base = "../configs/digits_mlp.toml"     # base config file (relative to this file); or a [base.*] table
    [fixed]                                  # overrides for every trial (dotted keys)
    "run.epochs" = 20
    [search]                                 # searched keys and their distributions
    "rlp.lam"    = { dist = "loguniform", low = 1e-3, high = 1e3 }
    "rlp.heads"  = { dist = "int", low = 1, high = 4 }
    "rlp.n"      = { dist = "intlog", low = 8, high = 1024 }
    "rlp.hidden" = { dist = "choice", values = [0, 64, 256] }
    "model.width" = { dist = "grid", values = [64, 256] }        # design = "grid" / "adaptive" only
    [sweep]
    design = "tpe"        # "grid" | "qmc" | "random" | "tpe" | "adaptive" (rlp_tune/tune/designs.py)
    name = "demo"; metric = "val.acc"; mode = "max"; num_samples = 12; max_concurrent = 0 (0 = what fits)
    seeds = [0]                               # replicate seeds: each sampled config runs under every seed
    max_failures = 2; time_budget = "2h"      # retries per trial; this driver's time, then stop (exit 3)
    target_ci_decades = 0.5; initial_points = 5    # design = "adaptive" only
    peak_metric = "val.acc"                         # adaptive only: also narrow the CI of its peak λ*
    [scheduler]
    type = "asha"; grace_period = 2; reduction_factor = 3      # or type = "fifo" (default for curve designs)
    [resources]
    workers_per_trial = 1; cpus_per_worker = 1; gpus_per_worker = 0    # 0.5, 0.25: trials share a GPU
"""
from __future__ import annotations


import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..config import LAM_KEY, Config, ConfigError, all_keys, load_toml
from ..errors import UserError

DISTS = ("loguniform", "uniform", "int", "intlog", "choice", "grid")
RANGES = ("loguniform", "uniform", "int", "intlog")
REPLICATE = "_replicate"   # in a trial's Tune config: which of the space's seeds it runs (tune/searcher.py)
TRIAL = "_trial"           # in a trial's Tune config: its id in the sweep (kept across driver sessions)
# designs whose results are curves over the searched factors: every trial must run to the end
CURVE_DESIGNS = ("grid", "qmc", "adaptive")
ADAPTIVE_KEY = LAM_KEY      # the key an adaptive design places; the other factors are grid


class SpaceError(UserError, ValueError):
    """An invalid search space; the one-line message names the key."""


@dataclass(frozen=True)
class Dist:
    key: str
    dist: str
    low: float | None = None
    high: float | None = None
    values: tuple = ()

    def to_optuna(self):
        import optuna.distributions as od
        if self.dist in ("choice", "grid"):
            return od.CategoricalDistribution(list(self.values))
        if self.dist in ("int", "intlog"):
            return od.IntDistribution(int(self.low), int(self.high), log=self.dist == "intlog")
        return od.FloatDistribution(float(self.low), float(self.high), log=self.dist == "loguniform")

    def corners(self) -> list[Any]:
        """Values that must all give a valid Config (bounds, or every choice / grid value)."""
        if self.dist in ("choice", "grid"):
            return list(self.values)
        if self.dist in ("int", "intlog"):
            return [int(self.low), int(self.high)]
        return [float(self.low), float(self.high)]


@dataclass(frozen=True)
class SearchSpace:
    path: str
    base: Config                      # base config with [fixed] applied
    search: tuple[Dist, ...]
    name: str = "sweep"
    metric: str = "val.acc"
    mode: str = "max"
    num_samples: int = 8
    max_concurrent: int = 0
    seeds: tuple[int, ...] = (0,)
    design: str = "tpe"
    target_ci_decades: float = 0.5    # adaptive: stop a cell once its 95% CI of log10 λ50 is narrower
    initial_points: int = 5           # adaptive: log-spaced λ per cell before λ is placed by the fit
    peak_metric: str = ""             # adaptive: also narrow the CI of λ*, this metric's peak ("" = off)
    scheduler: dict = field(default_factory=lambda: {"type": "asha", "grace_period": 1, "reduction_factor": 3})
    workers_per_trial: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0      # < 1 (0.5, 0.25, ...): several trials share one GPU
    max_failures: int = 2             # retries of a trial that raised (a stop for wall time is no failure)
    time_budget: float = 0.0          # seconds this driver runs before it stops cleanly (0 = none)
    text: str = ""                    # the TOML text, stored beside the results

    def optuna_space(self) -> dict:
        return {d.key: d.to_optuna() for d in self.search}

    def param_space(self) -> dict[str, Any]:
        """Tune's param_space: the base config's keys that are not searched (flat dotted keys); the
        searcher adds the searched ones. Config keys only: sweep metadata reaches a trial through
        `tune.with_parameters` (tune/trainable.py), not through the trial's config."""
        searched = {d.key for d in self.search}
        return {k: v for k, v in self.base.to_flat().items() if k not in searched}

    def trial_config(self, sampled: dict[str, Any], replicate: int = 0) -> Config:
        """The Config a trial of this space runs for `sampled` searched values and replicate index."""
        return trial_config({**self.param_space(), **sampled, REPLICATE: replicate}, self.seeds)

    def grid_dists(self) -> tuple[Dist, ...]:
        """The factors given as `grid` (all of them for design grid; the non-λ ones for adaptive)."""
        return tuple(d for d in self.search if d.dist == "grid")

    def n_cells(self) -> int:
        """Cells of the grid factors (1 when there are none)."""
        return math.prod(len(d.values) for d in self.grid_dists())

    def total_trials(self) -> int:
        """Trials the sweep runs at most: configs (grid: every cell; adaptive: λ points) × seeds."""
        return self.num_samples * len(self.seeds)

    def trial_resources(self) -> dict:
        """Tune resources of one trial's driver: with Ray Train workers it holds no CPU."""
        if self.workers_per_trial > 1:
            return {"cpu": 0, "memory": 1}  # {"cpu": 0} alone is rejected as an empty request
        res = {"cpu": self.cpus_per_worker}
        if self.gpus_per_worker:
            res["gpu"] = self.gpus_per_worker
        return res

    def cpus_per_trial(self) -> float:
        return self.workers_per_trial * self.cpus_per_worker


SPACE_FILE = "space.toml"


def space_path(root: str) -> str:
    """A sweep folder's stored search space (ROOT/space.toml) as a local file: the file itself for a
    folder, a temporary copy for a URI; SpaceError if there is none. Cheap (no Ray, no torch):
    `resume` and `status` call it first."""
    from .. import storage
    if not storage.is_remote(root):
        p = Path(root) / SPACE_FILE
        if not p.is_file():
            raise SpaceError(f"{root} is not a sweep folder (no {SPACE_FILE})")
        return str(p)
    import tempfile
    try:
        text = storage.read_text(root, SPACE_FILE)
    except (OSError, ValueError) as e:    # unknown scheme, unreachable store, no credentials
        raise SpaceError(f"{storage.display(root)}: cannot open it ({' '.join(str(e).split())})") from None
    if text is None:
        raise SpaceError(f"{storage.display(root)} is not a sweep folder (no {SPACE_FILE})")
    local = Path(tempfile.mkdtemp(prefix="rlp_tune_space_")) / SPACE_FILE
    local.write_text(text)
    return str(local)


def _err(key: str, msg: str) -> SpaceError:
    return SpaceError(f"{key}: {msg}")


def load_space(path: str | Path, overrides: list[str] | None = None) -> SearchSpace:
    p = Path(path)
    try:
        doc = load_toml(p)
    except ConfigError as e:
        raise SpaceError(str(e)) from None
    unknown = set(doc) - {"base", "fixed", "search", "sweep", "scheduler", "resources"}
    if unknown:
        raise _err(sorted(unknown)[0], f"unknown section in search space {p}")
    base = doc.get("base", {})
    try:
        if isinstance(base, str):
            cfg = Config.from_dict(load_toml(p.parent / base))   # load_toml names a link loop
        else:
            cfg = Config.from_dict(base)
        fixed = dict(doc.get("fixed", {}))
        from ..config import parse_overrides
        given = parse_overrides(overrides)
        searched = sorted(set(given) & set(doc.get("search", {})))
        if searched:   # --set on a searched key would be silently replaced by the sampled value
            raise SpaceError(f"{searched[0]}: is searched in {p}; --set fixes only keys that are not searched "
                             "(remove it from [search] or drop the --set)")
        fixed.update(given)
        cfg = cfg.replace(**fixed) if fixed else cfg
    except ConfigError as e:
        raise SpaceError(str(e)) from None

    search = []
    keys = set(all_keys())
    for key, spec in doc.get("search", {}).items():
        if key not in keys:
            import difflib
            close = difflib.get_close_matches(key, keys, n=2)
            raise _err(key, "unknown config key" + (f" (did you mean {', '.join(close)}?)" if close else ""))
        if not isinstance(spec, dict) or "dist" not in spec:
            raise _err(key, 'expected a table like { dist = "loguniform", low = 1e-3, high = 1e3 }')
        d = spec["dist"]
        if d not in DISTS:
            raise _err(key, f"unknown distribution {d!r} (one of {', '.join(DISTS)})")
        extra = set(spec) - {"dist", "low", "high", "values"}
        if extra:
            raise _err(key, f"unknown field {sorted(extra)[0]!r} in the distribution")
        if d in ("choice", "grid"):
            values = spec.get("values")
            if not isinstance(values, list) or not values:
                raise _err(key, f"{d} needs a non-empty list `values`")
            same = [float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else repr(v) for v in values]
            if d == "grid" and len(set(same)) < len(values):   # 1 and 1.0 are one cell
                raise _err(key, "grid values repeat (each cell must be run once per seed)")
            if set(spec) - {"dist", "values"}:
                raise _err(key, f"{d} takes `values`, not `low`/`high`")
            dist = Dist(key, d, values=tuple(values))
        else:
            lo, hi = spec.get("low"), spec.get("high")
            for name, v in (("low", lo), ("high", hi)):
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise _err(key, f"{d} needs a number `{name}`")
            if d in ("int", "intlog") and not (float(lo).is_integer() and float(hi).is_integer()):
                raise _err(key, f"{d} needs integer bounds")
            if lo >= hi:
                raise _err(key, f"low ({lo}) must be < high ({hi})")
            if d in ("loguniform", "intlog") and lo <= 0:
                raise _err(key, f"{d} needs a positive low bound (got {lo})")
            dist = Dist(key, d, float(lo), float(hi))
        for v in dist.corners():   # every bound / choice must be a valid value of the key
            try:
                cfg.replace(**{key: v})
            except ConfigError as e:
                raise SpaceError(str(e) + " (in the search space)") from None
        search.append(dist)

    sw = dict(doc.get("sweep", {}))
    design = sw.pop("design", "tpe")
    from .designs import design_names
    if design not in design_names():
        raise _err("sweep.design", f"unknown design {design!r} (one of {', '.join(design_names())})")
    # curve designs need full-length trials: no early stopping unless asked for (and then refused)
    sched = {"type": "fifo" if design in CURVE_DESIGNS else "asha", "grace_period": 1, "reduction_factor": 3,
             **doc.get("scheduler", {})}
    res = doc.get("resources", {})
    adaptive_keys = {k: sw.pop(k) for k in ("target_ci_decades", "initial_points", "peak_metric") if k in sw}
    if adaptive_keys and design != "adaptive":
        raise _err(f"sweep.{sorted(adaptive_keys)[0]}", f"only for design = 'adaptive' (this is {design!r})")
    n_given = sw.pop("num_samples", None)
    if design == "grid":
        if n_given is not None:
            raise _err("sweep.num_samples", "a grid runs every cell once per seed: leave num_samples out")
        n_given = math.prod(len(d.values) for d in search if d.dist == "grid")
    target = adaptive_keys.get("target_ci_decades", 0.5)
    if isinstance(target, bool) or not isinstance(target, (int, float)):
        raise _err("sweep.target_ci_decades", f"must be a number of decades, got {target!r}")
    max_failures = sw.pop("max_failures", 2)
    if isinstance(max_failures, bool) or not isinstance(max_failures, int) or max_failures < 0:
        raise _err("sweep.max_failures", f"must be an integer >= 0 (retries per trial), got {max_failures!r}")
    time_budget = parse_duration("sweep.time_budget", sw.pop("time_budget", 0))
    initial = adaptive_keys.get("initial_points", 5)
    if isinstance(initial, bool) or not isinstance(initial, int):
        raise _err("sweep.initial_points", f"must be an integer, got {initial!r}")
    try:
        space = SearchSpace(
            path=str(p), base=cfg, search=tuple(search), name=str(sw.pop("name", p.stem)),
            metric=str(sw.pop("metric", "val.acc")), mode=str(sw.pop("mode", "max")),
            num_samples=int(8 if n_given is None else n_given), max_concurrent=int(sw.pop("max_concurrent", 0)),
            seeds=tuple(int(s) for s in sw.pop("seeds", [cfg.run.seed])), scheduler=sched,
            design=design, target_ci_decades=float(target), initial_points=initial,
            peak_metric=str(adaptive_keys.get("peak_metric", "")),
            max_failures=max_failures, time_budget=time_budget,
            workers_per_trial=int(res.get("workers_per_trial", 1)),
            cpus_per_worker=float(res.get("cpus_per_worker", 1)), gpus_per_worker=float(res.get("gpus_per_worker", 0)),
            text=p.read_text())
    except (TypeError, ValueError) as e:
        raise SpaceError(f"sweep: {e}") from None
    if sw:
        raise _err(f"sweep.{sorted(sw)[0]}", "unknown field")
    _check(space, res)
    return space


def _check(s: SearchSpace, res: dict) -> None:
    from ..names import NAME_RULE, name_problem
    if name_problem(s.name):   # the sweep's folder under --storage: one folder name, never a path
        raise _err("sweep.name", f"{s.name!r} {name_problem(s.name)}; {NAME_RULE}")
    if s.mode not in ("min", "max"):
        raise _err("sweep.mode", f"must be 'min' or 'max', got {s.mode!r}")
    split, _, metric = s.metric.partition(".")
    if split not in ("train", "val", "test") or not metric:
        raise _err("sweep.metric", f"expected split.metric like 'val.acc', got {s.metric!r}")
    if split == "val" and s.base.data.val_fraction <= 0:
        raise _err("sweep.metric", "a 'val' metric needs data.val_fraction > 0 (searches must not select on test)")
    if s.num_samples < 1:
        raise _err("sweep.num_samples", "must be >= 1")
    if not s.seeds:
        raise _err("sweep.seeds", "needs at least one seed")
    if s.scheduler.get("type") not in ("asha", "fifo"):
        raise _err("scheduler.type", f"must be 'asha' or 'fifo', got {s.scheduler.get('type')!r}")
    extra = set(s.scheduler) - {"type", "grace_period", "reduction_factor"}
    if extra:
        raise _err(f"scheduler.{sorted(extra)[0]}", "unknown field")
    if s.scheduler["type"] == "asha":
        g, rf = s.scheduler.get("grace_period"), s.scheduler.get("reduction_factor")
        if isinstance(g, bool) or not isinstance(g, int) or not 1 <= g <= s.base.run.epochs:
            raise _err("scheduler.grace_period", f"must be an integer in [1, run.epochs = {s.base.run.epochs}], "
                                                 f"got {g!r}")
        if isinstance(rf, bool) or not isinstance(rf, (int, float)) or not rf > 1:
            raise _err("scheduler.reduction_factor", f"must be a number > 1, got {rf!r}")
    extra = set(res) - {"workers_per_trial", "cpus_per_worker", "gpus_per_worker"}
    if extra:
        raise _err(f"resources.{sorted(extra)[0]}", "unknown field")
    if s.workers_per_trial < 1 or s.cpus_per_worker <= 0 or s.gpus_per_worker < 0:
        raise _err("resources", "workers_per_trial >= 1, cpus_per_worker > 0, gpus_per_worker >= 0")
    if s.cpus_per_worker.is_integer() is False and s.cpus_per_worker > 1:
        raise _err("resources.cpus_per_worker", "fractions only below 1")
    if s.gpus_per_worker > 1 and not s.gpus_per_worker.is_integer():
        # Ray 2.60's own rule, raised only when the trial is placed ("GPU resource quantities >1 must
        # be whole numbers", ray._raylet): a fraction shares one device, more than one is whole devices
        raise _err("resources.gpus_per_worker", f"{s.gpus_per_worker:g}: Ray places a fraction of one GPU "
                                                "(0.5, 0.25, ...: trials share it) or whole GPUs (1, 2, ...)")
    if s.workers_per_trial > 1 and 0 < s.gpus_per_worker < 1:
        # Ray may pack two ranks of one trial onto one GPU; NCCL runs one rank per GPU
        raise _err("resources.gpus_per_worker", f"{s.gpus_per_worker:g} with workers_per_trial = "
                                                f"{s.workers_per_trial}: a DDP trial's workers need whole GPUs "
                                                "(NCCL runs one rank per GPU); share GPUs between 1-worker trials")
    if any(d.key == "run.seed" for d in s.search):
        raise _err("run.seed", "use sweep.seeds for replicate seeds instead of searching run.seed")
    if len(set(s.seeds)) < len(s.seeds):
        raise _err("sweep.seeds", f"seeds repeat: {list(s.seeds)}")
    _check_design(s)


def _check_design(s: SearchSpace) -> None:
    """What each design accepts (docs/search-spaces.md, "Designs")."""
    if s.design in CURVE_DESIGNS and s.scheduler.get("type") == "asha":
        raise _err("scheduler.type", f"ASHA stops trials early, and design {s.design!r} fits curves that need "
                                     "full-length trials: use type = 'fifo' (or design 'tpe' / 'random')")
    for d in s.search:
        if d.dist == "grid" and s.design not in ("grid", "adaptive"):
            raise _err(d.key, f"dist 'grid' needs design 'grid' or 'adaptive' (this is {s.design!r}; "
                              "use 'choice' to let the searcher pick values)")
        if s.design == "grid" and d.dist != "grid":
            raise _err(d.key, f"design 'grid' runs a full factorial: give {{ dist = \"grid\", values = [...] }}, "
                              f"not {d.dist!r}")
        if s.design == "qmc" and d.dist not in RANGES:
            raise _err(d.key, f"design 'qmc' (Sobol points) needs a range (one of {', '.join(RANGES)}), "
                              f"not {d.dist!r}")
        if s.design == "adaptive" and d.key != ADAPTIVE_KEY and d.dist != "grid":
            raise _err(d.key, f"design 'adaptive' places {ADAPTIVE_KEY} inside each cell of the other factors: "
                              f"give this one as {{ dist = \"grid\", values = [...] }}, not {d.dist!r}")
    if s.design == "qmc" and not s.search:
        raise _err("search", "design 'qmc' needs at least one searched range")
    if s.design != "adaptive":
        return
    lam = next((d for d in s.search if d.key == ADAPTIVE_KEY), None)
    if lam is None or lam.dist != "loguniform":
        raise _err(ADAPTIVE_KEY, "design 'adaptive' needs it as a log range: "
                                 "{ dist = \"loguniform\", low = ..., high = ... }"
                   + ("" if lam is None else f" (got {lam.dist!r})"))
    if not (math.isfinite(s.target_ci_decades) and s.target_ci_decades > 0):
        raise _err("sweep.target_ci_decades", f"must be a positive width in decades, got {s.target_ci_decades}")
    if s.initial_points < 5:
        raise _err("sweep.initial_points", f"must be >= 5 (the 4-parameter logistic needs 5 distinct λ), "
                                           f"got {s.initial_points}")
    split, _, metric = s.peak_metric.partition(".")
    if s.peak_metric and (split not in ("val", "test") or not metric or "." in metric):
        raise _err("sweep.peak_metric", f"expected 'val.acc' or 'test.acc' (a split-level accuracy), "
                                        f"got {s.peak_metric!r}")
    if split == "val" and s.base.data.val_fraction <= 0:
        raise _err("sweep.peak_metric", "a 'val' metric needs data.val_fraction > 0")
    if s.num_samples < s.n_cells() * s.initial_points:
        raise _err("sweep.num_samples", f"{s.num_samples} λ points cannot cover the initial set: "
                                        f"{s.n_cells()} cell(s) x {s.initial_points} initial points")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(key: str, value) -> float:
    """Seconds from a number of seconds or a text like "90s", "30m", "2h", "1h30m", "1d" (0 = none)."""
    import re
    if isinstance(value, bool):
        raise _err(key, f"expected seconds or a duration like '2h', got {value!r}")
    if isinstance(value, (int, float)):
        secs = float(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*(\d+(\.\d+)?\s*[smhd]\s*)+", value):
        secs = sum(float(n) * _UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)\s*([smhd])", value))
    else:
        raise _err(key, f"expected seconds or a duration like '2h', '30m', '1h30m', got {value!r}")
    if not math.isfinite(secs) or secs < 0:
        raise _err(key, f"must be >= 0 seconds (0 = no budget), got {value!r}")
    return secs


def trial_config(flat: dict[str, Any], seeds: Sequence[int]) -> Config:
    """Tune's trial config → the trial's Config: the flat dotted keys (fixed + sampled) and the
    replicate index the searcher sets (`_replicate`, 0 without replicates) choosing the seed; `_trial`
    (the sweep's trial id) is dropped.
    The one place a trial's Config is made (trials, preflight and the designs' bookkeeping)."""
    rep = int(flat.get(REPLICATE, 0))
    return Config.from_flat({**{k: v for k, v in flat.items() if k not in (REPLICATE, TRIAL)},
                             "run.seed": seeds[rep % len(seeds)]})



