"""TTT's inner step as the official code (ttt-lm-jax) computes it, in the dual form.

Within a mini-batch (chunk) that starts from W_0, with g_i the gradient at
W_0 of token i's half squared loss `|M(W; k_i) - v_i|^2 / 2` and eta_i its rate
(the mixer passes `base * sigmoid(x w + b) / head width`):

    W_t = W_0 - (1/n_t) sum_{i<=t} eta_i g_i        n_t = real tokens 1..t of the chunk
    y_t = M(W_t; q_t)
    the next chunk starts from W_n (n = the chunk's real tokens)

so each token reads the memory stepped with the *mean* of the chunk's rated
gradients so far, where the paper's equations (`contlearn.memories.core`)
sum them. The official code's factor 1/t is per position (its
`token_idx`, plus a learned offset not modelled here) and its sequences are
whole mini-batches; counting real tokens makes a chunk's padding at the end
(masked) change nothing. docs/memories.md compares the two forms.

The form is `dual.chunked`'s with E[t, i] = eta_i / n_t (i <= t) and no
retention or momentum: layer l of the read is

    h_t w_l + b_l - sum_{i<=t} E[t, i] (h_t . x_i^l + 1) d_i^l

with x_i^l the layer's input at key i and d_i^l the loss gradient at its
output, both at W_0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from contlearn.memories.core import MemState, Rates, Rule, lead, masked_rates


def _check(rule: Rule) -> None:
  model = rule.model
  extras = rule.online or rule.momentum or rule.dgd or rule.self_target or rule.normalized or rule.chunk_step
  if extras or model.offset:
    raise ValueError("the official TTT step takes chunk-start gradients without momentum, DGD, self-targets or offsets")


def _chunk(rule: Rule, outer, w0, xs):
  """One chunk: outputs [C, Dv] and the memory after it."""
  q, k, v, lr, use = xs
  model = rule.model
  bias = 1.0 if model.bias else 0.0

  def keys_loss(eps):
    h, inputs = k, []
    for i in range(model.depth):
      inputs.append(h)
      h = h @ w0["w"][i] + bias * lead(w0["b"][i], h) + eps[i]
      if i < model.depth - 1:
        h = model.act(h)
    return jnp.sum(jax.vmap(rule.loss)(model.head(h, k, outer), v)), inputs

  eps = [jnp.zeros((k.shape[0], w.shape[1]), k.dtype) for w in w0["w"]]
  deltas, inputs = jax.grad(keys_loss, has_aux=True)(eps)
  mean = 1.0 / jnp.maximum(jnp.cumsum(use), 1.0)  # 1 / n_t
  e = jnp.tril(mean[:, None] * lr[None, :])  # [C, C]

  h = q
  for i in range(model.depth):
    z = h @ w0["w"][i] + bias * lead(w0["b"][i], h) - (e * (h @ inputs[i].T + bias)) @ deltas[i]
    h = model.act(z) if i < model.depth - 1 else z
  y = model.head(h, q, outer)

  step = [e[-1][:, None] * d for d in deltas]  # the last row: 1 / n times the chunk's rated gradients
  new = {
    "w": [w - x.T @ s for w, x, s in zip(w0["w"], inputs, step)],
    "b": [b - bias * jnp.sum(s, axis=0) for b, s in zip(w0["b"], step)],
  }
  return new, y


def chunked(rule: Rule, outer, state: MemState, q, k, v, rates: Rates, mask, chunk: int):
  """The official TTT step of `rule` over a sequence; `memories.chunked`'s arguments and results.

  Args:
    rule: a chunk-start rule without extras (TTT's).
    outer: the inner LayerNorm (`ln_scale`, `ln_bias` [Dv]) or {}.
    state: the memory before the first token (its momentum is carried as is).
    q, k: [T, Dk]; v: [T, Dv]; rates: `Rates` of [T], of which only `lr` is
      used (TTT has no retention or momentum); mask: [T] bool.
    chunk: tokens per mini-batch C.

  Returns:
    y [T, Dv] and the memory after the last chunk.
  """
  _check(rule)
  t = q.shape[0]
  n = -(-t // chunk)
  use = mask.astype(q.dtype)
  xs = (q, k, v, masked_rates(rates, mask).lr, use)
  xs = tuple(jnp.pad(x, [(0, n * chunk - t)] + [(0, 0)] * (x.ndim - 1)).reshape(n, chunk, *x.shape[1:]) for x in xs)
  body = jax.checkpoint(lambda w, x: _chunk(rule, outer, w, x))
  w, y = jax.lax.scan(body, state.w, xs)
  return y.reshape(n * chunk, -1)[:t], MemState(w, state.m)
