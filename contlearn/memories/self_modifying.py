"""Self-modifying Titans (Nested Learning, Behrouz et al. 2025), one head.

Keys, values, learning rates and retention are read from memories that
write themselves, each with values it generates. With `x_t [Dh]` the head's
input and `M_{t-1}` the memories before token t:

    q_t     = normalize(x_t W_q)                  the only static projection
    k_t     = normalize(M_k(x_t)),  v_t = normalize(M_v(x_t))
    eta_t   = lr_scale * sigmoid(mean M_eta(x_t) + b_eta)        inner rate
    alpha_t = 1 - sigmoid(mean M_alpha(x_t) + b_alpha)           retention
    beta_t  = sigmoid(mean M_momentum(x_t) + b_momentum)         (momentum)
    for every memory M_s, s in {k, v, eta, alpha, [momentum], mem}:
      vhat_s = M_s(v_t)                            its own target
      M_s,t  = M_s,t-1 (alpha_t I - eta_t k_t k_t^T) - eta_t grad L(M_s,t-1; k_t, vhat_s)
    y_t     = M_mem,t(q_t)

Every memory is `M(x) = x + gelu(x W_a) W_b` (`rules.self_modifying`, x @ W
convention), L the half squared error, all initial memories, W_q and the
b's learned by the outer loop (the b's per head).

Choices the paper leaves open (each a field of `SelfModifying` or its rule):
  * DGD: the factor `(alpha I - eta k k^T)` acts on the input-side weight
    W_a, as the term `|k W_a|^2 / 2` of the inner loss (`core`); W_b is only
    retained (`rule.dgd`; off: a plain gradient step).
  * Rates: eta, alpha (and beta) are scalars per token and head, the mean of
    the memory's output through a sigmoid with a learned bias; b_alpha starts
    at -4 (retention 0.98), b_eta and b_momentum at 0.
  * Unit q, k and v (as Titans' q and k; the paper leaves v free). Unit k
    keeps the DGD factor a contraction for eta <= 2; an unbounded v is fed
    back through the targets of the memories that make it and grows without
    limit (at Dh 4 and eta near 0.5, |v| went from 2 to 137 in 12 tokens).
  * Momentum (`rule.momentum`): `m_t = beta_t m_{t-1} - eta_t g_t`,
    `M_t = alpha_t M_{t-1} + m_t` for every memory, beta read from a sixth
    memory M_momentum; off: five memories, the equation above.
  * Self-generated values (`rule.self_target`; off: every target is v_t, the
    paper's "without inner values" ablation). The target is made by the
    memory at the state its gradient is taken at; it is a constant of the
    inner step and differentiable for the outer loop (`rule.target_outer_grad`;
    off: a constant for the outer loop too).
  * Retention toward the learned initial memory (`decay_to_init`, on by
    default): each memory is `M_s,0 + D_s` with the state D_s written as
    above and starting at 0, so `alpha` decays it toward M_s,0, not toward
    zero: `M_t = M_0 + alpha_t (M_{t-1} - M_0) - eta_t (k k^T W_a + grad L)`.
    The paper resets every memory to M_0 at each sequence; over an unbounded
    stream, decay toward zero empties them: with identity-like memories k and
    v coincide, every target is met, nothing is written, and a Hope byte LM
    carried every memory to the identity (|W_b| < 1e-3) within 65k tokens of
    Shakespeare. Off: the equation above, M_0 only the state at the start.
  * Chunks (two sizes, counted from the start of each call): the projection
    memories {k, v, eta, alpha, momentum} are read, and take their
    gradients, at their state at the start of each block of `chunk_proj`
    tokens; the main memory takes its gradients at its state at the start
    of each chunk of `chunk_mem` tokens and is read at every token
    (`y_t = M_mem,t(q_t)`); `chunk_proj % chunk_mem == 0`. With both 1 this
    is the recurrence above, token t using M_{t-1} everywhere.
  * Steps per chunk: a memory with chunks of C tokens steps with eta_t / C,
    so the C steps a chunk takes from one state sum to at most lr_scale
    (TTT's mini-batch averaging). Summed at full size they diverged: byte
    keys repeat within a chunk, `eta sum_i k_i k_i^T` passes 2, and a Hope
    byte LM (eta <= 0.1, chunks 16 and 64) went to NaN at step 8.
  * lr_scale small, about 2 / H for hidden width H (the mixer divides its
    `sm_lr_scale`, 2, by H): the step on W_b has curvature
    |gelu(k W_a)|^2, about 0.4 H at initialisation (51 at H = 128), so a
    chunk's summed step must stay below about 2 / (0.4 H); with lr_scale 1
    a byte LM's main memory blew up at step 13.
  * Normalised steps (`rule.normalized`, on by default): the bound above
    holds at initialisation only. The step on W_a has curvature about
    |W_b|^2, and the outer loop grows the rate memories' W_b (their mean is
    the rate's logit), so a Hope LM that had read 196k tokens of plays
    overflowed on unseen Python docs. Each memory's step is therefore
    `(eta_t / C) / (1 + eta_t kappa_t)`, kappa its curvature bound at the
    anchor (`core.curvature`): at most eta_t / C, and a chunk's steps
    together never overshoot, whatever the weights. Off: `eta_t / C`.
  * The read keeps the residual (`read_residual`, on by default):
    `y_t = M_mem,t(q_t) = q_t + gelu(q_t W_a) W_b`. Off: `y_t = M_mem,t(q_t)
    - q_t`, the written layers alone, which the mixer's per-head RMS norm
    brings to unit size as Titans' LayerNorm does its MLP's output, so a
    relative change of the layers is the same relative change of the read
    (with the residual, q_t of norm 1 dominates it). The inner loss is the
    same either way.
  * Keys and values keep the residual (`kv_residual`, on by default):
    `k_t = normalize(M_k(x_t))`, `v_t = normalize(M_v(x_t))`, so both carry
    x_t itself, the current token included. Off: `normalize(M_k(x_t) -
    x_t)` and `normalize(M_v(x_t) - x_t)`, the written layers alone, as a
    key and a value made by learned maps of x_t (Titans' `x W_k`, `x W_v`)
    need not share it. The rates are read as above either way.
  * A LayerNorm inside every memory (`rule.model.ttt_norm`, off by default):
    `M(x) = x + LN(gelu(x W_a) W_b)` with an outer-learned scale and bias
    per memory, Titans' form, in the inner loss and in every read. Its
    gradient is the LayerNorm's pullback of the error; there is no
    curvature bound for it, so it needs `rule.normalized` off. A rate reads
    the mean of its memory's output, and while a LayerNorm's scale is
    uniform (as at initialisation: ones) that mean is `mean(x) + mean(bias)`:
    the rates then do not depend on their memories' weights.

`reference` is the token-by-token scan; `chunked` scans over blocks of
`chunk_proj` tokens, generating a block's k, v and rates at once, advancing
the projection memories by one chunk (`advance`) and running the main memory
over the block in chunks of `chunk_mem` (`main_memory`), both `dual`'s
chunk-start-gradient form written out for these memories. The projection
memories are one stack [P]: their reads of x, their gradients at k and v
(shared) and their writes are each one product over the stack
(`stacked_apply`; `x [L, Dh] @ W_a [P, Dh, H]` is one matrix product), and
only their state at the block's end is computed. The main memory's scan
carries its state; every product in it is over a whole chunk. A masked token
changes nothing. Shapes: `x [T, Dh]`, `mask [T]`; the state is one
`MemState` whose leaves lead with the memory, in the order of
`SelfModifying.names`.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from contlearn.memories import dual, pallas_scan
from contlearn.memories.core import (
  LOSS_CURVATURE,
  MemState,
  Params,
  Rates,
  Rule,
  largest,
  layer_norm,
  log_rate,
  masked_rates,
  outer_view,
  step_size,
  update,
)
from contlearn.memories.rules import self_modifying
from contlearn.products import weight_product

RATE_BIAS = {"eta": 0.0, "alpha": -4.0, "momentum": 0.0}


class SelfModifying(NamedTuple):
  """One head's self-modifying Titans: the memories' rule, the chunk sizes, how the main memory's chunks
  are chained ("xla": a `lax.scan`; "pallas": one Pallas kernel, `pallas_scan`), whether its read keeps
  the residual (`M(q)`; false: `M(q) - q`) and whether the keys and values do (`M_k(x)`, `M_v(x)`; false:
  `M_k(x) - x`, `M_v(x) - x`)."""

  rule: Rule = self_modifying()
  chunk_mem: int = 16
  chunk_proj: int = 64
  lr_scale: float = 1 / 64
  kernel: str = "xla"
  read_residual: bool = True
  kv_residual: bool = True

  @property
  def projections(self) -> tuple[str, ...]:
    """Names of the memories that generate k, v and the rates."""
    return ("k", "v", "eta", "alpha") + (("momentum",) if self.rule.momentum else ())

  @property
  def gates(self) -> tuple[str, ...]:
    """The projection memories read out as scalar rates."""
    return self.projections[2:]

  @property
  def names(self) -> tuple[str, ...]:
    return self.projections + ("mem",)

  def check(self) -> None:
    if self.kernel not in pallas_scan.KERNELS:
      raise ValueError(f"kernel={self.kernel!r}: choose one of {', '.join(pallas_scan.KERNELS)}")
    if self.chunk_mem < 1 or self.chunk_proj < 1 or self.chunk_proj % self.chunk_mem:
      raise ValueError(f"chunk_proj={self.chunk_proj} must be a positive multiple of chunk_mem={self.chunk_mem}")


def init(spec: SelfModifying, key: jax.Array, dh: int) -> tuple[Params, MemState]:
  """Outer parameters and the state before the first token.

  Params: `wq [Dh, Dh]`, `bias {gate: []}`, with a LayerNorm its scale and
  bias per memory `ln {"scale", "bias": [N, Dh]}` (ones, zeros) and, with
  `decay_to_init`, the initial memories `w0` (then the state starts at
  zero); else the state is the initial memories. Momenta start at zero.
  """
  k_q, k_m = jax.random.split(key)
  params = {
    "wq": jax.random.normal(k_q, (dh, dh), jnp.float32) * dh**-0.5,
    "bias": {g: jnp.float32(RATE_BIAS[g]) for g in spec.gates},
  }
  if spec.rule.model.ttt_norm:
    n = len(spec.names)
    params["ln"] = {"scale": jnp.ones((n, dh), jnp.float32), "bias": jnp.zeros((n, dh), jnp.float32)}
  w = jax.vmap(lambda kk: spec.rule.model.init(kk, dh, dh))(jax.random.split(k_m, len(spec.names)))
  zero = jax.tree.map(jnp.zeros_like, w)
  if spec.rule.model.offset:
    return {**params, "w0": w}, MemState(zero, zero)
  return params, MemState(w, zero)


def _outer(spec: SelfModifying, params: Params) -> Params:
  """Each memory's outer parameters (its offset, its LayerNorm's scale and bias), leading [N]; {} without."""
  outer = {"offset": params["w0"]} if spec.rule.model.offset else {}
  if spec.rule.model.ttt_norm:
    outer.update(ln_scale=params["ln"]["scale"], ln_bias=params["ln"]["bias"])
  return outer


def _norm(rule: Rule, outer: Params) -> tuple[jax.Array, jax.Array] | None:
  """Stacked memories' LayerNorm, (scale, bias) [S, Dh], from their outer parameters; None without one."""
  return (outer["ln_scale"], outer["ln_bias"]) if rule.model.ttt_norm else None


