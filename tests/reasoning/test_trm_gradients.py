"""TRM's gradient paths: the first T - 1 rounds add nothing, and nothing reaches the carry."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reasoning_fixtures import TRM_CFG, random_carry, trm_params_with_heads

from contlearn.reasoning import trm

CFG = TRM_CFG


@functools.partial(jax.jit, static_argnums=1)
def _grads(params, cfg, carry):
  return jax.grad(lambda p: trm.segment_loss(p, cfg, carry)[0])(params)


@functools.partial(jax.jit, static_argnums=1)
def _carry_grads(params, cfg, carry):
  loss = lambda y, z: trm.segment_loss(params, cfg, carry._replace(y=y, z=z))[0]  # noqa: E731
  return jax.grad(loss, argnums=(0, 1))(carry.y, carry.z)


def test_the_first_rounds_add_exactly_zero_gradient():
  params, carry = trm_params_with_heads(CFG), random_carry(CFG, jax.random.key(0))
  # The same segment with the T - 1 first rounds replaced by their outputs, given as constants.
  first_rounds = jax.jit(trm.deep_recursion, static_argnums=(4, 5))
  x = trm.embed(params, CFG, carry.inputs, carry.ids)
  y, z = first_rounds(params["net"], x, carry.y, carry.z, CFG.cycles - 1, CFG.latent_steps)
  last_round = dataclasses.replace(CFG, cycles=1)
  const = carry._replace(y=jnp.asarray(np.asarray(y)), z=jnp.asarray(np.asarray(z)))
  full, last = _grads(params, CFG, carry), _grads(params, last_round, const)
  close = dict(rtol=1e-4, atol=1e-6)  # two programs, fused differently: equal up to float32 rounding
  for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(last)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), **close)
  # The first rounds do change the answer: with them dropped, the gradient is another one.
  dropped = _grads(params, last_round, carry)
  assert not np.allclose(np.asarray(dropped["embed"]), np.asarray(full["embed"]), **close)


@pytest.mark.slow
@pytest.mark.parametrize("cycles", [1, 2])
def test_no_gradient_reaches_the_carry(cycles):
  cfg = dataclasses.replace(CFG, cycles=cycles)
  params, carry = trm_params_with_heads(cfg), random_carry(cfg, jax.random.key(4))
  dy, dz = _carry_grads(params, cfg, carry)
  assert not np.asarray(dy).any() and not np.asarray(dz).any()
  assert np.asarray(jax.tree.leaves(_grads(params, cfg, carry))[0]).any()  # while the parameters do get one
