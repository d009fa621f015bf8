"""The chunked (WY) form of linear memories with the online rule.

For a matrix memory `W [Dk, Dv]`, read `y_t = W_t^T q_t`, with retention
`a_t` and rate `b_t`, the online gradient step on the retained memory is

    dot loss (linear attention):   W_t = a_t W_{t-1} + b_t k_t v_t^T
    half squared (delta rule):     W_t = a_t (I - b_t k_t k_t^T) W_{t-1} + b_t k_t v_t^T

Both are `W_t = g_t W_0 + sum_{i<=t} (g_t / g_i) k_i u_i^T` inside a chunk of
C tokens, with `g_t = a_1 ... a_t` counted from the chunk start and

    u_i = b_i v_i                                                   (dot)
    u_i = b_i (v_i - g_i W_0^T k_i - sum_{j<i} (g_i/g_j) (k_i.k_j) u_j)   (delta)

The delta case is the lower-triangular system `(I + A) U = b (V - g K W_0)`,
`A[i, j] = b_i (g_i/g_j) k_i.k_j` for j < i (the WY / UT transform), solved
once per chunk for both right-hand sides (by a doubling series), so `U = U_v - W_k W_0` and only
matrix products remain in the scan over chunks:

    Y   = g * (Q W_0) + ((Q K^T) * G) U          G[t, i] = g_t/g_i, i <= t
    W_C = g_C W_0 + (K * g_C/g)^T U
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from contlearn.memories.core import log_rate


def _pad(x: jax.Array, n: int, value: float = 0.0) -> jax.Array:
  pad = [(0, n - x.shape[0])] + [(0, 0)] * (x.ndim - 1)
  return jnp.pad(x, pad, constant_values=value)


def unit_lower_inverse(a: jax.Array) -> jax.Array:
  """`(I + A)^-1` for strictly lower-triangular `a [..., C, C]`.

  A is nilpotent, so the inverse is the finite series sum_{j<C} (-A)^j,
  summed by doubling: S <- S (I + N^m), N^m <- N^2m, in log2(C) matmul pairs.
  """
  c = a.shape[-1]
  n = -a
  s = jnp.broadcast_to(jnp.eye(c, dtype=a.dtype), a.shape) + n
  span = 2
  while span < c:
    n = n @ n
    s = s + s @ n
    span *= 2
  return s


def chunked(w0, q, k, v, lr, retain, mask, chunk: int, delta: bool):
  """The linear online rule over T tokens, in chunks of `chunk` tokens.

  Args:
    w0: [Dk, Dv] memory before the first token.
    q, k: [T, Dk]; v: [T, Dv]; lr, retain: [T]; mask: [T] bool.
    chunk: tokens per chunk (any size; the last chunk may be ragged).
    delta: the delta rule (half squared loss) rather than the dot loss.

  Returns:
    y [T, Dv] and the final memory [Dk, Dv].
  """
  t = q.shape[0]
  n = -(-t // chunk)
  lr = jnp.where(mask, lr, 0.0)
  log_a = jnp.where(mask, log_rate(retain), 0.0)
  q, k, v, lr, log_a = (_pad(x, n * chunk).reshape(n, chunk, *x.shape[1:]) for x in (q, k, v, lr, log_a))
  log_g = jnp.cumsum(log_a, axis=1)  # [N, C]
  diff = log_g[:, :, None] - log_g[:, None, :]
  causal = jnp.tril(jnp.ones((chunk, chunk), bool))[None]
  gmat = jnp.where(causal, jnp.exp(jnp.where(causal, diff, 0.0)), 0.0)  # [N, C, C]
  g = jnp.exp(log_g)
  u_v = lr[..., None] * v
  if delta:
    strict = jnp.tril(jnp.ones((chunk, chunk), bool), -1)[None]
    a = jnp.where(strict, lr[..., None] * gmat * jnp.einsum("nid,njd->nij", k, k), 0.0)
    rhs = jnp.concatenate([u_v, (lr * g)[..., None] * k], axis=-1)
    sol = unit_lower_inverse(a) @ rhs
    u_v, w_k = sol[..., : v.shape[-1]], sol[..., v.shape[-1] :]
  scores = jnp.einsum("ntd,nid->nti", q, k) * gmat
  k_out = k * jnp.exp(log_g[:, -1:] - log_g)[..., None]
  g_end = g[:, -1]

  def step(w, xs):
    if delta:
      q_c, s_c, u_c, wk_c, kout_c, g_c, ge_c = xs
      u_c = u_c - wk_c @ w
    else:
      q_c, s_c, u_c, kout_c, g_c, ge_c = xs
    y = g_c[:, None] * (q_c @ w) + s_c @ u_c
    return ge_c * w + kout_c.T @ u_c, y

  xs = (q, scores, u_v) + ((w_k,) if delta else ()) + (k_out, g, g_end)
  w, y = jax.lax.scan(step, w0, xs)
  return y.reshape(n * chunk, -1)[:t], w
