"""Errors that reach the user as one clear line (the CLI prints them, exits 2)."""


class ContlearnError(Exception):
  """Base of every error that names a user-facing problem."""


class ConfigError(ContlearnError):
  """A bad experiment name, `--set` key, value or configuration."""


class DataError(ContlearnError):
  """A stream that is empty, unreadable or has tokens outside the vocabulary."""


class CheckpointError(ContlearnError):
  """A checkpoint that is missing, corrupt or does not match the run."""
