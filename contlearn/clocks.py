"""Latent levels on their own clocks: states updated inside one forward pass, each every `period` ticks.

The companion of `contlearn.rules.periodic`, which puts a *parameter* level
on a clock of engine steps. Here the levels are *latents* (memory levels)
written by the forward pass itself, and the clock counts ticks inside one
engine step. HRM is two such levels: `z_L` of period 1 and `z_H` of period
T, run for N T ticks per segment.

`Level(period, update)`: `update(latents) -> new value of this level`, where
`latents` is the tuple of every level's current value, in the order of the
levels. At tick t = 1, 2, ..., ticks, every level whose period divides t
updates, in the order given (so list the fast levels first: a slow level
reads the fast ones' values of the same tick).

`run(levels, latents, ticks, one_step_gradient=True)` unrolls the ticks (the
count is static, as HRM's cycles are) and, with `one_step_gradient`, runs
ticks 1..ticks-1 under `stop_gradient` so that only the updates of the last
tick carry gradient: HRM's one-step gradient, the last f_L and the last f_H.
Every level's period must divide `ticks`, so that every level updates at the
last tick (otherwise a level would get no gradient at all).

>>> import jax.numpy as jnp
>>> fast = Level(1, lambda z: z[0] + 1)          # counts ticks
>>> slow = Level(3, lambda z: z[1] + z[0])       # every 3 ticks, adds the fast level's value
>>> run((fast, slow), (jnp.zeros(()), jnp.zeros(())), ticks=6)
(Array(6., dtype=float32), Array(9., dtype=float32))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax

Latents = tuple[Any, ...]


class Level(NamedTuple):
  """A latent level: `update(latents) -> its new value`, applied at every tick divisible by `period`."""

  period: int
  update: Callable[[Latents], Any]


def tick(levels: Sequence[Level], latents: Latents, t: int) -> Latents:
  """Tick `t` (1-based): every level whose period divides `t` updates, in order, reading the values so far."""
  latents = tuple(latents)
  for i, level in enumerate(levels):
    if t % level.period == 0:
      latents = latents[:i] + (level.update(latents),) + latents[i + 1 :]
  return latents


def run(levels: Sequence[Level], latents: Latents, ticks: int, *, one_step_gradient: bool = True) -> Latents:
  """The latents after `ticks` ticks (module docstring); with `one_step_gradient`, gradient through the last only.

  Raises:
    ValueError: `ticks` < 1, or a level's period is not a positive divisor of `ticks`.
  """
  if ticks < 1:
    raise ValueError(f"ticks must be >= 1, got {ticks}")
  for i, level in enumerate(levels):
    if level.period < 1 or ticks % level.period:
      raise ValueError(f"level {i}: period {level.period} must be a positive divisor of ticks={ticks}")
  latents = tuple(latents)
  for t in range(1, ticks):
    latents = tick(levels, latents, t)
  if one_step_gradient:
    latents = jax.lax.stop_gradient(latents)
  return tick(levels, latents, ticks)
