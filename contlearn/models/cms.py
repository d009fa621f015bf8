"""Continuum Memory System: MLP blocks that are levels with their own clocks.

Block i is a pre-norm MLP `f_i(x) = W2_i gelu(W1_i rms(x))`. The forward pass
depends on the variant:

    sequential    y = x_k,  x_i = x_{i-1} + f_i(x_{i-1})      (a chain)
    independent   y = x + sum_i f_i(x)                        (parallel, summed)
    nested        y = x + f(x),  f's weights = sum_i theta_i  (one MLP)

What makes these a CMS is how they learn: block (or part) i belongs to level
`cms_i`, whose parameters change every `C_i` steps from the gradient
accumulated over those steps (`contlearn.rules.periodic`):

    theta_i <- theta_i - lr_i * sum_{last C_i steps} grad      when t = 0 mod C_i

In the nested variant the gradient of every part is the gradient of the one
MLP, and part i < k-1 is reset to zero whenever level i+1 updates
(`contlearn.rules.reset_every`). So the slow parts hold an initial point that
is meta-learned (first-order) from what the fast parts did, and each fast
part adapts from it within its context of `C_{i+1}` steps: the same as a fast
MLP re-initialised from the slower level's weights at every boundary
(tested against exactly that loop).

`cms_from_mlp` builds the levels from a trained MLP so that the CMS computes
that MLP exactly; with every rate at zero it stays that MLP.

Parameters: a list of `layers.mlp_init` dicts, one per block or part.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from contlearn.errors import ConfigError
from contlearn.models import layers

VARIANTS = ("sequential", "independent", "nested")


def level_name(index: int) -> str:
  """The level label of CMS block `index` (shared by every layer)."""
  return f"cms_{index}"


def check_variant(variant: str) -> None:
  if variant not in VARIANTS:
    raise ConfigError(f"model.cms_variant={variant!r}: choose one of {', '.join(VARIANTS)}")


def cms_init(key: jax.Array, d: int, hidden: int, n_blocks: int, out_scale: float, variant: str) -> list:
  """`n_blocks` MLPs of width d -> hidden -> d; nested: all parts but the slowest zero."""
  check_variant(variant)
  keys = jax.random.split(key, n_blocks)
  blocks = [layers.mlp_init(k, d, hidden, out_scale) for k in keys]
  if variant == "nested":
    blocks = [jax.tree.map(jnp.zeros_like, b) for b in blocks[:-1]] + blocks[-1:]
  return blocks


def cms_apply(params: list, x: jax.Array, variant: str) -> jax.Array:
  """`x [..., D] -> [..., D]` (residual included)."""
  if variant == "sequential":
    for block in params:
      x = x + layers.mlp_apply(block, x)
    return x
  if variant == "independent":
    return x + sum(layers.mlp_apply(block, x) for block in params)
  if variant == "nested":
    merged = jax.tree.map(lambda *parts: sum(parts), *params)
    return x + layers.mlp_apply(merged, x)
  raise ConfigError(f"model.cms_variant={variant!r}: choose one of {', '.join(VARIANTS)}")


def cms_from_mlp(mlp: dict, n_blocks: int, variant: str) -> list:
  """CMS levels that compute the trained pre-norm MLP `mlp` exactly.

  sequential: block 0 is `mlp`; later blocks copy its input weights with
    zero output weights (they add nothing until they learn).
  independent: the hidden units are split into `n_blocks` groups, one per
    block; the sum over groups is the MLP (hidden width must divide).
  nested: the slowest part is `mlp`, the faster parts are zero.
  """
  check_variant(variant)
  if variant == "sequential":
    silent = {**mlp, "w2": jnp.zeros_like(mlp["w2"])}
    return [mlp] + [silent] * (n_blocks - 1)
  if variant == "nested":
    return [jax.tree.map(jnp.zeros_like, mlp)] * (n_blocks - 1) + [mlp]
  hidden = mlp["w1"].shape[1]
  if hidden % n_blocks:
    raise ConfigError(f"an MLP of {hidden} hidden units cannot be split into {n_blocks} independent levels")
  groups = jnp.split(jnp.arange(hidden), n_blocks)
  return [{"norm": mlp["norm"], "w1": mlp["w1"][:, g], "w2": mlp["w2"][g, :]} for g in groups]
