"""The training run: the Trainer (train.py) and what a run needs around it — its folder and lock
(rundir.py), its checks before training (checks.py), the fresh-head audit (audit.py), the trackers
(trackers.py), and loading a trained run back (load.py)."""