def _written(u: jax.Array, norm: tuple[jax.Array, jax.Array] | None) -> jax.Array:
  """The written layers' share of stacked memories' outputs from the second layer's `u [S, L, Dh]`: `u`, or
  `LN(u)` with each memory's scale and bias (`norm`, [S, Dh] each)."""
  return u if norm is None else jax.vmap(layer_norm)(u, *norm)


def _take(tree, index):
  return jax.tree.map(lambda a: a[index], tree)


def _normalize(x: jax.Array) -> jax.Array:
  return x * jax.lax.rsqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True) + 1e-6)


def query(params: Params, x: jax.Array) -> jax.Array:
  """`q = normalize(x W_q)`, x [..., Dh]."""
  return _normalize(x @ params["wq"])


def generate(spec: SelfModifying, params: Params, reads: dict, x: jax.Array) -> tuple[jax.Array, jax.Array, Rates]:
  """k, v [..., Dh] and the rates [...] from the projection memories' reads `M_s(x)` of `x [..., Dh]`
  (without `kv_residual`, k and v from `M_s(x) - x`)."""
  gate = {r: jax.nn.sigmoid(jnp.mean(reads[r], axis=-1) + params["bias"][r]) for r in spec.gates}
  lr = spec.lr_scale * gate["eta"]
  momentum = gate["momentum"] if spec.rule.momentum else jnp.ones_like(lr)
  k, v = (reads[s] if spec.kv_residual else reads[s] - x for s in ("k", "v"))
  return _normalize(k), _normalize(v), Rates(lr, 1.0 - gate["alpha"], momentum)


