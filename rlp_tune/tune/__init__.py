"""Sweeps on Ray Tune: search spaces (space.py), the trainable (trainable.py), Tuner build and
restore (sweep.py), status (status.py). Ray and Optuna are imported only when a sweep runs."""
from .space import SearchSpace, SpaceError, load_space

__all__ = ["SearchSpace", "SpaceError", "load_space"]
