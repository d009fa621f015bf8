"""A memory: a small learner inside the model, written at every token.

Every memory here is one object with four choices:

  architecture  `InnerModel`: the map M(W; x) from a key to a value, either a
                matrix (`x @ W`) or a dense stack of depth L, optionally with
                TTT's LayerNorm and residual, `x + LN(stack(x))`, or a plain
                residual `x + stack(x)`.
  inner loss    `loss(M(W; k_t), v_t)`: dot-product similarity `-<p, v>`,
                squared error `|p - v|^2`, or half squared error; optionally
                with a self-generated target `M(W; v_t)` in place of `v_t`
                (`Rule.self_target`) and the delta-gradient-descent term
                `|k_t w_0 + b_0|^2 / 2` on the first layer (`Rule.dgd`).
  retention     a per-token factor `a_t` in (0, 1] multiplying the memory
                (1: none; fixed per head: RetNet; data-dependent: Mamba2,
                Gated DeltaNet, Titans' forget gate `1 - alpha_t`).
  inner rule    a gradient step with per-token rate `lr_t`, optionally with
                momentum `eta_t` (Titans' "surprise"), taken either at the
                current retained memory ("online", the delta rule) or at the
                memory of the start of the current chunk of C tokens (TTT's
                mini-batch gradient descent, Titans' chunked training).

One token of the recurrence (`reference`, the test oracle):

    anchor = W_{t-1}           if t mod C == 0 (start of a chunk)
    g_t    = grad_W inner(W; k_t, v_t)    at  W = a_t W_{t-1} (online)
                                          or  W = anchor     (chunked)
    inner(W; k, v) = loss(M(W; k), target) [+ |k w_0 + b_0|^2 / 2  (dgd)]
    target = v, or M(W; v) held fixed (self_target)
    without momentum:  W_t = a_t W_{t-1} - lr_t g_t
    with momentum:     m_t = eta_t m_{t-1} - lr_t g_t
                       W_t = a_t W_{t-1} + m_t
    y_t = M(W_t; q_t)

A masked token changes nothing (`lr = 0`, `a = eta = 1`, and its momentum is
not added). Chunks are counted from the start of each call, so calls carry a
stream exactly only in whole chunks (the driver checks `data.seq`).

Delta gradient descent (DGD, Nested Learning). For the first layer `w_0`
(`x @ w_0`, shape [d_in, d_out]) the gradient of `|k w_0|^2 / 2` is
`k (k^T w_0)`, so the step `a w_0 - lr (k k^T w_0 + grad loss)` is the DGD
update `(a I - lr k k^T) w_0 - lr grad loss` in the x @ W convention (the
paper's `M (a I - lr k k^T)` with `M = w_0^T`): DGD is this extra loss term.
With chunk-start gradients it is evaluated at the anchor, which for C = 1 is
the paper's recurrent equation (state at t - 1).

One step per chunk (`Rule.chunk_step`, chunk-start rules): Titans' parallel
training with rates held constant within a chunk (the paper's linear
time-invariant simplification, the form titans-pytorch computes). The chunk's
tokens take their gradients at the anchor and add up to one step, taken at
the chunk's last token with the chunk's mean retention and momentum over its
real tokens; every token reads the anchor:

    G_n = sum_{t in chunk n} lr_t g_t               (g_t at the anchor W_{n-1})
    without momentum:  W_n = abar_n W_{n-1} - G_n
    with momentum:     m_n = etabar_n m_{n-1} - G_n,   W_n = abar_n W_{n-1} + m_n
    y_t = M(W_{n-1}; q_t)
    (a chunk of masked tokens only changes nothing)

Normalised step (`Rule.normalized`, chunk-start rules whose model has depth
<= 2 and no LayerNorm). A gradient step of size s at one token moves the
read at its key by about `s J J^T e` (J the Jacobian of `M(W; k)` in W, e the
error), which overshoots when `s |J J^T| > 2`; that bound grows with the
weights (the first layer's curvature is about |w_1|^2), so a fixed rate
that is stable at initialisation can blow up later. With `kappa_t`
(`curvature`), an upper bound of the inner loss's curvature at
the anchor, each token steps

    lr_t / (1 + C lr_t kappa_t)          C = tokens per chunk

so the C steps taken from one anchor together move a read by less than its
error, whatever the weights (the implicit, normalised-LMS form of the step;
for a matrix memory, `lr / (1 + lr |k|^2)` at C = 1, as Longhorn's).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Params = Any


def dot_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
  """Dot-product similarity as a loss, `-<pred, target>` (linear attention)."""
  return -jnp.sum(pred * target)


def squared_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
  """Squared error `|pred - target|^2` (TTT, Titans)."""
  return jnp.sum(jnp.square(pred - target))


def half_squared_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
  """`|pred - target|^2 / 2`, whose gradient step is the delta rule."""
  return 0.5 * jnp.sum(jnp.square(pred - target))


def lead(vec: jax.Array, x: jax.Array) -> jax.Array:
  """`vec [D]` shaped to broadcast against `x [..., D]`."""
  return vec.reshape((1,) * (x.ndim - 1) + vec.shape)


def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float = 1e-6):
  """LayerNorm over the last axis with outer-learned `scale`, `bias`."""
  mu = jnp.mean(x, axis=-1, keepdims=True)
  var = jnp.mean(jnp.square(x - mu), axis=-1, keepdims=True)
  return (x - mu) * jax.lax.rsqrt(var + eps) * lead(scale, x) + lead(bias, x)


class InnerModel(NamedTuple):
  """The memory's architecture: a dense stack `x -> h_L`.

  Inner parameters are `{"w": [w_0 .. w_{L-1}], "b": [b_0 .. b_{L-1}]}` with
  `w_l [d_l, d_{l+1}]`, `d_0 = Dk`, `d_L = Dv`; `act` acts between layers.
  With `ttt_norm`, the model is `x + LN(h_L)` (needs Dk == Dv); the LN scale
  and bias are outer parameters, passed as `outer = {"ln_scale", "ln_bias"}`.
  With `residual` (and no `ttt_norm`) it is `x + h_L` (needs Dk == Dv).
  `bias=False` keeps the biases at zero and out of the update (a matrix).
  With `offset`, the weights are `outer["offset"] + params`: the inner
  parameters are a deviation from an outer-learned resting point, so
  retention decays the memory toward that point rather than toward zero.
  """

  depth: int = 1
  expansion: int = 4
  act: Callable[[jax.Array], jax.Array] = jax.nn.gelu
  bias: bool = False
  ttt_norm: bool = False
  residual: bool = False
  offset: bool = False

  def widths(self, dk: int, dv: int) -> list[int]:
    return [dk] + [self.expansion * dk] * (self.depth - 1) + [dv]

  def init(self, key: jax.Array, dk: int, dv: int) -> Params:
    """Inner parameters: normal weights of variance 1 / fan-in, zero biases."""
    dims = self.widths(dk, dv)
    keys = jax.random.split(key, self.depth)
    w = [jax.random.normal(kk, (a, b), jnp.float32) * (a**-0.5) for kk, a, b in zip(keys, dims[:-1], dims[1:])]
    return {"w": w, "b": [jnp.zeros((b,), jnp.float32) for b in dims[1:]]}

  def head(self, h: jax.Array, x: jax.Array, outer: Params) -> jax.Array:
    """The output of the model from the last layer's `h` and the input `x`."""
    if self.ttt_norm:
      return x + layer_norm(h, outer["ln_scale"], outer["ln_bias"])
    return x + h if self.residual else h

  def weights(self, params: Params, outer: Params) -> Params:
    """The weights the model computes with: `params`, plus the offset if any."""
    return jax.tree.map(jnp.add, outer["offset"], params) if self.offset else params

  def apply(self, params: Params, outer: Params, x: jax.Array, product=jnp.matmul) -> jax.Array:
    """`x [..., Dk] -> [..., Dv]`; `product(h, w)` computes each layer's `h @ w` (the fast forms pass
    `products.weight_product`; the default keeps forward-mode AD, for `jax.hessian`)."""
    params = self.weights(params, outer)
    h = x
    for i, (w, b) in enumerate(zip(params["w"], params["b"])):
      h = product(h, w) + lead(b, h) if self.bias else product(h, w)
      if i < self.depth - 1:
        h = self.act(h)
    return self.head(h, x, outer)


