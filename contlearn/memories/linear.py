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
once per chunk for both right-hand sides (by block inversion, `unit_lower_inverse`), so
`U = U_v - W_k W_0` and only matrix products remain in the scan over chunks:

    Y   = g * (Q W_0) + ((Q K^T) * G) U          G[t, i] = g_t/g_i, i <= t
    W_C = g_C W_0 + (K * g_C/g)^T U
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from contlearn.memories.core import log_rate


def _pad(x: jax.Array, n: int, value: float = 0.0) -> jax.Array:
  pad = [(0, n - x.shape[0])] + [(0, 0)] * (x.ndim - 1)
  return jnp.pad(x, pad, constant_values=value)


def _coupling(c: int, span: int) -> np.ndarray:
  """Where, in a [C, C] matrix, the lower-left block of each diagonal block of size 2 span lies; bool [C, C].

  The diagonal blocks are rows and columns `[2 span j, 2 span (j + 1))` (the last one ragged);
  within each, the lower-left block is its second half of rows by its first half of columns.
  """
  i = np.arange(c)
  same = i[:, None] // (2 * span) == i[None, :] // (2 * span)
  return same & (i[:, None] // span % 2 == 1) & (i[None, :] // span % 2 == 0)


def unit_lower_inverse(a: jax.Array) -> jax.Array:
  """`(I + A)^-1` for strictly lower-triangular `a [..., C, C]`, by block inversion.

  Blocks of size 1, 2, 4, ... along the diagonal are inverted in turn: with
  `S` the inverse of the diagonal blocks of size s, each block of size 2s,
  `[[L11, 0], [L21, L22]]`, has the inverse `[[X11, 0], [-X22 L21 X11, X22]]`,
  i.e. `S <- S - S E S` with `E` the blocks `L21` of `a` (`_coupling`): two
  matmuls per doubling, log2(C) doublings. Every intermediate is a block of
  the inverse or its product with a block of `a`: no powers of `a`. (The series
  `sum_j (-A)^j`, summed by doubling, costs as much but is unstable: when
  keys are alike its terms grow like binomial coefficients, entries up to
  C(62, 31) ~ 5e17 in `(-A)^32` for C = 64, all keys equal and rate 1, and
  cancel to an inverse whose entries are at most 1; in float32 it was wrong
  by up to 2e9 there, and a DeltaNet's memory grew step after step until it
  overflowed, docs/memories.md.)
  """
  c = a.shape[-1]
  eye = jnp.broadcast_to(jnp.eye(c, dtype=a.dtype), a.shape)
  s = eye - jnp.where(_coupling(c, 1), a, 0.0)  # the blocks of size 2 (at size 1, S = I)
  span = 2
  while span < c:
    s = s - s @ (jnp.where(_coupling(c, span), a, 0.0) @ s)
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
