"""Causal sliding-window attention with a key/value cache carried across steps.

The Transformer baseline. A query at stream position p attends the keys at
positions (p - window, p]. The last `window` keys and values are kept in the
state, so the window reaches back across step (and chunk) boundaries and the
model sees the stream as one sequence. RoPE is applied at use time with
positions relative to the start of the cache, so positions stay small however
long the stream is.

Persistent tokens (`model.mixer.persistent_tokens` = N_p, Titans' persistent
memory): N_p learned keys and values per head that every query sees, in front
of the window and never evicted, like an attention sink. They carry no
position: their logit is the un-rotated `q . k_p / sqrt(Dh)`, the same for a
query wherever it sits. With N_p = 0 there are none and nothing changes.

State (leading axis B, the lane):
  k, v:   [B, W, H, Dh]  the last W keys and values (un-rotated), in `model.compute_dtype`
  valid:  [B, W]         whether a cache slot holds a real token
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from contlearn.config import ModelConfig
from contlearn.field_checks import require
from contlearn.mixer_configs import MixerConfig
from contlearn.models import layers
from contlearn.models.mixer import Mixer, head_width, register_mixer

_NEG = -1e30


@dataclasses.dataclass(frozen=True)
class SlidingWindowConfig(MixerConfig):
  """Sliding-window attention ("swa"), and the attention of Titans' hybrids.

  Attributes:
    window: keys each query sees, in tokens (kept across steps).
    persistent_tokens: learned key/value tokens every query sees (Titans'
      persistent memory); 0: none.
  """

  window: int = 64
  persistent_tokens: int = 0

  def __post_init__(self):
    super().__post_init__()
    require(self, positive=("window",), non_negative=("persistent_tokens",))


def init_params(key: jax.Array, cfg: SlidingWindowConfig, model: ModelConfig) -> dict:
  """norm [D], wqkv [D, 3D], wo [D, D], and `persistent` {k, v: [N_p, H, Dh]} if N_p > 0."""
  d, h, n_p = model.d_model, model.n_heads, cfg.persistent_tokens
  dh = head_width(model)
  k1, k2 = jax.random.split(key)
  params = {
    "norm": jnp.ones((d,), jnp.float32),
    "wqkv": layers.dense_init(k1, d, 3 * d),
    "wo": layers.dense_init(k2, d, d, scale=1.0 / model.n_layers),
  }
  if n_p:  # unit-variance entries, like the projected keys and values of normed inputs
    k3, k4 = jax.random.split(jax.random.fold_in(key, 1))
    params["persistent"] = {
      "k": jax.random.normal(k3, (n_p, h, dh), jnp.float32),
      "v": jax.random.normal(k4, (n_p, h, dh), jnp.float32),
    }
  return params


def persistent(params: dict):
  """The persistent (keys, values) `[N_p, H, Dh]` of `params`, or None."""
  p = params.get("persistent")
  return None if p is None else (p["k"], p["v"])


def project(params: dict, x: jax.Array, n_heads: int):
  """x [B, T, D] -> q, k, v [B, T, H, Dh]."""
  b, t, d = x.shape
  qkv = layers.dense(layers.rms_norm(x, params["norm"]), params["wqkv"])
  q, k, v = jnp.split(qkv.reshape(b, t, 3 * n_heads, d // n_heads), 3, axis=2)
  return q, k, v


def attend(q, k, v, q_pos, k_pos, k_valid, window: int, persistent_kv=None) -> jax.Array:
  """Windowed causal attention, optionally with persistent tokens in front.

  Args:
    q: [B, T, H, Dh] queries at positions `q_pos [T]`.
    k, v: [B, S, H, Dh] keys and values at positions `k_pos [S]`.
    k_valid: [B, S] whether each key is a real token.
    window: a query at p sees keys at (p - window, p].
    persistent_kv: None, or (keys, values) `[N_p, H, Dh]` every query sees,
      without position.

  Returns:
    [B, T, H, Dh] in v's dtype; the logits and softmax are in float32 (or wider).
  """
  dh, acc = q.shape[-1], layers.wide(q.dtype)
  q_rot = layers.rope(q.swapaxes(1, 2), q_pos)  # [B, H, T, Dh]
  k = layers.rope(k.swapaxes(1, 2), k_pos)  # [B, H, S, Dh]
  logits = jnp.einsum("bhtd,bhsd->bhts", q_rot, k, preferred_element_type=acc) / jnp.sqrt(jnp.float32(dh))
  rel = q_pos[:, None] - k_pos[None, :]
  allowed = ((rel >= 0) & (rel < window))[None, None] & k_valid[:, None, None, :]
  logits = jnp.where(allowed, logits, _NEG)
  if persistent_kv is None:
    weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    return jnp.einsum("bhts,bshd->bthd", weights, v)
  p_k, p_v = persistent_kv
  n_p = p_k.shape[0]
  p_logits = jnp.einsum("bthd,phd->bhtp", q, p_k, preferred_element_type=acc) / jnp.sqrt(jnp.float32(dh))
  weights = jax.nn.softmax(jnp.concatenate([p_logits, logits], axis=-1), axis=-1).astype(v.dtype)
  return jnp.einsum("bhtp,phd->bthd", weights[..., :n_p], p_v) + jnp.einsum("bhts,bshd->bthd", weights[..., n_p:], v)


@register_mixer("swa", SlidingWindowConfig)
def sliding_window_attention(cfg: SlidingWindowConfig, model: ModelConfig) -> Mixer:
  """Multi-head causal attention over a window of `cfg.window` tokens."""
  d, h, w = model.d_model, model.n_heads, cfg.window
  dh = head_width(model)
  cache = jnp.dtype(model.compute_dtype)  # a window of keys, not an integral over the stream

  def init_state(batch):
    return {
      "k": jnp.zeros((batch, w, h, dh), cache),
      "v": jnp.zeros((batch, w, h, dh), cache),
      "valid": jnp.zeros((batch, w), bool),
    }

  def apply(params, state, x, mask):
    b, t, _ = x.shape
    q, k, v = project(params, x, h)
    keys = jnp.concatenate([state["k"], k], axis=1)
    values = jnp.concatenate([state["v"], v], axis=1)
    valid = jnp.concatenate([state["valid"], mask], axis=1)
    pos = jnp.arange(w + t)
    y = attend(q, keys, values, pos[w:], pos, valid, w, persistent(params))
    out = layers.dense(y.reshape(b, t, d), params["wo"])
    new_state = {"k": keys[:, t:], "v": values[:, t:], "valid": valid[:, t:]}
    return out, new_state

  return Mixer(lambda key: init_params(key, cfg, model), init_state, apply)
