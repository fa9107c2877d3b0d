"""The Tune callback of a driver's StopRequest (tune/signals.py): `StopRequest.callback()` makes it.

It holds the request's number, not the request: Tune pickles its run config into tuner.pkl, and the
request holds signal handlers. A class of an importable module pickles by reference.
"""
from __future__ import annotations

import time

from ray.tune import Callback


class StopCallback(Callback):
    def __init__(self, key: int, expected_trials: int, time_budget: float):
        self.key, self.expected, self.budget, self.deadline = key, expected_trials, time_budget, None

    def _stop(self):
        return REQUESTS.get(self.key)

    def setup(self, **info):
        stop = self._stop()
        if stop is not None:
            stop.attach_to_tune()
        self.deadline = time.monotonic() + self.budget if self.budget else None

    def on_step_end(self, iteration, trials, **info):
        stop = self._stop()
        if stop is None:
            return
        stop.complete = bool(self.expected) and len(trials) >= self.expected and all(t.is_finished() for t in trials)
        if self.deadline is not None and not stop.complete and time.monotonic() >= self.deadline:
            self.deadline = None
            stop.request(TIME_BUDGET, f"sweep.time_budget of {self.budget:g} s spent")


# the StopRequest of each callback, by its number (StopRequest.callback registers it)
REQUESTS: dict = {}
TIME_BUDGET = "time_budget"        # the stop's name when the space's [sweep] time_budget is spent
