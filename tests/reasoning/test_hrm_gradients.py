"""HRM's one-step gradient: only the last f_L and f_H calls are differentiated, and nothing reaches the carry."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from reasoning_fixtures import random_carry

from contlearn.reasoning import hrm
from contlearn.reasoning.stablemax import stablemax_cross_entropy
from contlearn.reasoning.trm import network

CFG = hrm.HRMConfig(vocab=5, length=6, puzzles=4, width=8, layers=1, expansion=2, high_cycles=2, low_steps=3)


@functools.partial(jax.jit, static_argnums=0)
def _trained_params(cfg):
  """Parameters with non-zero Q heads and puzzle embeddings, so every term of the loss has a gradient."""
  params = hrm.init_params(jax.random.key(1), cfg)
  params["q_head"]["w"] = jax.random.normal(jax.random.key(2), (cfg.width, 2))
  params["puzzle_emb"] = jax.random.normal(jax.random.key(3), params["puzzle_emb"].shape)
  return params


@functools.partial(jax.jit, static_argnums=1)
def _grads(params, cfg, carry):
  return jax.grad(lambda p: hrm.segment_loss(p, cfg, carry)[0])(params)


@functools.partial(jax.jit, static_argnums=1)
def _two_call_grads(params, cfg, carry, z_high, z_low, target):
  """The gradient of the graph written out by hand: the last f_L, then f_H, on constant z_H, z_L and Q target."""

  def loss(p):
    x = hrm.embed(p, cfg, carry.inputs, carry.ids)
    low = network(p["net"]["low"], z_low + z_high + x)
    high = network(p["net"]["high"], z_high + low)
    logits = high[:, cfg.puzzle_tokens :] @ p["head"]
    q = high[:, 0] @ p["q_head"]["w"] + p["q_head"]["b"][None, :]
    exact = jnp.all(jnp.argmax(logits, axis=-1) == carry.labels, axis=-1).astype(jnp.float32)
    q_loss = optax.sigmoid_binary_cross_entropy(q[:, 0], exact) + optax.sigmoid_binary_cross_entropy(q[:, 1], target)
    return jnp.mean(stablemax_cross_entropy(logits, carry.labels)) + cfg.halt_weight * jnp.mean(q_loss)

  return jax.grad(loss)(params)


@functools.partial(jax.jit, static_argnums=1)
def _carry_grads(params, cfg, carry):
  loss = lambda y, z: hrm.segment_loss(params, cfg, carry._replace(y=y, z=z))[0]  # noqa: E731
  return jax.grad(loss, argnums=(0, 1))(carry.y, carry.z)


def _before_the_last_two_calls(params, x, z_high, z_low, cfg):
  """The N T - 1 first f_L calls and the N - 1 first f_H calls of a segment, written out."""
  net = params["net"]
  for cycle in range(cfg.high_cycles):
    last = cycle == cfg.high_cycles - 1
    for _ in range(cfg.low_steps - 1 if last else cfg.low_steps):
      z_low = network(net["low"], z_low + z_high + x)
    if not last:
      z_high = network(net["high"], z_high + z_low)
  return z_high, z_low


def test_the_one_step_gradient_is_the_gradient_of_the_last_two_calls():
  params, carry = _trained_params(CFG), random_carry(CFG, jax.random.key(0))
  x = hrm.embed(params, CFG, carry.inputs, carry.ids)
  z_high, z_low = (
    np.asarray(a) for a in jax.jit(_before_the_last_two_calls, static_argnums=4)(params, x, carry.y, carry.z, CFG)
  )
  target = np.asarray(jax.jit(hrm.segment_loss, static_argnums=1)(params, CFG, carry)[1]["target"])
  full, by_hand = _grads(params, CFG, carry), _two_call_grads(params, CFG, carry, z_high, z_low, target)
  close = dict(rtol=1e-4, atol=1e-6)  # two programs, fused differently: equal up to float32 rounding
  leaves = jax.tree.leaves_with_path(full)
  for (path, a), b in zip(leaves, jax.tree.leaves(by_hand)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), err_msg=jax.tree_util.keystr(path), **close)
  assert all(np.asarray(g).any() for path, g in leaves if path[0].key != "init")  # every trained leaf gets one
  # The cycles without gradient do change the segment: with them dropped, the gradient is another one.
  dropped = _two_call_grads(params, CFG, carry, carry.y, carry.z, target)
  assert not np.allclose(np.asarray(dropped["embed"]), np.asarray(full["embed"]), **close)


def test_the_initial_latents_get_exactly_zero_gradient():
  grads = _grads(_trained_params(CFG), CFG, random_carry(CFG, jax.random.key(2)))
  assert not np.asarray(grads["init"]["y"]).any() and not np.asarray(grads["init"]["z"]).any()


@pytest.mark.slow
@pytest.mark.parametrize("high_cycles, low_steps", [(1, 1), (2, 3)])
def test_no_gradient_reaches_the_carry(high_cycles, low_steps):
  cfg = dataclasses.replace(CFG, high_cycles=high_cycles, low_steps=low_steps)
  params, carry = _trained_params(cfg), random_carry(cfg, jax.random.key(4))
  dz_high, dz_low = _carry_grads(params, cfg, carry)
  assert not np.asarray(dz_high).any() and not np.asarray(dz_low).any()
  assert np.asarray(_grads(params, cfg, carry)["net"]["low"][0]["channels"]["down"]).any()  # the network gets one
