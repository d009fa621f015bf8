"""The multitensor system: one tensor per admissible subset of the puzzle's axes.

A puzzle has five axes, in this order: example (E = n_train + n_test), colour
(C = n_colors, black excluded), direction (8), x (n_x) and y (n_y). A subset
of them is a `Dims` (five flags); it is admissible when

    (x or y) implies example,   and   at least one of colour, direction, x, y,

which gives 18 tensors, named by the letters of their axes ("c", "ecxy",
"edx", ...). A tensor of dims D has shape [the present axes in that order...,
channels], with 16 channels when D has no direction axis and 8 when it has
one. A *multitensor* is a dict {name: float32 array [..., channels]}: the
residual stream of the decoder, one array per admissible dims.

Directions are numbered counter-clockwise in the (x, y) plane:
0 = +x, 1 = +x+y, 2 = +y, 3 = -x+y, 4 = -x, 5 = -x-y, 6 = -y, 7 = +x-y.

>>> sig = Signature(2, 1, 3, 5, 4, True, False, False)
>>> [d.name for d in ALL_DIMS][:5]
['c', 'ec', 'd', 'ed', 'cd']
>>> shape(from_name("ecdxy"), sig), channels(from_name("ecdxy")), len(ALL_DIMS)
((3, 3, 8, 5, 4), 8, 18)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax

from contlearn.compress_arc.puzzle import Signature

N_DIRECTIONS = 8
LETTERS = "ecdxy"

Multitensor = dict[str, jax.Array]


class Dims(NamedTuple):
  """Which of the five axes a tensor has (static, hashable)."""

  example: bool
  color: bool
  direction: bool
  x: bool
  y: bool

  @property
  def name(self) -> str:
    """The stable key of this tensor, its axis letters in order ("ecdxy", "ex", ...)."""
    return "".join(letter for letter, present in zip(LETTERS, self) if present)

  @property
  def valid(self) -> bool:
    return (self.example or not (self.x or self.y)) and any(self[1:])

  @property
  def n_axes(self) -> int:
    return sum(self)

  def axis(self, letter: str) -> int:
    """The position of axis `letter` in this tensor's shape (it must be present)."""
    index = LETTERS.index(letter)
    if not self[index]:
      raise ValueError(f"tensor {self.name!r} has no {letter!r} axis")
    return sum(self[:index])

  def swap_xy(self) -> Dims:
    """The dims with the x and y flags exchanged."""
    return self._replace(x=self.y, y=self.x)

  def contains(self, other: Dims) -> bool:
    """Whether every axis of `other` is an axis of this tensor."""
    return all(mine or not theirs for mine, theirs in zip(self, other))


@functools.cache
def from_name(name: str) -> Dims:
  """The dims of a tensor name ("ecxy" -> Dims(True, True, False, True, True))."""
  dims = Dims(*(letter in name for letter in LETTERS))
  if dims.name != name or not dims.valid:
    raise ValueError(f"{name!r} is not an admissible tensor name")
  return dims


def _enumerate() -> tuple[Dims, ...]:
  # Bit i of the counter is axis i, so the order is the one the reference implementation iterates in.
  flags = (Dims(*(bool((i >> bit) & 1) for bit in range(5))) for i in range(32))
  return tuple(dims for dims in flags if dims.valid)


ALL_DIMS: tuple[Dims, ...] = _enumerate()
"""The 18 admissible dims, in the order of the 5-bit counter with the example axis as bit 0."""

NAMES: tuple[str, ...] = tuple(dims.name for dims in ALL_DIMS)


def shape(dims: Dims, sig: Signature) -> tuple[int, ...]:
  """The tensor's shape without its channel axis."""
  lengths = (sig.n_examples, sig.n_colors, N_DIRECTIONS, sig.n_x, sig.n_y)
  return tuple(length for length, present in zip(lengths, dims) if present)


def channels(dims: Dims, plain: int = 16, directional: int = 8) -> int:
  """Residual-stream channels of a tensor: `directional` when it has a direction axis, else `plain`."""
  return directional if dims.direction else plain


def xy_representative(dims: Dims) -> Dims:
  """The tensor whose weights `dims` uses: a tensor with y but not x borrows those of its x twin."""
  return dims.swap_xy() if dims.y and not dims.x else dims


def map_dims(fn: Callable[..., jax.Array], *multitensors: Multitensor) -> Multitensor:
  """{name: fn(dims, *(m[name] for m in multitensors))} over every tensor of the first multitensor."""
  return {name: fn(from_name(name), *(m[name] for m in multitensors)) for name in multitensors[0]}
