"""The base of every user-facing error: bad config, search space, dataset folder, checkpoint or
results file. The CLI prints `str(err)` (one line naming the key/file) and exits with code 2."""


class UserError(Exception):
    """Bad input from the user; the message is one line that names what is wrong and where."""


class ResultsWarning(UserWarning):
    """A results file was left out (the message names it and why); the rest was read. The CLI prints
    each in one line and exits with LEFT_OUT_EXIT when the command otherwise succeeded."""


LEFT_OUT_EXIT = 4
# the disk or the folder refused a write (full disk, quota, read-only, permissions): the CLI prints
# one line and exits with this; what was written before is whole, and the same command (or
# `rlp-tune resume`) continues once the fault is fixed (docs/reliability.md "Faults")
FAULT_EXIT = 5
