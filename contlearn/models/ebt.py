"""An Energy-Based Transformer (Gladstone et al., 2025) over bytes.

The model scores a candidate next-byte distribution with a scalar energy and
finds its prediction by gradient descent on the candidate ("thinking").

Energy. For real tokens `x_0..x_{T-1}` and candidate logits
`y_0..y_{T-1}` (`y_i [V]` predicts `x_{i+1}`):

    h   = [embed[x_0], ..., embed[x_{T-1}],  softmax(y_0) @ W_v2e, ..., softmax(y_{T-1}) @ W_v2e]   [2T, D]
          (+ time[k] on the prediction half with `time_embed`: one landscape per inner step k)
    h   = pre-norm transformer blocks over h with the EBT attention pattern:
          real i attends to real j <= i; prediction i attends to real j <= i and to itself
    E_i = rms(h[T + i]) @ w_E                                                      [T]

`W_v2e [V, D]` has no bias. RoPE positions: real i at i, prediction i at
i + 1 (the position of the byte it predicts). Since prediction i sees no
other prediction, `E_i` depends on `y_i` alone and `d(sum_i E_i)/dy_i =
dE_i/dy_i`.

Inner loop (training, K = `steps`):

    y_0 ~ N(0, 1)^[T, V]  (or, for the first `replay_fraction` of the lanes, a
                           past final prediction drawn from the lane's ring buffer)
    for k = 0..K-1:
      y <- stop_grad(y)                      if `detach`
      y <- y + langevin_std * eps_k          eps_k ~ N(0, 1)  (Langevin noise)
      y <- y + sgd(a).update(dE/dy)          = y - a dE/dy
    a = max(alpha, 1e-4), times u ~ U[1/s, s] per position with s = `alpha_jitter` > 1

With `descend_probs` (the official code's `normalize_initial_condition`) the
step descends on the distribution instead: p = softmax(y + noise),
y <- p - a dE/dp, and the next step and the loss read y as logits again.
    loss = mean_k CE(y_{k+1}, x_next)        (`loss_on="all"`) or CE(y_K) (`"last"`)

`alpha` is a parameter of its own level ("alpha"), so `rules.levels` gives it
its own rate; the outer gradient flows through the K steps (second order:
`jax.grad` of a loss containing `jax.grad`). Each lane keeps its last
`replay_size` final predictions in a ring buffer (`contlearn.ring`) in the
model's memory, with its PRNG key: the memory is `EBTMemory(key, replay)`.

Inference (`ebt_lm(cfg, inference=True)`): `infer_steps` steps (the time
embedding of step k >= K is that of step K-1, the final landscape), from
`infer_starts` random starts (vmapped); at every position the candidate with
the lowest final energy is kept (best-of-N, self-verification).

The model is a `contlearn.models.lm.Model` whose `apply` returns the final
logits; `contlearn.learner.ebt_learner(cfg, batch)` trains it with `sequence_learner` and a
task model whose loss is the inner loop's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from contlearn import ring
from contlearn.field_checks import FieldError, require
from contlearn.models import layers
from contlearn.models.lm import OUTER, Model

ALPHA = "alpha"
ALPHA_MIN = 1e-4
PyTree = Any


@dataclasses.dataclass(frozen=True)
class EBTConfig:
  """An Energy-Based Transformer and its inner loop (see the module docstring).

  Attributes:
    vocab: V, the byte vocabulary.
    d_model: D, the transformer's width (a multiple of 2 n_heads).
    n_layers: transformer blocks.
    n_heads: attention heads.
    mlp_ratio: MLP width / D.
    seq: T, tokens per step (shapes the replay buffer).
    steps: K, inner steps in training.
    alpha: the step size's initial value (learned, clamped to >= 1e-4).
    alpha_jitter: s; each step's size is alpha * U[1/s, s] (1: fixed).
    langevin_std: std of the Langevin noise added to y before each step (0: none).
    detach: stop the gradient between inner steps.
    loss_on: "all" (mean CE over the K steps' predictions) or "last".
    time_embed: a learned embedding of the step index on the prediction half.
    descend_probs: descend on p = softmax(y + noise) instead of the logits y,
      y <- p - a dE/dp, the next step reading y as logits again (the official
      code with `normalize_initial_condition`, its pretraining scripts' setting).
    replay_size: ring-buffer capacity per lane (0: no replay).
    replay_fraction: fraction of the lanes (the first ones) that start from
      the buffer once it holds a prediction.
    infer_steps: inner steps at inference (0: `steps`).
    infer_starts: N, random starts at inference; the lowest final energy wins.
  """

  vocab: int = 256
  d_model: int = 64
  n_layers: int = 2
  n_heads: int = 4
  mlp_ratio: int = 4
  seq: int = 64
  steps: int = 2
  alpha: float = 10.0
  alpha_jitter: float = 1.0
  langevin_std: float = 0.0
  detach: bool = True
  loss_on: str = "all"
  time_embed: bool = True
  descend_probs: bool = False
  replay_size: int = 0
  replay_fraction: float = 0.5
  infer_steps: int = 0
  infer_starts: int = 1

  def __post_init__(self):
    require(
      self,
      positive=("vocab", "d_model", "n_layers", "n_heads", "mlp_ratio", "seq", "steps", "alpha", "infer_starts"),
      non_negative=("langevin_std", "replay_size", "infer_steps"),
      fraction=("replay_fraction",),
      choices={"loss_on": ("all", "last"), **{f: (True, False) for f in ("detach", "time_embed", "descend_probs")}},
    )
    if not self.alpha_jitter >= 1:
      raise FieldError(type(self).__name__, "alpha_jitter", self.alpha_jitter, "a finite number >= 1")
    if self.d_model % (2 * self.n_heads):
      raise FieldError(type(self).__name__, "d_model", self.d_model, f"a multiple of 2 * n_heads = {2 * self.n_heads}")


class EBTMemory(NamedTuple):
  """What an EBT carries from step to step, per lane.

  Attributes:
    key: uint32 [B, 2], each lane's PRNG key (initial conditions, noise, jitter).
    replay: a `contlearn.ring.Ring` per lane of final logits (items
      float32 [B, C, T, V], count int32 [B]), or () without replay.
  """

  key: jax.Array
  replay: Any


class Thought(NamedTuple):
  """The inner loop's trajectory.

  Attributes:
    logits: [K, B, T, V], the prediction after each step.
    energies: [K, B, T], the energy of the prediction each step started from.
  """

  logits: jax.Array
  energies: jax.Array


def attention_mask(t: int) -> jax.Array:
  """bool [2T, 2T], True where row attends to column (the EBT pattern).

  Rows and columns 0..T-1 are the real tokens, T..2T-1 the predictions.
  """
  i = jnp.arange(2 * t)
  pos, is_pred = i % t, i >= t
  causal = pos[None, :] <= pos[:, None]
  return jnp.where(is_pred[None, :], is_pred[:, None] & (i[None, :] == i[:, None]), causal)


def init_params(cfg: EBTConfig, key: jax.Array) -> dict:
  """The energy function's parameters and the step size `alpha` []."""
  d = cfg.d_model
  k_embed, k_v2e, k_time, k_head, *k_blocks = jax.random.split(key, 4 + cfg.n_layers)
  blocks = []
  for k in k_blocks:
    kq, kk, kv, ko, kf = jax.random.split(k, 5)
    blocks.append(
      {
        "norm": jnp.ones((d,), jnp.float32),
        "wq": layers.dense_init(kq, d, d),
        "wk": layers.dense_init(kk, d, d),
        "wv": layers.dense_init(kv, d, d),
        "wo": layers.dense_init(ko, d, d, scale=1.0 / cfg.n_layers),
        "ff": layers.mlp_init(kf, d, cfg.mlp_ratio * d, 1.0 / cfg.n_layers),
      }
    )
  params = {
    "embed": jax.random.normal(k_embed, (cfg.vocab, d), jnp.float32),
    "v2e": layers.dense_init(k_v2e, cfg.vocab, d),
    "blocks": blocks,
    "final_norm": jnp.ones((d,), jnp.float32),
    "head": layers.dense_init(k_head, d, 1),
    ALPHA: jnp.asarray(cfg.alpha, jnp.float32),
  }
  if cfg.time_embed:
    params["time"] = 0.02 * jax.random.normal(k_time, (cfg.steps, d), jnp.float32)
  return params


def level_labels(params: dict) -> dict:
  """The level of each parameter: "alpha" for the step size, "outer" for the rest."""
  labels = jax.tree.map(lambda _: OUTER, params)
  labels[ALPHA] = ALPHA
  return labels


def _attend(block: dict, h: jax.Array, mask: jax.Array, positions: jax.Array, heads: int) -> jax.Array:
  """Multi-head attention of `rms(h) [B, L, D]` under `mask [L, L]`; the residual branch."""
  b, length, d = h.shape
  x = layers.rms_norm(h, block["norm"])
  split = lambda w: layers.dense(x, w).reshape(b, length, heads, d // heads).transpose(0, 2, 1, 3)  # noqa: E731
  q, k, v = (split(block[w]) for w in ("wq", "wk", "wv"))
  q, k = layers.rope(q, positions), layers.rope(k, positions)
  scores = jnp.einsum("bhqd,bhkd->bhqk", q, k) / jnp.sqrt(jnp.asarray(d // heads, h.dtype))
  scores = jnp.where(mask[None, None], scores, jnp.finfo(h.dtype).min)
  out = jnp.einsum("bhqk,bhkd->bhqd", jax.nn.softmax(scores, axis=-1), v)
  return layers.dense(out.transpose(0, 2, 1, 3).reshape(b, length, d), block["wo"])


def energy(cfg: EBTConfig, params: dict, tokens: jax.Array, logits: jax.Array, step: jax.Array) -> jax.Array:
  """Energies [B, T] of candidate `logits [B, T, V]` after real `tokens [B, T]` int32, at inner step `step` []."""
  return energy_of_probs(cfg, params, tokens, jax.nn.softmax(logits, axis=-1), step)


def energy_of_probs(cfg: EBTConfig, params: dict, tokens: jax.Array, probs: jax.Array, step: jax.Array) -> jax.Array:
  """`energy` of the candidate distributions `probs [B, T, V]` (softmax of the logits)."""
  t = tokens.shape[1]
  pred = layers.dense(probs, params["v2e"])
  if cfg.time_embed:
    pred = pred + params["time"][jnp.minimum(step, cfg.steps - 1)][None, None]
  h = jnp.concatenate([params["embed"][tokens].astype(pred.dtype), pred], axis=1)
  positions = jnp.concatenate([jnp.arange(t), jnp.arange(t) + 1])
  mask = attention_mask(t)
  for block in params["blocks"]:
    h = h + _attend(block, h, mask, positions, cfg.n_heads)
    h = h + layers.mlp_apply(block["ff"], h)
  return layers.dense(layers.rms_norm(h[:, t:], params["final_norm"]), params["head"])[..., 0]


def descend(
  energy_fn: Callable[[PyTree], jax.Array],
  y: PyTree,
  alpha: jax.Array,
  noise_std: float,
  key: jax.Array,
  project: Callable[[PyTree], PyTree] = lambda y: y,
):
  """One inner step on the prediction pytree `y`: Langevin noise, then `optax.sgd(alpha)`.

    y' = project(y + noise_std * eps),   y'' = y' + sgd(alpha).update(d sum(energy_fn(y')) / dy')

  Args:
    energy_fn: y -> energies (any shape; their sum is descended).
    y: the prediction, any pytree of float arrays.
    alpha: the step size, [] or broadcastable to the leaves.
    noise_std: std of the Langevin noise (0: none, `key` unused).
    key: PRNG key of the noise.
    project: applied after the noise (`descend_probs`: the softmax).

  Returns:
    (y'', energy_fn(y')).
  """
  if noise_std > 0:
    y = jax.tree.map(lambda a, eps: a + noise_std * eps, y, optax.tree.random_like(key, y, jax.random.normal))
  y = project(y)

  def total(z):
    energies = energy_fn(z)
    return jnp.sum(energies), energies

  (_, energies), grads = jax.value_and_grad(total, has_aux=True)(y)
  rule = optax.sgd(alpha)
  updates, _ = rule.update(grads, rule.init(y))
  return optax.apply_updates(y, updates), energies


def think(
  cfg: EBTConfig, params: dict, tokens: jax.Array, y0: jax.Array, keys: jax.Array, steps: int, detach: bool
) -> Thought:
  """`steps` inner steps from candidate logits `y0 [B, T, V]` after `tokens [B, T]`.

  `keys` uint32 [B, 2]: each lane's key for its noise and step-size jitter
  (one size per position, drawn once for all the steps, as the official code does).
  """
  alpha = jnp.maximum(params[ALPHA], ALPHA_MIN)
  s = cfg.alpha_jitter
  scored, project = (energy_of_probs, jax.nn.softmax) if cfg.descend_probs else (energy, lambda y: y)

  def lane(tokens, y0, key):
    k_jitter, key = jax.random.split(key)
    a = alpha * jax.random.uniform(k_jitter, (tokens.shape[0], 1), alpha.dtype, 1.0 / s, s) if s > 1 else alpha

    def step(y, k):
      if detach:
        y = jax.lax.stop_gradient(y)
      energy_fn = lambda z: scored(cfg, params, tokens[None], z[None], k)[0]  # noqa: E731
      y, e = descend(energy_fn, y, a, cfg.langevin_std, jax.random.fold_in(key, k), project)
      return y, (y, e)

    _, trajectory = jax.lax.scan(step, y0, jnp.arange(steps))
    return trajectory

  logits, energies = jax.vmap(lane)(tokens, y0, keys)
  return Thought(jnp.swapaxes(logits, 0, 1), jax.lax.stop_gradient(jnp.swapaxes(energies, 0, 1)))


def initial_logits(cfg: EBTConfig, key: jax.Array, t: int, dtype=jnp.float32) -> jax.Array:
  """y_0 ~ N(0, 1), [T, V] logits."""
  return jax.random.normal(key, (t, cfg.vocab), dtype)


def best_of(logits: jax.Array, energies: jax.Array) -> tuple[jax.Array, jax.Array]:
  """At every position, the candidate of lowest energy.

  Args:
    logits: [N, B, T, V], N candidates.
    energies: [N, B, T], their final energies.

  Returns:
    (logits [B, T, V], energies [B, T]) of the winners.
  """
  best = jnp.argmin(energies, axis=0)
  pick = lambda a: jnp.take_along_axis(a, best.reshape(1, *best.shape, *([1] * (a.ndim - 3))), axis=0)[0]  # noqa: E731
  return pick(logits), pick(energies)


def infer(
  cfg: EBTConfig, params: dict, tokens: jax.Array, keys: jax.Array, steps: int, starts: int
) -> tuple[jax.Array, jax.Array]:
  """Inference: `starts` random starts of `steps` inner steps each, the lowest final energy kept.

  Args:
    tokens: int32 [B, T]; keys: uint32 [B, 2], one per lane.

  Returns:
    (logits [B, T, V], final energies [B, T]).
  """
  t = tokens.shape[1]
  dtype = params["v2e"].dtype

  def start(lane_keys):
    k_init, k_think = jax.vmap(jax.random.split, out_axes=1)(lane_keys)
    y0 = jax.vmap(lambda k: initial_logits(cfg, k, t, dtype))(k_init)
    y = think(cfg, params, tokens, y0, k_think, steps, detach=True).logits[-1]
    return y, energy(cfg, params, tokens, y, jnp.asarray(steps - 1))

  start_keys = jax.vmap(lambda k: jax.random.split(k, starts), out_axes=1)(keys)  # [N, B, 2]
  return best_of(*jax.vmap(start)(start_keys))


def split_lanes(keys: jax.Array, n: int) -> tuple[jax.Array, ...]:
  """n keys per lane from lane keys [B, 2]: a tuple of n arrays [B, 2]."""
  return tuple(jnp.swapaxes(jax.vmap(lambda k: jax.random.split(k, n))(keys), 0, 1))


def init_memory(cfg: EBTConfig, batch: int) -> EBTMemory:
  """Fresh lane keys and, with replay, empty rings of `replay_size` [T, V] logits."""
  keys = jax.random.split(jax.random.PRNGKey(0), batch)
  replay = ()
  if cfg.replay_size:
    one = ring.empty(cfg.replay_size, jnp.zeros((cfg.seq, cfg.vocab), jnp.float32))
    replay = jax.tree.map(lambda a: jnp.broadcast_to(a, (batch, *a.shape)), one)
  return EBTMemory(keys, replay)


def train_thought(cfg: EBTConfig, params: dict, memory: EBTMemory, tokens: jax.Array) -> tuple[Thought, EBTMemory]:
  """The training inner loop on `tokens [B, T]`: K steps from noise or replay; the memory after it."""
  b, t = tokens.shape
  keys, k_init, k_replay, k_think = split_lanes(memory.key, 4)
  y0 = jax.vmap(lambda k: initial_logits(cfg, k, t, params["v2e"].dtype))(k_init)
  if cfg.replay_size:
    n_replay = round(cfg.replay_fraction * b)
    replayed = jax.vmap(ring.sample)(memory.replay, k_replay)
    use = (jnp.arange(b) < n_replay) & (memory.replay.count > 0)
    y0 = jnp.where(use[:, None, None], replayed.astype(y0.dtype), y0)
  thought = think(cfg, params, tokens, y0, k_think, cfg.steps, cfg.detach)
  replay = memory.replay
  if cfg.replay_size:
    replay = jax.vmap(ring.push)(replay, jax.lax.stop_gradient(thought.logits[-1]))
  return thought, EBTMemory(keys, replay)


def ebt_lm(cfg: EBTConfig, inference: bool = False) -> Model:
  """The EBT as a `Model`: `apply` returns the final logits [B, T, V] (`mask` unused).

  Training (`inference=False`): the K-step inner loop from noise or replay,
  pushing its final predictions into the lanes' rings. Inference: `infer`
  with `infer_steps` (or `steps`) and `infer_starts`; only the keys advance.
  """

  def apply(params, memory, tokens, mask):
    del mask
    if not inference:
      thought, memory = train_thought(cfg, params, memory, tokens)
      return thought.logits[-1], memory
    keys, k_infer = split_lanes(memory.key, 2)
    logits, _ = infer(cfg, params, tokens, k_infer, cfg.infer_steps or cfg.steps, cfg.infer_starts)
    return logits, memory._replace(key=keys)

  return Model(lambda key: init_params(cfg, key), lambda batch: init_memory(cfg, batch), apply, level_labels)
