"""What the user got wrong, as opposed to what the code got wrong."""


class UsageError(ValueError):
    """Bad input (an argument, a config value, a missing file): the CLI prints it as one line and exits 2.
    Every other exception is a bug and keeps its traceback."""


class NotPretrainedYet(UsageError):
    """A backbone `lpft-bench pretrain` makes is not on this machine yet: the digest of its weights, part of every
    id that uses it, is not known until it is."""
