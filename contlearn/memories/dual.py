"""The chunked (dual) form of memories with chunk-start gradients.

Inside a chunk every gradient is taken at the chunk-start memory `W_0`, so all
C gradients come from one forward and one backward pass over the chunk's keys.
For a dense stack, token i's gradient of layer l is an outer product,

    grad_{w_l} = x_i^l (d_i^l)^T,   grad_{b_l} = d_i^l,

with `x_i^l` the layer's input and `d_i^l` the loss gradient at its output
(both at `W_0`). Retention and momentum are a linear recurrence in the
gradients, so every memory in the chunk is

    W_t = g_t W_0 + r_t m_0 - sum_{i<=t} E[t, i] grad_i

    g_t = a_1 ... a_t                 (retention from the chunk start)
    no momentum:  E[t, i] = (g_t / g_i) lr_i
    momentum:     E = L1 @ (L2 * lr),  L1[t, s] = (g_t / g_s) use_s,
                  L2[s, i] = eta_{i+1} ... eta_s,  r_t = sum_s L1[t, s] eta_1 ... eta_s

(the closed form of the associative scan over the chunk). A `chunk_step`
rule (`core`) needs none of this: one step with `sum_i lr_i grad_i` and the
chunk's mean rates, and the read is `M(W_0; q_t)`. The read
`M(W_t; q_t)` never builds W_t: layer l sees, for query hidden `h_t`,

    h_t w_{l,t} + b_{l,t} = g_t (h_t w_l + b_l) + r_t (h_t m_{w_l} + m_{b_l})
                            - sum_i E[t, i] (h_t . x_i^l + 1) d_i^l

which is attention-like matrix products (TTT's dual form, extended to depth,
retention and momentum). A scan carries (W, m) from chunk to chunk.

The inner loss's extras are taken at `W_0` too (and a normalised rule's
curvature, `core.step_size`): a self-generated target is
`M(W_0; v_i)`, and the DGD term `|x_i^0 w_0 + b_0|^2 / 2` adds the first
layer's pre-activation to `d_i^0` (`core.Rule`). With an offset `O` (weights
`O + W`, `core.InnerModel`), gradients are taken at `O + W_0`, each layer's
read adds `h_t o_l + o_{b,l}`, and retention and momentum act on W alone.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from contlearn.memories import pallas_scan
from contlearn.memories.core import MemState, Rates, Rule, lead, log_rate, masked_rates, outer_view, step_size
from contlearn.products import weight_product


def _tril(chunk: int, dtype):
  return jnp.tril(jnp.ones((chunk, chunk), dtype))


def _ratio(log_c: jax.Array) -> jax.Array:
  """`R[t, i] = exp(log_c[t] - log_c[i])` for i <= t, else 0; `log_c [C]`."""
  c = log_c.shape[0]
  low = _tril(c, bool)
  diff = jnp.where(low, log_c[:, None] - log_c[None, :], 0.0)
  return jnp.where(low, jnp.exp(diff), 0.0)


def coefficients(rule: Rule, lr, retain, eta, use):
  """g [C], r [C], E [C, C], and the momentum's end row `lr * L2[-1]` [C]."""
  log_g = jnp.cumsum(log_rate(retain))
  l1 = _ratio(log_g)
  if not rule.momentum:
    return jnp.exp(log_g), jnp.zeros_like(log_g), l1 * lr[None, :], None, None
  log_p = jnp.cumsum(log_rate(eta))
  l1 = l1 * use[None, :]
  l2 = _ratio(log_p)
  e = l1 @ (l2 * lr[None, :])
  r = l1 @ jnp.exp(log_p)
  return jnp.exp(log_g), r, e, l2[-1] * lr, jnp.exp(log_p[-1])


def _layer(h: jax.Array, params, i: int, bias: bool) -> jax.Array:
  """Layer i's pre-activation `h w_i (+ b_i)`, h [C, d_i] -> [C, d_{i+1}]; no bias term at all without biases."""
  z = weight_product(h, params["w"][i])
  return z + lead(params["b"][i], z) if bias else z


def _bias_step(step: jax.Array, bias: bool) -> jax.Array:
  """The summed bias gradient of a chunk, `step [C, d]` -> [d] (zeros without biases, no reduction)."""
  return jnp.sum(step, axis=0) if bias else jnp.zeros(step.shape[1:], step.dtype)


