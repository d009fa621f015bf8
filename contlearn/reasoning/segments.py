"""One supervision segment per engine step: the ACT carry of a recursive model, its refill, halting, the learner.

TRM and HRM share everything around their recursion. The learner state's
`memory` is the carry of B rows, `Carry(y, z, steps, halted, inputs, labels,
ids)`, with `y` the state the heads read (TRM's answer, HRM's `z_H`) and `z`
the other latent (TRM's `z`, HRM's `z_L`). A step refills the halted rows
with the block's candidate puzzles and the fixed initial `y`, `z`, runs one
segment of the model's `segment_loss`, updates the parameters, and decides
which rows halt. `cfg` is the model's config: `tokens`, `width`, `length`,
`max_segments`, `explore` are read here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from contlearn.engine import Learner
from contlearn.field_checks import FieldError, require
from contlearn.puzzles.feed import PuzzleBlock
from contlearn.reasoning.stablemax import stablemax_cross_entropy
from contlearn.state import new_state


@dataclasses.dataclass(frozen=True)
class SegmentConfig:
  """What every model trained by segments shares: sizes, halting and the update rule.

  Attributes:
    vocab: V, input and answer tokens `0..V-1`.
    length: L, tokens of a puzzle.
    puzzles: rows of the puzzle-embedding table (puzzle ids `0..puzzles-1`).
    width: D, the model width.
    layers: blocks of the network (of each module, for HRM).
    expansion: hidden width of the network's SwiGLUs, as a multiple of their input width (D, or S across positions).
    mixer: how a block mixes the S positions: "mlp" (a SwiGLU across them, TRM's "mlp_t") or "attention"
      (non-causal multi-head self-attention with RoPE); see `contlearn.reasoning.network`.
    heads: attention heads, of width D / heads (an even number, for RoPE); read when mixer="attention".
    puzzle_tokens: P, the puzzle embedding's tokens before the input.
    max_segments: N_sup, segments a puzzle runs at most.
    explore: probability that a row may halt only after a drawn minimum of segments.
    halt_weight: weight of the halting loss terms.
    lr, b1, b2, weight_decay: AdamATan2 on the network.
    puzzle_lr, puzzle_weight_decay: sign-SGD on the puzzle-embedding table.
    ignore_label: a label token left out of the answer loss, the accuracy and
      exactness (ARC's canvas padding, 0); -1: none.
    warmup: steps over which both rates rise linearly from `1 / warmup` of their value to all of it (0: none).
    ema_rate: rate of the weights' moving average.
  """

  vocab: int
  length: int
  puzzles: int
  width: int = 64
  layers: int = 2
  expansion: int = 4
  mixer: str = "mlp"
  heads: int = 2
  puzzle_tokens: int = 1
  max_segments: int = 8
  explore: float = 0.1
  halt_weight: float = 0.5
  lr: float = 1e-3
  b1: float = 0.9
  b2: float = 0.95
  weight_decay: float = 0.1
  puzzle_lr: float = 1e-2
  puzzle_weight_decay: float = 0.1
  ignore_label: int = -1
  warmup: int = 0
  ema_rate: float = 0.999

  def __post_init__(self):
    require(
      self,
      positive=(
        *("vocab", "length", "puzzles", "width", "layers", "expansion", "heads", "puzzle_tokens"),
        *("max_segments", "lr", "puzzle_lr"),
      ),
      non_negative=("explore", "halt_weight", "weight_decay", "puzzle_weight_decay", "warmup"),
      fraction=("b1", "b2", "ema_rate"),
      choices={"mixer": ("mlp", "attention")},
    )
    if self.mixer == "attention" and self.width % (2 * self.heads):
      raise FieldError(
        type(self).__name__, "heads", self.heads, f"a divisor of width={self.width} into even head widths"
      )
    if self.explore >= 1:
      raise FieldError(type(self).__name__, "explore", self.explore, "a probability below 1")

  @property
  def tokens(self) -> int:
    """S = P + L, the sequence the network sees."""
    return self.puzzle_tokens + self.length


class Carry(NamedTuple):
  """The ACT carry of B rows, the learner state's `memory`.

  Attributes:
    y, z: float32 `[B, S, D]`, the two latents (TRM's answer and latent, HRM's z_H and z_L), detached.
    steps: int32 `[B]`, segments the row's puzzle has run.
    halted: bool `[B]`, the row takes the block's candidate puzzle at the next step.
    inputs, labels: int32 `[B, L]`, the row's current puzzle and its answer.
    ids: int32 `[B]`, the row's puzzle id.
  """

  y: jax.Array
  z: jax.Array
  steps: jax.Array
  halted: jax.Array
  inputs: jax.Array
  labels: jax.Array
  ids: jax.Array


def init_carry(cfg, batch: int) -> Carry:
  """Every row halted, so the first step fills all of them."""
  hidden = jnp.zeros((batch, cfg.tokens, cfg.width), jnp.float32)
  tokens = jnp.zeros((batch, cfg.length), jnp.int32)
  return Carry(hidden, hidden, jnp.zeros((batch,), jnp.int32), jnp.ones((batch,), bool), tokens, tokens, tokens[:, 0])


def refill(carry: Carry, candidates, init: dict) -> Carry:
  """Halted rows take the candidate puzzle (`inputs`, `labels [B, L]`, `ids [B]`), `y, z = init`, `steps = 0`."""
  h = carry.halted

  def pick(new, old):
    return jnp.where(h.reshape(-1, *([1] * (old.ndim - 1))), new, old)

  return Carry(
    y=pick(jnp.broadcast_to(init["y"], carry.y.shape), carry.y),
    z=pick(jnp.broadcast_to(init["z"], carry.z.shape), carry.z),
    steps=pick(0, carry.steps),
    halted=carry.halted,
    inputs=pick(candidates.inputs, carry.inputs),
    labels=pick(candidates.labels, carry.labels),
    ids=pick(candidates.ids, carry.ids),
  )


def halts(cfg, steps: jax.Array, halt_logit: jax.Array, key: jax.Array) -> jax.Array:
  """bool `[B]`: `steps >= max_segments`, or `halt_logit > 0` once past a minimum drawn with probability `explore`."""
  k_explore, k_min = jax.random.split(key)
  explore = jax.random.uniform(k_explore, steps.shape) < cfg.explore
  min_steps = jnp.where(explore, jax.random.randint(k_min, steps.shape, 2, cfg.max_segments + 1), 0)
  return (steps >= cfg.max_segments) | ((halt_logit > 0) & (steps >= min_steps))


class AnswerTerms(NamedTuple):
  """The answer's loss and correctness (`answer_terms`).

  Attributes:
    loss: float32 `[]`, stablemax cross-entropy, a mean over each row's counted tokens, then over rows.
    correct: bool `[B, L]`, counted tokens predicted right (False on ignored ones).
    counted: bool `[B, L]`, tokens whose label is not `ignore_label`.
    exact: bool `[B]`, every counted token of the row right.
  """

  loss: jax.Array
  correct: jax.Array
  counted: jax.Array
  exact: jax.Array


def answer_terms(logits: jax.Array, labels: jax.Array, ignore_label: int) -> AnswerTerms:
  """`AnswerTerms` of logits `[B, L, V]` against int labels `[B, L]`, tokens labelled `ignore_label` left out."""
  ce = stablemax_cross_entropy(logits, labels)
  right = jnp.argmax(logits, axis=-1) == labels
  if ignore_label < 0:  # every token counts: the plain means
    return AnswerTerms(jnp.mean(ce), right, jnp.ones_like(right), jnp.all(right, axis=-1))
  counted = labels != ignore_label
  per_row = jnp.sum(jnp.where(counted, ce, 0.0), axis=-1) / jnp.maximum(jnp.sum(counted, axis=-1), 1)
  return AnswerTerms(jnp.mean(per_row), right & counted, counted, jnp.all(right | ~counted, axis=-1))


class SegmentOutput(NamedTuple):
  """What a model's segment returns.

  Attributes:
    y, z: float32 `[B, S, D]`, the new latents (TRM's answer and latent, HRM's z_H and z_L).
    logits: float32 `[B, L, V]`, the answer's logits.
    q_halt: float32 `[B]`, the halting head.
    q_continue: float32 `[B]`, HRM's continue head; None for TRM.
  """

  y: jax.Array
  z: jax.Array
  logits: jax.Array
  q_halt: jax.Array
  q_continue: jax.Array | None = None

  @property
  def halt_logit(self) -> jax.Array:
    """float32 `[B]`: the row halts when this is > 0 (`q_halt`, or `q_halt - q_continue`)."""
    return self.q_halt if self.q_continue is None else self.q_halt - self.q_continue


class SegmentMetrics(NamedTuple):
  """Per step, stacked to `[steps]` by the scan; all float32 `[]`.

  Attributes:
    loss, lm_loss, halt_loss: the segment's loss, its answer term and its halting term.
    continue_loss: HRM's Q-learning term for q_continue (0 for TRM).
    accuracy: fraction of answer tokens right.
    exact: fraction of rows whose whole answer is right.
    halted: fraction of rows that halt after this segment.
    segments: mean segments run by the rows that halt (0 when none does).
  """

  loss: jax.Array
  lm_loss: jax.Array
  halt_loss: jax.Array
  continue_loss: jax.Array
  accuracy: jax.Array
  exact: jax.Array
  halted: jax.Array
  segments: jax.Array


def segment_metrics(loss: jax.Array, aux: dict, halted: jax.Array, steps: jax.Array) -> SegmentMetrics:
  """The metrics of a segment from its loss, the loss's `aux` and the rows' halted flags and steps `[B]`."""
  n_halted = jnp.sum(halted)
  return SegmentMetrics(
    loss=loss,
    lm_loss=aux["lm"],
    halt_loss=aux["halt"],
    continue_loss=aux.get("continue", jnp.zeros(())),
    accuracy=jnp.sum(aux["correct"]) / jnp.maximum(jnp.sum(aux["counted"]), 1),
    exact=jnp.mean(aux["exact"]),
    halted=n_halted / halted.shape[0],
    segments=jnp.sum(jnp.where(halted, steps, 0)) / jnp.maximum(n_halted, 1),
  )


def segment_learner(
  cfg,
  batch: int,
  init_params: Callable,
  rule: optax.GradientTransformation,
  segment_loss: Callable,
) -> Learner:
  """A learner of `batch` rows whose step is one segment, reading a `PuzzleBlock` slice.

  Args:
    cfg: the model's config.
    batch: B, the rows of the carry.
    init_params: `(key, cfg) -> params`, with `params["init"] = {"y", "z"}` the rows' initial latents `[D]`.
    rule: the update rule.
    segment_loss: `(params, cfg, carry) -> (loss, aux)`; `aux` holds the new latents `y`, `z`,
      `halt_logit [B]` (the row halts when it is > 0) and what `segment_metrics` reads.
  """

  def init(key):
    k_params, k_state = jax.random.split(key)
    params = init_params(k_params, cfg)
    return new_state(params, rule.init(params), k_state, memory=init_carry(cfg, batch))

  def step(state, x, env=None):
    del env
    carry = refill(state.memory, x, state.params["init"])
    (loss, aux), grads = jax.value_and_grad(segment_loss, has_aux=True)(state.params, cfg, carry)
    updates, opt_state = rule.update(grads, state.opt_state, state.params)
    steps = carry.steps + 1
    halted = halts(cfg, steps, aux["halt_logit"], jax.random.fold_in(state.key, state.step))
    memory = carry._replace(y=aux["y"], z=aux["z"], steps=steps, halted=halted)
    new = state.replace(
      params=optax.apply_updates(state.params, updates),
      opt_state=opt_state,
      memory=jax.lax.stop_gradient(memory),
      step=state.step + 1,
    )
    return new, segment_metrics(loss, aux, halted, steps)

  return Learner(init, step)


def rollout(segment: Callable, params: dict, cfg, inputs: jax.Array, ids: jax.Array) -> tuple[jax.Array, jax.Array]:
  """All `max_segments` segments, no halting: the answer after each, int32 `[N, B, L]`, and the halt logit
  (`SegmentOutput.halt_logit`), float32 `[N, B]`.

  `segment(params, cfg, carry) -> SegmentOutput`; `inputs [B, L]`, `ids [B]`."""
  carry = refill(init_carry(cfg, inputs.shape[0]), PuzzleBlock(inputs, inputs, ids), params["init"])  # labels unused

  def one(carry, _):
    out = segment(params, cfg, carry)
    return carry._replace(y=out.y, z=out.z), (jnp.argmax(out.logits, axis=-1).astype(jnp.int32), out.halt_logit)

  return jax.lax.scan(one, carry, length=cfg.max_segments)[1]
