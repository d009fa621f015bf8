"""Atomic, verified orbax checkpoints of the learner state and the run's position.

Each checkpoint is a folder `checkpoints/<chunk>/` holding the state (`state`,
arrays) and the run's metadata (`meta`, JSON: feed position, unit count,
configuration, the checkpoint `format`, and a fingerprint of every leaf of
the state, computed on the device at save; `contlearn.fingerprint`). A
checkpoint of another format (a state or feed position whose form changed)
is refused by name rather than misread. orbax writes into a temporary
folder and renames it when complete, so a run killed mid-save leaves the
earlier checkpoints as they were and no half-written one that looks complete.

On resume the metadata is read first (so a changed configuration is named
before any array is read), then the state, whose fingerprint is checked.
`restore_intact` falls back from a checkpoint that cannot be read or fails its
fingerprint to the newest one that passes, and moves the bad ones (never
deleting them) to `corrupt_checkpoints/` beside `checkpoints/`, where the run's
later saves cannot collide with them.

Every failure is one `CheckpointError` (or `OutputError` for a save that
cannot be written) of under 300 characters naming the path; the checkpoint
library's own warnings and asynchronous noise are kept from the terminal.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import logging
import pathlib
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from contlearn.errors import CheckpointError, OutputError
from contlearn.fingerprint import fingerprint, first_mismatch
from contlearn.processes import is_writer

CORRUPT = "corrupt_checkpoints"
FORMAT = 1  # the checkpoint layout this contlearn writes and reads: raise it when a state or position changes form


def _short(e: BaseException, limit: int = 80) -> str:
  """The first line of an error, cut to `limit` characters."""
  text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
  return text if len(text) <= limit else text[: limit - 3] + "..."


def _os_error(e: BaseException) -> OSError | None:
  """The OSError behind `e` (orbax wraps them), if any."""
  seen = set()
  while e is not None and id(e) not in seen:
    if isinstance(e, OSError):
      return e
    seen.add(id(e))
    e = e.__cause__ or e.__context__
  return None


def _says_disk_full(e: BaseException) -> bool:
  """Whether an error in `e`'s chain is a full disk in words (tensorstore reports ENOSPC as text:
  'RESOURCE_EXHAUSTED: Error writing ... [OS error 28: No space left on device]')."""
  seen = set()
  while e is not None and id(e) not in seen:
    text = str(e).lower()
    if "no space left on device" in text or ("resource_exhausted" in text and "error writing" in text):
      return True
    seen.add(id(e))
    e = e.__cause__ or e.__context__
  return False


QUIET_LOGGERS = ("absl", "orbax", "asyncio", "jax._src.distributed")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
  """Keeps orbax's and absl's warnings and the unraisable exceptions of its
  asyncio loops (destructors; callbacks into a closed loop, which after a
  failed call may come until the process exits: `_dropping_closed_loop`)
  from reaching the terminal."""
  loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
  levels = [lg.level for lg in loggers]
  hook = sys.unraisablehook
  for lg in loggers:
    lg.setLevel(logging.ERROR + 1)
  sys.unraisablehook = lambda unraisable: None
  failed = False
  try:
    yield
  except BaseException:
    failed = True
    gc.collect()  # a failed read's abandoned tasks report themselves when collected: here, quietly
    raise
  finally:
    for lg, level in zip(loggers, levels, strict=True):
      lg.setLevel(level)
    # after a failure, callbacks into the closed loop, and orbax's threads' reports, may come until the process exits
    sys.unraisablehook = _dropping_closed_loop(hook) if failed else hook
    if failed:
      for lg in loggers:
        if not any(isinstance(f, _MainThreadOnly) for f in lg.filters):
          lg.addFilter(_MainThreadOnly())


class _MainThreadOnly(logging.Filter):
  """Passes the records logged from the main thread only.

  Put on `QUIET_LOGGERS` once a checkpoint call has failed: orbax's background
  threads (e.g. its array handler's signalling thread) may log that failure
  again, with a traceback, after the call has raised and been reported in
  one line.
  """

  def filter(self, record: logging.LogRecord) -> bool:
    return record.thread == threading.main_thread().ident


def _dropping_closed_loop(hook: Callable[[Any], None]) -> Callable[[Any], None]:
  """`hook` (a `sys.unraisablehook`) that drops "RuntimeError: Event loop is closed" and passes the rest on.

  When a save fails (a full disk), orbax closes its asyncio loop while
  tensorstore's other writes still run; as they finish, tensorstore calls
  back into the closed loop and reports that error as unraisable (a bare
  traceback on stderr), at any moment up to the process's exit.
  """
  if getattr(hook, "drops_closed_loop", False):
    return hook

  def dropping(unraisable):
    value = unraisable.exc_value
    if not (isinstance(value, RuntimeError) and str(value) == "Event loop is closed"):
      hook(unraisable)

  dropping.drops_closed_loop = True
  return dropping


def _without_empty(tree: Any) -> Any:
  """`tree` with its zero-size leaves (e.g. the carried inputs of a width-1 convolution) as None: orbax
  refuses to save an array of size zero, and such a leaf holds nothing to save."""
  return jax.tree.map(lambda x: None if x.size == 0 else x, tree)


def _with_empty(abstract: Any, restored: Any) -> Any:
  """`restored` (from `_without_empty`) with each None back as the zero-size array `abstract` describes."""

  def fill(a, r):
    if r is not None:
      return r
    empty = np.zeros(a.shape, a.dtype)
    return jax.device_put(empty, a.sharding) if getattr(a, "sharding", None) is not None else jnp.asarray(empty)

  return jax.tree.map(fill, abstract, restored)


class Checkpoints:
  """The checkpoints of one run, under `directory`."""

  def __init__(self, directory: str | pathlib.Path, keep: int = 2):
    self.directory = pathlib.Path(directory).absolute()
    self.keep = keep
    self._manager = self._open()

  def _open(self) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=self.keep, create=True, enable_async_checkpointing=False)
    try:
      with quiet():
        return ocp.CheckpointManager(self.directory, options=options)
    except Exception as e:
      raise OutputError(f"cannot open checkpoints in {self.directory}: {_short(e)}") from None

  def remove_partial(self) -> None:
    """Removes the temporary folders of saves that never finished (a run killed mid-save); the writing
    process does, the others leave the shared folder to it."""
    if not is_writer():
      return
    for partial in self.directory.glob("*.orbax-checkpoint-tmp*"):
      shutil.rmtree(partial, ignore_errors=True)

  def latest(self) -> int | None:
    return self._manager.latest_step()

  def steps(self) -> list[int]:
    """Every finished checkpoint, newest first."""
    return sorted(self._manager.all_steps(), reverse=True)

  def save(self, chunk: int, state: Any, meta: dict[str, Any]) -> None:
    """Saves `state` and `meta` (plus the state's fingerprint) as checkpoint `chunk`, blocking until durable.

    Raises:
      OutputError: the checkpoint cannot be written (full disk, read-only
        folder); the incomplete one is removed, the earlier ones are untouched.
    """
    meta = {**meta, "format": FORMAT, "fingerprint": fingerprint(state)}
    try:
      with quiet():
        self._manager.save(
          chunk,
          args=ocp.args.Composite(state=ocp.args.StandardSave(_without_empty(state)), meta=ocp.args.JsonSave(meta)),
          force=True,
        )
        self._manager.wait_until_finished()
    except Exception as e:
      for partial in self.directory.glob(f"{chunk}.orbax-checkpoint-tmp*"):
        shutil.rmtree(partial, ignore_errors=True)
      cause = _os_error(e)
      reason = cause.strerror if cause is not None and cause.strerror else _short(e)
      if (cause is not None and cause.errno == errno.ENOSPC) or _says_disk_full(e):
        reason = "no space left on device"
      raise OutputError(
        f"cannot save checkpoint {self.directory / str(chunk)}: {reason}; the earlier checkpoints are untouched"
      ) from None

  def read_meta(self, chunk: int) -> dict[str, Any]:
    """The metadata of checkpoint `chunk` alone (no array is read)."""
    try:
      with quiet():
        restored = self._manager.restore(chunk, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
      meta = dict(restored["meta"])
    except Exception as e:
      raise CheckpointError(
        f"checkpoint {self.directory / str(chunk)}: its metadata cannot be read ({_short(e)})"
      ) from None
    missing = [k for k in ("position", "units") if k not in meta]
    if missing:
      raise CheckpointError(f"checkpoint {self.directory / str(chunk)}: its metadata lacks {', '.join(missing)}")
    if meta.get("format", FORMAT) != FORMAT:  # checkpoints from before the format was recorded read as this one
      raise CheckpointError(
        f"checkpoint {self.directory / str(chunk)} has format {meta['format']}; this contlearn reads format "
        f"{FORMAT}: resume it with the contlearn that wrote it"
      )
    return meta

  def restore(self, abstract_state: Any, chunk: int | None = None) -> tuple[Any, dict[str, Any], int]:
    """Restores checkpoint `chunk` (default: the latest), verified against its fingerprint.

    `abstract_state` gives the shapes, dtypes and shardings.

    Raises:
      CheckpointError: no checkpoint exists, or this one cannot be read,
        does not match the model, or fails its fingerprint.
    """
    chunk = self.latest() if chunk is None else chunk
    if chunk is None:
      raise CheckpointError(f"no checkpoint to resume from in {self.directory}")
    meta = self.read_meta(chunk)
    target = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
      abstract_state,
    )
    where = self.directory / str(chunk)
    try:
      with quiet():
        restored = self._manager.restore(
          chunk, args=ocp.args.Composite(state=ocp.args.StandardRestore(_without_empty(target)))
        )
    except Exception as e:
      raise CheckpointError(f"checkpoint {where} cannot be read ({_short(e)})") from None
    state = _with_empty(target, restored["state"])
    if "fingerprint" not in meta:
      print(
        f"contlearn: checkpoint {where} has no fingerprint (an earlier contlearn wrote it); not verified",
        file=sys.stderr,
      )
      return state, meta, chunk
    bad = first_mismatch(state, meta["fingerprint"])
    if bad is not None:
      raise CheckpointError(f"checkpoint {where} fails its fingerprint at {bad}: its files were changed")
    return state, meta, chunk

  def restore_intact(
    self, abstract_state: Any, check: Callable[[dict[str, Any]], None] = lambda meta: None
  ) -> tuple[Any, dict[str, Any], int]:
    """The newest checkpoint that restores and verifies.

    `check(meta)` runs on the newest readable metadata before any state is
    read (a changed configuration is refused there, whatever the arrays).
    Checkpoints newer than the one restored are moved to `corrupt_checkpoints/`
    with a line each on stderr. When none restores, nothing is moved.

    Raises:
      CheckpointError: no checkpoint, a `check` refusal, or none intact.
    """
    steps = self.steps()
    if not steps:
      raise CheckpointError(f"no checkpoint to resume from in {self.directory}")
    failures: list[tuple[int, CheckpointError]] = []
    checked = False
    for chunk in steps:
      try:
        if not checked:
          meta = self.read_meta(chunk)
      except CheckpointError as e:
        failures.append((chunk, e))
        continue
      if not checked:
        check(meta)  # a refusal, not a corruption: raised as it is
        checked = True
      try:
        state, meta, chunk = self.restore(abstract_state, chunk)
      except CheckpointError as e:
        failures.append((chunk, e))
        continue
      self._set_aside(chunk, failures)
      return state, meta, chunk
    if len(failures) == 1:
      raise failures[0][1]
    raise CheckpointError(
      f"none of the {len(steps)} checkpoints in {self.directory} restores and verifies (their files were "
      "changed, or the model differs from the one that saved them); they are left as they are"
    )

  def _set_aside(self, used: int, failures: list[tuple[int, CheckpointError]]) -> None:
    """Moves the checkpoints that failed (newer than `used`) out of the run's way."""
    if not failures:
      return
    self._manager.close()
    target = self.directory.parent / CORRUPT
    target.mkdir(exist_ok=True)
    for chunk, error in failures:
      dest = target / f"{chunk}-{time.strftime('%Y%m%dT%H%M%S')}"
      shutil.move(str(self.directory / str(chunk)), dest)
      print(f"contlearn: {error}; set aside as {CORRUPT}/{dest.name}, resuming from checkpoint {used}", file=sys.stderr)
    self._manager = self._open()

  def close(self) -> None:
    with quiet():
      self._manager.close()
