"""The base of every user-facing error: bad config, search space, dataset folder, checkpoint or
results file. The CLI prints `str(err)` (one line naming the key/file) and exits with code 2."""


class UserError(Exception):
    """Bad input from the user; the message is one line that names what is wrong and where."""
