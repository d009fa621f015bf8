"""A Pallas kernel for the scan over chunks of the chunk-start-gradient form (TTT, Titans).

`dual.chunked` chains its chunks with `dual.scan_chunks`, a `lax.scan` whose
body (`dual.one_chunk`) takes the chunk's gradients at the chunk-start
memory, reads every token's memory through attention-like products and
writes the memory (and momentum) at the chunk's end. `across_chunks` is that
chain as one kernel: one program per head (per batch lane and head under the
mixer's vmaps, which become the kernel's grid), looping over the N chunks
with the memory in the loop's carry, so a head's sequence is one kernel
launch, not one XLA step (and its several small products) per chunk. The
kernel's body is `dual.one_chunk` itself: the equations live in `dual` only.

Shapes (one head, N chunks of C tokens, `dual.scan_chunks`'s `xs`): q, k
[N, C, Dk], v [N, C, Dv], lr, retain, eta, use [N, C]; the state a
`MemState` of the memory's layers ([Din, Dout] weights, [Dout] biases) and
`outer` the memory's outer parameters (an inner LayerNorm, an offset). Returns
the final state and y [N, C, Dv], in the inputs' float dtype.

The backward pass is not a kernel: `across_chunks` is a `jax.custom_vjp`
whose backward is the pullback of `dual.scan_chunks` (it recomputes the chain
in XLA and differentiates that).

On the CPU the kernel runs in Pallas's interpreter (`interpret=True`, chosen
from `jax.default_backend()`), where it is a test of the kernel, not a speed-up;
on a GPU it is compiled with Triton, not yet tried (the accelerator check runs
its tests and times it). The mixers use it with `model.mixer.kernel=pallas`.
"""

from __future__ import annotations

import functools

import jax
from jax.experimental import pallas as pl

from contlearn.memories import dual
from contlearn.memories.core import MemState, Rule


def _flat_rows(x: jax.Array) -> jax.Array:
  """[N, C, ...] -> [N C, features]: row i C + t is token t of chunk i (rates get one feature)."""
  n, c = x.shape[:2]
  return x.reshape(n * c, -1)


def _chain(rule: Rule, outer, state: MemState, xs: tuple) -> tuple[MemState, jax.Array]:
  """`dual.scan_chunks` as a Pallas kernel (module docstring); not differentiable by itself."""
  n, chunk = xs[0].shape[:2]
  outer_leaves, outer_tree = jax.tree.flatten(outer)
  state_leaves, state_tree = jax.tree.flatten(state)
  first = tuple(x[0] for x in xs)
  y_one = jax.eval_shape(lambda: dual.one_chunk(rule, outer, state, first)[1])
  n_outer, n_state, n_xs = len(outer_leaves), len(state_leaves), len(xs)

  def kernel(*refs):
    outer_refs = refs[:n_outer]
    state_refs = refs[n_outer : n_outer + n_state]
    xs_refs = refs[n_outer + n_state : n_outer + n_state + n_xs]
    y_ref, *end_refs = refs[n_outer + n_state + n_xs :]
    outer_now = jax.tree.unflatten(outer_tree, [r[...] for r in outer_refs])

    def step(i, leaves):
      rows = pl.ds(pl.multiple_of(i * chunk, chunk), chunk)
      chunk_xs = tuple(r[rows, :].reshape(x.shape[1:]) for r, x in zip(xs_refs, xs))
      after, y = dual.one_chunk(rule, outer_now, jax.tree.unflatten(state_tree, leaves), chunk_xs)
      y_ref[rows, :] = y
      return jax.tree.leaves(after)

    final = jax.lax.fori_loop(0, n, step, [r[...] for r in state_refs])
    for ref, leaf in zip(end_refs, final, strict=True):
      ref[...] = leaf

  out_shape = (
    jax.ShapeDtypeStruct((n * chunk, y_one.shape[-1]), y_one.dtype),
    *(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in state_leaves),
  )
  y, *end = pl.pallas_call(
    kernel,
    out_shape=out_shape,
    interpret=jax.default_backend() == "cpu",
    name="dual_memory_chunks",
  )(*outer_leaves, *state_leaves, *(_flat_rows(x) for x in xs))
  return jax.tree.unflatten(state_tree, end), y.reshape(n, chunk, -1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def across_chunks(rule: Rule, outer, state: MemState, xs: tuple) -> tuple[MemState, jax.Array]:
  """`dual.scan_chunks` computed by the Pallas kernel; its gradient is `scan_chunks`'s."""
  return _chain(rule, outer, state, xs)


def _forward(rule, outer, state, xs):
  return _chain(rule, outer, state, xs), (outer, state, xs)


def _backward(rule, saved, cotangent):
  return jax.vjp(functools.partial(dual.scan_chunks, rule), *saved)[1](cotangent)


across_chunks.defvjp(_forward, _backward)
