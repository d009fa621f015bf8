"""Learning without Forgetting (Li & Hoiem): distil the previous model's outputs.

At the end of each task the current parameters become the teacher, and the
output units the task trained (`model.task_units`) are marked as seen. While
learning later tasks, the loss adds `alpha * T^2 *` the cross-entropy between
the teacher's and the student's temperature-`T` softmax over the last axis
of the outputs (per head of a classifier, per position of a sequence model),
on the current batch.

`distill_over` says which units the student's softmax spans. "finished"
(the default): the units of finished tasks, as the teacher's; the
distillation then does not see a shift common to all of them. "so_far", as
in van de Ven et al.'s code for class-incremental learning: the units of
finished tasks and of the task being learned, the teacher's probabilities on
the finished tasks' units and zero on the current task's own, so the
distillation also holds the old units up against the new ones. The two are
the same where the current task's units are already seen (task- and
domain-incremental learning, sequence models); they differ in
class-incremental learning.

`weighting` says how the new task's loss and the distillation share the
total. "fixed" (the default): `loss + alpha * kd`. "relative", as in van de
Ven et al.'s code for the three scenarios: in the t-th task (t = 1, 2, ...)
the new task weighs 1/t and the distillation (1 - 1/t), times `alpha`:
`loss / t + (1 - 1/t) * alpha * kd`, so the older tasks together weigh as
much as their number.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from contlearn.errors import ConfigError
from contlearn.strategies.base import Strategy
from contlearn.strategies.task_model import TaskModel

PyTree = Any


class LwfState(NamedTuple):
  teacher: PyTree  # parameters at the end of the last task
  seen_units: jax.Array  # bool [*out], output units of finished tasks
  finished: jax.Array | None = None  # int32 [], tasks finished; None unless weighting="relative"
  current_units: jax.Array | None = None  # bool [*out], the next task's units; None unless distill_over="so_far"


def distillation_loss(
  student: jax.Array,
  teacher: jax.Array,
  seen: jax.Array,
  temperature: jax.Array,
  student_units: jax.Array | None = None,
) -> jax.Array:
  """Soft cross-entropy per group over seen units, averaged over rows and seen groups.

  Args:
    student: float32 [B, H, C] outputs (H groups, e.g. heads or positions,
      of C units each).
    teacher: float32 [B, H, C].
    seen: bool [H, C], the units of the teacher's softmax.
    temperature: float32 [].
    student_units: bool [H, C], the units of the student's softmax, a
      superset of `seen` (the teacher's probability is zero on the rest);
      None: `seen`.
  """
  neg = jnp.finfo(jnp.float32).min / 4
  student_units = seen if student_units is None else student_units
  p_t = jax.nn.softmax(jnp.where(seen[None], teacher / temperature, neg), axis=-1)
  logp_s = jax.nn.log_softmax(jnp.where(student_units[None], student / temperature, neg), axis=-1)
  per_head = -jnp.sum(jnp.where(seen[None], p_t * logp_s, 0.0), axis=-1)  # [B, H]
  head_seen = jnp.any(seen, axis=-1).astype(jnp.float32)  # [H]
  n_heads = jnp.maximum(jnp.sum(head_seen), 1.0)
  return jnp.mean(jnp.sum(per_head * head_seen[None], axis=-1) / n_heads) * temperature**2


WEIGHTINGS = ("fixed", "relative")
DISTILL_OVER = ("finished", "so_far")


def lwf(
  model: TaskModel,
  alpha: float = 1.0,
  temperature: float = 2.0,
  weighting: str = "fixed",
  distill_over: str = "finished",
) -> Strategy:
  """LwF with distillation weight `alpha`, temperature `temperature`, `weighting` and `distill_over` (module
  docstring)."""
  if weighting not in WEIGHTINGS:
    raise ConfigError(f"lwf weighting={weighting!r}: choose one of {', '.join(WEIGHTINGS)}")
  if distill_over not in DISTILL_OVER:
    raise ConfigError(f"lwf distill_over={distill_over!r}: choose one of {', '.join(DISTILL_OVER)}")
  relative = weighting == "relative"
  so_far = distill_over == "so_far"

  def as_groups(out):  # [B, *out] -> [B, H, C]
    return out.reshape(out.shape[0], -1, out.shape[-1])

  def loss(params, sstate, hp, batch, key):
    del key
    base, aux = model.loss(params, batch)
    out = model.outputs(params, batch)
    t_out = model.outputs(sstate.teacher, batch)
    groups = lambda units: units.reshape(-1, units.shape[-1])
    seen = groups(sstate.seen_units)
    student_units = groups(sstate.seen_units | sstate.current_units) if so_far else None
    kd = distillation_loss(
      as_groups(out), jax.lax.stop_gradient(as_groups(t_out)), seen, hp["temperature"], student_units
    )
    if relative:
      new_share = 1.0 / (sstate.finished + 1).astype(jnp.float32)
      return new_share * base + (1.0 - new_share) * hp["alpha"] * kd, aux
    return base + hp["alpha"] * kd, aux

  def end_task(state, env, task, key):
    del key
    used = model.task_units(env, task)
    finished = state.strategy.finished + 1 if relative else None
    # The next task's units; after the last task the index is clamped (JAX gathers do), and nothing trains after it.
    seen = state.strategy.seen_units
    current = jnp.broadcast_to(model.task_units(env, task + 1), seen.shape) if so_far else None
    return state.replace(strategy=LwfState(state.params, seen | used, finished, current))

  def init(params, key):
    del key
    none = jnp.zeros(model.out_shape(params), bool)
    return LwfState(params, none, jnp.zeros((), jnp.int32) if relative else None, none if so_far else None)

  return Strategy(
    "lwf",
    {"alpha": alpha, "temperature": temperature},
    init,
    loss,
    end_task=end_task,
  )
