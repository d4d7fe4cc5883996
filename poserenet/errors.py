"""Errors a user can act on: they name the file and the record, never a numpy internals trace."""


class PoseDataError(ValueError):
    """Bad input data: an annotation file, an image, a keypoint set or a config."""


class ConfigError(ValueError):
    """A config file or a --set override that does not fit the config schema."""


class WriteError(RuntimeError):
    """An output file could not be written (full disk, read-only folder): the message names it."""
