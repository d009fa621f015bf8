"""Voting over the augmentations of an ARC test input: predictions mapped back, counted, ranked; pass@k.

A test set of `arc_sets` holds each test input of each evaluation task
under every augmentation of its task. A model's prediction for one of them
(a canvas, int `[L]`) is decoded at the puzzle's origin (`arc_canvas.decode`,
None when malformed) and mapped back by the inverse of the puzzle's
augmentation (`restore`). The grids restored for one test input are then
votes:

- a candidate is a distinct grid (shape and colours); its votes are the
  predictions that restore to it, malformed ones vote for nothing;
- candidates rank by votes, most first; then, when `confidence` is given
  (one number per prediction, such as sigmoid(q_halt)), by the mean
  confidence of their votes, highest first; then by the first row of the set
  that voted for them (the identity augmentation comes first in a task's
  rows);
- pass@k: the true output is one of the first k candidates. `pass_at`
  averages over the test inputs of each task, then over tasks, as the
  official ARC score does (a task with two test inputs counts half for each).

The official TRM evaluator ranks the same way: by votes, then by the mean
sigmoid(q_halt) of the votes, then by first appearance. Pass probabilities,
not logits, as `confidence` to match it.

>>> from contlearn.puzzles import PuzzleConfig, arc, arc_sets
>>> grid = np.array([[1, 2], [0, 1]])
>>> task = arc.ArcTask("t", ((grid, grid.T),), ((grid.T, grid),))
>>> _, test = arc_sets.build(PuzzleConfig(kind="arc", size=4, augmentations=3), [], [task])
>>> predictions = test.labels.copy()                  # every augmentation right ...
>>> predictions[1] = 0                                # ... but one, malformed
>>> [v] = vote(test, predictions)
>>> v.votes.tolist(), v.invalid, v.rank, v.candidates[0].tolist()
([2], 1, 0, [[1, 2], [0, 1]])
>>> pass_at([v], 1)
1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from contlearn.puzzles import arc, arc_canvas
from contlearn.puzzles.puzzle_set import PuzzleSet


class Vote(NamedTuple):
  """The vote on one test input.

  Attributes:
    task, example: the test input (`meta["task"]`, `meta["example"]` of its puzzles).
    candidates: the distinct restored grids, int32 `[H, W]` each, best first.
    votes: int `[C]`, predictions restored to each candidate.
    confidence: float `[C]`, the mean confidence of each candidate's votes (NaN without confidences).
    invalid: predictions that were malformed (no candidate).
    answer: int32 `[H, W]`, the true output.
    rank: the answer's place among the candidates, -1 when no prediction gives it.
  """

  task: int
  example: int
  candidates: tuple[np.ndarray, ...]
  votes: np.ndarray
  confidence: np.ndarray
  invalid: int
  answer: np.ndarray
  rank: int

  def passed(self, k: int) -> bool:
    """pass@k: the answer is one of the first k candidates."""
    return 0 <= self.rank < k


def restore(puzzles: PuzzleSet, row: int, canvas: np.ndarray) -> np.ndarray | None:
  """int32 `[H, W]`: `canvas` (int `[L]`, a prediction for puzzle `row`) decoded and un-augmented; None if malformed."""
  meta = puzzles.meta
  grid = arc_canvas.decode(canvas, puzzles.config.size, int(meta["row"][row]), int(meta["col"][row]))
  if grid is None:
    return None
  return arc.apply(arc.inverse(arc.Augmentation(int(meta["dihedral"][row]), meta["colours"][row])), grid)


def _key(grid: np.ndarray) -> bytes:
  return np.array(grid.shape, np.int32).tobytes() + grid.astype(np.int32).tobytes()


def vote(test: PuzzleSet, predictions: np.ndarray, confidence: np.ndarray | None = None) -> list[Vote]:
  """One `Vote` per test input of `test` (an `arc_sets` test split), in the order of the set.

  Args:
    test: the test split.
    predictions: int `[P, L]`, a predicted canvas for every puzzle of `test`.
    confidence: float `[P]` or None: a confidence per prediction, the
      second ranking key (module docstring).
  """
  predictions = np.asarray(predictions)
  if predictions.shape != test.labels.shape or (confidence is not None and np.shape(confidence) != (len(test),)):
    raise ValueError(
      f"predictions {predictions.shape} and confidence {np.shape(confidence)}: must be {test.labels.shape} and "
      f"({len(test)},), one per test puzzle"
    )
  groups: dict[tuple[int, int], list[int]] = {}
  for row, key in enumerate(zip(test.meta["task"].tolist(), test.meta["example"].tolist())):
    groups.setdefault(key, []).append(row)
  votes = []
  for (task, example), rows in groups.items():
    grids, count, total, first, invalid = {}, {}, {}, {}, 0
    for row in rows:
      grid = restore(test, row, predictions[row])
      if grid is None:
        invalid += 1
        continue
      key = _key(grid)
      if key not in grids:
        grids[key], count[key], total[key], first[key] = grid, 0, 0.0, row
      count[key] += 1
      total[key] += 0.0 if confidence is None else float(confidence[row])
    mean = {key: total[key] / count[key] if confidence is not None else np.nan for key in grids}
    order = sorted(grids, key=lambda k: (-count[k], 0.0 if confidence is None else -mean[k], first[k]))
    answer = restore(test, rows[0], test.labels[rows[0]])
    rank = order.index(_key(answer)) if _key(answer) in order else -1
    votes.append(
      Vote(
        task,
        example,
        tuple(grids[k] for k in order),
        np.array([count[k] for k in order], np.int64),
        np.array([mean[k] for k in order], np.float64),
        invalid,
        answer,
        rank,
      )
    )
  return votes


def pass_at(votes: Sequence[Vote], k: int) -> float:
  """The ARC score at k: per task the fraction of its test inputs passed at k, averaged over tasks."""
  per_task: dict[int, list[bool]] = {}
  for v in votes:
    per_task.setdefault(v.task, []).append(v.passed(k))
  return float(np.mean([np.mean(passed) for passed in per_task.values()])) if per_task else float("nan")
