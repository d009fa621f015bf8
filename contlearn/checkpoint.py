"""Atomic orbax checkpoints of the learner state and the stream position.

Each checkpoint is a folder `checkpoints/<chunk>/` holding the state (`state`,
arrays) and the run's metadata (`meta`, JSON: stream position, token count,
configuration). orbax writes into a temporary folder and renames it when
complete, so a run killed mid-save leaves the earlier checkpoints as they
were and no half-written one that looks complete.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp

from contlearn.errors import CheckpointError


class Checkpoints:
  """The checkpoints of one run, under `directory`."""

  def __init__(self, directory: str | pathlib.Path, keep: int = 2):
    self.directory = pathlib.Path(directory).absolute()
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest(self) -> int | None:
    return self._manager.latest_step()

  def save(self, chunk: int, state: Any, meta: dict[str, Any]) -> None:
    """Saves `state` and `meta` as checkpoint `chunk` (blocking until durable)."""
    self._manager.save(
      chunk,
      args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
      force=True,
    )
    self._manager.wait_until_finished()

  def restore(self, abstract_state: Any, chunk: int | None = None) -> tuple[Any, dict[str, Any], int]:
    """Restores the state (shaped and sharded like `abstract_state`) and meta.

    Raises:
      CheckpointError: no checkpoint exists, or the one found cannot be read
        or does not match the model.
    """
    chunk = self.latest() if chunk is None else chunk
    if chunk is None:
      raise CheckpointError(f"no checkpoint to resume from in {self.directory}")
    target = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
      abstract_state,
    )
    try:
      restored = self._manager.restore(
        chunk,
        args=ocp.args.Composite(state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()),
      )
    except Exception as e:  # orbax raises many types for unreadable data
      first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      raise CheckpointError(
        f"checkpoint {self.directory / str(chunk)} cannot be restored ({first_line}); "
        "it is corrupt or from another model. Earlier checkpoints are untouched: "
        "move this folder away to resume from the one before it"
      ) from e
    return restored["state"], dict(restored["meta"]), chunk

  def close(self) -> None:
    self._manager.close()
