"""TRM and HRM through `run_folder.fit` on 4x4 Sudoku: they learn, and a stopped and resumed run equals a whole one."""

import dataclasses

import jax
import numpy as np
import pytest

from contlearn import engine, loop, run_folder
from contlearn.puzzles import PuzzleConfig, PuzzleFeed, puzzle_kind, splits
from contlearn.reasoning import hrm, trm

STEPS, BATCH, BLOCKS = 4, 8, 6

pytestmark = pytest.mark.slow  # three compiled runs: make test-all


MODELS = {"trm": (trm.TRMConfig, trm.trm_learner), "hrm": (hrm.HRMConfig, hrm.hrm_learner)}


@pytest.fixture(scope="module", params=sorted(MODELS))
def sudoku(request):
  train, _ = splits(PuzzleConfig(kind="sudoku", size=4, train=16, test=0, min_clues=4))
  kind = puzzle_kind(train.config)
  config_class, make_learner = MODELS[request.param]
  cfg = config_class(
    vocab=kind.vocab, length=kind.length, puzzles=16, width=16, layers=1, max_segments=4, lr=3e-3, weight_decay=0.0
  )
  return train, cfg, make_learner


class Losses(loop.Hook):
  def __init__(self):
    self.blocks = []

  def on_metrics(self, loop, block, units, new_units, metrics):
    self.blocks.append(np.asarray(metrics.loss))


def _fit(out, sudoku, *hooks, resume=False):
  train, cfg, make_learner = sudoku
  learner = make_learner(cfg, BATCH)
  feed = PuzzleFeed(train, steps=STEPS, batch=BATCH, seed=0, blocks=BLOCKS)
  init = lambda: engine.init(learner, jax.random.key(0))  # noqa: E731
  config = {"model": dataclasses.asdict(cfg), "batch": BATCH}
  return run_folder.fit(
    learner, init, feed, out, config=config, hooks=hooks, resume=resume, checkpoint_every=1, keep=10
  )


def test_training_lowers_the_loss_and_a_resumed_run_is_the_uninterrupted_one(tmp_path, sudoku):
  losses = Losses()
  whole = _fit(tmp_path / "whole", sudoku, losses)
  assert whole.block == BLOCKS and len(losses.blocks) == BLOCKS
  first, last = losses.blocks[0].mean(), losses.blocks[-1].mean()
  assert np.isfinite(first) and last < first - 0.05, (first, last)

  stopped = _fit(tmp_path / "split", sudoku, loop.StopAfter(2 * STEPS))
  assert stopped.block == 2
  resumed = _fit(tmp_path / "split", sudoku, resume=True)
  assert resumed.block == BLOCKS
  for a, b in zip(jax.tree.leaves(whole.state), jax.tree.leaves(resumed.state)):
    if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
      a, b = jax.random.key_data(a), jax.random.key_data(b)
    assert np.array_equal(np.asarray(a), np.asarray(b))