HELD = ("k", "v", "rates")  # what `reference` can hold constant for derivatives


def reference(spec: SelfModifying, params: Params, state: MemState, x: jax.Array, mask: jax.Array, held=()):
  """Token by token (module docstring). Returns y [T, Dh] and the final state.

  `held` (names of `HELD`): generated quantities that derivatives, forward or reverse, see as constants
  (`lax.stop_gradient` at every token; the values are unchanged), to tell which route a derivative takes.
  """
  spec.check()
  if not set(held) <= set(HELD):
    raise ValueError(f"held={tuple(held)}: choose among {', '.join(HELD)}")
  hold = lambda name, a: jax.lax.stop_gradient(a) if name in held else a
  rule, model, n = spec.rule, spec.rule.model, len(spec.projections)
  period = jnp.array([spec.chunk_proj] * n + [spec.chunk_mem])  # per memory, in `spec.names` order
  outer = _outer(spec, params)

  def step(carry, xs):
    mems, anchors = carry
    t, x_t, m_t = xs
    fresh = t % period == 0
    anchors = jax.tree.map(lambda w, a: jnp.where(fresh.reshape((-1,) + (1,) * (w.ndim - 1)), w, a), mems.w, anchors)
    first = slice(0, n)
    reads = jax.vmap(lambda o, w: model.apply(w, o, x_t))(_take(outer, first), _take(anchors, first))
    k, v, rates = generate(spec, params, dict(zip(spec.projections, reads)), x_t)
    k, v, rates = hold("k", k), hold("v", v), hold("rates", rates)
    r = masked_rates(rates, m_t)

    def write(o, s, a, c):
      lr = step_size(rule, o, a, k, v, r.lr / c, c)
      return update(rule, o, s, a, k, v, lr, r.retain, r.momentum, m_t.astype(x.dtype))

    mems = jax.vmap(write)(outer, mems, anchors, period.astype(x.dtype))
    q = query(params, x_t)
    y = model.apply(_take(mems.w, n), _take(outer, n), q)
    return (mems, anchors), y if spec.read_residual else y - q

  (state, _), y = jax.lax.scan(step, (state, state.w), (jnp.arange(x.shape[0]), x, mask))
  return y, state


