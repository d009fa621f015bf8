"""Errors that reach the user as one clear line; the CLI prints it and exits with the error's `exit_code`.

  2  ConfigError, DataError, CheckpointError, RunLocked: a problem with what was asked
  3  NonFiniteError: the run diverged (the last good checkpoint stands)
  4  OutputError: the output folder cannot be written (full disk, read-only, not a folder)
130  interrupted by SIGTERM or Ctrl-C (not an error class: `INTERRUPTED_EXIT_CODE`)
"""

INTERRUPTED_EXIT_CODE = 130


class ContlearnError(Exception):
  """Base of every error that names a user-facing problem."""

  exit_code = 2


class ConfigError(ContlearnError):
  """A bad experiment name, `--set` key, value or configuration."""


class DataError(ContlearnError):
  """A stream that is empty, unreadable or has tokens outside the vocabulary."""


class CheckpointError(ContlearnError):
  """A checkpoint that is missing, corrupt or does not match the run."""


class RunLocked(ContlearnError):
  """Another live process is writing into the same output folder."""


class NonFiniteError(ContlearnError):
  """A non-finite loss, metric or state at a chunk boundary (policy "stop")."""

  exit_code = 3


class OutputError(ContlearnError):
  """The run's outputs cannot be written: a full disk, a read-only or non-folder path."""

  exit_code = 4
