"""A clean stop of a sweep driver on SIGUSR1 / SIGTERM (e.g. SLURM's wall-time warning), and the exit
code that says "stopped, resume me".

Ray Tune already stops gracefully on SIGINT and SIGUSR1 *while it runs*: its handler sets an event,
the control loop ends, the experiment state (searcher included) is written one last time, and trial
actors are stopped; `Tuner.restore(..., resume_errored=True)` later resumes every unfinished trial
from its checkpoint. What it lacks, and this module adds:

* a signal that arrives before Tune runs (Ray starting, data loading) is remembered instead of
  killing the process (SIGUSR1's default action), and handed to Tune as soon as it starts;
* SIGTERM gets the same graceful stop (Tune would die on it), and so does the end of the space's
  `[sweep] time_budget` (callback(); Ray's own time_budget_s ends a sweep for good);
* the driver learns that it was stopped, so it can exit with RESUME_EXIT (3) instead of 0;
* an optional pid file (env RLP_TUNE_PIDFILE) tells a job script which process to signal, and an
  optional stop file (env RLP_TUNE_STOPFILE) covers a request made before the pid file existed.

    stop = StopRequest().install()                # driver's main thread, as early as possible
    tuner = Tuner(..., run_config=RunConfig(callbacks=[stop.callback(expected_trials=n)]))
    grid = tuner.fit()
    stop.uninstall()
    exit_code = stop.exit_code()                  # 0, RESUME_EXIT (3), or 130 after Ctrl-C

Trials write their Parquet rows before each checkpoint and a resumed trial rewrites the same files
(rlp_tune/run/train.py), so a stopped and resumed sweep ends with the rows of an uninterrupted one.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

RESUME_EXIT = 3                    # "stopped cleanly before the end; resume me" (cluster/slurm/sweep.sbatch)
INTERRUPTED_EXIT = 130             # Ctrl-C: stopped cleanly too, but a person asked for it
PIDFILE_ENV = "RLP_TUNE_PIDFILE"
STOPFILE_ENV = "RLP_TUNE_STOPFILE"
STOP_SIGNALS = ("SIGUSR1", "SIGTERM")


class StopRequest:
    """Records stop signals and forwards them to Ray Tune's own graceful-stop handler."""

    def __init__(self, pidfile: str | None = None, stopfile: str | None = None):
        self.pidfile = pidfile if pidfile is not None else os.environ.get(PIDFILE_ENV) or None
        self.stopfile = stopfile if stopfile is not None else os.environ.get(STOPFILE_ENV) or None
        self.signame: str | None = None          # the first stop signal seen (or "stopfile")
        self._tune_handler = None                 # Tune's handler, while Tune runs
        self._previous: dict[int, object] = {}    # handlers before install(), restored by uninstall()
        self.complete = False                     # set by callback(): the sweep ended by itself

    @property
    def requested(self) -> bool:
        return self.signame is not None

    # ---- process-level: from the start of the driver to its end ------------------------------------
    def install(self) -> "StopRequest":
        """Catch SIGUSR1/SIGTERM now (main thread only), write the pid file, read the stop file."""
        if threading.current_thread() is not threading.main_thread():
            return self
        for name in STOP_SIGNALS:
            sig = getattr(signal, name, None)
            if sig is not None:
                self._previous.setdefault(sig, signal.signal(sig, self._handle))
        if self.pidfile:   # written after the handlers: a signal sent to this pid is never fatal
            Path(self.pidfile).parent.mkdir(parents=True, exist_ok=True)
            tmp = f"{self.pidfile}.tmp"
            Path(tmp).write_text(f"{os.getpid()}\n")
            os.replace(tmp, self.pidfile)
        if self.stopfile and Path(self.stopfile).exists():   # asked before the pid file existed
            self._request("stopfile")
        return self

    def uninstall(self) -> None:
        """Restore the handlers seen by install() and remove the pid file."""
        if threading.current_thread() is threading.main_thread():
            for sig, old in self._previous.items():
                signal.signal(sig, old if old is not None else signal.SIG_DFL)
            if signal.getsignal(signal.SIGINT) == self._handle_sigint:   # Tune never puts its own back
                signal.signal(signal.SIGINT, signal.default_int_handler)
        self._previous.clear()
        self._tune_handler = None
        if self.pidfile:
            try:
                if Path(self.pidfile).read_text().strip() == str(os.getpid()):
                    os.unlink(self.pidfile)
            except OSError:
                pass

    def request(self, name: str, why: str = "") -> None:
        """Ask for the clean stop from code (the main thread: Tune's control loop), as a signal would."""
        self._request(name, why=why)

    def _handle(self, signum, frame) -> None:
        self._request(signal.Signals(signum).name, frame)

    def _request(self, name: str, frame=None, why: str = "") -> None:
        first = self.signame is None
        if first:
            self.signame = name
            print(f"rlp-tune: {why or name + ' received'}: stopping the sweep cleanly (trials checkpoint, state "
                  f"saved); `rlp-tune resume` continues it", file=sys.stderr, flush=True)
        if self._tune_handler is not None:
            self._tune_handler(signal.SIGINT, frame)   # sets Tune's "experiment interrupted" event

    # ---- Tune-level: attached by a callback once Tune has installed its own handlers ------------------
    def attach_to_tune(self) -> None:
        """Called in the main thread after Tune set its SIGINT/SIGUSR1 handlers (Callback.setup):
        take SIGUSR1/SIGTERM back, forward them (and a request that came earlier) to Tune's handler."""
        if threading.current_thread() is not threading.main_thread():
            return
        tune_handler = signal.getsignal(signal.SIGUSR1) if hasattr(signal, "SIGUSR1") else None
        if callable(tune_handler) and tune_handler != self._handle:
            self._tune_handler = tune_handler
        for name in STOP_SIGNALS:
            sig = getattr(signal, name, None)
            if sig is not None:
                self._previous.setdefault(sig, signal.getsignal(sig))
                signal.signal(sig, self._handle)
        sigint = signal.getsignal(signal.SIGINT)
        if callable(sigint) and sigint == self._tune_handler:   # Ctrl-C: note it, then let Tune stop
            signal.signal(signal.SIGINT, self._handle_sigint)
        if self.requested and self._tune_handler is not None:
            self._tune_handler(signal.SIGINT, None)

    def _handle_sigint(self, signum, frame) -> None:
        if self.signame is None:
            self.signame = "SIGINT"
        handler = self._tune_handler
        if handler is not None:
            handler(signum, frame)   # Tune also puts the pre-Tune SIGINT handler back: a 2nd Ctrl-C kills
        else:
            raise KeyboardInterrupt

    def callback(self, expected_trials: int, time_budget: float = 0.0):
        """A Tune callback: attaches this request when the experiment starts, and records after every
        control-loop step whether the sweep is complete (all `expected_trials` exist and have ended;
        0: the caller tells exit_code instead). `time_budget` (seconds, 0 = none): once Tune has run
        this long in this driver, the same clean stop as SIGUSR1 (exit 3, resumable; a resume gets the
        budget afresh)."""
        from .stop_callback import REQUESTS, StopCallback
        REQUESTS[id(self)] = self
        return StopCallback(id(self), expected_trials, time_budget)

    def exit_code(self, complete: bool | None = None) -> int:
        """0 when the sweep is complete (a late signal changes nothing) or no stop was asked for, else
        RESUME_EXIT (3, resume me) or 130 (Ctrl-C). `complete` defaults to what callback() saw."""
        complete = self.complete if complete is None else complete
        if complete or not self.requested:
            return 0
        return INTERRUPTED_EXIT if self.signame == "SIGINT" else RESUME_EXIT

