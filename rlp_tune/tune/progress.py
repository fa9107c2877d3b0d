"""The sweep driver's live output (a Tune callback): one compact progress line, or with --verbose a
line per trial epoch; and the status only the driver knows (a trial STOPPED by the scheduler, ERROR).

    [   52s] 5/16 trials done (3 finished, 2 stopped) | running 4a1b2c3d 7/30 | best val.acc 0.9954 | ETA 1m40s

On a terminal the line is rewritten in place (at most once a second); in a log file (SLURM) it is
printed when a trial ends and at most once a minute otherwise.
"""
from __future__ import annotations

import math
import sys
import time

from ray.tune import Callback

from .fmt import fmt_duration, fmt_value
from .space import REPLICATE


class ProgressPrinter(Callback):
    def __init__(self, space, root: str, verbose: bool = False, stream=None):
        self.space, self.root, self.verbose = space, root, verbose
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.time()
        self.keys = [d.key for d in space.search]
        self.expected = space.num_samples * len(space.seeds)
        self.done_here = 0                          # trials that ended in this session (the ETA's rate)
        self.done_ids: set[str] = set()             # every done trial, earlier sessions' included
        self.epochs: dict[str, int] = {}            # running trial → last epoch
        self.best: tuple[float, str] | None = None   # (value, trial_id)
        self.last_print, self.last_line = 0.0, ""

    def __reduce__(self):   # Tune pickles its run config (tuner.pkl): a restore gets a no-op
        return (Callback, ())

    def setup(self, **info):
        """Count what an earlier run of this sweep finished (a resume continues the count)."""
        from .state import sweep_state
        from .status import trial_table
        st = sweep_state(self.root, self.expected)
        # by id: a trial done before a stop that Tune's restore runs again (its last report was lost)
        # ends again here and is counted once
        self.done_ids = set(st.finished) | set(st.stopped)
        for r in trial_table(self.root, self.space.metric, self.space.mode):
            self._best(r["metric"], r["trial_id"])

    def _best(self, value, trial_id: str) -> None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return
        sign = 1 if self.space.mode == "max" else -1
        if self.best is None or sign * value > sign * self.best[0]:
            self.best = (float(value), trial_id)

    def line(self) -> str:
        done = len(self.done_ids)
        el = time.time() - self.t0
        run = " ".join(f"{t} {e}/{self.space.base.run.epochs}" for t, e in sorted(self.epochs.items()))
        eta = fmt_duration(el / self.done_here * max(0, self.expected - done)) if self.done_here else "-"
        best = f"{fmt_value(self.best[0])} ({self.best[1]})" if self.best else "-"
        return (f"[{el:6.0f}s] {done}/{self.expected} trials done | running {run or '-'} | "
                f"best {self.space.metric} {best} | ETA {eta}")

    def _show(self, force: bool = False) -> None:
        now = time.time()
        if force or now - self.last_print >= (1 if self.tty else 60):
            self.last_line = self.line()
            print(("\r\033[K" if self.tty else "") + self.last_line, end="" if self.tty else "\n",
                  file=self.stream, flush=True)
            self.last_print = now

    def on_trial_result(self, iteration, trials, trial, result, **info):
        epoch = result.get("epoch")
        self.epochs[trial.trial_id] = epoch
        self._best(result.get(self.space.metric), trial.trial_id)
        if not self.verbose:
            self._show()
            return
        cfg = " ".join(f"{k.split('.')[-1]}={fmt_value(trial.config.get(k))}" for k in self.keys)
        seed = trial.config.get(REPLICATE)
        rand = result.get("train.rand_acc.penultimate")
        print(f"[{time.time() - self.t0:6.0f}s] {trial.trial_id} epoch {epoch}/{self.space.base.run.epochs} "
              f"{self.space.metric}={fmt_value(result.get(self.space.metric))}"
              + (f" rand_acc={fmt_value(rand)}" if rand is not None else "")
              + f"  {cfg}" + (f" rep={seed}" if seed is not None else ""), file=self.stream, flush=True)

    def on_trial_complete(self, iteration, trials, trial, **info):
        from ..results import ResultWriter
        from .asha import read_stops
        epochs = self.space.base.run.epochs
        epoch = (trial.last_result or {}).get("epoch", 0) or 0
        stopped_at = read_stops(self.root).get(trial.trial_id)
        # a trial resumed from a checkpoint of its last epoch (its final report was lost in a stop)
        # ends without reporting: its own row says it finished
        if epoch < epochs and ResultWriter(self.root, "", trial.trial_id).trial_status() == "TERMINATED":
            epoch = epochs
        self.epochs.pop(trial.trial_id, None)
        if epoch >= epochs:   # the Trainer wrote TERMINATED before its last report
            how = "finished"
        elif stopped_at is not None:
            how = f"stopped by the scheduler at epoch {stopped_at}"
            self._mark(trial.trial_id, "STOPPED")
        else:   # cut by an interrupt: its row stays RUNNING, `rlp-tune resume` continues it
            return
        if trial.trial_id not in self.done_ids:
            self.done_ids.add(trial.trial_id)
            self.done_here += 1
        if self.verbose:
            print(f"[{time.time() - self.t0:6.0f}s] {trial.trial_id} {how}" + (f" at epoch {epoch}" if how == "finished"
                  else ""), file=self.stream, flush=True)
        else:
            self._show(force=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._mark(trial.trial_id, "ERROR")
        self.epochs.pop(trial.trial_id, None)
        print(("\n" if self.tty and not self.verbose else "") +
              f"{trial.trial_id} failed: see {trial.local_path or trial.path}", file=self.stream, flush=True)

    def _mark(self, trial_id: str, status: str) -> None:
        """The trial's row marked `status`; a write the disk refuses (full, read-only) is one line
        and the row stays RUNNING, which `rlp-tune resume` continues (an exception here would end
        the driver with Tune's tracebacks)."""
        from ..results import ResultWriter
        try:
            ResultWriter(self.root, "", trial_id).mark_status(status)
        except OSError as e:
            print(f"rlp-tune: warning: {trial_id}: cannot mark it {status} ({e.strerror or ' '.join(str(e).split())}); "
                  f"its row stays RUNNING: `rlp-tune resume {self.root}` continues it", file=self.stream, flush=True)

    def on_experiment_end(self, trials, **info):
        if self.verbose:
            return
        line = self.line()
        if self.tty:   # end the line rewritten in place
            print("\r\033[K" + line, file=self.stream, flush=True)
        elif line.partition("]")[2] != self.last_line.partition("]")[2]:
            print(line, file=self.stream, flush=True)
