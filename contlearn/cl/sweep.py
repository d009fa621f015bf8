"""Grids of seeds x hyperparameters as the lanes of one vmapped program."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from contlearn import engine
from contlearn.errors import ConfigError


def grid(seeds: Sequence[int], **values: Sequence[float]) -> tuple[jax.Array, dict, list[dict]]:
  """The product of seeds and hyperparameter values, one lane per combination.

  >>> keys, hp, lanes = grid([0, 1, 2, 3, 4], strength=[1, 10, 100, 1000])
  >>> len(lanes), hp["strength"].shape, lanes[1]
  (20, (20,), {'seed': 0, 'strength': 10})

  Returns:
    keys uint32 [L, 2] (one PRNG key per lane, from its seed: `engine.seed_keys`), hparams {name: float32 [L]},
    and per lane a dict {"seed": s, name: v, ...} describing it.
  """
  if not seeds:
    raise ConfigError("sweep.grid: needs at least one seed")
  names = sorted(values)
  for n in names:
    if not values[n]:
      raise ConfigError(f"sweep.grid: no values for {n!r}")
  lanes = [dict(zip(["seed", *names], combo)) for combo in itertools.product(seeds, *(values[n] for n in names))]
  keys = engine.seed_keys([int(l["seed"]) for l in lanes])
  hp = {n: jnp.asarray([l[n] for l in lanes], jnp.float32) for n in names}
  return keys, hp, lanes