def one_chunk(rule: Rule, outer, state: MemState, xs):
  """One chunk (`xs` as `scan_chunks`'s, [C, ...] each): the state after it and the outputs y [C, Dv]."""
  q, k, v, lr, retain, eta, use = xs
  model = rule.model
  w0 = state.w
  depth = model.depth
  lr = step_size(rule, outer, w0, k, v, lr, k.shape[0])

  target = outer_view(rule, model.apply(w0, outer, v, weight_product)) if rule.self_target else v
  full = model.weights(w0, outer)

  def keys_loss(eps):
    h, inputs, extra = k, [], 0.0
    for i in range(depth):
      inputs.append(h)
      h = _layer(h, full, i, model.bias) + eps[i]
      if i == 0 and rule.dgd:
        extra = 0.5 * jnp.sum(jnp.square(h))
      if i < depth - 1:
        h = model.act(h)
    pred = model.head(h, k, outer)
    return jnp.sum(jax.vmap(rule.loss)(pred, target)) + extra, inputs

  eps = [jnp.zeros((k.shape[0], w.shape[1]), k.dtype) for w in w0["w"]]
  deltas, inputs = jax.grad(keys_loss, has_aux=True)(eps)
  if rule.chunk_step:
    return _one_step(rule, state, inputs, deltas, lr, retain, eta, use), model.apply(w0, outer, q, weight_product)
  g, r, e, m_row, p_end = coefficients(rule, lr, retain, eta, use)

  h = q
  for i in range(depth):
    z = g[:, None] * _layer(h, w0, i, model.bias)
    if rule.momentum:
      z = z + r[:, None] * _layer(h, state.m, i, model.bias)
    scores = h @ inputs[i].T + 1.0 if model.bias else h @ inputs[i].T  # (h_t . x_i^l + 1), [C, C]
    z = z - (e * scores) @ deltas[i]
    if model.offset:
      z = z + _layer(h, outer["offset"], i, model.bias)
    h = model.act(z) if i < depth - 1 else z
  y = model.head(h, q, outer)

  # End of chunk: W_C = g_C W_0 + r_C m_0 - sum_i E[C, i] grad_i, and
  # m_C = P_C m_0 - sum_i (P_C / P_i) lr_i grad_i. The minus signs sit on the [C, out] factors, so the
  # backward pass negates no weight-sized cotangent.
  new_w, new_m = {"w": [], "b": []}, {"w": [], "b": []}
  for i, (x, d) in enumerate(zip(inputs, deltas)):
    step = -e[-1][:, None] * d  # [C, out]
    new_w["w"].append(g[-1] * w0["w"][i] + x.T @ step)
    new_w["b"].append(g[-1] * w0["b"][i] + _bias_step(step, model.bias))
    if rule.momentum:
      m_w, m_b = state.m["w"][i], state.m["b"][i]
      new_w["w"][i] = new_w["w"][i] + r[-1] * m_w
      new_w["b"][i] = new_w["b"][i] + r[-1] * m_b
      push = -m_row[:, None] * d
      new_m["w"].append(p_end * m_w + x.T @ push)
      new_m["b"].append(p_end * m_b + _bias_step(push, model.bias))
  new_m = new_m if rule.momentum else state.m
  return MemState(new_w, new_m), y


def _one_step(rule: Rule, state: MemState, inputs, deltas, lr, retain, eta, use) -> MemState:
  """A `chunk_step` rule's state after the chunk: one step with the summed gradient `G = sum_i lr_i grad_i`."""
  count = jnp.sum(use)
  share = use / jnp.maximum(count, 1.0)
  a_bar, eta_bar = jnp.sum(share * retain), jnp.sum(share * eta)
  descent = -lr[:, None]  # the sign on the [C, 1] factor: the backward negates no weight-sized cotangent
  steps = {
    "w": [x.T @ (descent * d) for x, d in zip(inputs, deltas)],
    "b": [_bias_step(descent * d, rule.model.bias) for d in deltas],
  }
  tree = jax.tree.map
  if rule.momentum:
    m = tree(lambda mm, s: eta_bar * mm + s, state.m, steps)
    new = MemState(tree(lambda w, mm: a_bar * w + mm, state.w, m), m)
  else:
    new = MemState(tree(lambda w, s: a_bar * w + s, state.w, steps), state.m)
  return tree(lambda after, before: jnp.where(count > 0, after, before), new, state)


def scan_chunks(rule: Rule, outer, state: MemState, xs) -> tuple[MemState, jax.Array]:
  """The chunks in sequence (`lax.scan` of `one_chunk`): the final state and y [N, C, Dv].

  `xs` = (q, k, v, lr, retain, eta, use), each [N, C, ...]: N chunks of C tokens.
  The backward pass recomputes each chunk from its carried state and the
  chunk-sized matrix products kept from the forward (`pallas_scan.xla_scan`),
  so the per-chunk memories are the only weight-sized arrays it stores.
  """
  return pallas_scan.xla_scan(functools.partial(one_chunk, rule), outer, state, xs)


Across = Callable[[Rule, Any, MemState, tuple], tuple[MemState, jax.Array]]


def chunked(rule: Rule, outer, state: MemState, q, k, v, rates: Rates, mask, chunk: int, across: Across = scan_chunks):
  """Same map as `core.reference(rule, ...)` with `rule.online == False`.

  Args: as `core.reference`; `across` chains the chunks, `scan_chunks`'s
  signature (`scan_chunks`, or the Pallas kernel: `memories.chunked(kernel="pallas")`).
  Returns: y [T, Dv] and the final state.
  """
  if rule.online:
    raise ValueError("dual.chunked takes chunk-start gradients; online rules use linear.chunked")
  t = q.shape[0]
  n = -(-t // chunk)
  rates = masked_rates(rates, mask)
  use = mask.astype(q.dtype)
  pad_value = (0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0)
  xs = (q, k, v, rates.lr, rates.retain, rates.momentum, use)
  xs = tuple(
    jnp.pad(x, [(0, n * chunk - t)] + [(0, 0)] * (x.ndim - 1), constant_values=pv).reshape(n, chunk, *x.shape[1:])
    for x, pv in zip(xs, pad_value)
  )
  state, y = across(rule, outer, state, xs)
  return y.reshape(n * chunk, -1)[:t], state
