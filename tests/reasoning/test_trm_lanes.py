"""TRM learners as engine lanes: each lane of a vmapped run equals the same learner run alone."""

import jax
import numpy as np
import pytest

from contlearn import engine
from contlearn.puzzles import PuzzleConfig, PuzzleFeed, puzzle_kind, splits
from contlearn.reasoning import trm


def _leaves(tree):
  return [
    jax.random.key_data(a) if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key) else a for a in jax.tree.leaves(tree)
  ]


pytestmark = pytest.mark.slow  # lanes vs single runs: make test-all


def test_each_lane_equals_the_same_run_alone():
  train, _ = splits(PuzzleConfig(kind="sudoku", size=4, train=8, test=0, min_clues=4))
  kind = puzzle_kind(train.config)
  cfg = trm.TRMConfig(vocab=kind.vocab, length=kind.length, puzzles=8, width=8, layers=1, max_segments=2, lr=1e-2)
  learner = trm.trm_learner(cfg, batch=4)
  feed = PuzzleFeed(train, steps=3, batch=4, seed=0)
  blocks = [feed.next(p)[0] for p in range(2)]
  # vmapped and single matmuls round differently; the recursion's many post-norm layers amplify that to ~1e-5
  close = dict(rtol=1e-3, atol=1e-4)
  keys = jax.random.split(jax.random.key(0), 2)

  lanes = engine.init(learner, keys, lanes=True)
  run = engine.compile(learner, lanes, lanes=True)
  lane_metrics = []
  for block in blocks:
    lanes, metrics = run(lanes, engine.place_xs(block))
    lane_metrics.append(metrics)

  alone_run = None
  for i in range(2):
    alone = engine.init(learner, keys[i])
    alone_run = alone_run or engine.compile(learner, alone)
    for block, metrics in zip(blocks, lane_metrics):
      alone, alone_metrics = alone_run(alone, engine.place_xs(block))
      for a, b in zip(_leaves(alone_metrics), _leaves(metrics)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b[i]), **close)
    for a, b in zip(_leaves(alone), _leaves(lanes)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b[i]), **close)
  assert not np.allclose(np.asarray(lanes.params["embed"][0]), np.asarray(lanes.params["embed"][1]))
