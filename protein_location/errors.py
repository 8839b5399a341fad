"""The error of a training request that cannot run as asked."""


class TrainError(ValueError):
    """A training request that cannot run as asked (one line, names the flag)."""
