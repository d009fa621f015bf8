"""The sequence learner: a model and an update rule on the engine's protocol.

`sequence_learner(model, rule, batch)` is a `Learner` whose state is a
`LearnerState` (params, the rule's state, the model's carried memory) and
whose `step(state, chunk_slice, env) -> (state, StepMetrics)` reads one step
of a chunk (`tokens [B, T+1]`, `mask [B, T]`, and optionally `scored [B, T]`
bool, the targets the loss counts, e.g. a recall task's answers; default:
`mask`), scores the next-token loss with
the parameters *before* learning from it (so the loss is prequential), then
applies the update rule. Nothing learnable or stateful lives outside the state.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from contlearn import rules
from contlearn.config import Config
from contlearn.engine import Learner
from contlearn.errors import ConfigError
from contlearn.models import byte_lm, cms
from contlearn.models.lm import Model, is_hidden_matrix
from contlearn.rules import select_tree
from contlearn.state import new_state


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


def sequence_learner(
    model: Model, rule: optax.GradientTransformation, batch: int, *, carry_memory: bool = True
) -> Learner:
  """A learner that trains `model` on next-token prediction with `rule`.

  Args:
    model: pure sequence model (see `contlearn.models.lm.Model`).
    rule: an update rule over the whole params tree (any optax
      transformation; use `contlearn.rules.levels` for several levels).
    batch: parallel lanes of the stream; the carried memory has one per lane.
    carry_memory: carry the model's memory from step to step (a stream);
      False: every step starts from a fresh memory (independent sequences,
      e.g. recall tasks), and the state's memory is ().
  """

  def init(key):
    k_params, k_state = jax.random.split(key)
    params = model.init_params(k_params)
    memory = model.init_memory(batch) if carry_memory else ()
    return new_state(params, rule.init(params), k_state, memory=memory)

  def step(state, x, env=None):
    del env
    start = state.memory if carry_memory else model.init_memory(batch)
    inputs, targets = x.tokens[:, :-1], x.tokens[:, 1:]
    mask = x.mask
    weights = getattr(x, "scored", mask).astype(jnp.float32)  # the model reads `mask`; the loss counts `scored`

    def loss_fn(params):
      logits, memory = model.apply(params, start, inputs, mask)
      nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
      nll_sum = jnp.sum(nll * weights)
      count = jnp.sum(weights)
      return nll_sum / jnp.maximum(count, 1.0), (memory, nll_sum, count)

    (_, (memory, nll_sum, count)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params
    )
    updates, opt_state = rule.update(grads, state.opt_state, state.params)
    learned = state.replace(
        params=optax.apply_updates(state.params, updates),
        opt_state=opt_state,
        memory=jax.lax.stop_gradient(memory) if carry_memory else (),
        step=state.step + 1,
    )
    # A step of pure padding (the end of a finite stream) changes nothing.
    new_state = select_tree(count > 0, learned, state)
    return new_state, StepMetrics(nll_sum, count, optax.tree.norm(grads))

  return Learner(init, step)


def check_step_length(cfg: Config, model: Model) -> None:
  """Raises ConfigError unless every step holds whole inner mini-batches / segments of the model."""
  seq, multiple = cfg.data.seq, model.step_multiple
  if seq % multiple:
    raise ConfigError(f"data.seq={seq} must be a multiple of {multiple}, {model.step_reason}, which restarts at every step")


def build_learner(cfg: Config) -> Learner:
  """The byte LM of `cfg.model`, trained by the outer optimizer and CMS levels.

  Raises ConfigError for a bad model or a step length the model cannot carry.
  """
  model = byte_lm(cfg.model)
  check_step_length(cfg, model)
  t = cfg.train
  level_rules = {"outer": rules.optimizer(t.optimizer, t.lr, t.clip, is_hidden_matrix=is_hidden_matrix)}
  periods = cfg.model.cms_periods
  for i, period in enumerate(periods):
    rule = rules.periodic(rules.optimizer(t.cms_optimizer, t.cms_lr), period)
    if cfg.model.cms_variant == "nested" and i + 1 < len(periods):
      rule = rules.reset_every(rule, periods[i + 1])  # wiped when the slower level steps
    level_rules[cms.level_name(i)] = rule
  return sequence_learner(model, rules.levels(level_rules, model.level_labels), cfg.data.batch)
