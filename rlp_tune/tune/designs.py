"""The sweep designs: one Ray Tune searcher per `[sweep] design` (docs/search-spaces.md, "Designs").

    search_alg = build_searcher(space, root, max_concurrent=2)   # what build_tuner hands to Tune

    tpe      Optuna's TPE (today's tuning search; ASHA allowed), seeded by the base run.seed
    random   Optuna's RandomSampler, seeded
    qmc      Optuna's QMCSampler: scrambled Sobol points over the declared ranges, seeded
    grid     GridSearcher (tune/cells.py): the full factorial x seeds, every cell exactly once per seed
    adaptive AdaptiveSearcher (tune/adaptive.py): λ placed where it narrows the CI of λ50

The grid and adaptive searchers (tune/cells.py's CellSearcher) are deterministic and rebuild what
they have assigned from the sweep folder itself when a sweep is resumed.
"""
from __future__ import annotations

from ray.tune.search import ConcurrencyLimiter, Repeater, SearchGenerator

from .adaptive import AdaptiveSearcher
from .cells import GridSearcher
from .space import SearchSpace


def build_searcher(space: SearchSpace, root: str, max_concurrent: int):
    """The search algorithm for `space.design`, limited to `max_concurrent` trials at once."""
    # the grid and adaptive searchers limit concurrency themselves (the limiter then only tells Tune
    # how many trials may wait for resources) and say themselves when the sweep has all its trials
    if space.design == "grid":
        return DesignGenerator(ConcurrencyLimiter(GridSearcher(space, root, max_concurrent),
                                                  max_concurrent=max_concurrent))
    if space.design == "adaptive":
        return DesignGenerator(ConcurrencyLimiter(AdaptiveSearcher(space, root, max_concurrent),
                                                  max_concurrent=max_concurrent))
    search = optuna_search(space, root)
    if len(space.seeds) > 1:   # paired replicates: each sampled config runs under every seed; Optuna sees the mean
        search = Repeater(search, repeat=len(space.seeds), set_index=True)
    return ConcurrencyLimiter(search, max_concurrent=max_concurrent)


def optuna_sampler(space: SearchSpace):
    """The seeded Optuna sampler of a tpe / random / qmc design."""
    from optuna.samplers import QMCSampler, RandomSampler, TPESampler
    seed = space.base.run.seed
    if space.design == "random":
        return RandomSampler(seed=seed)
    if space.design == "qmc":
        import warnings
        with warnings.catch_warnings():   # "experimental" since Optuna 3.0; the interface we use is stable
            warnings.simplefilter("ignore")
            return QMCSampler(qmc_type="sobol", scramble=True, seed=seed)
    return TPESampler(seed=seed)


def optuna_search(space: SearchSpace, root: str):
    """The tpe / random / qmc searcher: the Optuna study in ROOT/optuna.journal, replayed on resume
    (tune/study.py); the sampler is made afresh, seeded, for each replay."""
    from functools import partial

    from .study import StudySearcher
    return StudySearcher(root, root.rstrip("/").rpartition("/")[2], space.optuna_space(), space.metric, space.mode,
                         partial(optuna_sampler, space), space.base.run.epochs)


class DesignGenerator(SearchGenerator):
    """Tune's SearchGenerator, finished only when the design's searcher says so (Searcher.FINISHED),
    not when its trial counter reaches num_samples: after a driver kill the counter comes from a
    saved state that may count a trial the restored sweep will not continue (its cell must run
    again). A resume re-asks the searcher rather than trusting a saved "finished"."""

    def is_finished(self) -> bool:
        return self._finished

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        self._finished = False
