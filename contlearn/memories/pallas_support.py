"""What the Pallas kernels share: where they run compiled, and a body Triton can lower.

`on_platform(call, *args)` runs a `pl.pallas_call` in Pallas's interpreter
where the program is lowered for a CPU and compiled by Triton where it is
lowered for a GPU (named, so that no jax version's default picks Mosaic
GPU, whose rules the kernels were not written for). The choice is made at
lowering (`lax.platform_dependent`), not from the default backend at
tracing, so a program exported for a GPU from a machine without one carries
the compiled kernel: tests/test_pallas_lowering.py lowers every kernel for
a Hopper GPU on a CPU.

`lowerable(fn)` is `fn` with the operations that Triton's Pallas lowering
has no rule for rewritten into ones it has, the values unchanged:

    custom_vjp call          the function it wraps (a kernel's body is never
                             differentiated; `products.weight_product` is
                             its matmul); a closed_call or jit, its body
                             inlined, so that the rewrites reach it
    x[a:b] (lax.slice)       per kept index, a sum over the axis of x
                             masked to that index
    other dot_general        products of two matrices (Triton's dots take
                             two, each side 16 or longer): one per batch
                             index, the free and the contracted axes
                             flattened; with a side shorter than 16 (a
                             vector, an outer product), a product
                             broadcast and summed; either way keeping
                             the product's precision and result type
                             (preferred_element_type), the sums of a
                             result narrower than float32 in float32
    squeeze                  a reshape
    stack, concatenate       of parts of length one: each part broadcast and
                             masked to its position, summed
    unstack                  per part, a masked sum as for a slice

It evaluates `fn`'s jaxpr once while tracing the kernel (the pattern of
JAX's "custom interpreters"); the bodies of loops and conditionals inside
`fn` are left as they are (the memories' chunk functions have none). The
masked sums select with `jnp.where`, so a value elsewhere on the axis, even
a non-finite one, does not reach the result. Lowering for a GPU is tested
on any machine (tests/test_pallas_lowering.py); the values on one, by the
accelerator check.

>>> import jax, jax.numpy as jnp
>>> from contlearn.products import weight_product
>>> f = lambda x, w: weight_product(x, w)[-1] @ w
>>> x, w = jnp.arange(6.0).reshape(2, 3), jnp.arange(9.0).reshape(3, 3)
>>> bool(jnp.array_equal(lowerable(f)(x, w), f(x, w)))
True
>>> sorted({e.primitive.name for e in jax.make_jaxpr(lowerable(f))(x, w).eqns} & {"slice", "custom_vjp_call"})
[]
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.extend as jex
import jax.numpy as jnp
from jax import lax
from jax.experimental.pallas import triton as pltriton

_PRODUCT_PARAMS = ("dimension_numbers", "precision", "preferred_element_type")  # what a rewritten product keeps
TRITON_DOT_MIN = 16  # the shortest side of a matrix product Triton's lowering takes (M, N and K; float64 dots)


def on_platform(call: Callable[..., Callable], *args):
  """`call(**options)(*args)`, `options` the `pl.pallas_call` arguments for the platform the program is lowered
  for (module docstring); lowering for another platform (a TPU) raises."""
  compiled = call(compiler_params=pltriton.CompilerParams())
  return jax.lax.platform_dependent(*args, cpu=call(interpret=True), cuda=compiled, rocm=compiled)


def lowerable(fn: Callable) -> Callable:
  """`fn` with calls inlined and slices, squeezes and products rewritten (module docstring)."""

  def run(*args):
    closed, shapes = jax.make_jaxpr(fn, return_shape=True)(*args)
    outs = _evaluate(closed.jaxpr, closed.consts, jax.tree.leaves(args))
    return jax.tree.unflatten(jax.tree.structure(shapes), outs)

  return run


def _evaluate(jaxpr, consts, args) -> list:
  """`jaxpr` on `args`, its top-level equations rewritten where `lowerable` says."""
  env = dict(zip(jaxpr.constvars, consts)) | dict(zip(jaxpr.invars, args))
  read = lambda v: v.val if isinstance(v, jex.core.Literal) else env[v]
  for eqn in jaxpr.eqns:
    ins, name = [read(v) for v in eqn.invars], eqn.primitive.name
    if name in ("custom_vjp_call", "custom_vjp_call_jaxpr", "custom_jvp_call", "closed_call", "jit", "pjit"):
      inner = next(eqn.params[k] for k in ("call_jaxpr", "fun_jaxpr", "jaxpr") if k in eqn.params)
      outs = _evaluate(inner.jaxpr, inner.consts, ins)
    elif name == "squeeze":  # Triton's squeeze of a 4-d array gives a malformed type
      outs = [lax.reshape(ins[0], eqn.outvars[0].aval.shape)]
    elif name == "stack":  # Triton stacks two arrays along a new last axis only
      axis = eqn.params["axis"]
      outs = [_assemble([a.reshape(a.shape[:axis] + (1,) + a.shape[axis:]) for a in ins], axis)]
    elif name == "unstack":  # Triton unstacks two along the last axis only
      outs = _unstack(ins[0], eqn.params["axis"])
    elif name == "concatenate" and all(a.shape[eqn.params["dimension"]] == 1 for a in ins):
      outs = [_assemble(ins, eqn.params["dimension"])]
    elif name == "slice":
      outs = [_slice_as_sums(ins[0], **eqn.params)]
    elif name == "dot_general" and not triton_dot(*ins, eqn.params["dimension_numbers"]):
      products = _matrix_products(*ins, **{k: eqn.params[k] for k in _PRODUCT_PARAMS if k in eqn.params})
      outs = [products.astype(eqn.outvars[0].aval.dtype)]
    else:
      bound = eqn.primitive.get_bind_params(eqn.params)  # jax < 0.11: (subfuns, params)
      subfuns, params = bound if isinstance(bound, tuple) else ((), bound)
      outs = eqn.primitive.bind(*subfuns, *ins, **params)
      outs = outs if eqn.primitive.multiple_results else [outs]
    env.update(zip(eqn.outvars, outs))
  return [read(v) for v in jaxpr.outvars]


def _slice_as_sums(x: jax.Array, start_indices, limit_indices, strides) -> jax.Array:
  """`lax.slice(x, ...)`: over each sliced axis, each kept index as the sum over that axis of x masked to it,
  the rank kept (Triton's lowering mistypes some arrays of higher rank), then `_assemble`d."""
  strides = strides or (1,) * x.ndim
  kept = [range(lo, hi, step) for lo, hi, step in zip(start_indices, limit_indices, strides)]
  if not all(kept):
    return jnp.zeros(tuple(map(len, kept)), x.dtype)
  for axis, indices in enumerate(kept):
    if indices != range(x.shape[axis]):
      x = _assemble([_take(x, i, axis) for i in indices], axis)
  return x


def _take(x: jax.Array, i: int, axis: int) -> jax.Array:
  """`x`'s index `i` along `axis`, the axis kept with length one: the sum over it of x masked to `i`."""
  positions = lax.broadcasted_iota(jnp.int32, tuple(n if a == axis else 1 for a, n in enumerate(x.shape)), axis)
  return jnp.sum(jnp.where(positions == i, x, jnp.zeros((), x.dtype)), axis=axis, keepdims=True).astype(x.dtype)


def _unstack(x: jax.Array, axis: int) -> list[jax.Array]:
  """The parts of x along `axis`, each a `_take` without that axis."""
  part = x.shape[:axis] + x.shape[axis + 1 :]
  return [_take(x, i, axis).reshape(part) for i in range(x.shape[axis])]


def _matrix_products(
  lhs: jax.Array, rhs: jax.Array, dimension_numbers, precision=None, preferred_element_type=None
) -> jax.Array:
  """A dot_general as products of two matrices, in dot_general's order of axes (batch, lhs, rhs): one per
  batch index (each operand's index `_take`n), the free and the contracted axes of each operand flattened into
  one; a product with a side shorter than `TRITON_DOT_MIN`, broadcast and summed in `_accumulation_type`."""
  (lc, rc), (lb, rb) = dimension_numbers
  options = dict(precision=precision, preferred_element_type=preferred_element_type)
  if lb:
    lhs, rhs = jnp.moveaxis(lhs, lb, range(len(lb))), jnp.moveaxis(rhs, rb, range(len(rb)))  # batch axes first
    batch = lhs.shape[: len(lb)]
    lhs, rhs = lhs.reshape(-1, *lhs.shape[len(lb) :]), rhs.reshape(-1, *rhs.shape[len(rb) :])
    shift = lambda dims, batched: tuple(d - sum(b < d for b in batched) for d in dims)
    numbers = ((shift(lc, lb), shift(rc, rb)), ((), ()))
    index = lambda x, i: _take(x, i, 0).reshape(x.shape[1:])
    products = [_matrix_products(index(lhs, i), index(rhs, i), numbers, **options) for i in range(lhs.shape[0])]
    return _assemble([p[None] for p in products], 0).reshape(*batch, *products[0].shape)
  free = lambda x, contracted: [d for d in range(x.ndim) if d not in contracted]
  lhs, rhs = jnp.transpose(lhs, free(lhs, lc) + list(lc)), jnp.transpose(rhs, free(rhs, rc) + list(rc))
  out_shape = lhs.shape[: lhs.ndim - len(lc)] + rhs.shape[: rhs.ndim - len(rc)]
  k = math.prod(lhs.shape[lhs.ndim - len(lc) :])
  lhs, rhs = lhs.reshape(-1, k), rhs.reshape(-1, k)  # [M, K], [N, K]
  if min(*lhs.shape, rhs.shape[0]) < TRITON_DOT_MIN:  # a vector, an outer product, a thin matrix
    dtype = _accumulation_type(preferred_element_type or jnp.result_type(lhs, rhs))
    return jnp.sum(lhs.astype(dtype)[:, None, :] * rhs.astype(dtype)[None, :, :], axis=-1).reshape(out_shape)
  return jax.lax.dot_general(lhs, rhs, (((1,), (1,)), ((), ())), **options).reshape(out_shape)


def _accumulation_type(dtype) -> jnp.dtype:
  """What a product whose result is `dtype` sums in: float32 for a narrower float (as a dot does), else
  `dtype` itself."""
  dtype = jnp.dtype(dtype)
  if jnp.issubdtype(dtype, jnp.floating) and dtype.itemsize < 4:
    return jnp.dtype(jnp.float32)
  return dtype


def triton_dot(lhs: jax.Array, rhs: jax.Array, dimension_numbers) -> bool:
  """Whether Triton's lowering takes this dot_general as it is: two matrices, one contracted axis, no batch,
  every side at least `TRITON_DOT_MIN` long."""
  (lc, rc), (lb, _) = dimension_numbers
  if lb or lhs.ndim != 2 or rhs.ndim != 2 or len(lc) != 1:
    return False
  return min(lhs.shape[1 - lc[0]], lhs.shape[lc[0]], rhs.shape[1 - rc[0]]) >= TRITON_DOT_MIN


def _assemble(parts: list[jax.Array], axis: int) -> jax.Array:
  """`jnp.concatenate(parts, axis)` for parts of length one along `axis`, as a sum of each part broadcast and
  masked to its position (Triton's concatenate and stack join two arrays along a new last axis only)."""
  if len(parts) == 1:
    return parts[0]
  shape = parts[0].shape[:axis] + (len(parts),) + parts[0].shape[axis + 1 :]
  positions = lax.broadcasted_iota(jnp.int32, shape, axis)
  zero = jnp.zeros((), parts[0].dtype)
  total = sum(jnp.where(positions == i, jnp.broadcast_to(p, shape), zero) for i, p in enumerate(parts))
  return total.astype(parts[0].dtype)
