"""What the TRM and HRM tests share: a small TRM config, a random carry, parameters with live heads."""

import functools

import jax
import jax.numpy as jnp

from contlearn.reasoning import trm
from contlearn.reasoning.segments import Carry

B = 3
TRM_CFG = trm.TRMConfig(vocab=5, length=6, puzzles=4, width=8, layers=1, expansion=2, cycles=3, latent_steps=2)


@functools.partial(jax.jit, static_argnums=(0, 2))
def random_carry(cfg, key, halted=(False,) * B) -> Carry:
  """`B` rows of `cfg`'s sizes: y (z_H for HRM) and z (z_L) normal, steps 1..B, the given halted flags."""
  ky, kz, ki, kl = jax.random.split(key, 4)
  shape = (B, cfg.tokens, cfg.width)
  return Carry(
    y=jax.random.normal(ky, shape),
    z=jax.random.normal(kz, shape),
    steps=jnp.arange(1, B + 1, dtype=jnp.int32),
    halted=jnp.array(halted),
    inputs=jax.random.randint(ki, (B, cfg.length), 0, cfg.vocab),
    labels=jax.random.randint(kl, (B, cfg.length), 1, cfg.vocab),
    ids=jnp.array([0, 3, 1], jnp.int32),
  )


@functools.partial(jax.jit, static_argnums=0)
def trm_params_with_heads(cfg):
  """TRM parameters with a non-zero halting head and puzzle embedding, so every term of the loss has a gradient."""
  params = trm.init_params(jax.random.key(1), cfg)
  params["q_head"]["w"] = jax.random.normal(jax.random.key(2), (cfg.width,))
  params["puzzle_emb"] = jax.random.normal(jax.random.key(3), params["puzzle_emb"].shape)
  return params
