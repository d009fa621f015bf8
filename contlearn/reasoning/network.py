"""The network f of the recursive models (TRM, HRM): post-norm blocks over the `[B, S, D]` sequence.

Each of the `layers` blocks mixes the S = P + L positions, then the D
channels, each step a residual branch followed by an RMS norm without scale:

    h <- rms(h + mix(h))            mix: "mlp"       a SwiGLU across the S positions (TRM's "mlp_t")
                                         "attention" multi-head non-causal self-attention with RoPE
    h <- rms(h + swiglu_D(h))       a SwiGLU across the D channels

`swiglu(x) = (silu(x W_gate) * x W_up) W_down`, no biases anywhere. The
attention has `heads` heads of width `Dh = D / heads`: `q, k, v = h W_qkv`,
q and k rotated by RoPE at positions `0..S-1` (base 10000, the rotate-half
layout of `contlearn.models.layers.rope`), `softmax(q k^T / sqrt(Dh)) v`
over all S keys (no mask), then `W_out`. The number of heads is read from
the shapes of the parameters (`qkv [D, 3, H, Dh]`, `out [H, Dh, D]`), so
`network(blocks, h)` needs no config.

Where the official TRM/HRM code differs (its `models/layers.py`):
- its RMS norm adds eps = 1e-5; this one uses `rms_norm`'s 1e-6;
- its SwiGLU hidden width is `round(expansion * width * 2 / 3)` rounded up
  to a multiple of 256 (256 for width 64 and expansion 4); here it is
  `expansion * width` (also 256 at width 64, but 208 for the S = 52 token
  SwiGLU where the official code has 256);
- its dense layers draw a truncated normal rescaled to the exact standard
  deviation `1 / sqrt(fan_in)`; `dense_init` draws `1 / sqrt(fan_in)` times a
  standard normal truncated to [-2, 2] (standard deviation 0.88 of that).

>>> import jax, jax.numpy as jnp
>>> from contlearn.reasoning.trm import TRMConfig
>>> cfg = TRMConfig(vocab=5, length=6, puzzles=1, width=8, mixer="attention", heads=2)
>>> blocks = init_network(jax.random.key(0), cfg)
>>> blocks[0]["attention"]["qkv"].shape, blocks[0]["attention"]["out"].shape
((8, 3, 2, 4), (2, 4, 8))
>>> network(blocks, jnp.ones((3, cfg.tokens, cfg.width))).shape
(3, 7, 8)
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from contlearn.models.layers import dense_init, rms_norm, rope


def _swiglu_init(key: jax.Array, d: int, hidden: int) -> dict:
  k1, k2 = jax.random.split(key)
  return {"gate_up": dense_init(k1, d, 2 * hidden), "down": dense_init(k2, hidden, d)}


def _swiglu(params: dict, x: jax.Array) -> jax.Array:
  """`[..., d] -> [..., d]`: `(silu(x W_gate) * x W_up) W_down`, as matrix products of `[N, d]` rows (their
  backward then contracts one axis, which XLA's CPU backend runs faster than a contraction over several)."""
  rows = x.reshape(-1, x.shape[-1])
  gate, up = jnp.split(rows @ params["gate_up"], 2, axis=-1)
  return ((jax.nn.silu(gate) * up) @ params["down"]).reshape(x.shape)


def _attention_init(key: jax.Array, d: int, heads: int) -> dict:
  """qkv `[D, 3, H, Dh]` (one `[D, 3D]` dense layer), out `[H, Dh, D]` (one `[D, D]` dense layer)."""
  k1, k2 = jax.random.split(key)
  dh = d // heads
  return {
    "qkv": dense_init(k1, d, 3 * d).reshape(d, 3, heads, dh),
    "out": dense_init(k2, d, d).reshape(heads, dh, d),
  }


def self_attention(params: dict, h: jax.Array) -> jax.Array:
  """`h [B, S, D] -> [B, S, D]`: non-causal multi-head attention, RoPE on q and k at positions `0..S-1`."""
  dh = params["qkv"].shape[-1]
  q, k, v = jnp.einsum("bsd,dthk->tbhsk", h, params["qkv"])  # each [B, H, S, Dh]
  positions = jnp.arange(h.shape[-2])
  q, k = rope(q, positions) / math.sqrt(dh), rope(k, positions)
  weights = jax.nn.softmax(jnp.einsum("bhsk,bhtk->bhst", q, k), axis=-1)
  return jnp.einsum("bhst,bhtk,hkd->bsd", weights, v, params["out"])


def init_network(key: jax.Array, cfg) -> list[dict]:
  """`cfg.layers` blocks, each a position mixer ("tokens": a SwiGLU over the S positions, or "attention"
  of `cfg.heads` heads, as `cfg.mixer` says) and a channel SwiGLU over D ("channels")."""
  keys = jax.random.split(key, 2 * cfg.layers)
  s, d = cfg.tokens, cfg.width

  def mixer(k):
    if cfg.mixer == "attention":
      return {"attention": _attention_init(k, d, cfg.heads)}
    return {"tokens": _swiglu_init(k, s, cfg.expansion * s)}

  return [
    {**mixer(keys[2 * i]), "channels": _swiglu_init(keys[2 * i + 1], d, cfg.expansion * d)} for i in range(cfg.layers)
  ]


def network(blocks: list[dict], h: jax.Array) -> jax.Array:
  """f: `h [B, S, D] -> [B, S, D]`; each block `h <- rms(h + mix(h)); h <- rms(h + swiglu_D(h))`."""
  for block in blocks:
    if "attention" in block:
      mixed = self_attention(block["attention"], h)
    else:
      mixed = jnp.swapaxes(_swiglu(block["tokens"], jnp.swapaxes(h, -1, -2)), -1, -2)
    h = rms_norm(h + mixed)
    h = rms_norm(h + _swiglu(block["channels"], h))
  return h
