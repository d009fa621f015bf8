"""Reading a byte stream back: each lane's bytes, reassembled from the chunks it yields."""

import numpy as np


def lane_bytes(stream, position=None):
  """Every lane's bytes as read by `stream` (inputs plus the final target) and the number of chunks.

  Checks each chunk's shapes (tokens `(steps, batch, seq + 1)`, mask `(steps, batch, seq)`) and that the
  valid region of each row is a prefix: padding only at the ragged end.
  """
  steps, batch, seq = stream.shape
  lanes = [bytearray() for _ in range(batch)]
  position = stream.start() if position is None else position
  chunks = 0
  while True:
    chunk, position = stream.next(position)
    if chunk is None:
      return [bytes(x) for x in lanes], chunks
    chunks += 1
    assert chunk.tokens.shape == (steps, batch, seq + 1) and chunk.mask.shape == (steps, batch, seq)
    for s in range(steps):
      for b in range(batch):
        n = int(chunk.mask[s, b].sum())
        if n:
          if not lanes[b]:
            lanes[b] += bytes(chunk.tokens[s, b, :1].astype(np.uint8))
          lanes[b] += bytes(chunk.tokens[s, b, 1 : n + 1].astype(np.uint8))
          assert chunk.mask[s, b, :n].all() and not chunk.mask[s, b, n:].any()