def stacked_layers(rule: Rule, weights: Params) -> tuple[jax.Array, jax.Array]:
  """The layers `W_a [S, Dh, H]`, `W_b [S, H, Dh]` of memories stacked on [S] (a depth-2 residual stack
  without biases, as `rules.self_modifying`)."""
  model = rule.model
  if model.depth != 2 or model.bias or not model.residual or rule.loss not in LOSS_CURVATURE:
    raise ValueError(
      "the batched form needs memories x + act(x W_a) W_b (or x + LN(act(x W_a) W_b)) without biases and a squared loss"
    )
  if model.ttt_norm and rule.normalized:
    raise ValueError("a normalised step needs memories without a LayerNorm (core.curvature)")
  return weights["w"][0], weights["w"][1]


def stacked_apply(rule: Rule, w_a: jax.Array, w_b: jax.Array, x: jax.Array, norm=None) -> jax.Array:
  """`M_s(x) [S, L, Dh]` of stacked memories at one input `x [L, Dh]`: one product over the stack; `norm`
  their LayerNorm's (scale, bias) [S, Dh] if they have one (`_norm`)."""
  return x[None] + _written(weight_product(rule.model.act(weight_product(x, w_a)), w_b), norm)


def _gradients(rule: Rule, w_a, w_b, k: jax.Array, v: jax.Array, lr: jax.Array, chunk: int, norm=None):
  """Stacked memories' gradients at `W_a, W_b` of the inner loss of every token of `k, v [L, Dh]` (shared);
  `norm` their LayerNorm's (scale, bias) if they have one.

  Returns each token's step `lr / (1 + C lr kappa)` [S, L] (`core.step_size`; `lr` [L] if not normalised),
  the hidden `h = act(k W_a)` [S, L, H] and the loss gradients at the two layers' outputs, `d_a [S, L, H]`
  (with DGD's `k W_a`) and `d_b [S, L, Dh]`: token i's gradient is `k_i d_a,i^T` for W_a, `h_i d_b,i^T` for W_b.
  """
  act, c = rule.model.act, LOSS_CURVATURE[rule.loss]
  z = weight_product(k, w_a)  # [S, L, H]
  h = act(z)
  target = outer_view(rule, stacked_apply(rule, w_a, w_b, v, norm)) if rule.self_target else v[None]
  if norm is None:
    err = k[None] + weight_product(h, w_b) - target  # M(W; k) - target
    out_err = err  # its gradient at the second layer's output
  else:
    written, through_norm = jax.vjp(lambda u: _written(u, norm), weight_product(h, w_b))
    err = k[None] + written - target
    (out_err,) = through_norm(err)
  back = jnp.einsum("std,shd->sth", out_err, w_b)
  slope_of = jax.grad(act)  # act acts elementwise
  slope = jnp.vectorize(slope_of)(z)
  d_a = c * back * slope + (z if rule.dgd else 0.0)
  if rule.normalized:  # core.curvature, depth 2 (no LayerNorm: stacked_layers)
    k_sq = jnp.sum(jnp.square(k), axis=-1)[None]
    bend = jnp.vectorize(jax.grad(slope_of))(z)
    gauss_newton = jnp.sum(jnp.square(h), axis=-1) + k_sq * jnp.einsum(
      "sth,sh->st", jnp.square(slope), jnp.sum(jnp.square(w_b), axis=2)
    )
    k_err = jnp.sqrt(k_sq * jnp.sum(jnp.square(err), axis=-1) + 1e-30)
    second = k_sq * largest(jnp.abs(bend * back)) + k_err * largest(jnp.abs(slope))
    kappa = c * (gauss_newton + second) + (k_sq if rule.dgd else 0.0)
    lr = lr[None] / (1.0 + chunk * lr[None] * kappa)
  return jnp.broadcast_to(lr, z.shape[:2]), h, d_a, c * out_err


