"""Random per-head inputs for the memory tests (float64 under jax.enable_x64)."""

import jax
import jax.numpy as jnp
import numpy as np

from contlearn import memories
from contlearn.memories import self_modifying as sm
from contlearn.memories.core import MemState


def inputs(rule, key, t=23, dk=6, dv=6, dtype=jnp.float64):
  """Random q, k, v, rates, mask, outer and state for one head."""
  ks = jax.random.split(key, 10)
  nrm = lambda x: x / jnp.linalg.norm(x, axis=-1, keepdims=True)
  q = nrm(jax.random.normal(ks[0], (t, dk), dtype))
  k = nrm(jax.random.normal(ks[1], (t, dk), dtype))
  v = jax.random.normal(ks[2], (t, dv), dtype)
  rates = memories.Rates(
    lr=jax.random.uniform(ks[3], (t,), dtype, 0.02, 0.3),
    retain=jax.random.uniform(ks[4], (t,), dtype, 0.7, 1.0),
    momentum=jax.random.uniform(ks[5], (t,), dtype, 0.3, 0.95),
  )
  mask = jnp.arange(t) < t - 3
  w = rule.model.init(ks[6], dk, dv)
  w = jax.tree.map(lambda x: x.astype(dtype), w)
  w["b"] = [0.1 * jax.random.normal(ks[7], b.shape, dtype) if rule.model.bias else b for b in w["b"]]
  m = jax.tree.map(lambda x: 0.1 * jax.random.normal(ks[8], x.shape, dtype), w)
  outer = {"ln_scale": 1.0 + 0.1 * jax.random.normal(ks[9], (dv,), dtype), "ln_bias": jnp.zeros((dv,), dtype)}
  if rule.model.offset:  # a resting point for the memory, and the state a deviation from it
    outer["offset"] = w
    w = jax.tree.map(lambda x: 0.1 * jax.random.normal(jax.random.fold_in(key, 10), x.shape, dtype), w)
  return dict(outer=outer, state=MemState(w, m), q=q, k=k, v=v, rates=rates, mask=mask)


def self_modifying_inputs(spec, seed, t=23, dh=4):
  """float64 params, state (memories and momenta all nonzero), x [T, Dh], mask with a masked tail."""
  rng = np.random.default_rng(seed)
  noisy = lambda tree: jax.tree.map(lambda a: jnp.asarray(a + 0.1 * rng.standard_normal(a.shape), jnp.float64), tree)
  params, state = noisy(sm.init(spec, jax.random.PRNGKey(seed), dh))
  params["wq"] = jnp.asarray(rng.standard_normal((dh, dh)) / 2)
  params["bias"] = {g: jnp.float64(b) for g, b in zip(spec.gates, (0.3, -1.0, 0.5))}
  x = jnp.asarray(rng.standard_normal((t, dh)))
  return params, state, x, jnp.arange(t) < t - 3
