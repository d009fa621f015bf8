"""Host-side prefetch: a thread prepares the next chunks while the device runs."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

from contlearn.stream.base import Chunk, Stream


class Prefetcher:
  """Iterates `(chunk, position_after)` from `position`, `depth` chunks ahead.

  The position that goes into a checkpoint is the one *after* the last chunk
  the learner consumed, never that of a chunk still in the queue.
  """

  _END = object()

  def __init__(self, stream: Stream, position: Any, depth: int = 2):
    self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._fill, args=(stream, position), daemon=True)
    self._thread.start()

  def _fill(self, stream: Stream, position: Any) -> None:
    try:
      while not self._stop.is_set():
        chunk, position = stream.next(position)
        if chunk is None:
          break
        self._put((chunk, position))
    except BaseException as e:  # handed to the consumer, raised there
      self._put(e)
      return
    self._put(self._END)

  def _put(self, item) -> None:
    while not self._stop.is_set():
      try:
        self._queue.put(item, timeout=0.1)
        return
      except queue.Full:
        continue

  def __iter__(self) -> Iterator[tuple[Chunk, Any]]:
    while True:
      item = self._queue.get()
      if item is self._END:
        return
      if isinstance(item, BaseException):
        raise item
      yield item

  def close(self) -> None:
    self._stop.set()
    self._thread.join(timeout=5)
