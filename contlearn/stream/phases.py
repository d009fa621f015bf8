"""A stream that moves through text domains in phases, each domain with held-out text.

`Domains` reads each offline corpus (`contlearn.stream.corpora`) once: its
training stream (`batch` lanes, wrapping around, the held-out bytes
removed) and its held-out chunk, from the tail of each of `batch` pieces
spread over the corpus, never trained on. `PhaseFeed` is the host loop's
feed over them: phase j reads `chunks` blocks of domain `order[j]`. Its
position is `[phase, block in phase, each domain stream's position]` (JSON),
so a domain that returns continues where it stopped and a resumed run reads
exactly the blocks it would have read.

>>> domains = Domains(("pydoc",), steps=2, batch=2, seq=8, heldout=64)
>>> domains.heldout[0].tokens.shape                  # [ceil(63 / 8) steps, batch, seq + 1]
(8, 2, 9)
>>> feed = PhaseFeed(domains.train, order=(0, 0), chunks=3)
>>> xs, position = feed.next(feed.start())
>>> xs.tokens.shape, position[:2]
((2, 2, 9), [0, 1])
>>> for _ in range(2):
...   xs, position = feed.next(position)
>>> position[:2], phase_ended(position)              # phase 0's last block just read
([1, 0], 0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from contlearn.stream import corpora
from contlearn.stream.base import Chunk
from contlearn.stream.lanes import DocumentLanes, split_holdout

Position = list  # [phase, block in phase, [each domain stream's position]]


class Domains:
  """Each domain's training stream (held-out bytes removed) and its held-out chunk.

  Args:
    names: corpora of `contlearn.stream.corpora`, one per domain.
    steps, batch, seq: the training blocks' shape, `[steps, batch, seq + 1]`.
    heldout: bytes held out from the tail of each of `batch` pieces of a corpus.

  Attributes:
    documents: per domain, its `batch` training pieces (held-out tails removed).
    train: per domain, its training stream (`DocumentLanes`, `repeat=True`).
    train_bytes: per domain, the bytes of its training pieces.
    heldout: per domain, its held-out text as one `Chunk` of
      `ceil((heldout - 1) / seq)` steps, `[steps, batch, seq + 1]`.
  """

  def __init__(self, names: Sequence[str], *, steps: int, batch: int, seq: int, heldout: int):
    self.names, self.batch, self.seq = tuple(names), batch, seq
    self.documents, self.train, self.train_bytes, self.heldout = [], [], [], []
    for name in self.names:
      train, held = split_holdout(corpora.corpus(name), batch, heldout)
      self.documents.append(train)
      self.train.append(DocumentLanes(train, steps=steps, batch=batch, seq=seq, repeat=True, name=name))
      self.train_bytes.append(sum(map(len, train)))
      held_stream = DocumentLanes(held, steps=math.ceil((heldout - 1) / seq), batch=batch, seq=seq, name=name)
      chunk, _ = held_stream.next(held_stream.start())
      self.heldout.append(chunk)

  def first_chunk(self, domain: int, steps: int) -> Chunk:
    """The first `steps` steps of a domain's training text (from the start of
    each lane): `tokens [steps, batch, seq + 1]`, `mask [steps, batch, seq]`."""
    stream = DocumentLanes(self.documents[domain], steps=steps, batch=self.batch, seq=self.seq, name=self.names[domain])
    chunk, _ = stream.next(stream.start())
    return chunk


class PhaseFeed:
  """The phases as one feed: `chunks` blocks of stream `order[j]` in phase j (module docstring)."""

  def __init__(self, streams: Sequence[Any], order: Sequence[int], chunks: int):
    self.streams, self.order, self.chunks = list(streams), tuple(order), chunks

  def start(self) -> Position:
    return [0, 0, [s.start() for s in self.streams]]

  def next(self, position: Position) -> tuple[Chunk | None, Position]:
    phase, block, lanes = position
    if phase >= len(self.order):
      return None, position
    d = self.order[phase]
    xs, after = self.streams[d].next(lanes[d])
    lanes = [after if i == d else p for i, p in enumerate(lanes)]
    block += 1
    return xs, ([phase + 1, 0, lanes] if block == self.chunks else [phase, block, lanes])

  def describe(self) -> str:
    return " -> ".join(self.streams[d].describe() for d in self.order)


def phase_ended(position: Position) -> int | None:
  """The phase whose last block was just read at `position`, or None."""
  phase, block, _ = position
  return phase - 1 if block == 0 and phase > 0 else None