class Rule(NamedTuple):
  """A memory: architecture, inner loss, and how the inner step is taken.

  Retention, learning rate and momentum are per-token inputs (`Rates`), so the
  same rule serves fixed, per-head and data-dependent choices. `dgd` adds
  `|first-layer pre-activation of k|^2 / 2` to the inner loss (delta gradient
  descent, module docstring); `normalized` divides each step by the chunk's
  curvature bound (module docstring); `chunk_step` takes one step per chunk
  and reads the chunk-start memory (module docstring); `self_target` makes the target `M(W; v)` at the
  state the gradient is taken at (a constant of the inner step, differentiable
  for the outer loop unless `target_outer_grad` is False), so the memory
  generates its own values.
  """

  model: InnerModel
  loss: Callable[[jax.Array, jax.Array], jax.Array]
  online: bool = False
  momentum: bool = False
  dgd: bool = False
  self_target: bool = False
  target_outer_grad: bool = True
  normalized: bool = False
  chunk_step: bool = False


class Rates(NamedTuple):
  """Per-token rates of one head, each `[T]`, in the recurrence above.

  lr: inner learning rate `lr_t >= 0`.
  retain: retention `a_t` in (0, 1].
  momentum: `eta_t` in (0, 1]; ignored unless the rule has momentum.
  """

  lr: jax.Array
  retain: jax.Array
  momentum: jax.Array


