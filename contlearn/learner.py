"""The sequence learner: a model and an update rule on the engine's protocol.

`sequence_learner(model, rule, batch)` is a `Learner` whose state is a
`LearnerState` (params, the rule's state, the model's carried memory) and
whose `step(state, chunk_slice, env) -> (state, StepMetrics)` reads one step
of a chunk (`tokens [B, T+1]`, `mask [B, T]`, and optionally `scored [B, T]`
bool, the targets the loss counts, e.g. a recall task's answers; default:
`mask`), scores the next-token loss with
the parameters *before* learning from it (so the loss is prequential), then
applies the update rule. Nothing learnable or stateful lives outside the state.

With a continual-learning `strategy` (`contlearn.strategies`, built on
`sequence_task_model`), each step is the strategy's step
(`strategies.strategy_step`): the current batch is read from the carried
memory, while rows the strategy replays (ER, DER) or scores at a task end
(EWC's Fisher, MAS) are read from a fresh memory, each sequence on its own.
A task ends where the host loop says so: a `contlearn.strategies.TaskEnd`
hook runs the strategy's end of task between blocks (at a phase change of a
stream). Without a strategy the step is plain learning.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from contlearn import rules, strategies
from contlearn.config import Config
from contlearn.engine import Learner
from contlearn.errors import ConfigError
from contlearn.models import byte_lm, cms, ebt
from contlearn.models.lm import OUTER, Model, is_hidden_matrix
from contlearn.rules import select_tree
from contlearn.state import new_state
from contlearn.strategies.task_model import TaskModel, rows_of


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


class Sequences(NamedTuple):
  """A batch of byte sequences as strategies see it (`sequence_task_model`).

  Attributes:
    tokens: int32 [B, T+1]; inputs are [:, :-1], targets [:, 1:].
    mask: bool [B, T], False where the target is padding.
    memory: the model's memory each sequence starts from (leaves [B, ...]),
      or None: a fresh memory (`model.init_memory(B)`).
    scored: bool [B, T], the targets the loss counts (e.g. a recall task's
      answers), or None: every unmasked target.
  """

  tokens: jax.Array
  mask: jax.Array
  memory: object = None
  scored: object = None


def _weights(batch: Sequences) -> jax.Array:
  """float32 [B, T]: 1 where a target is counted by the loss."""
  return (batch.mask if batch.scored is None else batch.scored).astype(jnp.float32)


def sequence_task_model(model: Model, seq: int | None = None) -> TaskModel:
  """The byte LM `model` as a `TaskModel` over `Sequences` of `seq` targets.

  Its loss is the mean next-token cross-entropy over scored tokens (aux
  "ce"; "memory", the memory after the batch; "nll" and "count", the sums);
  its outputs are the logits `[B, T, V]`; a row's log-likelihood is the sum
  over its scored tokens; a buffer keeps tokens and mask without the memory;
  the rows of a finished task are the `Sequences` the task-end hook passes as
  `env` (any number N >= 1, drawn without replacement when N >= n); every
  output unit counts as trained by every task (LwF distils all of them);
  no classes (no GDumb). `seq` shapes replay buffers and LwF's state; without
  it only strategies that keep no rows or outputs can be built.
  """

  def run(params, batch: Sequences):
    start = model.init_memory(batch.tokens.shape[0]) if batch.memory is None else batch.memory
    return model.apply(params, start, batch.tokens[:, :-1], batch.mask)

  def nll(params, batch: Sequences):
    logits, memory = run(params, batch)  # the loss is float32 whatever the model computes in
    per_token = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), batch.tokens[:, 1:])
    return per_token * _weights(batch), memory

  def loss(params, batch: Sequences):
    per_token, memory = nll(params, batch)
    nll_sum = jnp.sum(per_token)
    count = jnp.sum(_weights(batch))
    mean = nll_sum / jnp.maximum(count, 1.0)
    return mean, {"ce": mean, "memory": memory, "nll": nll_sum, "count": count}

  def empty_batch(n):
    if seq is None:
      raise ConfigError("this strategy keeps rows or outputs: build its model with sequence_task_model(model, seq)")
    return Sequences(jnp.zeros((n, seq + 1), jnp.int32), jnp.zeros((n, seq), bool))

  return TaskModel(
    loss=loss,
    outputs=lambda params, batch: run(params, batch)[0],
    log_likelihood=lambda params, batch: -jnp.sum(nll(params, batch)[0], axis=1),
    output_mask=lambda batch: batch.mask[:, :, None],
    stored=lambda batch: Sequences(batch.tokens, batch.mask),
    task_rows=lambda env, task, n, key: rows_of(Sequences(env.tokens, env.mask), n, key),
    task_units=lambda env, task: jnp.ones((), bool),
    init=model.init_params,
    empty_batch=empty_batch,
  )


def sequence_learner(
  model: Model,
  rule: optax.GradientTransformation,
  batch: int,
  *,
  carry_memory: bool = True,
  strategy: strategies.Strategy | None = None,
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
    strategy: a continual-learning strategy built on
      `sequence_task_model(model, seq)`; its hyperparameters go into the
      state's `hparams`. None: plain learning.
  """
  strategy = strategy or strategies.naive(sequence_task_model(model))

  def init(key):
    k_params, k_state = jax.random.split(key)
    k_state, k_strategy = jax.random.split(k_state)
    params = model.init_params(k_params)
    memory = model.init_memory(batch) if carry_memory else ()
    return new_state(
      params,
      rule.init(params),
      k_state,
      memory=memory,
      strategy=strategy.init(params, k_strategy),
      hparams=strategy.hparams,
    )

  def step(state, x, env=None):
    del env
    batch_ = Sequences(x.tokens, x.mask, state.memory if carry_memory else None, getattr(x, "scored", None))
    params, opt_state, sstate, aux, grads = strategies.strategy_step(
      strategy,
      rule,
      state.params,
      state.opt_state,
      state.strategy,
      state.hparams,
      batch_,
      jax.random.split(jax.random.fold_in(state.key, state.step), 3),
    )
    learned = state.replace(
      params=params,
      opt_state=opt_state,
      memory=jax.lax.stop_gradient(aux["memory"]) if carry_memory else (),
      strategy=sstate,
      step=state.step + 1,
    )
    # A step of pure padding (the end of a finite stream) changes nothing.
    new_state = select_tree(aux["count"] > 0, learned, state)
    return new_state, StepMetrics(aux["nll"], aux["count"], optax.tree.norm(grads))

  return Learner(init, step)


