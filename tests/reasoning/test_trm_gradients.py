"""TRM's gradient paths: the first T - 1 rounds add nothing, and nothing reaches the carry."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contlearn.reasoning import trm

CFG = trm.TRMConfig(vocab=5, length=6, puzzles=4, width=8, layers=1, expansion=2, cycles=3, latent_steps=2)
B = 3


@functools.partial(jax.jit, static_argnums=(0, 2))
def _carry(cfg, key, halted=(False, False, False)):
  """A carry of random puzzles, latents and step counts."""
  ky, kz, ki, kl = jax.random.split(key, 4)
  shape = (B, cfg.tokens, cfg.width)
  return trm.Carry(
    y=jax.random.normal(ky, shape),
    z=jax.random.normal(kz, shape),
    steps=jnp.array([1, 2, 3], jnp.int32),
    halted=jnp.array(halted),
    inputs=jax.random.randint(ki, (B, cfg.length), 0, cfg.vocab),
    labels=jax.random.randint(kl, (B, cfg.length), 1, cfg.vocab),
    ids=jnp.array([0, 3, 1], jnp.int32),
  )


@functools.partial(jax.jit, static_argnums=0)
def _trained_params(cfg):
  """Parameters with a non-zero halting head, so every term of the loss has a gradient."""
  params = trm.init_params(jax.random.key(1), cfg)
  params["q_head"]["w"] = jax.random.normal(jax.random.key(2), (cfg.width,))
  params["puzzle_emb"] = jax.random.normal(jax.random.key(3), params["puzzle_emb"].shape)
  return params


@functools.partial(jax.jit, static_argnums=1)
def _grads(params, cfg, carry):
  return jax.grad(lambda p: trm.segment_loss(p, cfg, carry)[0])(params)


@functools.partial(jax.jit, static_argnums=1)
def _carry_grads(params, cfg, carry):
  loss = lambda y, z: trm.segment_loss(params, cfg, carry._replace(y=y, z=z))[0]  # noqa: E731
  return jax.grad(loss, argnums=(0, 1))(carry.y, carry.z)


def test_the_first_rounds_add_exactly_zero_gradient():
  params, carry = _trained_params(CFG), _carry(CFG, jax.random.key(0))
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


@pytest.mark.parametrize("cycles", [1, 2])
def test_no_gradient_reaches_the_carry(cycles):
  cfg = dataclasses.replace(CFG, cycles=cycles)
  params, carry = _trained_params(cfg), _carry(cfg, jax.random.key(4))
  dy, dz = _carry_grads(params, cfg, carry)
  assert not np.asarray(dy).any() and not np.asarray(dz).any()
  assert np.asarray(jax.tree.leaves(_grads(params, cfg, carry))[0]).any()  # while the parameters do get one