class MemState(NamedTuple):
  """The memory of one head: inner parameters W and momentum m (same tree)."""

  w: Params
  m: Params


RATE_FLOOR = 1e-6


def floor_rate(rate: jax.Array) -> jax.Array:
  """A retention or momentum in [0, 1], raised to at least `RATE_FLOOR`.

  A gate `1 - sigmoid(z)` is exactly 0 in float32 once z > 17. The chunk forms
  take ratios of cumulative products in log space, where log 0 gives
  -inf - (-inf) = NaN, and the gradient of log r is 1 / r, which overflows
  for r near 0. Both forms therefore read rates below 1e-6 as 1e-6: the
  memory is still all but erased, and nothing is infinite.
  """
  return jnp.maximum(rate, RATE_FLOOR)


def log_rate(rate: jax.Array) -> jax.Array:
  """`log(floor_rate(rate))`."""
  return jnp.log(floor_rate(rate))


def masked_rates(rates: Rates, mask: jax.Array) -> Rates:
  """Rates under which a masked token (`mask [T]` False) changes nothing (and floored, `floor_rate`)."""
  return Rates(
    lr=jnp.where(mask, rates.lr, 0.0),
    retain=jnp.where(mask, floor_rate(rates.retain), 1.0),
    momentum=jnp.where(mask, floor_rate(rates.momentum), 1.0),
  )


def first_preactivation(model: InnerModel, params: Params, outer: Params, x: jax.Array) -> jax.Array:
  """The first layer's pre-activation `x w_0 + b_0`, [..., d_1]."""
  params = model.weights(params, outer)
  h = x @ params["w"][0]
  return h + lead(params["b"][0], h) if model.bias else h


def outer_view(rule: Rule, target: jax.Array) -> jax.Array:
  """A self-generated target as the outer loop sees it: differentiable, or a constant when
  `rule.target_outer_grad` is False."""
  return target if rule.target_outer_grad else jax.lax.stop_gradient(target)


def inner_grad(rule: Rule, outer: Params, w: Params, k_t: jax.Array, v_t: jax.Array) -> Params:
  """Gradient at `w` of the inner loss of one token (module docstring)."""
  model = rule.model
  target = outer_view(rule, model.apply(w, outer, v_t)) if rule.self_target else v_t

  def inner(p):
    loss = rule.loss(model.apply(p, outer, k_t), target)
    if rule.dgd:
      loss = loss + 0.5 * jnp.sum(jnp.square(first_preactivation(model, p, outer, k_t)))
    return loss

  return jax.grad(inner)(w)


LOSS_CURVATURE = {half_squared_loss: 1.0, squared_loss: 2.0}


