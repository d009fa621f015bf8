"""CompressARC's answer selection: two scored candidates per step, a ballot over all steps.

On the device, each training step turns the decoder's test outputs into two
candidates: the current sample and an exponential moving average (decay 0.97,
from zeros, updated before it is read) of the logits and mask logits. A
candidate is, per test example,

- the argmax colour of every canvas cell;
- the best crop: along x, the slice [a, a + h) with the highest score
  `sum_inside u - sum_outside u` of the mask logits u; h is the predicted
  output height when the puzzle implies the output size (every train output
  has its input's size, or all train outputs share one), otherwise every h in
  1..n_x is searched, the first highest (smallest h, then smallest a) winning;
  likewise along y;
- its uncertainty: the mean over the crop of `logsumexp_c l - max_c l`.

Its score is `-10 x` the uncertainty averaged over the test examples, 10 lower
before step 150 and 4 lower for the moving average.

On the host, a `Ballot` renders each candidate in ARC colours and adds its
score to that answer's total with logaddexp; the two attempts are the top two
totals, kept by the reference implementation's update rule (an answer already
first changes nothing; another replaces the second when its total is at
least the second's, and then swaps with the first when at least the
first's). Both start as a placeholder (2x2 black grids) with no total.

>>> from contlearn.compress_arc import task
>>> p = task.puzzle("demo", {"train": [{"input": [[1]], "output": [[2]]}], "test": [{"input": [[2]]}]}, [[[1]]])
>>> ballot = Ballot(p)
>>> for answer, score in [([[1]], -3.0), ([[2]], -2.0), ([[1]], -2.2)]:
...   ballot.vote((tuple(map(tuple, answer)),), score)
>>> ballot.attempts
((((1,),),), (((2,),),))
>>> ballot.passes()
(1.0, 1.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from contlearn.compress_arc import task
from contlearn.compress_arc.loss import slice_scores
from contlearn.compress_arc.puzzle import PuzzleArrays, Signature

EMA_DECAY = 0.97
UNCERTAINTY_WEIGHT = 10.0
EARLY_STEPS, EARLY_PENALTY = 150, 10.0  # candidates before this step score lower
EMA_PENALTY = 4.0
SAMPLE, AVERAGE = 0, 1  # the candidate axis


class Average(NamedTuple):
  """The moving average of the test outputs (a pytree; zeros at first).

  logits  float32 [n_test, n_colors + 1, n_x, n_y]
  x_mask  float32 [n_test, n_x]
  y_mask  float32 [n_test, n_y]
  """

  logits: jax.Array
  x_mask: jax.Array
  y_mask: jax.Array


class Candidates(NamedTuple):
  """One step's two candidates, the sample (index 0) and the moving average (1).

  colors   int32   [2, n_test, n_x, n_y]  argmax colour index per cell
  x_range  int32   [2, n_test, 2]         the crop's (start, end) along x
  y_range  int32   [2, n_test, 2]         along y
  score    float32 [2]
  """

  colors: jax.Array
  x_range: jax.Array
  y_range: jax.Array
  score: jax.Array


def init(sig: Signature) -> Average:
  """The moving average before the first step: zeros."""
  return Average(
    jnp.zeros((sig.n_test, sig.n_colors + 1, sig.n_x, sig.n_y), jnp.float32),
    jnp.zeros((sig.n_test, sig.n_x), jnp.float32),
    jnp.zeros((sig.n_test, sig.n_y), jnp.float32),
  )


def predictions(sig: Signature, logits: jax.Array, x_mask: jax.Array, y_mask: jax.Array) -> Average:
  """The test examples' output grids of the decoder's outputs (logits [E, C, X, Y, 2], masks [E, X|Y, 2])."""
  return Average(logits[sig.n_train :, ..., 1], x_mask[sig.n_train :, :, 1], y_mask[sig.n_train :, :, 1])


def best_slice(mask: jax.Array, length: jax.Array | None) -> jax.Array:
  """The highest-scoring slice of mask logits `mask` [N]: int32 [2] (start, end).

  `length` int32 []: only slices of that length; None: every length, the first
  highest in (length, start) order.
  """
  n = mask.shape[-1]
  scores, fits = slice_scores(mask)  # [N(length), N(start)]
  if length is None:
    best = jnp.argmax(jnp.where(fits, scores, -jnp.inf))
    start, size = best % n, best // n + 1
  else:
    row = scores[length - 1]
    start, size = jnp.argmax(jnp.where(jnp.arange(n) <= n - length, row, -jnp.inf)), length
  return jnp.stack([start, start + size]).astype(jnp.int32)


def _candidate(sig: Signature, lengths: jax.Array | None, outputs: Average):
  """(colors [n_test, X, Y], x_range, y_range [n_test, 2], uncertainty []) of one candidate."""
  logits = outputs.logits
  colors = jnp.argmax(logits, axis=1).astype(jnp.int32)
  cell_uncertainty = jax.nn.logsumexp(logits, axis=1) - jnp.max(logits, axis=1)  # [n_test, X, Y]
  if lengths is None:
    x_range = jax.vmap(best_slice, (0, None))(outputs.x_mask, None)
    y_range = jax.vmap(best_slice, (0, None))(outputs.y_mask, None)
  else:
    x_range = jax.vmap(best_slice)(outputs.x_mask, lengths[:, 0])
    y_range = jax.vmap(best_slice)(outputs.y_mask, lengths[:, 1])
  in_x = (jnp.arange(sig.n_x)[None] >= x_range[:, :1]) & (jnp.arange(sig.n_x)[None] < x_range[:, 1:])
  in_y = (jnp.arange(sig.n_y)[None] >= y_range[:, :1]) & (jnp.arange(sig.n_y)[None] < y_range[:, 1:])
  crop = in_x[:, :, None] & in_y[:, None, :]
  area = (x_range[:, 1] - x_range[:, 0]) * (y_range[:, 1] - y_range[:, 0])
  uncertainty = jnp.sum(jnp.where(crop, cell_uncertainty, 0.0), axis=(1, 2)) / area
  return colors, x_range, y_range, jnp.mean(uncertainty)


def track(
  sig: Signature,
  arrays: PuzzleArrays,
  average: Average,
  logits: jax.Array,
  x_mask: jax.Array,
  y_mask: jax.Array,
  step: jax.Array,
) -> tuple[Average, Candidates]:
  """One step of answer tracking: the updated moving average and this step's two candidates.

  sig      the puzzle's Signature (static)
  arrays   its PuzzleArrays (traced): the predicted output shapes when the signature implies them
  average  the moving average so far (`init` at first)
  logits   float32 [n_test, n_colors + 1, n_x, n_y]  the test outputs' colour logits (`predictions`)
  x_mask   float32 [n_test, n_x], y_mask float32 [n_test, n_y]  their mask logits
  step     int32 [] the training step (traced)
  """
  current = Average(logits, x_mask, y_mask)
  average = jax.tree.map(lambda a, c: EMA_DECAY * a + (1 - EMA_DECAY) * c, average, current)
  lengths = arrays.shapes[sig.n_train :, 1] if sig.in_out_same_size or sig.all_out_same_size else None
  colors, x_range, y_range, uncertainty = (
    jnp.stack(parts) for parts in zip(_candidate(sig, lengths, current), _candidate(sig, lengths, average))
  )
  early = jnp.where(jnp.asarray(step) < EARLY_STEPS, EARLY_PENALTY, 0.0)
  score = -UNCERTAINTY_WEIGHT * uncertainty - early - jnp.array([0.0, EMA_PENALTY], jnp.float32)
  return average, Candidates(colors, x_range, y_range, score.astype(jnp.float32))


Answer = tuple[task.Grid, ...]  # one grid per test example, in ARC colours


class Ballot:
  """The host-side tally of one puzzle's candidates (the module docstring's rule).

  `add` takes a puzzle's `Candidates` as numpy arrays, one step or many
  (leading axes, in step order; from lanes, take the puzzle's lane first);
  `attempts` are the two answers; `passes` scores them.
  """

  def __init__(self, puzzle: task.Puzzle):
    self.puzzle = puzzle
    self.totals: dict[Answer, float] = {}
    placeholder = tuple(((0, 0), (0, 0)) for _ in range(puzzle.signature.n_test))
    self.first: Answer = placeholder
    self.second: Answer = placeholder

  def add(self, candidates: Candidates) -> None:
    """Votes for each candidate, step by step, the sample before the moving average."""
    sig, colours = self.puzzle.signature, self.puzzle.colors
    grids = np.asarray(candidates.colors).reshape(-1, sig.n_test, sig.n_x, sig.n_y)
    x_ranges = np.asarray(candidates.x_range).reshape(-1, sig.n_test, 2)
    y_ranges = np.asarray(candidates.y_range).reshape(-1, sig.n_test, 2)
    scores = np.asarray(candidates.score).reshape(-1)
    for grid, x_range, y_range, score in zip(grids, x_ranges, y_ranges, scores):
      self.vote(tuple(task.render(colours, *parts) for parts in zip(grid, x_range, y_range)), float(score))

  def vote(self, answer: Answer, score: float) -> None:
    """Adds `score` to `answer`'s total (logaddexp) and updates the top two."""
    self.totals[answer] = float(np.logaddexp(self.totals.get(answer, -np.inf), score))
    if answer == self.first:
      return
    if self.totals[answer] >= self.totals.get(self.second, -np.inf):
      self.second = answer
      if self.totals[answer] >= self.totals.get(self.first, -np.inf):
        self.first, self.second = answer, self.first

  @property
  def attempts(self) -> tuple[Answer, Answer]:
    """The first and second attempts."""
    return self.first, self.second

  def passes(self, solution: Sequence[task.Grid] | None = None) -> tuple[float, float]:
    """(pass@1, pass@2): the fraction of test examples whose first attempt, or either attempt, is right.

    As the ARC scoring does, each test example counts on its own; `solution`
    defaults to the puzzle's.
    """
    solution = self.puzzle.solution if solution is None else solution
    if solution is None:
      raise ValueError(f"puzzle {self.puzzle.task_id}: no solution to score against")
    truth = [tuple(tuple(int(c) for c in row) for row in grid) for grid in solution]
    first = [a == t for a, t in zip(self.first, truth)]
    either = [a == t or b == t for a, b, t in zip(self.first, self.second, truth)]
    return float(np.mean(first)), float(np.mean(either))
