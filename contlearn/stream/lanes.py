"""A byte stream cut into parallel lanes over a sequence of documents.

The source is a sequence of documents (`len(docs)`, `docs[i] -> bytes`). Lane
`b` of `B` starts at document `b * N // B` and reads documents in order, as
one contiguous byte string; each step takes `seq + 1` bytes from every lane
and advances it by `seq`, so the target of a step's last token is the next
step's first input. Without `repeat`, lane `b` stops where lane `b + 1`
started, and the stream ends when every lane has; with `repeat`, lanes wrap
around the documents forever, an unbounded stream.

The position is `[[doc, offset], ...]`, one pair per lane (doc = -1 once the
lane has ended); it is all a resumed run needs.

`share(lanes)` is the same stream read by one process of several: it reads
only the lanes of the range `lanes` (its chunks have `len(lanes)` lanes) and
advances only their entries of the position, which stays a pair per lane of
the whole stream; `gather(position)` collects every process's entries into
one position (saved with each checkpoint, so a resume on another number of
processes finds every lane).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence

import numpy as np

from contlearn.errors import DataError
from contlearn.stream.base import Chunk, empty_chunk


class DocumentLanes:
  """`Stream` of byte tokens from `docs`, in `batch` lanes (module docstring)."""

  def __init__(
    self,
    docs: Sequence[bytes],
    *,
    steps: int,
    batch: int,
    seq: int,
    repeat: bool = False,
    name: str = "documents",
  ):
    for key, value in (("steps", steps), ("batch", batch), ("seq", seq)):
      if value < 1:
        raise DataError(f"data.{key}={value} must be at least 1")
    self.docs = docs
    self.n_docs = len(docs)
    if self.n_docs == 0:
      raise DataError(f"the stream from {name} is empty: it has no documents")
    self.shape = (steps, batch, seq)
    self.repeat = repeat
    self.name = name
    self.lanes = range(batch)
    self._doc = functools.lru_cache(maxsize=4 * batch + 8)(lambda i: bytes(docs[i]))

  def share(self, lanes: range) -> DocumentLanes:
    """This stream reading only `lanes` (a contiguous range of its lanes)."""
    if lanes.step != 1 or not 0 <= lanes.start < lanes.stop <= self.shape[1]:
      raise DataError(f"lanes {lanes.start}..{lanes.stop - 1} are not a range of the {self.shape[1]} lanes")
    shared = copy.copy(self)
    shared.lanes = lanes
    return shared

  def idle(self) -> Chunk:
    """A chunk of this share with no tokens (its lanes have ended while another process's have not)."""
    steps, _, seq = self.shape
    return empty_chunk(steps, len(self.lanes), seq)

  def gather(self, position: list[list[int]]) -> list[list[int]]:
    """The position of every lane: each lane's entry from the process that reads it, a lane
    no process reads as it is in `position` (a collective of every process; `position`
    itself when this share is every lane)."""
    if len(self.lanes) == self.shape[1]:
      return position
    from jax.experimental import multihost_utils

    rows = np.zeros((self.shape[1], 4), np.int32)  # read here, doc, offset // 2**31, offset % 2**31
    for lane in self.lanes:
      doc, offset = position[lane]
      rows[lane] = 1, doc, offset >> 31, offset & (2**31 - 1)
    every = np.asarray(multihost_utils.process_allgather(rows))  # [processes, lanes, 4]
    owner = np.argmax(every[:, :, 0], axis=0)
    rows = every[owner, np.arange(self.shape[1])]
    return [
      [int(doc), (int(high) << 31) + int(low)] if read else list(position[lane])
      for lane, (read, doc, high, low) in enumerate(rows)
    ]

  def describe(self) -> str:
    return self.name

  def targets(self) -> int | None:
    """The targets the whole stream yields, every lane's bytes less one; None when it repeats
    (unbounded) or its documents are read lazily (a tfds split: counting would read it all)."""
    if self.repeat or not isinstance(self.docs, (list, tuple)):
      return None
    batch = self.shape[1]
    lane_bytes = [
      sum(len(d) for d in self.docs[lane * self.n_docs // batch : self._lane_end(lane)]) for lane in range(batch)
    ]
    return sum(max(n - 1, 0) for n in lane_bytes)

  def _lane_end(self, lane: int) -> int:
    return (lane + 1) * self.n_docs // self.shape[1]

  def start(self) -> list[list[int]]:
    batch = self.shape[1]
    position = []
    for lane in range(batch):
      first = lane * self.n_docs // batch
      empty = not self.repeat and first >= self._lane_end(lane)
      position.append([-1, 0] if empty else [first, 0])
    return position

  def _take(self, lane: int, doc: int, offset: int, n: int) -> tuple[bytes, int, int]:
    """Up to `n` bytes of lane `lane` from (doc, offset); returns the position after."""
    parts, need = [], n
    end = self._lane_end(lane)
    steps_without_data = 0
    while need > 0 and doc >= 0:
      data = self._doc(doc % self.n_docs)
      piece = data[offset : offset + need]
      parts.append(piece)
      need -= len(piece)
      offset += len(piece)
      if offset >= len(data):
        steps_without_data = 0 if piece else steps_without_data + 1
        doc, offset = doc + 1, 0
        if not self.repeat and doc >= end:
          doc = -1
        elif self.repeat and steps_without_data > self.n_docs:
          raise DataError(f"the stream from {self.name} is empty: every document is empty")
    return b"".join(parts), doc, offset

  def next(self, position):
    chunk = self.idle()
    steps, _, seq = self.shape
    position = [list(p) for p in position]
    produced = False
    for s in range(steps):
      for lane in self.lanes:
        doc, offset = position[lane]
        if doc < 0:
          continue
        window, _, _ = self._take(lane, doc, offset, seq + 1)
        _, doc, offset = self._take(lane, doc, offset, seq)
        if len(window) >= 2:
          i = lane - self.lanes.start
          chunk.tokens[s, i, : len(window)] = np.frombuffer(window, np.uint8)
          chunk.mask[s, i, : len(window) - 1] = True
          produced = True
        if len(window) <= seq:  # fewer than seq + 1 bytes: the lane has ended
          doc, offset = -1, 0
        position[lane] = [doc, offset]
    if not produced:
      return None, position
    return Chunk(chunk.tokens, chunk.mask), position


def split_bytes(data: bytes, pieces: int) -> list[bytes]:
  """`data` cut into `pieces` contiguous, nearly equal documents."""
  bounds = [i * len(data) // pieces for i in range(pieces + 1)]
  return [data[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def split_holdout(data: bytes, pieces: int, size: int) -> tuple[list[bytes], list[bytes]]:
  """`data` cut into `pieces` nearly equal blocks, the last `size` bytes of each held out.

  Returns (train, held): `train[i]` is block i without its tail, `held[i]`
  its tail of `size` bytes, so held-out text is spread over the whole source
  and no byte is in both. Raises DataError if a block is not longer than `size`.
  """
  if size < 1:
    raise DataError(f"held-out size {size} must be at least 1 byte")
  blocks = split_bytes(data, pieces)
  if min(len(b) for b in blocks) <= size:
    raise DataError(f"cannot hold out {size} bytes from each of {pieces} blocks of a {len(data)}-byte source")
  return [b[:-size] for b in blocks], [b[-size:] for b in blocks]