@jax.custom_jvp
def largest(x: jax.Array) -> jax.Array:
  """`max(x, axis=-1)`, differentiated through the position of the maximum.

  (jnp.max's gradient compares x with its result; under `jax.checkpoint` x
  is recomputed and may round differently, which loses the gradient. The
  value is `jnp.max`'s, which a Pallas kernel's body can lower.)
  """
  return jnp.max(x, axis=-1)


@largest.defjvp
def _largest_jvp(primals, tangents):
  (x,), (t,) = primals, tangents
  at = jnp.argmax(x, axis=-1)[..., None]
  return largest(x), jnp.take_along_axis(t, at, axis=-1)[..., 0]


def curvature(rule: Rule, outer: Params, w: Params, k: jax.Array, v: jax.Array) -> jax.Array:
  """`kappa`: an upper bound of the curvature of one token's inner loss at `w`; k, v [..., D] -> [...].

  The Hessian of `c/2 |M(W; k) - t|^2` (c = 1 half squared, 2 squared; t the
  target, v or `M(W; v)`) is `c (J^T J + sum_i e_i d^2 M_i)`, with J the
  Jacobian of M in W and `e = M(W; k) - t`. With `|k|^2_b = |k|^2 + 1` if the
  layers have biases, else `|k|^2`, z = k w_0 + b_0, h = act(z):

      depth 1:  kappa = c |k|^2_b                               (exact)
      depth 2:  kappa = c (|h|^2_b + |k|^2_b sum_j act'(z_j)^2 |w_1[j]|^2     Gauss-Newton
                           + |k|^2_b max_j |act''(z_j) (w_1[j] . e)|        second order, w_0 w_0
                           + |k|_b |e| max_j |act'(z_j)|)                   second order, w_0 w_1
      DGD adds  |k|^2_b  (the Hessian of |z|^2 / 2)

  Each term is the spectral norm of its block (the first layer's Gauss-Newton
  block: its trace), so kappa bounds the largest eigenvalue of the Hessian.
  The second-order terms matter when the error is large (an unseen domain):
  without them a bilinear layer pair can still grow step after step.
  """
  model = rule.model
  if rule.online or model.ttt_norm or model.depth > 2 or rule.loss not in LOSS_CURVATURE:
    raise ValueError("a normalised step needs a chunk-start rule, depth <= 2, no LayerNorm, and a squared loss")
  full = model.weights(w, outer)
  bias = 1.0 if model.bias else 0.0
  k_sq = jnp.sum(jnp.square(k), axis=-1) + bias
  kappa = k_sq
  if model.depth == 2:
    z = k @ full["w"][0] + bias * lead(full["b"][0], k)
    slope_of = jax.grad(model.act)  # act acts elementwise
    h = model.act(z)
    target = outer_view(rule, model.apply(w, outer, v)) if rule.self_target else v
    err = model.head(h @ full["w"][1] + bias * lead(full["b"][1], h), k, outer) - target  # M(W; k) - target
    slope = jnp.vectorize(slope_of)(z)
    bend = jnp.vectorize(jax.grad(slope_of))(z)
    rows = jnp.sum(jnp.square(full["w"][1]), axis=1)  # [H]
    gauss_newton = jnp.sum(jnp.square(h), axis=-1) + bias + k_sq * (jnp.square(slope) @ rows)
    # (+ 1e-30: a finite gradient where k or the error is exactly 0, as on padding)
    k_err = jnp.sqrt(k_sq * jnp.sum(jnp.square(err), axis=-1) + 1e-30)
    second = k_sq * largest(jnp.abs(bend * (err @ full["w"][1].T))) + k_err * largest(jnp.abs(slope))
    kappa = gauss_newton + second
  kappa = LOSS_CURVATURE[rule.loss] * kappa
  return kappa + k_sq if rule.dgd else kappa


def step_size(rule: Rule, outer: Params, anchor: Params, k: jax.Array, v: jax.Array, lr: jax.Array, chunk: int):
  """Each token's step [...], `lr` or, for a normalised rule, `lr / (1 + C lr kappa)`; k, v [..., D], lr [...]."""
  if not rule.normalized:
    return lr
  return lr / (1.0 + chunk * lr * curvature(rule, outer, anchor, k, v))