def _end_state(rule: Rule, state: MemState, k, h, d_a, d_b, lr, rates: Rates, use) -> MemState:
  """Stacked memories (leaves leading [S]) at the end of a chunk whose gradients (`_gradients`: h, d_a, d_b,
  the steps lr [S, L]) were all taken at its start: `dual`'s end-of-chunk state; `rates` masked, `use [L]`."""
  log_g = jnp.cumsum(log_rate(rates.retain))
  g_end = jnp.exp(log_g[-1])
  decay = jnp.exp(log_g[-1] - log_g)  # retention from each token to the chunk's end
  if rule.momentum:
    log_p = jnp.cumsum(log_rate(rates.momentum))
    p_end = jnp.exp(log_p[-1])
    later = jnp.tril(jnp.ones((k.shape[0], k.shape[0]), bool))  # [s, i]: i <= s
    push = jnp.where(later, jnp.exp(jnp.where(later, log_p[:, None] - log_p[None, :], 0.0)), 0.0)
    through = (decay * use) @ push  # E[end, i] / lr_i
    r_end = (decay * use) @ jnp.exp(log_p)
    # [2, S, L]: each token's share of the state's step and of the momentum's
    coef = jnp.stack([through[None] * lr, jnp.exp(log_p[-1] - log_p)[None] * lr])
  else:
    coef = (decay[None] * lr)[None]
  step_a = jnp.einsum("td,jst,sth->jsdh", k, coef, d_a)
  step_b = jnp.einsum("sth,jst,std->jshd", h, coef, d_b)
  steps = [{"w": [a, b], "b": [jnp.zeros_like(x) for x in state.w["b"]]} for a, b in zip(step_a, step_b)]
  tree = jax.tree.map
  if rule.momentum:
    w = tree(lambda w, m, s: g_end * w + r_end * m - s, state.w, state.m, steps[0])
    return MemState(w, tree(lambda m, s: p_end * m - s, state.m, steps[1]))
  return MemState(tree(lambda w, s: g_end * w - s, state.w, steps[0]), state.m)


