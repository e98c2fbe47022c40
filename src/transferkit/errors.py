"""User-facing errors.

Every mistake a user can make (bad config value, missing file, bad column, unknown name) raises a
subclass of :class:`TransferkitError` with one line that names what and where and what to do. The CLI
prints that line and exits non-zero; a traceback is shown only with ``--debug``.
"""


class TransferkitError(Exception):
    """Base class for errors caused by user input; the message is shown as-is."""


class ConfigError(TransferkitError):
    """The run configuration is invalid (the message lists every bad field with its path)."""


class DataError(TransferkitError):
    """An input file, column, row or label is unusable."""


class RegistryError(TransferkitError):
    """An unknown or malformed name for a strategy, backbone, head or data set."""


class RunError(TransferkitError):
    """A run folder is missing, incomplete or would be overwritten."""
