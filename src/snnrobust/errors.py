"""User-facing errors.

Anything the user can fix (bad config, missing dataset, corrupt checkpoint) raises
:class:`SnnRobustError` with a one-line message that says what to do. The CLI prints
it as ``error: <message>`` and exits with status 2, never with a traceback.
"""


class SnnRobustError(Exception):
    """An error caused by user input; its message is one line that says how to fix it."""


class ConfigError(SnnRobustError, ValueError):
    """An unknown config key, a wrong type or an out-of-range value."""


class DatasetError(SnnRobustError):
    """A dataset is missing or malformed."""


class CheckpointError(SnnRobustError):
    """A checkpoint is missing, corrupt, truncated, foreign, or does not fit."""
