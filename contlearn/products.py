"""`weight_product`: `x @ w` for a weight w, with a pullback that writes w's cotangent in its own layout.

JAX's pullback of `x @ w` (x [..., d_in], w [d_in, d_out]) computes w's
cotangent as `ct^T x`, [d_out, d_in], and transposes it. On the CPU, XLA
then either copies that result or transposes the larger operand of the
product: a pass over a weight, or over a [tokens, d_out] activation, per
product. `weight_product` contracts straight into [d_in, d_out] (`x^T ct`)
and reads w along its last axis for x's cotangent (`ct w^T`), whose own
cotangent with respect to w is then in layout too (second order: the outer
gradient of an inner one, as in the chunked memories and EBT). A stack of
weights [..., d_in, d_out] (the self-modifying memories' five at once) gets
the same two products batched over the stack, summed over the axes that
broadcasting added.

It is a `jax.custom_vjp`: reverse mode to any order, no forward mode
(`jax.jvp`, `jax.jacfwd`, `jax.hessian` through it raise). Measured in
docs/benchmarks.md, "Products with weights".

>>> import jax, jax.numpy as jnp
>>> x, w = jnp.ones((2, 3)), jnp.arange(12.0).reshape(3, 4)
>>> bool(jnp.allclose(weight_product(x, w), x @ w))
True
>>> jax.grad(lambda w: jnp.sum(weight_product(x, w)))(w).shape
(3, 4)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


@jax.custom_vjp
def weight_product(x: jax.Array, w: jax.Array) -> jax.Array:
  """`x @ w`: x [..., T, d_in], w [..., d_in, d_out] -> [..., T, d_out], leading axes broadcast as in
  `jnp.matmul` (a stack of weights [S, d_in, d_out] read at one x [T, d_in] gives [S, T, d_out])."""
  return jnp.matmul(x, w)


def _weight_product_fwd(x, w):
  return jnp.matmul(x, w), (x, w)


def _sum_to(a: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """`a` summed over the leading axes that broadcasting added to `shape`."""
  extra = a.ndim - len(shape)
  a = jnp.sum(a, axis=tuple(range(extra))) if extra else a
  broadcast = tuple(i for i, n in enumerate(shape) if n == 1 and a.shape[i] != 1)
  return jnp.sum(a, axis=broadcast, keepdims=True) if broadcast else a


def _weight_product_bwd(saved, ct):
  x, w = saved
  if w.ndim == 2:  # one weight: contract every leading axis of x at once
    lead = tuple(range(x.ndim - 1))
    ct_x = jax.lax.dot_general(ct, w, (((ct.ndim - 1,), (1,)), ((), ())))
    ct_w = jax.lax.dot_general(x, ct, ((lead, lead), ((), ())))
    return ct_x.astype(x.dtype), ct_w.astype(w.dtype)
  ct_x = jnp.matmul(ct, jnp.swapaxes(w, -1, -2))  # contracts w's last axis
  ct_w = jnp.matmul(jnp.swapaxes(x, -1, -2), ct)  # [..., d_in, d_out] as w
  return _sum_to(ct_x, x.shape).astype(x.dtype), _sum_to(ct_w, w.shape).astype(w.dtype)


weight_product.defvjp(_weight_product_fwd, _weight_product_bwd)
