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

from collections.abc import Callable
from typing import NamedTuple

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


class ChunkTerms(NamedTuple):
  """What the scan over chunks reads, per chunk: each `[N, C, ...]` (N chunks of C tokens).

  q: [N, C, Dk] queries. scores: [N, C, C] `(Q K^T) * G`. u: [N, C, Dv] `U_v`.
  w_k: [N, C, Dk] `W_k`, with `U = U_v - W_k W_0` (delta rule), or None
  (dot loss: `U = U_v`). k_out: [N, C, Dk] `K * g_C / g`. g: [N, C] `g_t`.
  g_end: [N] `g_C`.
  """

  q: jax.Array
  scores: jax.Array
  u: jax.Array
  w_k: jax.Array | None
  k_out: jax.Array
  g: jax.Array
  g_end: jax.Array


def chunk_terms(q, k, v, lr, retain, mask, chunk: int, delta: bool) -> ChunkTerms:
  """The intra-chunk terms of `chunked` (its arguments; T padded to whole chunks)."""
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
  u_v, w_k = lr[..., None] * v, None
  if delta:
    strict = jnp.tril(jnp.ones((chunk, chunk), bool), -1)[None]
    a = jnp.where(strict, lr[..., None] * gmat * jnp.einsum("nid,njd->nij", k, k), 0.0)
    rhs = jnp.concatenate([u_v, (lr * g)[..., None] * k], axis=-1)
    sol = unit_lower_inverse(a) @ rhs
    u_v, w_k = sol[..., : v.shape[-1]], sol[..., v.shape[-1] :]
  scores = jnp.einsum("ntd,nid->nti", q, k) * gmat
  k_out = k * jnp.exp(log_g[:, -1:] - log_g)[..., None]
  return ChunkTerms(q, scores, u_v, w_k, k_out, g, g[:, -1])


def scan_chunks(w0: jax.Array, terms: ChunkTerms) -> tuple[jax.Array, jax.Array]:
  """The chunks in sequence (`lax.scan`): w0 [Dk, Dv] -> y [N, C, Dv] and the final memory [Dk, Dv].

  Per chunk: `U = U_v - W_k W`, `Y = g * (Q W) + S U`, `W <- g_C W + K_out^T U`.
  """

  def step(w, xs: ChunkTerms):
    u = xs.u if xs.w_k is None else xs.u - xs.w_k @ w
    y = xs.g[:, None] * (xs.q @ w) + xs.scores @ u
    return xs.g_end * w + xs.k_out.T @ u, y

  w, y = jax.lax.scan(step, w0, terms)
  return y, w


Across = Callable[[jax.Array, ChunkTerms], tuple[jax.Array, jax.Array]]


def chunked(w0, q, k, v, lr, retain, mask, chunk: int, delta: bool, across: Across = scan_chunks):
  """The linear online rule over T tokens, in chunks of `chunk` tokens.

  Args:
    w0: [Dk, Dv] memory before the first token.
    q, k: [T, Dk]; v: [T, Dv]; lr, retain: [T]; mask: [T] bool.
    chunk: tokens per chunk (any size; the last chunk may be ragged).
    delta: the delta rule (half squared loss) rather than the dot loss.
    across: how the chunks are chained, `scan_chunks`'s signature
      (`scan_chunks`, or the Pallas kernel `pallas_linear.across_chunks`).

  Returns:
    y [T, Dv] and the final memory [Dk, Dv].
  """
  t = q.shape[0]
  y, w = across(w0, chunk_terms(q, k, v, lr, retain, mask, chunk, delta))
  return y.reshape(-1, y.shape[-1])[:t], w
