"""One ARC puzzle as CompressARC sees it: a static signature and per-puzzle arrays.

The signature is everything that shapes the compiled program (the decoder's
tensors, the loss's branches); two puzzles with equal signatures train as
lanes of one program, their arrays stacked on a leading lane axis.

Axes: examples are the train pairs then the test pairs (`n_examples =
n_train + n_test`); colours are indices into the puzzle's sorted colours,
0 = black (always present); the last axis of `problem`, `masks` and `shapes`
picks the input (0) or output (1) grid.
"""

from __future__ import annotations

from typing import NamedTuple

import jax


class Signature(NamedTuple):
  """The static shape of a puzzle (hashable; a compile key)."""

  n_train: int
  n_test: int
  n_colors: int  # colours other than black
  n_x: int  # the largest grid height over all grids
  n_y: int  # the largest grid width
  in_out_same_size: bool  # every train output has its input's shape
  all_in_same_size: bool  # every input has one shape
  all_out_same_size: bool  # every train output has one shape

  @property
  def n_examples(self) -> int:
    return self.n_train + self.n_test


class PuzzleArrays(NamedTuple):
  """A puzzle's data (a pytree; lanes stack it on a leading axis).

  problem  int32   [n_examples, n_x, n_y, 2]  colour index per cell (0 outside a grid and for the test outputs)
  masks    float32 [n_examples, n_x, n_y, 2]  1 inside each grid (test outputs: their predicted shape)
  shapes   int32   [n_examples, 2, 2]         (example, input/output, x/y) grid shapes; a test output's
                                              shape is predicted as the official code does
  """

  problem: jax.Array
  masks: jax.Array
  shapes: jax.Array
