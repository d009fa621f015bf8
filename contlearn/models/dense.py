"""A dense layer's parameters `{"w", "b"}`, drawn as PyTorch's `nn.Linear` draws them.

The layer of `contlearn.cl.Mlp`, and the units continual backprop draws afresh
(`contlearn.strategies.cbp`). Not `layers.dense_init`, the sequence models'
weight without a bias.

>>> layer = linear_init(jax.random.key(0), 784, 400)
>>> layer["w"].shape, layer["b"].shape, layer["w"].dtype
((784, 400), (400,), dtype('float32'))
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def linear_init(key: jax.Array, fan_in: int, fan_out: int) -> dict[str, jax.Array]:
  """One layer, w float32 [fan_in, fan_out] and b [fan_out], uniform in
  +-1/sqrt(fan_in) (PyTorch's `nn.Linear` default)."""
  kw, kb = jax.random.split(key)
  bound = 1.0 / jnp.sqrt(fan_in)
  return {
    "w": jax.random.uniform(kw, (fan_in, fan_out), jnp.float32, -bound, bound),
    "b": jax.random.uniform(kb, (fan_out,), jnp.float32, -bound, bound),
  }
