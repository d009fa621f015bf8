"""The learner: one pytree of state and a pure step over one batch.

    LearnerState
    ├── params      the model's parameters (every level's)
    ├── opt_state   the update rules' states (optimizer moments, level clocks,
    │               accumulated gradients)
    ├── memory      what the model carries along the stream (caches, memories)
    ├── step        [] int32, steps learned so far
    └── key         PRNG key; step-local randomness is fold_in(key, step)

`Learner.step(state, chunk_slice) -> (state, StepMetrics)` reads one step of
a chunk (`tokens [B, T+1]`, `mask [B, T]`), scores the next-token loss with
the parameters *before* learning from it (so the loss is prequential), then
applies the update rule. Nothing learnable or stateful lives outside the state.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

from contlearn.models.lm import Model
from contlearn.rules import select_tree
from contlearn.stream.base import Chunk


class LearnerState(flax.struct.PyTreeNode):
  params: Any
  opt_state: Any
  memory: Any
  step: jax.Array  # [] int32
  key: jax.Array  # PRNG key


class StepMetrics(NamedTuple):
  """Per-step sums, stacked to `[steps]` by the chunk scan.

  Attributes:
    nll: [] float32, summed next-token negative log-likelihood (nats).
    count: [] float32, number of scored (unmasked) tokens.
    grad_norm: [] float32, global norm of the gradient.
  """

  nll: jax.Array
  count: jax.Array
  grad_norm: jax.Array


class Learner(NamedTuple):
  """`init(key, batch) -> LearnerState`; `step(state, batch) -> (state, StepMetrics)`."""

  init: Callable[[jax.Array, int], LearnerState]
  step: Callable[[LearnerState, Chunk], tuple[LearnerState, StepMetrics]]


def sequence_learner(model: Model, rule: optax.GradientTransformation) -> Learner:
  """A learner that trains `model` on next-token prediction with `rule`.

  Args:
    model: pure sequence model (see `contlearn.models.lm.Model`).
    rule: an update rule over the whole params tree (any optax
      transformation; use `contlearn.rules.levels` for several levels).
  """

  def init(key, batch):
    k_params, k_state = jax.random.split(key)
    params = model.init_params(k_params)
    return LearnerState(
        params=params,
        opt_state=rule.init(params),
        memory=model.init_memory(batch),
        step=jnp.zeros((), jnp.int32),
        key=k_state,
    )

  def step(state, batch):
    inputs, targets = batch.tokens[:, :-1], batch.tokens[:, 1:]
    mask = batch.mask
    weights = mask.astype(jnp.float32)

    def loss_fn(params):
      logits, memory = model.apply(params, state.memory, inputs, mask)
      nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
      nll_sum = jnp.sum(nll * weights)
      count = jnp.sum(weights)
      return nll_sum / jnp.maximum(count, 1.0), (memory, nll_sum, count)

    (_, (memory, nll_sum, count)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params
    )
    updates, opt_state = rule.update(grads, state.opt_state, state.params)
    learned = LearnerState(
        params=optax.apply_updates(state.params, updates),
        opt_state=opt_state,
        memory=jax.lax.stop_gradient(memory),
        step=state.step + 1,
        key=state.key,
    )
    # A step of pure padding (the end of a finite stream) changes nothing.
    new_state = select_tree(count > 0, learned, state)
    return new_state, StepMetrics(nll_sum, count, optax.tree.norm(grads))

  return Learner(init, step)
