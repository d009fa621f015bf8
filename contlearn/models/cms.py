"""Continuum Memory System: a chain of MLP blocks, each its own level.

    y = x + MLP_1(x);  y = y + MLP_2(y);  ...   (block i: `cms_periods[i]`)

The forward pass is an ordinary residual MLP chain. What makes it a CMS is
how it learns: block i is a level of the learner whose parameters change only
every `C_i` steps, from the gradient accumulated over those steps (see
`contlearn.rules.periodic` and `contlearn.models.lm.level_labels`). With one
block of period 1 it is a plain feed-forward layer.

Parameters: a list of `layers.mlp_init` dicts, one per block.
"""

from __future__ import annotations

import jax

from contlearn.models import layers


def level_name(index: int) -> str:
  """The level label of CMS block `index` (shared by every layer)."""
  return f"cms_{index}"


def cms_init(key: jax.Array, d: int, hidden: int, n_blocks: int, out_scale: float) -> list:
  """`n_blocks` residual MLPs of width d -> hidden -> d."""
  keys = jax.random.split(key, n_blocks)
  return [layers.mlp_init(k, d, hidden, out_scale) for k in keys]


def cms_apply(params: list, x: jax.Array) -> jax.Array:
  """x [..., D] -> [..., D] through the chain, residual after each block."""
  for block in params:
    x = x + layers.mlp_apply(block, x)
  return x