def advance(rule: Rule, state: MemState, weights: Params, k, v, rates: Rates, use, chunk: int, norm=None) -> MemState:
  """Stacked memories after one chunk of `L <= chunk` tokens, gradients at the chunk start, without reads;
  `weights` are their full weights (offset + state), `rates` masked and per token, `use [L]` the mask, `norm`
  their LayerNorm's (scale, bias) if they have one."""
  lr, h, d_a, d_b = _gradients(rule, *stacked_layers(rule, weights), k, v, rates.lr, chunk, norm)
  return _end_state(rule, state, k, h, d_a, d_b, lr, rates, use)


def _main_chunk(rule: Rule, read_residual: bool, outer: Params, state: MemState, xs):
  """One chunk of the main memory: y [C, Dh] (read at every token, `dual`'s form, with the residual q if
  `read_residual`) and the state after it."""
  q, k, v, rates, use = xs
  chunk = q.shape[0]
  state, outer = jax.tree.map(lambda a: a[None], (state, outer))  # a stack of one
  norm = _norm(rule, outer)
  weights = rule.model.weights(state.w, outer)
  lr, h, d_a, d_b = _gradients(rule, *stacked_layers(rule, weights), k, v, rates.lr, chunk, norm)
  g, r, e, _, _ = dual.coefficients(rule, lr[0], rates.retain, rates.momentum, use)
  w_a, w_b = stacked_layers(rule, state.w)
  m_a, m_b = stacked_layers(rule, state.m)
  o_a, o_b = stacked_layers(rule, outer["offset"]) if rule.model.offset else (None, None)

  def layer(x, inputs, d, w, m, o):  # x [C, d_in] through one layer of W_t, t the reading token (`dual`)
    z = g[:, None] * weight_product(x, w[0]) - (e * (x @ inputs.T)) @ d[0]
    z = z + r[:, None] * weight_product(x, m[0]) if rule.momentum else z
    return z + weight_product(x, o[0]) if rule.model.offset else z

  hq = rule.model.act(layer(q, k, d_a, w_a, m_a, o_a))
  y = _written(layer(hq, h[0], d_b, w_b, m_b, o_b)[None], norm)[0]
  y = q + y if read_residual else y
  return _take(_end_state(rule, state, k, h, d_a, d_b, lr, rates, use), 0), y


