"""Chunks: the fixed-shape unit of the stream that one compiled call consumes.

A chunk holds `steps` consecutive steps of `batch` parallel lanes:

    tokens: [steps, batch, seq + 1] int32   inputs are [..., :-1], targets [..., 1:]
    mask:   [steps, batch, seq]     bool    False where the target is padding

Every chunk of a stream has the same shape, so the learner compiles once.
The last chunk of a finite stream is padded and its padding masked. A stream
is a pure function of its position: `next(position) -> (chunk, position)`;
the position is a small JSON-able value saved with every checkpoint, so a
resumed run reads exactly the tokens it would have read.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import numpy as np


class Chunk(NamedTuple):
  tokens: Any  # [steps, batch, seq + 1] int32
  mask: Any  # [steps, batch, seq] bool


class Stream(Protocol):
  """A resumable source of chunks.

  A finite stream whose size is known may also have `targets() -> int | None`,
  the targets it yields in all (None: unbounded or unknown); a token budget
  above it is refused before training starts (`driver.check_budget`).
  """

  shape: tuple[int, int, int]  # (steps, batch, seq)

  def start(self) -> Any:
    """The position of the stream's beginning."""

  def next(self, position: Any) -> tuple[Chunk | None, Any]:
    """The chunk at `position` and the position after it; None at the end."""

  def describe(self) -> str:
    """One line naming the source, for logs and error messages."""


def empty_chunk(steps: int, batch: int, seq: int) -> Chunk:
  return Chunk(
    tokens=np.zeros((steps, batch, seq + 1), np.int32),
    mask=np.zeros((steps, batch, seq), bool),
  )


class LaneShare:
  """Any stream as one process of several reads it: the whole stream is read
  (its position stays the whole stream's, the same in every process) and only
  the range `lanes` of each chunk kept. `DocumentLanes.share` reads only its lanes."""

  def __init__(self, stream: Stream, lanes: range):
    self.stream, self.lanes, self.shape = stream, lanes, stream.shape

  def start(self) -> Any:
    return self.stream.start()

  def next(self, position: Any) -> tuple[Chunk | None, Any]:
    chunk, position = self.stream.next(position)
    if chunk is None:
      return None, position
    return Chunk(*(np.asarray(a)[:, self.lanes.start : self.lanes.stop] for a in chunk)), position

  def describe(self) -> str:
    return self.stream.describe()

  def idle(self) -> Chunk:
    """A chunk of this share with no tokens."""
    steps, _, seq = self.shape
    return empty_chunk(steps, len(self.lanes), seq)

  def gather(self, position: Any) -> Any:
    """The whole stream's position (every process holds it)."""
    return position


def share_of(stream: Stream, lanes: range) -> Stream:
  """The part of `stream` one process reads: its lanes `lanes` (`stream.share(lanes)` where it has one).

  The result also has `idle()` (a chunk of its lanes without tokens) and
  `gather(position)` (the whole stream's position, a collective).
  """
  share = getattr(stream, "share", None)
  return share(lanes) if share is not None else LaneShare(stream, lanes)
