"""The one state type of every learner: a pytree of arrays, nothing else.

    LearnerState
    ├── params      the model's parameters (every level's)
    ├── opt_state   the update rules' states (optimizer moments, level clocks,
    │               accumulated gradients)
    ├── memory      what the model carries from step to step (attention caches,
    │               inner-loop memories); () for a model that carries nothing
    ├── strategy    a continual-learning strategy's state (replay buffer,
    │               importances, teacher); () without a strategy
    ├── hparams     {name: [] float32} hyperparameters that are traced, so one
    │               compiled program serves a sweep of them as vmapped lanes
    ├── step        [] int32, steps learned so far
    └── key         PRNG key; step-local randomness is fold_in(key, step)

Every family (byte-level stream LMs, classic continual learning, memory
tasks) keeps its learner in this type, so one engine scans, jits, donates,
vmaps and shards it, and one host loop checkpoints it.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp


class LearnerState(flax.struct.PyTreeNode):
  params: Any
  opt_state: Any
  memory: Any
  strategy: Any
  hparams: dict[str, jax.Array]
  step: jax.Array  # [] int32
  key: jax.Array  # PRNG key


def new_state(
  params: Any,
  opt_state: Any,
  key: jax.Array,
  *,
  memory: Any = (),
  strategy: Any = (),
  hparams: dict[str, Any] | None = None,
) -> LearnerState:
  """A learner at step 0; `hparams` values become float32 scalars."""
  return LearnerState(
    params=params,
    opt_state=opt_state,
    memory=memory,
    strategy=strategy,
    hparams={k: jnp.asarray(v, jnp.float32) for k, v in (hparams or {}).items()},
    step=jnp.zeros((), jnp.int32),
    key=key,
  )
