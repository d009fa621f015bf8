"""Learning without Forgetting (Li & Hoiem): distil the previous model's outputs.

At the end of each task the current parameters become the teacher, and the
output units the task used are marked as seen. While learning later tasks,
the loss adds `alpha * T^2 * KL`-style cross-entropy between the teacher's
and the student's temperature-`T` softmax, per head, over seen units only,
on the current batch's inputs.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from contlearn.cl.model import Mlp
from contlearn.cl.strategies.base import Strategy, task_loss

PyTree = Any


class LwfState(NamedTuple):
  teacher: PyTree  # parameters at the end of the last task
  seen_units: jax.Array  # bool [n_heads, head_size], units of finished tasks


def distillation_loss(student: jax.Array, teacher: jax.Array, seen: jax.Array,
                      temperature: jax.Array) -> jax.Array:
  """Soft cross-entropy per head over seen units, averaged over rows and seen heads.

  Args:
    student: float32 [B, H, C] outputs.
    teacher: float32 [B, H, C].
    seen: bool [H, C].
    temperature: float32 [].
  """
  neg = jnp.finfo(jnp.float32).min / 4
  mask_logits = lambda z: jnp.where(seen[None], z / temperature, neg)
  p_t = jax.nn.softmax(mask_logits(teacher), axis=-1)
  logp_s = jax.nn.log_softmax(mask_logits(student), axis=-1)
  per_head = -jnp.sum(jnp.where(seen[None], p_t * logp_s, 0.0), axis=-1)  # [B, H]
  head_seen = jnp.any(seen, axis=-1).astype(jnp.float32)  # [H]
  n_heads = jnp.maximum(jnp.sum(head_seen), 1.0)
  return jnp.mean(jnp.sum(per_head * head_seen[None], axis=-1) / n_heads) * temperature ** 2


def lwf(model: Mlp, alpha: float = 1.0, temperature: float = 2.0) -> Strategy:
  """LwF with distillation weight `alpha` and temperature `temperature`."""
  shape = (model.n_heads, model.head_size)

  def loss(params, sstate, hp, batch, key):
    del key
    ce, aux = task_loss(model, params, batch)
    out, _ = model.features(params, batch.x)
    t_out, _ = model.features(sstate.teacher, batch.x)
    kd = distillation_loss(out.reshape(-1, *shape),
                           jax.lax.stop_gradient(t_out).reshape(-1, *shape),
                           sstate.seen_units, hp["temperature"])
    return ce + hp["alpha"] * kd, aux

  def end_task(state, scenario, task, key):
    del key
    valid = jnp.arange(scenario.train_y.shape[1]) < scenario.train_n[task]
    units = scenario.head[task] * model.head_size + scenario.train_y[task]
    used = jnp.zeros((model.out_dim,), bool).at[units].max(valid).reshape(shape)
    return state.replace(sstate=LwfState(state.params, state.sstate.seen_units | used))
  return Strategy("lwf", {"alpha": alpha, "temperature": temperature},
                  lambda params, key: LwfState(params, jnp.zeros(shape, bool)), loss,
                  end_task=end_task)
