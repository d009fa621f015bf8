"""Model sizes: parameter counts, and widths that match a parameter budget.

Comparisons "at equal parameter count" pick, for each architecture, the
residual width whose byte LM is closest to a target size:

    cfg = matched_width(ModelConfig(mixer="titans"), target=param_count(base))
"""

from __future__ import annotations

import dataclasses
import math

import jax

from contlearn.config import ModelConfig
from contlearn.errors import ConfigError
from contlearn.models.lm import byte_lm


def param_count(cfg: ModelConfig) -> int:
  """Number of trainable parameters of `byte_lm(cfg)` (shapes only, no compute)."""
  shapes = jax.eval_shape(byte_lm(cfg).init_params, jax.random.PRNGKey(0))
  return int(sum(math.prod(x.shape) for x in jax.tree.leaves(shapes)))


def matched_width(cfg: ModelConfig, target: int, lo: int = 16, hi: int = 4096) -> ModelConfig:
  """`cfg` with the `d_model` in [lo, hi] whose parameter count is closest to `target`.

  Widths are multiples of `2 * n_heads` (even head widths, for RoPE). The
  count grows with the width, so a bisection finds the crossing.
  """
  step = 2 * cfg.n_heads
  widths = list(range(max(step, lo - lo % step), hi + 1, step))
  if not widths:
    raise ConfigError(f"no width in [{lo}, {hi}] is a multiple of 2 * n_heads = {step}")
  size = lambda w: param_count(dataclasses.replace(cfg, d_model=w))
  a, b = 0, len(widths) - 1
  while b - a > 1:
    mid = (a + b) // 2
    a, b = (mid, b) if size(widths[mid]) < target else (a, mid)
  best = min((widths[a], widths[b]), key=lambda w: abs(size(w) - target))
  return dataclasses.replace(cfg, d_model=best)
