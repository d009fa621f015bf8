"""HRM's carry: halted rows reset and refilled, the others untouched; the Q-learning target; its config."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reasoning_fixtures import B, random_carry

from contlearn import engine
from contlearn.field_checks import FieldError
from contlearn.puzzles.feed import PuzzleBlock
from contlearn.reasoning import hrm
from contlearn.reasoning.segments import Carry, refill

CFG = hrm.HRMConfig(vocab=5, length=6, puzzles=4, width=8, layers=1, expansion=2, high_cycles=2, low_steps=3)


def test_halted_rows_are_reset_to_the_initial_latents_and_refilled_the_others_untouched():
  carry = random_carry(CFG, jax.random.key(5), halted=(True, False, True))
  candidates = PuzzleBlock(
    inputs=jnp.full((B, CFG.length), 4, jnp.int32), labels=jnp.full((B, CFG.length), 2, jnp.int32), ids=jnp.full(B, 2)
  )
  init = jax.jit(hrm.init_params, static_argnums=1)(jax.random.key(1), CFG)["init"]
  new = refill(carry, candidates, init)
  for row in (0, 2):
    assert (np.asarray(new.y[row]) == np.asarray(init["y"])).all()  # z_H
    assert (np.asarray(new.z[row]) == np.asarray(init["z"])).all()  # z_L
    assert int(new.steps[row]) == 0 and int(new.ids[row]) == 2
    assert (np.asarray(new.inputs[row]) == 4).all() and (np.asarray(new.labels[row]) == 2).all()
  for field in Carry._fields:  # row 1 bit-equal
    assert np.array_equal(np.asarray(getattr(new, field)[1]), np.asarray(getattr(carry, field)[1])), field


@pytest.mark.slow
def test_a_row_keeps_its_puzzle_until_it_halts_then_takes_the_step_s_candidate():
  cfg = dataclasses.replace(CFG, high_cycles=1, low_steps=1, max_segments=2, explore=0.0)
  learner = hrm.hrm_learner(cfg, batch=B)
  state = engine.init(learner, jax.random.key(0))
  rng = np.random.default_rng(0)
  block = PuzzleBlock(
    inputs=rng.integers(0, cfg.vocab, (4, B, cfg.length), dtype=np.int32),
    labels=rng.integers(1, cfg.vocab, (4, B, cfg.length), dtype=np.int32),
    ids=rng.integers(0, cfg.puzzles, (4, B), dtype=np.int32),
  )
  seen, step = [], jax.jit(learner.step)
  for t in range(4):
    state, _ = step(state, jax.tree.map(lambda a: a[t], block), None)
    seen.append((np.asarray(state.memory.inputs), np.asarray(state.memory.steps), np.asarray(state.memory.halted)))
  assert (seen[0][0] == block.inputs[0]).all() and (seen[0][1] == 1).all()  # every row filled at the first step
  assert seen[1][2][seen[1][1] == 2].all()  # max_segments = 2 ends every puzzle
  for t in range(1, 4):
    inputs, steps, _ = seen[t]
    was_halted = seen[t - 1][2]
    expected = np.where(was_halted[:, None], block.inputs[t], seen[t - 1][0])
    assert (inputs == expected).all(), t
    assert (steps == np.where(was_halted, 1, seen[t - 1][1] + 1)).all(), t


def test_the_q_continue_target_on_a_hand_made_example():
  next_halt = jnp.array([2.0, -1.0, 0.5, 3.0])
  next_continue = jnp.array([1.0, 3.0, 4.0, -2.0])
  last = jnp.array([False, False, True, True])
  # max(q'_halt, q'_continue) before the last segment, q'_halt on it.
  expected = 1 / (1 + np.exp(-np.array([2.0, 3.0, 0.5, 3.0])))
  np.testing.assert_allclose(np.asarray(hrm.q_target(next_halt, next_continue, last)), expected, rtol=1e-6)


@pytest.mark.slow
def test_the_target_is_read_from_an_extra_segment_on_the_new_latents():
  params = jax.jit(hrm.init_params, static_argnums=1)(jax.random.key(1), CFG)
  params["q_head"]["w"] = jax.random.normal(jax.random.key(2), (CFG.width, 2))
  carry = random_carry(CFG, jax.random.key(3))._replace(
    steps=jnp.array([0, 3, 7], jnp.int32)
  )  # row 2: its last segment
  _, aux = jax.jit(hrm.segment_loss, static_argnums=1)(params, CFG, carry)
  following = carry._replace(y=aux["y"], z=aux["z"])
  _, _, _, next_halt, next_continue = jax.jit(hrm.segment, static_argnums=1)(params, CFG, following)
  next_halt, next_continue = np.asarray(next_halt), np.asarray(next_continue)
  best = np.where([False, False, True], next_halt, np.maximum(next_halt, next_continue))
  np.testing.assert_allclose(np.asarray(aux["target"]), 1 / (1 + np.exp(-best)), rtol=1e-5)


def test_solve_returns_an_answer_per_segment():
  params = jax.jit(hrm.init_params, static_argnums=1)(jax.random.key(1), CFG)
  carry = random_carry(CFG, jax.random.key(7))
  answers = hrm.solve(params, CFG, carry.inputs, carry.ids)
  assert answers.shape == (CFG.max_segments, B, CFG.length) and answers.dtype == jnp.int32


@pytest.mark.parametrize(
  "field, value, message",
  [
    ("high_cycles", 0, "an integer > 0"),
    ("low_steps", 0, "an integer > 0"),
    ("explore", 1.0, "a probability below 1"),
    ("ema_rate", 1.0, "strictly between"),
  ],
)
def test_config_refuses_bad_values(field, value, message):
  with pytest.raises(FieldError, match=message):
    dataclasses.replace(CFG, **{field: value})
