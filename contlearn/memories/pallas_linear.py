"""A Pallas kernel for the scan over chunks of the linear memories' WY form.

`linear.chunked` computes each chunk's terms with batched matrix products
(`linear.chunk_terms`: the decayed scores, the WY solve of the delta rule),
then chains the chunks in sequence (`linear.scan_chunks`, a `lax.scan`).
`across_chunks` is that chain as one kernel: one program per head (per
batch lane and head under the mixer's vmaps, which become the kernel's
grid), looping over the N chunks with the memory held in the loop's carry,
so a head's whole sequence is one kernel launch rather than one XLA step per
chunk. Per chunk n, with the memory W [Dk, Dv] entering it:

    U_n = U_v,n - W_k,n W                   (delta rule; dot loss: U_n = U_v,n)
    Y_n = g_n * (Q_n W) + S_n U_n           S_n = (Q_n K_n^T) * G_n
    W  <- g_C,n W + K_out,n^T U_n           K_out,n = K_n * g_C,n / g_n

Shapes (one head, N chunks of C tokens, `linear.ChunkTerms`): q, k_out
[N, C, Dk]; scores [N, C, C]; u [N, C, Dv]; w_k [N, C, Dk] or None; g [N, C];
g_end [N]; w0 [Dk, Dv]. Returns y [N, C, Dv] and the final memory [Dk, Dv],
all in the inputs' float dtype (the mixers run memories in float32; the tests
in float64).

The backward pass is not a kernel: `across_chunks` is a `jax.custom_vjp`
whose backward is the pullback of `linear.scan_chunks` (it recomputes the
chain in XLA and differentiates that).

Lowered for a CPU the kernel runs in Pallas's interpreter; lowered for a GPU
it is compiled (Triton), which wants C, Dk and Dv powers of two and at least
16 (`pallas_support.on_platform`). The mixers use it with
`model.mixer.kernel=pallas` (`memory_layer.memory_mixer`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from contlearn.memories import linear, pallas_support
from contlearn.memories.linear import ChunkTerms


def _chain_kernel(chunk: int, n: int, delta: bool, *refs):
  """The kernel body on flat refs: rows `[i C, (i + 1) C)` are chunk i (module docstring)."""
  if delta:
    w0, q, scores, u, w_k, k_out, g, g_end, y, w_end = refs
  else:
    (w0, q, scores, u, k_out, g, g_end, y, w_end), w_k = refs, None

  def step(i, w):
    rows = pl.ds(pl.multiple_of(i * chunk, chunk), chunk)
    u_c = u[rows, :]
    if w_k is not None:
      u_c = u_c - jnp.dot(w_k[rows, :], w)
    y[rows, :] = g[rows, :] * jnp.dot(q[rows, :], w) + jnp.dot(scores[rows, :], u_c)
    written = jax.lax.dot_general(k_out[rows, :], u_c, (((0,), (0,)), ((), ())))  # K_out^T U
    return g_end[pl.ds(i, 1), :] * w + written

  w_end[...] = jax.lax.fori_loop(0, n, step, w0[...])


def _chain(w0: jax.Array, terms: ChunkTerms) -> tuple[jax.Array, jax.Array]:
  """`linear.scan_chunks` as a Pallas kernel (module docstring); not differentiable by itself."""
  n, chunk, dv = terms.u.shape
  flat = lambda x: x.reshape(n * chunk, -1)  # [N, C, ...] -> [N C, ...]; g -> [N C, 1]
  inputs = [w0, flat(terms.q), flat(terms.scores), flat(terms.u)]
  inputs += [] if terms.w_k is None else [flat(terms.w_k)]
  inputs += [flat(terms.k_out), flat(terms.g), terms.g_end[:, None]]
  call = lambda **options: pl.pallas_call(
    functools.partial(_chain_kernel, chunk, n, terms.w_k is not None),
    out_shape=(jax.ShapeDtypeStruct((n * chunk, dv), w0.dtype), jax.ShapeDtypeStruct(w0.shape, w0.dtype)),
    name="linear_memory_chunks",
    **options,
  )
  y, w = pallas_support.on_platform(call, *inputs)
  return y.reshape(n, chunk, dv), w


@jax.custom_vjp
def across_chunks(w0: jax.Array, terms: ChunkTerms) -> tuple[jax.Array, jax.Array]:
  """`linear.scan_chunks` computed by the Pallas kernel; its gradient is `scan_chunks`'s."""
  return _chain(w0, terms)


def _forward(w0, terms):
  return _chain(w0, terms), (w0, terms)


def _backward(saved, cotangent):
  return jax.vjp(linear.scan_chunks, *saved)[1](cotangent)


across_chunks.defvjp(_forward, _backward)
