"""Pure building blocks: dense layers, RMS norm, a GELU MLP, RoPE.

Parameters are plain dicts of arrays; every function is `init(key, ...)` or
`apply(params, x)`. Shapes: `D` model width, `H` hidden width.

Activations may be bfloat16: norms and rotary angles are then computed in
float32 (`wide`) and returned in the input's dtype.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from contlearn.products import weight_product


def wide(dtype: Any) -> jnp.dtype:
  """The dtype to accumulate `dtype` values in: at least float32 (float32 for bfloat16, float64 stays)."""
  return jnp.promote_types(dtype, jnp.float32)


def cast_floats(tree: Any, dtype: Any) -> Any:
  """`tree` with its floating-point leaves cast to `dtype` (leaves already of `dtype` untouched)."""
  cast = lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) and a.dtype != dtype else a
  return jax.tree.map(cast, tree)


def dense(x: jax.Array, w: jax.Array) -> jax.Array:
  """A dense layer's product `x [..., d_in] @ w [d_in, d_out]` (`products.weight_product`: reverse mode only)."""
  return weight_product(x, w)


def dense_init(key: jax.Array, d_in: int, d_out: int, scale: float = 1.0) -> jax.Array:
  """A `[d_in, d_out]` weight with variance `scale / d_in` (truncated normal)."""
  std = (scale / d_in) ** 0.5
  return std * jax.random.truncated_normal(key, -2.0, 2.0, (d_in, d_out), jnp.float32)


def rms_norm(x: jax.Array, scale: jax.Array | None = None, eps: float = 1e-6) -> jax.Array:
  """Normalises the last axis of `x` to unit root-mean-square (in `wide` precision, as x's dtype), then scales."""
  xw = x.astype(wide(x.dtype))
  y = (xw * jax.lax.rsqrt(jnp.mean(jnp.square(xw), axis=-1, keepdims=True) + eps)).astype(x.dtype)
  return y if scale is None else y * jnp.broadcast_to(scale, y.shape)


def l2_normalize(x: jax.Array, eps: float = 1e-6) -> jax.Array:
  """Unit Euclidean norm along the last axis."""
  return x * jax.lax.rsqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True) + eps)


def mlp_init(key: jax.Array, d: int, hidden: int, out_scale: float = 1.0) -> dict:
  """Pre-norm residual MLP `x + W2 gelu(W1 rms(x))`: norm [D], w1 [D, H], w2 [H, D]."""
  k1, k2 = jax.random.split(key)
  return {
    "norm": jnp.ones((d,), jnp.float32),
    "w1": dense_init(k1, d, hidden),
    "w2": dense_init(k2, hidden, d, scale=out_scale),
  }


def mlp_apply(params: dict, x: jax.Array) -> jax.Array:
  """`x [..., D] -> [..., D]`, the residual branch only (without `+ x`)."""
  h = jax.nn.gelu(dense(rms_norm(x, params["norm"]), params["w1"]))
  return dense(h, params["w2"])


def rope(x: jax.Array, positions: jax.Array, base: float = 10_000.0) -> jax.Array:
  """Rotary position embedding of `x [..., T, Dh]` at integer `positions [T]` (angles in `wide` precision)."""
  half = x.shape[-1] // 2
  angle_dtype = wide(x.dtype)
  freqs = base ** (-jnp.arange(half, dtype=angle_dtype) / half)
  angles = positions.astype(angle_dtype)[:, None] * freqs[None, :]  # [T, Dh/2]
  x1, x2 = x[..., :half], x[..., half:]
  cos, sin = (jnp.broadcast_to(f(angles).astype(x.dtype), x1.shape) for f in (jnp.cos, jnp.sin))
  return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)
