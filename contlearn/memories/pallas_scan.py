"""A scan over a memory's chunks as one Pallas kernel.

The chunked forms chain their chunks with a `lax.scan` whose body takes one
chunk: `dual.one_chunk` (TTT, Titans) and `self_modifying`'s main memory.
Each step is a handful of small per-head products, one XLA step per chunk.
`scan(step, consts, carry, xs)` computes

    jax.lax.scan(lambda c, x: step(consts, c, x), carry, xs)

as one kernel: one program per head (per batch lane and head under the
mixer's vmaps, which become the kernel's grid), looping over the N chunks
with the carry (the memory, its momentum) in the loop's carry. The body is
the form's own chunk function, so the equations stay in one file.

Shapes: every leaf of `xs` is [N, C, ...] (N chunks of C tokens; passed to
the kernel as [N C, features] rows), `consts` (outer parameters) and `carry`
are read whole; the outputs y are [N, C, ...]. Everything in the inputs'
float dtype.

The backward pass is not a kernel: `scan` is a `jax.custom_vjp` whose
backward is the pullback of the `lax.scan` above (with the body under
`jax.checkpoint`, as the XLA forms: `xla_scan`), recomputed in XLA.

Lowered for a CPU, the kernel runs in Pallas's interpreter, where it is a
test of the kernel, not a speed-up; lowered for a GPU it compiles with
Triton (`pallas_support.on_platform`), its body rewritten into operations
Triton's lowering has rules for (`pallas_support.lowerable`). The
accelerator check runs the kernels' tests on a GPU and times the models
with `model.mixer.kernel=pallas`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
from jax import lax
from jax.experimental import pallas as pl

from contlearn.memories import pallas_support

Step = Callable[[Any, Any, Any], tuple[Any, Any]]
KERNELS = ("xla", "pallas")  # how a form chains its chunks: `xla_scan` or `scan`


def _chain(step: Step, consts, carry, xs):
  """The kernel (module docstring); not differentiable by itself."""
  x_leaves, x_tree = jax.tree.flatten(xs)
  n, chunk = x_leaves[0].shape[:2]
  c_leaves, c_tree = jax.tree.flatten(consts)
  s_leaves, s_tree = jax.tree.flatten(carry)
  first = jax.tree.map(lambda x: x[0], xs)
  step = pallas_support.lowerable(step)
  y_one = jax.eval_shape(lambda: step(consts, carry, first)[1])
  y_leaves, y_tree = jax.tree.flatten(y_one)
  counts = [len(c_leaves), len(s_leaves), len(x_leaves), len(y_leaves)]

  def kernel(*refs):
    c_refs, s_refs, x_refs, y_refs, end_refs = _split(refs, counts)
    consts_now = jax.tree.unflatten(c_tree, [r[...] for r in c_refs])

    def body(i, leaves):
      rows = pl.ds(pl.multiple_of(i * chunk, chunk), chunk)
      x = jax.tree.unflatten(x_tree, [r[rows, :].reshape(a.shape[1:]) for r, a in zip(x_refs, x_leaves)])
      after, y = step(consts_now, jax.tree.unflatten(s_tree, leaves), x)
      for ref, leaf in zip(y_refs, jax.tree.leaves(y), strict=True):
        ref[rows, :] = leaf.reshape(chunk, -1)
      return jax.tree.leaves(after)

    final = jax.lax.fori_loop(0, n, body, [r[...] for r in s_refs])
    for ref, leaf in zip(end_refs, final, strict=True):
      ref[...] = leaf

  out_shape = [jax.ShapeDtypeStruct((n * chunk, max(1, y.size // chunk)), y.dtype) for y in y_leaves]
  out_shape += [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in s_leaves]
  call = lambda **options: pl.pallas_call(kernel, out_shape=tuple(out_shape), name="memory_chunks", **options)
  outs = pallas_support.on_platform(call, *c_leaves, *s_leaves, *(x.reshape(n * chunk, -1) for x in x_leaves))
  ys = [y.reshape(n, *one.shape) for y, one in zip(outs[: len(y_leaves)], y_leaves)]
  return jax.tree.unflatten(s_tree, outs[len(y_leaves) :]), jax.tree.unflatten(y_tree, ys)


def _split(refs, counts):
  """`refs` cut into consts, carry, xs, ys and the final carry (as many as the carry's)."""
  parts, start = [], 0
  for count in [*counts, counts[1]]:
    parts.append(refs[start : start + count])
    start += count
  return parts


def _keep_smaller_products(prim, *operands, **params) -> bool:
  """A `jax.checkpoint` policy: keep the result of a matrix product unless it is larger than each of its
  operands (a sum of outer products over the chunk, such as a weight-sized update `x^T d`)."""
  if prim is not lax.dot_general_p:
    return False
  (lhs_contract, rhs_contract), (_, rhs_batch) = params["dimension_numbers"]
  lhs, rhs = operands[0].shape, operands[1].shape
  kept = [n for i, n in enumerate(rhs) if i not in rhs_contract and i not in rhs_batch]
  size = math.prod(n for i, n in enumerate(lhs) if i not in lhs_contract) * math.prod(kept)
  return size <= max(math.prod(lhs), math.prod(rhs))


def xla_scan(step: Step, consts, carry, xs):
  """The same chain as a `lax.scan`: the forms' default, and the kernel's gradient.

  The backward pass recomputes each chunk from its carried state, but keeps the forward's chunk-sized matrix
  products (`_keep_smaller_products`) instead of computing them again; the weight-sized ones are recomputed.
  For chunks shorter than the memory is wide, what it keeps per chunk is smaller than the carry (the Titans
  benchmark's step: 507 MB of temporary buffers against 409 MB when everything is recomputed)."""
  body = jax.checkpoint(lambda c, x: step(consts, c, x), policy=_keep_smaller_products)
  return jax.lax.scan(body, carry, xs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def scan(step: Step, consts, carry, xs):
  """`xla_scan(step, consts, carry, xs)` computed by the Pallas kernel; its gradient is `xla_scan`'s."""
  return _chain(step, consts, carry, xs)


def _forward(step, consts, carry, xs):
  return _chain(step, consts, carry, xs), (consts, carry, xs)


def _backward(step, saved, cotangent):
  return jax.vjp(functools.partial(xla_scan, step), *saved)[1](cotangent)


scan.defvjp(_forward, _backward)
