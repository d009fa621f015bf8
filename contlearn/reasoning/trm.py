"""The Tiny Recursive Model (TRM, Jolicoeur-Martineau 2025) as a learner on the engine.

One tiny network `f` (`contlearn.reasoning.network`: post-norm blocks over
the token sequence, mixing positions by an MLP, TRM's "mlp_t" Sudoku variant,
or by attention, TRM-Att, as `cfg.mixer` says) refines a latent `z` and an
answer `y`, both `[B, P + L, D]`, given the embedded puzzle `x` (P
puzzle-embedding tokens, then the L input tokens):

    x = sqrt(D) [puzzle_emb(id) ; E[input]]
    latent_recursion(x, y, z):  n times  z <- f(x + y + z)
                                then     y <- f(y + z)
    deep_recursion(x, y, z):    T - 1 rounds of latent_recursion under stop_gradient,
                                then one round with full backpropagation
    logits = y[:, P:] W_O            q_halt = y[:, 0] w_q + b_q   (w_q = 0, b_q = -5 at init)
    loss   = mean_rows(mean_counted_tokens(stablemax_CE(logits, label))) + halt_weight mean_rows(BCE(q_halt, exact))

with `exact` = the row's whole answer is right; a token counts unless its label
is `ignore_label` (ARC's canvas padding; `segments.answer_terms`). One engine step is one
supervision segment. The state's `memory` is the ACT carry of every batch
row, `Carry(y, z, steps, halted, inputs, labels, ids)`, carried detached
(`stop_gradient`) from one step to the next. At the start of a step, a row
whose `halted` flag is set takes the candidate puzzle the block offers it at
this step (`PuzzleBlock` slice: `inputs`, `labels [B, L]`, `ids [B]`), and
its `y`, `z` return to the fixed initial vectors and its `steps` to 0; the
other rows keep their puzzle and carry. After the segment, a row halts when
it has run `max_segments` segments or when `q_halt > 0` (with probability
`explore`, not before a minimum number of segments drawn from {2..max}),
as TRM does without a Q-continue head.

The update rule is `with_ema(levels(...))`: AdamATan2 on the network,
sign-SGD with decoupled weight decay on the puzzle-embedding table, nothing
on the fixed initial vectors; the weights' average is `ema_params(state.opt_state)`.
`single_pass(cfg)` is the baseline of the same parameters: one round of
one latent update and one answer update, one segment per puzzle.

>>> import jax
>>> from contlearn import engine
>>> from contlearn.puzzles import PuzzleConfig, PuzzleFeed, puzzle_kind, splits
>>> from contlearn.reasoning import ema_params
>>> train, _ = splits(PuzzleConfig(kind="sudoku", size=4, train=8, test=0, min_clues=6))
>>> kind = puzzle_kind(train.config)
>>> cfg = TRMConfig(vocab=kind.vocab, length=kind.length, puzzles=8, width=16, max_segments=4)
>>> learner = trm_learner(cfg, batch=4)
>>> state = engine.init(learner, jax.random.key(0))
>>> block, _ = PuzzleFeed(train, steps=3, batch=4).next(0)
>>> state, metrics = engine.compile(learner, state)(state, engine.place_xs(block))
>>> metrics.loss.shape, state.memory.y.shape
((3,), (4, 17, 16))
>>> answers = solve(ema_params(state.opt_state), cfg, train.inputs[:2], train.ids[:2])  # every segment's answer
>>> answers.shape
(4, 2, 16)
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import optax

from contlearn import rules
from contlearn.engine import Learner
from contlearn.field_checks import require
from contlearn.models.layers import dense_init
from contlearn.reasoning.adam_atan2 import adam_atan2
from contlearn.reasoning.ema import with_ema
from contlearn.reasoning.network import init_network, network
from contlearn.reasoning.segments import Carry, SegmentConfig, SegmentOutput, answer_terms, segment_learner
from contlearn.reasoning.segments import refill as refill  # re-exported: TRM's refill of halted rows
from contlearn.reasoning.segments import rollout as segments_rollout
from contlearn.reasoning.sign_sgd import sign_sgd

Q_INIT_BIAS = -5.0  # q_halt starts far below 0: rows run their segments until the head learns


@dataclasses.dataclass(frozen=True)
class TRMConfig(SegmentConfig):
  """A TRM model and its training (the shared fields: `SegmentConfig`).

  Attributes:
    cycles: T, rounds of latent recursion per segment (the last one with gradient).
    latent_steps: n, latent updates per round.
  """

  cycles: int = 2
  latent_steps: int = 3

  def __post_init__(self):
    super().__post_init__()
    require(self, positive=("cycles", "latent_steps"))


def single_pass(cfg: TRMConfig) -> TRMConfig:
  """The baseline of the same parameters: z <- f(x + y + z), y <- f(y + z) once, one segment per puzzle."""
  return dataclasses.replace(cfg, cycles=1, latent_steps=1, max_segments=1)


#### The recursion ####


def latent_recursion(blocks: list[dict], x: jax.Array, y: jax.Array, z: jax.Array, n: int):
  """n updates `z <- f(x + y + z)`, then `y <- f(y + z)`; all `[B, S, D]`."""
  for _ in range(n):
    z = network(blocks, x + y + z)
  return network(blocks, y + z), z


def deep_recursion(blocks: list[dict], x: jax.Array, y: jax.Array, z: jax.Array, cycles: int, n: int):
  """`cycles - 1` rounds of `latent_recursion` under stop_gradient, then one with gradient; returns `(y, z)`."""
  for _ in range(cycles - 1):
    y, z = latent_recursion(blocks, x, y, z, n)
  y, z = jax.lax.stop_gradient((y, z))
  return latent_recursion(blocks, x, y, z, n)


#### Parameters, the carry, one segment ####


def init_params(key: jax.Array, cfg: TRMConfig) -> dict:
  """{embed [V, D], puzzle_emb [puzzles, P D] (zeros), net, head [D, V], q_head {w [D] (zeros), b []},
  init {y, z} [D] (fixed)}."""
  k_embed, k_net, k_head, k_y, k_z = jax.random.split(key, 5)
  d = cfg.width
  return {
    "embed": jax.random.normal(k_embed, (cfg.vocab, d), jnp.float32) / math.sqrt(d),
    "puzzle_emb": jnp.zeros((cfg.puzzles, cfg.puzzle_tokens * d), jnp.float32),
    "net": init_network(k_net, cfg),
    "head": dense_init(k_head, d, cfg.vocab),
    "q_head": {"w": jnp.zeros((d,), jnp.float32), "b": jnp.asarray(Q_INIT_BIAS, jnp.float32)},
    "init": {
      "y": jax.random.truncated_normal(k_y, -2.0, 2.0, (d,), jnp.float32),
      "z": jax.random.truncated_normal(k_z, -2.0, 2.0, (d,), jnp.float32),
    },
  }


def level_labels(params: dict) -> dict:
  """The level of every leaf: "puzzle" (the embedding table), "fixed" (the initial y, z), "net" (the rest)."""
  level = {"puzzle_emb": "puzzle", "init": "fixed"}
  return {k: jax.tree.map(lambda _, k=k: level.get(k, "net"), v) for k, v in params.items()}


def update_rule(cfg: TRMConfig) -> optax.GradientTransformation:
  """`with_ema(levels(...))`: AdamATan2 on the network, sign-SGD on the puzzle table, nothing on `init`;
  with `cfg.warmup`, every update scaled by `min(1, t / warmup)` at step t = 1, 2, ... (the official linear
  warm-up of both rates)."""
  levels = rules.levels(
    {
      "net": adam_atan2(cfg.lr, cfg.b1, cfg.b2, cfg.weight_decay),
      "puzzle": sign_sgd(cfg.puzzle_lr, cfg.puzzle_weight_decay),
      "fixed": optax.set_to_zero(),
    },
    level_labels,
  )
  if cfg.warmup:
    levels = optax.chain(levels, optax.scale_by_schedule(lambda count: jnp.minimum(1.0, (count + 1) / cfg.warmup)))
  return with_ema(levels, cfg.ema_rate)


def embed(params: dict, cfg: TRMConfig, inputs: jax.Array, ids: jax.Array) -> jax.Array:
  """x = sqrt(D) [puzzle_emb(id) ; E[input]]: `[B, S, D]` from `inputs [B, L]`, `ids [B]`."""
  prefix = params["puzzle_emb"][ids].reshape(ids.shape[0], cfg.puzzle_tokens, cfg.width)
  return math.sqrt(cfg.width) * jnp.concatenate([prefix, params["embed"][inputs]], axis=1)


def segment(params: dict, cfg: TRMConfig, carry: Carry) -> SegmentOutput:
  """One supervision segment from the (detached) carry: the new `y`, `z`, the logits and q_halt."""
  y, z = jax.lax.stop_gradient((carry.y, carry.z))
  x = embed(params, cfg, carry.inputs, carry.ids)
  y, z = deep_recursion(params["net"], x, y, z, cfg.cycles, cfg.latent_steps)
  logits = y[:, cfg.puzzle_tokens :] @ params["head"]
  q_halt = y[:, 0] @ params["q_head"]["w"] + params["q_head"]["b"]
  return SegmentOutput(y, z, logits, q_halt)


def segment_loss(params: dict, cfg: TRMConfig, carry: Carry):
  """`(loss, aux)`: the stablemax CE of the answer plus `halt_weight` BCE of q_halt on "exactly right"."""
  y, z, logits, q_halt, _ = segment(params, cfg, carry)
  answer = answer_terms(logits, carry.labels, cfg.ignore_label)
  halt_loss = jnp.mean(optax.sigmoid_binary_cross_entropy(q_halt, answer.exact.astype(jnp.float32)))
  aux = {"y": y, "z": z, "halt_logit": q_halt, "exact": answer.exact, "correct": answer.correct}
  aux |= {"counted": answer.counted, "lm": answer.loss, "halt": halt_loss}
  return answer.loss + cfg.halt_weight * halt_loss, aux


def trm_learner(cfg: TRMConfig, batch: int) -> Learner:
  """A TRM learner of `batch` rows whose step reads a `PuzzleBlock` slice (module docstring)."""
  return segment_learner(cfg, batch, init_params, update_rule(cfg), segment_loss)


def rollout(params: dict, cfg: TRMConfig, inputs: jax.Array, ids: jax.Array) -> tuple[jax.Array, jax.Array]:
  """All `max_segments` segments, no halting: the answers, int32 `[N, B, L]`, and q_halt, float32 `[N, B]`."""
  return segments_rollout(segment, params, cfg, inputs, ids)


def solve(params: dict, cfg: TRMConfig, inputs: jax.Array, ids: jax.Array) -> jax.Array:
  """int32 `[max_segments, B, L]`: the answer after each segment, running all of them (no halting)."""
  return rollout(params, cfg, inputs, ids)[0]
