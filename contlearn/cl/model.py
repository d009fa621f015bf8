"""A pure multi-layer perceptron classifier with one or more output heads.

Parameters are a plain pytree (a list of `{"w", "b"}` layers), so the model
crosses `jit`, `scan` and `vmap` unchanged. A *head* is a slice of the output
units: task-incremental learning uses one head per task, domain- and
class-incremental learning use a single head.

>>> import jax.numpy as jnp
>>> model = Mlp(in_dim=784, hidden=(400, 400), head_size=2, n_heads=5)   # task-IL: 5 heads of 2
>>> params = model.init(jax.random.key(0))
>>> x, head = jnp.zeros((3, 784)), jnp.array([0, 4, 4])
>>> model.logits(params, x, head).shape      # each row's own head
(3, 2)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from contlearn.errors import ConfigError
from contlearn.models.dense import linear_init

Params = list[dict[str, jax.Array]]


@dataclasses.dataclass(frozen=True)
class Mlp:
  """A ReLU MLP whose last layer holds `n_heads` heads of `head_size` units.

  Attributes:
    in_dim: input features D.
    hidden: widths of the hidden layers.
    head_size: output units per head (classes a head can tell apart).
    n_heads: number of heads; 1 for domain- and class-incremental learning.
  """

  in_dim: int
  hidden: tuple[int, ...] = (400, 400)
  head_size: int = 10
  n_heads: int = 1

  def __post_init__(self):
    sizes = (self.in_dim, *self.hidden, self.head_size, self.n_heads)
    if any(int(s) < 1 for s in sizes):
      raise ConfigError(
        f"Mlp: every size must be >= 1, got in_dim={self.in_dim}, "
        f"hidden={self.hidden}, head_size={self.head_size}, "
        f"n_heads={self.n_heads}"
      )

  @property
  def out_dim(self) -> int:
    return self.head_size * self.n_heads

  @property
  def widths(self) -> tuple[int, ...]:
    return (self.in_dim, *self.hidden, self.out_dim)

  def init(self, key: jax.Array) -> Params:
    """Returns the parameters: a list with one `{"w": [i, o], "b": [o]}` per layer."""
    keys = jax.random.split(key, len(self.widths) - 1)
    return [linear_init(k, i, o) for k, i, o in zip(keys, self.widths[:-1], self.widths[1:])]

  def features(self, params: Params, x: jax.Array) -> tuple[jax.Array, list[jax.Array]]:
    """Runs the network.

    Args:
      params: from `init`.
      x: inputs [B, D].

    Returns:
      `(out, hiddens)`: all output units [B, n_heads * head_size] and the
      post-ReLU activations of each hidden layer, [B, width].
    """
    if x.ndim != 2 or x.shape[-1] != self.in_dim:
      raise ConfigError(f"Mlp: inputs must be [batch, {self.in_dim}], got {x.shape}")
    hiddens = []
    h = x
    for layer in params[:-1]:
      h = jax.nn.relu(h @ layer["w"] + layer["b"][None, :])
      hiddens.append(h)
    out = h @ params[-1]["w"] + params[-1]["b"][None, :]
    return out, hiddens

  def select_head(self, out: jax.Array, head: jax.Array) -> jax.Array:
    """Picks each row's head: out [B, n_heads*head_size], head [B] -> [B, head_size]."""
    per_head = out.reshape(out.shape[0], self.n_heads, self.head_size)
    return jnp.take_along_axis(per_head, head[:, None, None], axis=1)[:, 0]

  def logits(self, params: Params, x: jax.Array, head: jax.Array) -> jax.Array:
    """Logits of each row's head, [B, head_size]."""
    out, _ = self.features(params, x)
    return self.select_head(out, head)


def cross_entropy(logits: jax.Array, labels: jax.Array, mask: Any = None) -> jax.Array:
  """Mean softmax cross-entropy. logits [B, C], labels [B] int, mask [B] or None."""
  logp = jax.nn.log_softmax(logits)
  nll = -jnp.take_along_axis(logp, labels[:, None], axis=1)[:, 0]
  if mask is None:
    return jnp.mean(nll)
  mask = mask.astype(nll.dtype)
  return jnp.sum(nll * mask) / jnp.maximum(jnp.sum(mask), 1.0)