def main_memory(spec: SelfModifying, outer: Params, state: MemState, q, k, v, rates: Rates, mask):
  """The main memory over `L` tokens in chunks of `chunk_mem` (the last padded with masked tokens): y [L, Dh]
  and its state after them; `rates` per token (`lr` divided by the chunk)."""
  chunk, t = spec.chunk_mem, q.shape[0]
  n = -(-t // chunk)
  rates = masked_rates(rates, mask)
  xs = (q, k, v, rates, mask.astype(q.dtype))
  pad = (0.0, 0.0, 0.0, Rates(0.0, 1.0, 1.0), 0.0)  # a masked token's
  xs = jax.tree.map(
    lambda x, p: jnp.pad(x, [(0, n * chunk - t)] + [(0, 0)] * (x.ndim - 1), constant_values=p).reshape(
      n, chunk, *x.shape[1:]
    ),
    xs,
    pad,
  )
  # The backward pass recomputes each chunk from its carried state (`dual.chunked`).
  scan = pallas_scan.scan if spec.kernel == "pallas" else pallas_scan.xla_scan
  state, y = scan(functools.partial(_main_chunk, spec.rule, spec.read_residual), outer, state, xs)
  return y.reshape(n * chunk, -1)[:t], state


def _block(spec: SelfModifying, params: Params, state: MemState, x: jax.Array, mask: jax.Array):
  """Up to `chunk_proj` tokens: y [L, Dh] and the state after them.

  The projection memories are one stack: their reads of x, their gradients and their writes are each one
  product over [memories] (batched on the lanes and heads the caller maps over).
  """
  rule, n, outer = spec.rule, len(spec.projections), _outer(spec, params)
  proj, mem, o_proj, o_mem = _take(state, slice(0, n)), _take(state, n), _take(outer, slice(0, n)), _take(outer, n)
  weights, norm = rule.model.weights(proj.w, o_proj), _norm(rule, o_proj)
  reads = stacked_apply(rule, *stacked_layers(rule, weights), x, norm)  # [P, L, Dh]
  k, v, rates = generate(spec, params, dict(zip(spec.projections, reads)), x)
  per_token = lambda c: rates._replace(lr=rates.lr / c)
  rates_proj = masked_rates(per_token(spec.chunk_proj), mask)
  proj = advance(rule, proj, weights, k, v, rates_proj, mask.astype(x.dtype), spec.chunk_proj, norm)
  y, mem = main_memory(spec, o_mem, mem, query(params, x), k, v, per_token(spec.chunk_mem), mask)
  return jax.tree.map(lambda p, m: jnp.concatenate([p, m[None]]), proj, mem), y


def chunked(spec: SelfModifying, params: Params, state: MemState, x: jax.Array, mask: jax.Array):
  """The fast form of `reference`: same arguments, same result."""
  spec.check()
  full = x.shape[0] // spec.chunk_proj
  split = full * spec.chunk_proj
  ys = []
  if full:
    blocks = (a[:split].reshape(full, spec.chunk_proj, *a.shape[1:]) for a in (x, mask))
    state, y = jax.lax.scan(lambda s, xs: _block(spec, params, s, *xs), state, tuple(blocks))
    ys.append(y.reshape(split, -1))
  if split < x.shape[0]:  # a ragged last block
    state, y = _block(spec, params, state, x[split:], mask[split:])
    ys.append(y)
  return jnp.concatenate(ys, axis=0), state
