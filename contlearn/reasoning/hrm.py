"""The Hierarchical Reasoning Model (HRM, Wang et al. 2025) as a learner on the engine.

Two recurrent modules of TRM's network type (`contlearn.reasoning.network`:
post-norm blocks over the `[B, S, D]` sequence, mixing positions by an MLP or,
as in the official HRM, by attention, `cfg.mixer`; input injected by
addition), a low, fast one `f_L`
and a high, slow one `f_H`, refine two latents `z_H`, `z_L` given the
embedded puzzle `x` (TRM's `embed`). One segment runs N high cycles of T low
steps each:

    f_L(z_L, z_H + x) = net_L(z_L + z_H + x)        f_H(z_H, z_L) = net_H(z_H + z_L)
    for i in 1..N:  T times  z_L <- f_L(z_L, z_H + x)
                    then     z_H <- f_H(z_H, z_L)
    all calls but the last f_L and the last f_H under stop_gradient (the one-step gradient)

These are two latent levels on one clock (`contlearn.clocks`): z_L of period
1 and z_H of period T, N T ticks per segment, the gradient through the last
tick only.
    logits = z_H[:, P:] W_O        (q_halt, q_continue) = z_H[:, 0] W_Q + b_Q   (W_Q = 0, b_Q = -5 at init)

Halting is learned by Q-learning: `q_halt` is trained towards "the row's whole
answer is exactly right", `q_continue` towards the value of the next segment,
read by a no-gradient extra forward from this segment's new latents:

    target = sigmoid(q'_halt)                     if the row has run max_segments segments
             sigmoid(max(q'_halt, q'_continue))   otherwise
    loss   = mean_rows(mean_counted_tokens(stablemax_CE(logits, label)))
             + halt_weight (mean_rows(BCE(q_halt, exact)) + mean_rows(BCE(q_continue, target)))

A row halts after `max_segments` segments or when `q_halt > q_continue`
(with probability `explore`, not before a minimum drawn from {2..max}).

Everything around the recursion is shared with TRM: the carry in the learner
state's `memory`, its refill with the fixed initial vectors and the learner's
step (`contlearn.reasoning.segments`, with `y = z_H`, the state the heads
read, and `z = z_L`, the reading of the TRM paper), the network, and from
`trm` the embedding and the update rule (`with_ema` of AdamATan2 on
both modules and the heads, sign-SGD on the puzzle table).

>>> import jax
>>> from contlearn import engine
>>> from contlearn.puzzles import PuzzleConfig, PuzzleFeed, puzzle_kind, splits
>>> from contlearn.reasoning import ema_params
>>> train, _ = splits(PuzzleConfig(kind="sudoku", size=4, train=8, test=0, min_clues=6))
>>> kind = puzzle_kind(train.config)
>>> cfg = HRMConfig(vocab=kind.vocab, length=kind.length, puzzles=8, width=16, layers=1, max_segments=4)
>>> learner = hrm_learner(cfg, batch=4)
>>> state = engine.init(learner, jax.random.key(0))
>>> block, _ = PuzzleFeed(train, steps=3, batch=4).next(0)
>>> state, metrics = engine.compile(learner, state)(state, engine.place_xs(block))
>>> metrics.continue_loss.shape, state.memory.y.shape
((3,), (4, 17, 16))
>>> solve(ema_params(state.opt_state), cfg, train.inputs[:2], train.ids[:2]).shape  # every segment's answer
(4, 2, 16)
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import optax

from contlearn import clocks
from contlearn.engine import Learner
from contlearn.field_checks import require
from contlearn.models.layers import dense_init
from contlearn.reasoning.network import init_network, network
from contlearn.reasoning.segments import Carry, SegmentConfig, SegmentOutput, answer_terms, rollout, segment_learner
from contlearn.reasoning.trm import Q_INIT_BIAS, embed, update_rule


@dataclasses.dataclass(frozen=True)
class HRMConfig(SegmentConfig):
  """An HRM model and its training (the shared fields: `SegmentConfig`).

  Attributes:
    high_cycles: N, updates of z_H per segment.
    low_steps: T, updates of z_L per high cycle.
  """

  high_cycles: int = 2
  low_steps: int = 2

  def __post_init__(self):
    super().__post_init__()
    require(self, positive=("high_cycles", "low_steps"))


#### The hierarchical recursion ####


def low_update(blocks: list[dict], z_low: jax.Array, injection: jax.Array) -> jax.Array:
  """f_L(z_L, z_H + x) = net_L(z_L + z_H + x), `injection = z_H + x`; all `[B, S, D]`."""
  return network(blocks, z_low + injection)


def high_update(blocks: list[dict], z_high: jax.Array, z_low: jax.Array) -> jax.Array:
  """f_H(z_H, z_L) = net_H(z_H + z_L); all `[B, S, D]`."""
  return network(blocks, z_high + z_low)


def levels(net: dict, x: jax.Array, low_steps: int) -> tuple[clocks.Level, clocks.Level]:
  """HRM's two latent levels, latents `(z_L, z_H)`: z_L every tick, `f_L(z_L, z_H + x)`; z_H every `low_steps`
  ticks, `f_H(z_H, z_L)` (after z_L's update of the same tick)."""
  return (
    clocks.Level(1, lambda z: low_update(net["low"], z[0], z[1] + x)),
    clocks.Level(low_steps, lambda z: high_update(net["high"], z[1], z[0])),
  )


def hierarchical_recursion(
  net: dict, x: jax.Array, z_high: jax.Array, z_low: jax.Array, high_cycles: int, low_steps: int
):
  """One segment's N T ticks of `levels` (`clocks.run`), all but the last tick under stop_gradient: the gradient
  flows through the last f_L and f_H calls only. Returns `(z_high, z_low)`."""
  z_low, z_high = clocks.run(levels(net, x, low_steps), (z_low, z_high), ticks=high_cycles * low_steps)
  return z_high, z_low


#### Parameters, one segment, the loss ####


def init_params(key: jax.Array, cfg: HRMConfig) -> dict:
  """{embed [V, D], puzzle_emb [puzzles, P D] (zeros), net {low, high}, head [D, V],
  q_head {w [D, 2] (zeros), b [2] (-5)}, init {y (z_H), z (z_L)} [D] (fixed)}."""
  k_embed, k_low, k_high, k_head, k_y, k_z = jax.random.split(key, 6)
  d = cfg.width
  return {
    "embed": jax.random.normal(k_embed, (cfg.vocab, d), jnp.float32) / math.sqrt(d),
    "puzzle_emb": jnp.zeros((cfg.puzzles, cfg.puzzle_tokens * d), jnp.float32),
    "net": {"low": init_network(k_low, cfg), "high": init_network(k_high, cfg)},
    "head": dense_init(k_head, d, cfg.vocab),
    "q_head": {"w": jnp.zeros((d, 2), jnp.float32), "b": jnp.full((2,), Q_INIT_BIAS, jnp.float32)},
    "init": {
      "y": jax.random.truncated_normal(k_y, -2.0, 2.0, (d,), jnp.float32),
      "z": jax.random.truncated_normal(k_z, -2.0, 2.0, (d,), jnp.float32),
    },
  }


def segment(params: dict, cfg: HRMConfig, carry: Carry) -> SegmentOutput:
  """One segment from the (detached) carry: the new z_H (`y`), z_L (`z`), the logits, q_halt and q_continue."""
  z_high, z_low = jax.lax.stop_gradient((carry.y, carry.z))
  x = embed(params, cfg, carry.inputs, carry.ids)
  z_high, z_low = hierarchical_recursion(params["net"], x, z_high, z_low, cfg.high_cycles, cfg.low_steps)
  logits = z_high[:, cfg.puzzle_tokens :] @ params["head"]
  q = z_high[:, 0] @ params["q_head"]["w"] + params["q_head"]["b"][None, :]
  return SegmentOutput(z_high, z_low, logits, q[:, 0], q[:, 1])


def q_target(next_q_halt: jax.Array, next_q_continue: jax.Array, last: jax.Array) -> jax.Array:
  """float32 `[B]`, the target of q_continue: `sigmoid(q'_halt)` on a row's last segment, else
  `sigmoid(max(q'_halt, q'_continue))`, from the next segment's logits `[B]`; `last` bool `[B]`."""
  return jax.nn.sigmoid(jnp.where(last, next_q_halt, jnp.maximum(next_q_halt, next_q_continue)))


def segment_loss(params: dict, cfg: HRMConfig, carry: Carry):
  """`(loss, aux)`: stablemax CE of the answer, plus `halt_weight` times the BCE of q_halt on "exactly right"
  and the BCE of q_continue on `q_target` of a no-gradient extra segment from the new latents."""
  z_high, z_low, logits, q_halt, q_continue = segment(params, cfg, carry)
  answer = answer_terms(logits, carry.labels, cfg.ignore_label)
  steps = carry.steps + 1
  following = carry._replace(y=z_high, z=z_low, steps=steps)
  _, _, _, next_halt, next_continue = segment(jax.lax.stop_gradient(params), cfg, jax.lax.stop_gradient(following))
  target = jax.lax.stop_gradient(q_target(next_halt, next_continue, steps >= cfg.max_segments))
  halt_loss = jnp.mean(optax.sigmoid_binary_cross_entropy(q_halt, answer.exact.astype(jnp.float32)))
  continue_loss = jnp.mean(optax.sigmoid_binary_cross_entropy(q_continue, target))
  aux = {
    **{"y": z_high, "z": z_low, "halt_logit": q_halt - q_continue, "target": target},
    **{"exact": answer.exact, "correct": answer.correct, "counted": answer.counted, "lm": answer.loss},
    **{"halt": halt_loss, "continue": continue_loss},
  }
  return answer.loss + cfg.halt_weight * (halt_loss + continue_loss), aux


def hrm_learner(cfg: HRMConfig, batch: int) -> Learner:
  """An HRM learner of `batch` rows whose step reads a `PuzzleBlock` slice (module docstring); a row halts
  when `q_halt > q_continue`."""
  return segment_learner(cfg, batch, init_params, update_rule(cfg), segment_loss)


def solve(params: dict, cfg: HRMConfig, inputs: jax.Array, ids: jax.Array) -> jax.Array:
  """int32 `[max_segments, B, L]`: the answer after each segment, running all of them (no halting)."""
  return rollout(segment, params, cfg, inputs, ids)[0]