def check_step_length(cfg: Config, model: Model) -> None:
  """Raises ConfigError unless every step holds whole inner mini-batches / segments of the model."""
  seq, multiple = cfg.data.seq, model.step_multiple
  if seq % multiple:
    raise ConfigError(
      f"data.seq={seq} must be a multiple of {multiple}, {model.step_reason}, which restarts at every step"
    )


def build_learner(cfg: Config) -> Learner:
  """The byte LM of `cfg.model`, trained by the outer optimizer and CMS levels.

  Raises ConfigError for a bad model, a step length the model cannot carry,
  or an orthogonalising optimizer over stacked blocks (`model.scan_layers`).
  """
  model = byte_lm(cfg.model)
  check_step_length(cfg, model)
  t = cfg.train
  if cfg.model.scan_layers and t.optimizer in rules.ORTHOGONALISED:
    raise ConfigError(
      f"train.optimizer={t.optimizer!r} orthogonalises each block's weight matrices, which model.scan_layers=true "
      "stacks across layers; use model.scan_layers=false or another optimizer"
    )
  level_rules = {"outer": rules.optimizer(t.optimizer, t.lr, t.clip, is_hidden_matrix=is_hidden_matrix)}
  periods = cfg.model.cms_periods
  for i, period in enumerate(periods):
    rule = rules.periodic(rules.optimizer(t.cms_optimizer, t.cms_lr), period)
    if cfg.model.cms_variant == "nested" and i + 1 < len(periods):
      rule = rules.reset_every(rule, periods[i + 1])  # wiped when the slower level steps
    level_rules[cms.level_name(i)] = rule
  return sequence_learner(model, rules.levels(level_rules, model.level_labels), cfg.data.batch)


def ebt_learner(
  cfg: ebt.EBTConfig,
  batch: int,
  *,
  lr: float = 1e-3,
  alpha_lr: float = 1e-2,
  clip: float = 1.0,
  optimizer: str = "adamw",
) -> Learner:
  """`sequence_learner` for the EBT: the loss is the inner loop's (mean CE over
  the K steps, or the last), the prequential NLL that of the final prediction.

  The levels: "outer" (`optimizer` at `lr`, clipped at `clip`) and "alpha"
  (Adam at `alpha_lr`, no weight decay).
  """
  model = ebt.ebt_lm(cfg)
  base = sequence_task_model(model)

  def loss(params, batch_):
    start = model.init_memory(batch_.tokens.shape[0]) if batch_.memory is None else batch_.memory
    thought, memory = ebt.train_thought(cfg, params, start, batch_.tokens[:, :-1])
    weights = (batch_.mask if batch_.scored is None else batch_.scored).astype(jnp.float32)
    targets = jnp.broadcast_to(batch_.tokens[None, :, 1:], thought.logits.shape[:-1])
    per_token = optax.softmax_cross_entropy_with_integer_labels(thought.logits, targets) * weights[None]
    count = jnp.sum(weights)
    per_step = jnp.sum(per_token, axis=(1, 2)) / jnp.maximum(count, 1.0)  # [K]
    objective = jnp.mean(per_step) if cfg.loss_on == "all" else per_step[-1]
    return objective, {"ce": per_step[-1], "memory": memory, "nll": jnp.sum(per_token[-1]), "count": count}

  rule = rules.levels(
    {OUTER: rules.optimizer(optimizer, lr, clip), ebt.ALPHA: optax.adam(alpha_lr)},
    ebt.level_labels,
  )
  return sequence_learner(model, rule, batch, strategy=strategies.naive(base._replace(loss=loss)))
