"""Linear attention: a matrix memory written at every token, carried forever.

Per head, with unit-norm query and key `q_t, k_t [Dk]`, value `v_t [Dv]` and
a fixed per-head decay `g` (1 for plain linear attention):

    S_t = g * S_{t-1} + k_t v_t^T          S: [Dk, Dv]
    y_t = S_t^T q_t

The state `S` persists from one step of the stream to the next, so the
memory's context is the whole stream. `reference_scan` is that recurrence
token by token; `chunk_forward` is the same map for a block of T tokens as
matrix products (the parallel form used in training):

    y = (Q K^T * G) V + (g^{t+1} Q) S_0         G[t, i] = g^{t-i} for i <= t
    S_T = g^T S_0 + (g^{T-1-i} K)^T V

State (leading axis B): `S [B, H, Dk, Dv]`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from contlearn.config import ModelConfig
from contlearn.errors import ConfigError
from contlearn.models import layers
from contlearn.models.mixer import Mixer, register_mixer


def head_decays(kind: str, n_heads: int) -> np.ndarray:
  """Per-head decay `g [H]`: "none" -> 1; "multiscale" -> 1 - 2^-(4..12)."""
  if kind == "none":
    return np.ones((n_heads,), np.float32)
  if kind == "multiscale":
    exponents = np.linspace(4.0, 12.0, n_heads) if n_heads > 1 else np.array([8.0])
    return (1.0 - 2.0 ** -exponents).astype(np.float32)
  raise ConfigError(f"model.decay={kind!r}: choose 'none' or 'multiscale'")


def reference_scan(s0, q, k, v, mask, decay):
  """Token-by-token recurrence (the test oracle).

  Args:
    s0: [B, H, Dk, Dv] initial memory.
    q, k: [B, T, H, Dk]; v: [B, T, H, Dv]; mask: [B, T]; decay: [H].

  Returns:
    y [B, T, H, Dv] and the final memory [B, H, Dk, Dv].
  """

  def step(s, inputs):
    q_t, k_t, v_t, m_t = inputs  # [B, H, D], m_t [B]
    g = jnp.where(m_t[:, None], decay[None, :], 1.0)[..., None, None]
    write = jnp.einsum("bhk,bhv->bhkv", k_t, v_t) * m_t[:, None, None, None]
    s = g * s + write
    return s, jnp.einsum("bhkv,bhk->bhv", s, q_t)

  xs = (q.swapaxes(0, 1), k.swapaxes(0, 1), v.swapaxes(0, 1), mask.swapaxes(0, 1))
  s, y = jax.lax.scan(step, s0, xs)
  return y.swapaxes(0, 1), s


def chunk_forward(s0, q, k, v, mask, decay):
  """The same map as `reference_scan`, for the whole block at once."""
  m = mask.astype(q.dtype)
  # Masked tokens neither write nor decay: count only real tokens in exponents.
  n = jnp.cumsum(m, axis=1)  # [B, T] real tokens up to and including t
  log_g = jnp.log(decay)[None, None, :]  # [1, 1, H]
  k = k * m[:, :, None, None]
  # G[b, h, t, i] = g^(n_t - n_i) for i <= t.
  diff = (n[:, :, None] - n[:, None, :])[:, None] * log_g[0, 0][None, :, None, None]
  causal = jnp.tril(jnp.ones((q.shape[1], q.shape[1]), bool))
  gmat = jnp.where(causal[None, None], jnp.exp(diff), 0.0)
  scores = jnp.einsum("bthd,bshd->bhts", q, k) * gmat
  y_intra = jnp.einsum("bhts,bshv->bthv", scores, v)
  q_decay = jnp.exp(n[:, :, None] * log_g)  # [B, T, H]
  y_inter = jnp.einsum("bthk,bhkv->bthv", q * q_decay[..., None], s0)
  total = n[:, -1:]  # [B, 1]
  k_decay = jnp.exp((total - n)[:, :, None] * log_g)  # [B, T, H]
  s_t = jnp.exp(total[:, :, None] * log_g)[:, 0, :, None, None] * s0 + jnp.einsum(
      "bthk,bthv->bhkv", k * k_decay[..., None], v
  )
  return y_intra + y_inter, s_t


@register_mixer("linear_attention")
def linear_attention(cfg: ModelConfig) -> Mixer:
  """Multi-head linear attention with a per-head decay (`cfg.decay`)."""
  d, h = cfg.d_model, cfg.n_heads
  if d % h:
    raise ConfigError(f"model.d_model={d} must be divisible by model.n_heads={h}")
  dh = d // h
  decay = jnp.asarray(head_decays(cfg.decay, h))

  def init_params(key):
    k1, k2 = jax.random.split(key)
    return {
        "norm": jnp.ones((d,), jnp.float32),
        "wqkv": layers.dense_init(k1, d, 3 * d),
        "out_norm": jnp.ones((dh,), jnp.float32),
        "wo": layers.dense_init(k2, d, d, scale=1.0 / cfg.n_layers),
    }

  def init_state(batch):
    return {"S": jnp.zeros((batch, h, dh, dh), jnp.float32)}

  def apply(params, state, x, mask):
    b, t, _ = x.shape
    qkv = layers.rms_norm(x, params["norm"]) @ params["wqkv"]
    q, k, v = jnp.split(qkv.reshape(b, t, 3 * h, dh), 3, axis=2)
    q, k = layers.l2_normalize(q), layers.l2_normalize(k)
    y, s = chunk_forward(state["S"], q, k, v, mask, decay)
    y = layers.rms_norm(y, params["out_norm"])
    return y.reshape(b, t, d) @ params["wo"], {"S": s}

  return Mixer(init_params, init_state, apply)
