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
from .space import REPLICATE, TRIAL


class ProgressPrinter(Callback):
    def __init__(self, space, ledger, verbose: bool = False, stream=None):
        self.space, self.ledger, self.root, self.verbose = space, ledger, ledger.root, verbose
        self._stream = stream
        self.t0 = time.time()
        self.keys = [d.key for d in space.search]
        self.expected = space.num_samples * len(space.seeds)
        self.done_here = 0                          # trials that ended in this session (the ETA's rate)
        self.done_ids: set[str] = set()             # every done trial, earlier sessions' included
        self.epochs: dict[str, int] = {}            # running trial → last epoch
        self.best: tuple[float, str] | None = None   # (value, trial_id)
        self.last_print, self.last_line = 0.0, ""

    @property
    def stream(self):
        return self._stream or sys.stderr     # not kept: Tune pickles its run config (tuner.pkl)

    @property
    def tty(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def setup(self, **info):
        """Count what an earlier run of this sweep finished (a resume continues the count)."""
        from .state import sweep_state
        from .status import trial_table
        st = sweep_state(self.root, self.expected, self.ledger.state)
        # by id: a trial whose end a stop kept out of the ledger ends again here and is counted once
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
        epoch, tid = result.get("epoch"), _tid(trial)
        self.epochs[tid] = epoch
        self._best(result.get(self.space.metric), tid)
        if not self.verbose:
            self._show()
            return
        cfg = " ".join(f"{k.split('.')[-1]}={fmt_value(trial.config.get(k))}" for k in self.keys)
        seed = trial.config.get(REPLICATE)
        rand = result.get("train.rand_acc.penultimate")
        print(f"[{time.time() - self.t0:6.0f}s] {tid} epoch {epoch}/{self.space.base.run.epochs} "
              f"{self.space.metric}={fmt_value(result.get(self.space.metric))}"
              + (f" rand_acc={fmt_value(rand)}" if rand is not None else "")
              + f"  {cfg}" + (f" rep={seed}" if seed is not None else ""), file=self.stream, flush=True)

    def on_trial_complete(self, iteration, trials, trial, **info):
        tid = _tid(trial)
        rec = self.ledger.state.trials.get(tid)
        self.epochs.pop(tid, None)
        if rec is None or not rec.done:   # cut by an interrupt: its row stays RUNNING, `rlp-tune resume` continues it
            return
        if rec.status == "STOPPED":
            how = f"stopped by the scheduler at epoch {rec.epoch}"
            self._mark(tid, "STOPPED")
        else:
            how = f"finished at epoch {rec.epoch}"
        if tid not in self.done_ids:
            self.done_ids.add(tid)
            self.done_here += 1
        if self.verbose:
            print(f"[{time.time() - self.t0:6.0f}s] {tid} {how}", file=self.stream, flush=True)
        else:
            self._show(force=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        tid = _tid(trial)
        self._mark(tid, "ERROR")
        self.epochs.pop(tid, None)
        print(("\n" if self.tty and not self.verbose else "") +
              f"{tid} failed: see {trial.local_path or trial.path}", file=self.stream, flush=True)

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


def _tid(trial) -> str:
    """The sweep's id of a Tune trial (the same in every driver session)."""
    return trial.config.get(TRIAL, trial.trial_id)
