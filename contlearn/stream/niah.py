"""Needle-in-a-haystack sequences at the byte level (S-NIAH style).

A haystack is a random slice of a text. Needles are inserted at random
depths; the sequence ends with a question, an answer prefix that repeats the
needle's wording (as RULER's templates do) and the answer digits:

  single needle (`keys=0`)
      ... The special magic number is 48213. ...
      What is the special magic number? The special magic number is 48213
  multi-key (`keys=n`, n needles with distinct random 5-letter keys; one is asked)
      ... The special magic number for qwert is 48213. ... for asdfg is 90211. ...
      What is the special magic number for qwert? The special magic number for qwert is 48213

Every example is exactly `length + 1` bytes: a model reads `tokens[:, :-1]`
(`length` bytes, the context length) and is scored on the targets
`tokens[:, 1:]` where `answer` is True, the `digits` answer digits, which are
the last bytes of the example. Examples are a pure function of the numpy
generator's state.

A curriculum shortens the haystack: with `fill` < 1 an example holds that
fraction of the haystack text it would hold at `fill=1` (the needles, the
question and the answer are whole) and is padded at the end with zero bytes
to `length + 1`, the library's convention for a short sequence; `real` is
True where the target `tokens[:, 1:]` is a byte of the example (the mask
of a padded batch), and `answer` moves with the example's end. `fill=1`
gives the full-length examples.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from contlearn.errors import ConfigError

KEY_LETTERS = 5


class NiahBatch(NamedTuple):
  tokens: np.ndarray  # [B, length + 1] int32 bytes
  answer: np.ndarray  # [B, length] bool, True at the targets tokens[:, 1:] that are answer digits
  depth: np.ndarray  # [B] float, where the asked needle starts, as a fraction of the text before the question
  real: np.ndarray  # [B, length] bool, True where the target tokens[:, 1:] is a byte of the example, not padding


def needle(value: bytes, key: bytes | None) -> bytes:
  """The needle sentence, with a space on each side."""
  about = b"" if key is None else b" for " + key
  return b" The special magic number" + about + b" is " + value + b". "


def question(key: bytes | None) -> bytes:
  """The question and the answer prefix that the answer digits follow."""
  about = b"" if key is None else b" for " + key
  return b"\nWhat is the special magic number" + about + b"? The special magic number" + about + b" is "


def _keys(rng: np.random.Generator, n: int) -> list[bytes]:
  keys: list[bytes] = []
  while len(keys) < n:
    key = bytes(rng.integers(ord("a"), ord("z") + 1, KEY_LETTERS, dtype=np.uint8))
    if key not in keys:
      keys.append(key)
  return keys


def _example(rng, hay: np.ndarray, length: int, keys: int, digits: int, fill: float) -> tuple[bytes, float]:
  names = _keys(rng, keys) if keys else [None]
  values = [str(v).encode() for v in rng.integers(10 ** (digits - 1), 10**digits, len(names))]
  asked = int(rng.integers(len(names)))
  needles = [needle(v, k) for v, k in zip(values, names)]
  tail = question(names[asked]) + values[asked]
  room = length + 1 - sum(map(len, needles)) - len(tail)
  if room < 0:
    raise ConfigError(f"a needle-in-a-haystack example of {keys} key(s) needs more than length={length} bytes")
  start = int(rng.integers(0, len(hay) - room + 1))
  room = round(room * fill)
  text = hay[start : start + room].tobytes()
  cuts = np.sort(rng.integers(0, room + 1, len(needles)))
  parts, at, where = [], 0, 0
  for i, (cut, piece) in enumerate(zip(cuts, needles)):
    parts.append(text[at:cut])
    if i == asked:
      where = sum(map(len, parts))
    parts.append(piece)
    at = cut
  parts.append(text[at:])
  body = b"".join(parts)
  return body + tail, where / len(body)


def sample(
  rng: np.random.Generator,
  haystack: bytes,
  batch: int,
  length: int,
  keys: int = 0,
  digits: int = 5,
  fill: float = 1.0,
) -> NiahBatch:
  """A batch of `batch` examples of context `length` (see the module docstring).

  Args:
    rng: the source of randomness (advanced by the call).
    haystack: the text haystacks are cut from (longer than an example).
    keys: 0 for the single-needle task, else the number of key -> number needles.
    digits: digits of each number (the first is not zero).
    fill: the fraction in [0, 1] of the haystack text each example holds;
      below 1 the examples end in padding (`real` False there).
  """
  if keys < 0 or digits < 1:
    raise ConfigError(f"keys={keys} must be >= 0 and digits={digits} >= 1")
  if not 0.0 <= fill <= 1.0:
    raise ConfigError(f"fill={fill} must lie in [0, 1]")
  hay = np.frombuffer(haystack, np.uint8)
  if len(hay) < length + 1:
    raise ConfigError(f"the haystack text ({len(hay)} bytes) is shorter than one example ({length + 1} bytes)")
  tokens = np.zeros((batch, length + 1), np.int32)
  real = np.zeros((batch, length), bool)
  answer = np.zeros((batch, length), bool)
  depth = np.zeros((batch,), np.float64)
  for b in range(batch):
    text, depth[b] = _example(rng, hay, length, keys, digits, fill)
    n = len(text)  # inputs 0..n-2 are real; the targets n-1-digits..n-2 are the answer digits
    tokens[b, :n] = np.frombuffer(text, np.uint8)
    real[b, : n - 1] = True
    answer[b, n - 1 - digits : n - 1] = True
  return NiahBatch(tokens, answer, depth, real)
