"""Latent levels on their own clocks (contlearn.clocks) against hand-written loops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contlearn import clocks


def _levels(w):
  """Three levels of periods 1, 2, 4 whose updates do not commute: each reads the others."""
  return (
    clocks.Level(1, lambda z: jnp.tanh(w[0] * z[0] + z[1] - z[2])),
    clocks.Level(2, lambda z: jnp.sin(w[1] * z[1] + z[0])),
    clocks.Level(4, lambda z: w[2] * z[2] + z[1] * z[0]),
  )


def _by_hand(w, z, ticks):
  """The same updates written out: at tick t, level 0, then level 1 if t is even, then level 2 if 4 | t."""
  a, b, c = z
  for t in range(1, ticks + 1):
    a = np.tanh(w[0] * a + b - c)
    if t % 2 == 0:
      b = np.sin(w[1] * b + a)
    if t % 4 == 0:
      c = w[2] * c + b * a
  return a, b, c


def test_levels_update_on_their_periods_in_order():
  w = np.array([0.7, -1.3, 0.9])
  z = (0.3, -0.2, 0.5)
  with jax.enable_x64():
    got = clocks.run(_levels(jnp.asarray(w)), tuple(map(jnp.float64, z)), ticks=8)
  np.testing.assert_allclose(np.array(got), np.array(_by_hand(w, z, 8)), rtol=1e-12)


def test_the_one_step_gradient_flows_through_the_last_tick_only():
  w = jnp.array([0.7, -1.3, 0.9])
  z = (jnp.float32(0.3), jnp.float32(-0.2), jnp.float32(0.5))
  loss = lambda w, one_step: sum(clocks.run(_levels(w), z, ticks=8, one_step_gradient=one_step))  # noqa: E731
  # by hand: the latents after 7 ticks are constants, then tick 8 updates every level (periods divide 8)
  before = z
  for t in range(1, 8):
    before = clocks.tick(_levels(w), before, t)
  before = jax.lax.stop_gradient(before)
  last_tick = lambda w: sum(clocks.tick(_levels(w), before, 8))  # noqa: E731
  np.testing.assert_allclose(jax.grad(loss)(w, True), jax.grad(last_tick)(w), rtol=1e-6)
  assert not np.allclose(jax.grad(loss)(w, False), jax.grad(loss)(w, True))  # full backprop differs


@pytest.mark.parametrize("ticks", [0, 6])
def test_ticks_that_leave_a_level_out_of_the_last_tick_are_refused(ticks):
  with pytest.raises(ValueError, match="ticks"):
    clocks.run(_levels(jnp.ones(3)), (0.0, 0.0, 0.0), ticks=ticks)
