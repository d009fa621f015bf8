"""TRM's carry: halted rows reset and refilled, the others untouched; its config and baseline."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reasoning_fixtures import TRM_CFG, B, random_carry, trm_params_with_heads

from contlearn import engine
from contlearn.field_checks import FieldError
from contlearn.puzzles.feed import PuzzleBlock
from contlearn.reasoning import trm

CFG = TRM_CFG


def test_halted_rows_are_reset_and_refilled_the_others_untouched():
  carry = random_carry(CFG, jax.random.key(5), halted=(True, False, True))
  candidates = PuzzleBlock(
    inputs=jnp.full((B, CFG.length), 4, jnp.int32), labels=jnp.full((B, CFG.length), 2, jnp.int32), ids=jnp.full(B, 2)
  )
  init = trm_params_with_heads(CFG)["init"]
  new = trm.refill(carry, candidates, init)
  for row in (0, 2):
    assert (np.asarray(new.y[row]) == np.asarray(init["y"])).all() and (
      np.asarray(new.z[row]) == np.asarray(init["z"])
    ).all()
    assert int(new.steps[row]) == 0 and int(new.ids[row]) == 2
    assert (np.asarray(new.inputs[row]) == 4).all() and (np.asarray(new.labels[row]) == 2).all()
  for field in trm.Carry._fields:  # row 1 bit-equal
    assert np.array_equal(np.asarray(getattr(new, field)[1]), np.asarray(getattr(carry, field)[1])), field


@pytest.mark.slow
def test_a_row_keeps_its_puzzle_until_it_halts_then_takes_the_step_s_candidate():
  cfg = dataclasses.replace(CFG, cycles=1, latent_steps=1, max_segments=2, explore=0.0)
  learner = trm.trm_learner(cfg, batch=B)
  state = engine.init(learner, jax.random.key(0))
  rng = np.random.default_rng(0)
  block = PuzzleBlock(
    inputs=rng.integers(0, cfg.vocab, (3, B, cfg.length), dtype=np.int32),
    labels=rng.integers(1, cfg.vocab, (3, B, cfg.length), dtype=np.int32),
    ids=rng.integers(0, cfg.puzzles, (3, B), dtype=np.int32),
  )
  seen, step = [], jax.jit(learner.step)
  for t in range(3):
    state, metrics = step(state, jax.tree.map(lambda a: a[t], block), None)
    seen.append((np.asarray(state.memory.inputs), np.asarray(state.memory.steps), np.asarray(state.memory.halted)))
  # q_halt starts at -5, so rows halt only at max_segments = 2.
  assert (seen[0][0] == block.inputs[0]).all() and (seen[0][1] == 1).all() and not seen[0][2].any()
  assert (seen[1][0] == block.inputs[0]).all() and (seen[1][1] == 2).all() and seen[1][2].all()
  assert (seen[2][0] == block.inputs[2]).all() and (seen[2][1] == 1).all()
  assert float(metrics.halted) == 0.0


def test_single_pass_is_one_round_of_one_update_and_one_segment():
  base = trm.single_pass(CFG)
  assert (base.cycles, base.latent_steps, base.max_segments) == (1, 1, 1)
  shapes = lambda cfg: jax.eval_shape(functools.partial(trm.init_params, cfg=cfg), jax.random.key(0))  # noqa: E731
  assert shapes(base) == shapes(CFG)


def test_solve_returns_an_answer_per_segment():
  params = trm_params_with_heads(CFG)
  carry = random_carry(CFG, jax.random.key(7))
  answers = trm.solve(params, CFG, carry.inputs, carry.ids)
  assert answers.shape == (CFG.max_segments, B, CFG.length) and answers.dtype == jnp.int32


@pytest.mark.parametrize(
  "field, value, message",
  [("cycles", 0, "an integer > 0"), ("explore", 1.0, "a probability below 1"), ("ema_rate", 1.0, "strictly between")],
)
def test_config_refuses_bad_values(field, value, message):
  with pytest.raises(FieldError, match=message):
    dataclasses.replace(CFG, **{field: value})