def update(rule: Rule, outer: Params, state: MemState, anchor: Params, k_t, v_t, lr, a, eta, use) -> MemState:
  """One token's write, `(W_{t-1}, m_{t-1}) -> (W_t, m_t)`, with masked rates."""
  tree = jax.tree.map
  retained = tree(lambda p: a * p, state.w)
  g = inner_grad(rule, outer, retained if rule.online else anchor, k_t, v_t)
  if rule.momentum:
    m = tree(lambda mm, gg: eta * mm - lr * gg, state.m, g)
    return MemState(tree(lambda p, mm: p + use * mm, retained, m), m)
  return MemState(tree(lambda p, gg: p - lr * gg, retained, g), state.m)


def reference(rule: Rule, outer: Params, state: MemState, q, k, v, rates: Rates, mask, chunk: int):
  """The recurrence token by token (see the module docstring).

  Args:
    rule: the memory.
    outer: outer parameters of the inner model (LN scale and bias) or {}.
    state: the memory before the first token.
    q, k: [T, Dk]; v: [T, Dv]; rates: `Rates` of [T]; mask: [T] bool.
    chunk: tokens per chunk C for the chunk-start gradient (unused if online).

  Returns:
    y [T, Dv] and the final state.
  """
  if rule.chunk_step:
    return _chunk_step_reference(rule, outer, state, q, k, v, rates, mask, chunk)
  rates = masked_rates(rates, mask)

  def step(carry, xs):
    mem, anchor = carry
    t, q_t, k_t, v_t, lr, a, eta, use = xs
    anchor = jax.lax.cond(t % chunk == 0, lambda: mem.w, lambda: anchor)
    lr = step_size(rule, outer, anchor, k_t, v_t, lr, chunk)
    mem = update(rule, outer, mem, anchor, k_t, v_t, lr, a, eta, use)
    return (mem, anchor), rule.model.apply(mem.w, outer, q_t)

  n = q.shape[0]
  use = mask.astype(q.dtype)
  xs = (jnp.arange(n), q, k, v, rates.lr, rates.retain, rates.momentum, use)
  (mem, _), y = jax.lax.scan(step, (state, state.w), xs)
  return y, mem


def _chunk_step_reference(rule: Rule, outer: Params, state: MemState, q, k, v, rates: Rates, mask, chunk: int):
  """`reference` for a `chunk_step` rule: the token loop with one step per chunk."""
  if rule.online:
    raise ValueError("a chunk step needs chunk-start gradients (an online rule steps at every token)")
  rates = masked_rates(rates, mask)
  tree, n = jax.tree.map, q.shape[0]

  def step(carry, xs):
    mem, anchor, grads, sums = carry
    t, q_t, k_t, v_t, lr, a, eta, use = xs
    start = t % chunk == 0
    anchor = jax.lax.cond(start, lambda: mem.w, lambda: anchor)
    grads, sums = tree(lambda g: jnp.where(start, 0.0, g), (grads, sums))
    lr = step_size(rule, outer, anchor, k_t, v_t, lr, chunk)
    grads = tree(lambda acc, g: acc + lr * g, grads, inner_grad(rule, outer, anchor, k_t, v_t))
    sums = (sums[0] + use, sums[1] + use * a, sums[2] + use * eta)  # real tokens, retention, momentum

    def take_step():
      count = sums[0]
      a_bar, eta_bar = sums[1] / count, sums[2] / count
      if rule.momentum:
        m = tree(lambda mm, g: eta_bar * mm - g, mem.m, grads)
        return MemState(tree(lambda w, mm: a_bar * w + mm, mem.w, m), m)
      return MemState(tree(lambda w, g: a_bar * w - g, mem.w, grads), mem.m)

    last = ((t + 1) % chunk == 0) | (t == n - 1)
    mem = jax.lax.cond(last & (sums[0] > 0), take_step, lambda: mem)
    return (mem, anchor, grads, sums), rule.model.apply(anchor, outer, q_t)

  use = mask.astype(q.dtype)
  zeros = tree(jnp.zeros_like, state.w)
  sums = (jnp.zeros((), q.dtype),) * 3
  xs = (jnp.arange(n), q, k, v, rates.lr, rates.retain, rates.momentum, use)
  (mem, *_), y = jax.lax.scan(step, (state, state.w, zeros, sums), xs)
  return y, mem
