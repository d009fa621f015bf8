"""A memory as a sequence block: projections, short conv, heads, output gate.

    x' = rms(x)
    q, k, v = silu(conv(x' W_qkv))          depthwise causal conv of width K
    q, k    = l2_normalize per head
    rates   = gates of x' (per token and head): lr, retention, momentum
    y_h     = memory_h(q_h, k_h, v_h, rates_h)   (memories.chunked, per head)
    out     = (rms(y_h) concat over heads) * silu(x' W_g) @ W_o

The outer loop learns W_qkv, the conv, the gates, W_g, W_o and, for memories
that are not plain matrices, the initial memory `W_0` (per head) and the
inner LayerNorm. The state carries each head's memory and momentum and the
last K - 1 conv inputs across steps, so the memory sees the whole stream.

State (leading axis B): `conv [B, K-1, 3D]`, `w`, `m` (the inner parameter
tree with leading `[B, H]`), `started [B]` (False until the first step, when
the memory starts from the learned `W_0`).

Chunks are counted from the start of each call, so a chunk-start-gradient
memory (TTT, Titans) asks for steps of whole chunks (`Mixer.step_multiple`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from contlearn import memories
from contlearn.config import ModelConfig
from contlearn.errors import ConfigError
from contlearn.models import layers
from contlearn.models.mixer import Mixer


class MemoryBlock(NamedTuple):
  """How a memory's rates are made.

  rule: the memory (`contlearn.memories.RULES`).
  lr: "one" (rate 1) or "gate" (`lr_scale * sigmoid(x w + b)` per token,
    b starting at logit(`model.mem_lr_init`)).
  lr_scale: the largest inner rate of a "gate" lr.
  retain: "none", "multiscale" (fixed per head, RetNet), or "gate"
    (`1 - sigmoid(x w + b)` per token: Mamba2, Gated DeltaNet, Titans).
  chunk: default tokens per chunk (the inner mini-batch of TTT and Titans).
  """

  rule: memories.Rule
  lr: str = "one"
  lr_scale: float = 1.0
  retain: str = "none"
  chunk: int = 64


CONV_INITS = ("identity", "uniform")
QK_ACTS = {"silu": jax.nn.silu, "identity": lambda a: a}


def head_decays(n_heads: int) -> np.ndarray:
  """RetNet-style fixed decays per head: 1 - 2^-(4..12), spread geometrically."""
  exponents = np.linspace(4.0, 12.0, n_heads) if n_heads > 1 else np.array([8.0])
  return (1.0 - 2.0**-exponents).astype(np.float32)


def causal_conv(kernel, cache, x):
  """Depthwise causal conv. kernel [K, C], cache [B, K-1, C], x [B, T, C]."""
  width = kernel.shape[0]
  full = jnp.concatenate([cache, x], axis=1)
  t = x.shape[1]
  return sum(full[:, i : i + t] * kernel[i][None, None] for i in range(width))


def last_real(cache, x, mask, keep: int):
  """The last `keep` real inputs of [cache, x] (padding sits at the end)."""
  full = jnp.concatenate([cache, x], axis=1)
  n = jnp.sum(mask, axis=1).astype(jnp.int32)  # [B]
  idx = n[:, None] + jnp.arange(keep)[None, :]  # [B, keep]
  return jnp.take_along_axis(full, idx[:, :, None], axis=1)


def check_heads(cfg: ModelConfig) -> None:
  """The sizes every memory mixer shares: heads, conv width, chunk."""
  d, h = cfg.d_model, cfg.n_heads
  if cfg.persistent_tokens:
    raise ConfigError(
      f"model.persistent_tokens={cfg.persistent_tokens}: model.mixer={cfg.mixer!r} has no attention "
      "to hold them (swa, titans_mag, titans_mal and titans_mac have)"
    )
  if h < 1 or d % h:
    raise ConfigError(f"model.d_model={d} must be divisible by model.n_heads={h}")
  if cfg.mem_conv < 1:
    raise ConfigError(f"model.mem_conv={cfg.mem_conv} must be >= 1")
  if cfg.mem_conv_init not in CONV_INITS:
    raise ConfigError(f"model.mem_conv_init={cfg.mem_conv_init!r}: choose one of {', '.join(CONV_INITS)}")
  if not 0.0 < cfg.mem_lr_init < 1.0:
    raise ConfigError(f"model.mem_lr_init={cfg.mem_lr_init} must lie in (0, 1): a fraction of the largest inner rate")
  if cfg.mem_qk_act not in QK_ACTS:
    raise ConfigError(f"model.mem_qk_act={cfg.mem_qk_act!r}: choose one of {', '.join(QK_ACTS)}")
  if cfg.mem_chunk < 0:
    raise ConfigError(f"model.mem_chunk={cfg.mem_chunk} must be >= 0 (0: the memory's default)")


def conv_init(key: jax.Array, cfg: ModelConfig, channels: int) -> jax.Array:
  """The depthwise causal kernel [K, C] of `cfg.mem_conv_init` (its last row acts on the current token).

  "identity": the last row ones, the others zero. "uniform": every tap
  uniform in +-1/sqrt(K) (K = 1 stays the identity).
  """
  width = cfg.mem_conv
  if cfg.mem_conv_init == "identity" or width == 1:
    return jnp.zeros((width, channels), jnp.float32).at[-1].set(1.0)
  bound = width**-0.5
  return jax.random.uniform(key, (width, channels), jnp.float32, -bound, bound)


def io_init(k1: jax.Array, k2: jax.Array, cfg: ModelConfig, conv_channels: int) -> dict:
  """Input norm, conv (`conv_init`; a uniform one draws from a key folded out of k1), per-head output
  norm, output gate (k1) and projection (k2)."""
  d, dh = cfg.d_model, cfg.d_model // cfg.n_heads
  return {
    "norm": jnp.ones((d,), jnp.float32),
    "conv": conv_init(jax.random.fold_in(k1, 1), cfg, conv_channels),
    "out_norm": jnp.ones((dh,), jnp.float32),
    "wg": layers.dense_init(k1, d, d),
    "wo": layers.dense_init(k2, d, d, scale=1.0 / cfg.n_layers),
  }


def normed_input(params: dict, x: jax.Array) -> jax.Array:
  """`x' = rms(x) * norm`, [B, T, D]."""
  return layers.rms_norm(x) * params["norm"][None, None]


def merge_heads(params: dict, y: jax.Array, xn: jax.Array) -> jax.Array:
  """`y [B, H, T, Dh]` -> `(rms(y_h) concat over heads) * silu(x' W_g) @ W_o`, [B, T, D]."""
  b, h, t, dh = y.shape
  y = (layers.rms_norm(y) * params["out_norm"][None, None, None]).transpose(0, 2, 1, 3).reshape(b, t, h * dh)
  return (y * jax.nn.silu(xn @ params["wg"])) @ params["wo"]


def from_start(started: jax.Array, w, w0):
  """Each lane's memory `w` (leading [B]), or the learned `w0` where the lane has not started."""
  pick = lambda s, init: jnp.where(started.reshape((-1,) + (1,) * (s.ndim - 1)), s, init[None])
  return jax.tree.map(pick, w, w0)


def current_memory(params, state):
  """Each lane's memory `[B, H, ...]`: its state, or the learned `W_0` before its first step."""
  if "w0" not in params:
    return state["w"]
  return from_start(state["started"], state["w"], params["w0"])


def read(model: memories.InnerModel, params, state, q: jax.Array) -> jax.Array:
  """`M*(q)`: every head's memory read at `q [B, H, T, Dh]`, without a write; [B, H, T, Dh]."""
  per_head = lambda outer, w, qq: model.apply(w, outer, qq)
  run = jax.vmap(jax.vmap(per_head, in_axes=(0, 0, 0)), in_axes=(None, 0, 0))
  return run(params.get("ln", {}), current_memory(params, state), q)


def carried(state: dict, conv_in: jax.Array, mask: jax.Array) -> dict:
  """The conv inputs and started flags to carry after a step."""
  return {
    "conv": last_real(state["conv"], conv_in, mask, state["conv"].shape[1]),
    "started": state["started"] | jnp.any(mask, axis=1),
  }


def block_rule(cfg: ModelConfig, block: MemoryBlock) -> memories.Rule:
  """`block.rule`, stepping once per chunk if `model.mem_step` is "chunk"."""
  if cfg.mem_step not in ("token", "chunk"):
    raise ConfigError(f"model.mem_step={cfg.mem_step!r}: choose token or chunk")
  if cfg.mem_step == "token":
    return block.rule
  if block.rule.online:
    raise ConfigError(
      f"model.mem_step='chunk' needs a chunk-start memory (ttt_linear, ttt_mlp, titans and its hybrids); "
      f"model.mixer={cfg.mixer!r} steps at every token"
    )
  return block.rule._replace(chunk_step=True)


def memory_mixer(cfg: ModelConfig, block: MemoryBlock) -> Mixer:
  """The mixer of `block.rule` at the sizes in `cfg` (see the module docstring)."""
  check_heads(cfg)
  d, h = cfg.d_model, cfg.n_heads
  for field, value, choices in (
    ("lr", block.lr, ("one", "gate")),
    ("retain", block.retain, ("none", "multiscale", "gate")),
  ):
    if value not in choices:
      raise ConfigError(f"memory {field}={value!r}: choose one of {', '.join(choices)}")
  rule, dh, width = block_rule(cfg, block), d // h, cfg.mem_conv
  chunk = cfg.mem_chunk or block.chunk
  learned_w0 = not memories.is_linear(rule)
  gates = [
    name
    for name, on in (("lr", block.lr == "gate"), ("retain", block.retain == "gate"), ("momentum", rule.momentum))
    if on
  ]
  decays = jnp.asarray(head_decays(h))

  def init_params(key):
    ks = jax.random.split(key, 5)
    p = {**io_init(ks[1], ks[2], cfg, 3 * d), "wqkv": layers.dense_init(ks[0], d, 3 * d)}
    if gates:
      bias = {"lr": float(np.log(cfg.mem_lr_init / (1.0 - cfg.mem_lr_init))), "retain": -4.0, "momentum": 0.0}
      p["wr"] = 0.1 * layers.dense_init(ks[3], d, len(gates) * h)
      p["br"] = jnp.concatenate([jnp.full((h,), bias[g], jnp.float32) for g in gates])
    if learned_w0:
      p["w0"] = jax.vmap(lambda kk: rule.model.init(kk, dh, dh))(jax.random.split(ks[4], h))
    if rule.model.ttt_norm:
      p["ln"] = {"ln_scale": jnp.ones((h, dh), jnp.float32), "ln_bias": jnp.zeros((h, dh), jnp.float32)}
    return p

  def init_state(batch):
    w = rule.model.init(jax.random.PRNGKey(0), dh, dh)
    w = jax.tree.map(lambda x: jnp.zeros((batch, h, *x.shape), jnp.float32), w)
    return {
      "conv": jnp.zeros((batch, width - 1, 3 * d), jnp.float32),
      "w": w,
      "m": jax.tree.map(jnp.zeros_like, w),
      "started": jnp.zeros((batch,), bool),
    }

  def rates(params, xn, b, t):
    ones = jnp.ones((b, t, h), xn.dtype)
    g = {}
    if gates:
      z = (xn @ params["wr"] + params["br"][None, None]).reshape(b, t, len(gates), h)
      g = {name: jax.nn.sigmoid(z[:, :, i]) for i, name in enumerate(gates)}
    lr = block.lr_scale * g["lr"] if "lr" in g else ones
    if block.retain == "gate":
      retain = 1.0 - g["retain"]
    elif block.retain == "multiscale":
      retain = ones * decays[None, None]
    else:
      retain = ones
    momentum = g.get("momentum", ones)
    return memories.Rates(*(r.transpose(0, 2, 1) for r in (lr, retain, momentum)))  # [B, H, T]

  def apply(params, state, x, mask):
    b, t, _ = x.shape
    xn = normed_input(params, x)
    qkv_in = xn @ params["wqkv"]
    qkv = causal_conv(params["conv"], state["conv"], qkv_in)
    q, k, v = (a.reshape(b, t, h, dh).transpose(0, 2, 1, 3) for a in jnp.split(qkv, 3, axis=-1))
    qk_act = QK_ACTS[cfg.mem_qk_act]
    q, k, v = layers.l2_normalize(qk_act(q)), layers.l2_normalize(qk_act(k)), jax.nn.silu(v)
    mem = memories.MemState(current_memory(params, state), state["m"])
    outer = params.get("ln", {})
    per_head = lambda o, s, qq, kk, vv, rr, mm: memories.chunked(rule, o, s, qq, kk, vv, rr, mm, chunk)
    run = jax.vmap(jax.vmap(per_head, in_axes=(0, 0, 0, 0, 0, 0, None)), in_axes=(None, 0, 0, 0, 0, 0, 0))
    y, mem = run(outer, mem, q, k, v, rates(params, xn, b, t), mask)
    return merge_heads(params, y, xn), {**carried(state, qkv_in, mask), "w": mem.w, "m": mem.m}

  if memories.is_linear(rule):  # online: any split of the stream gives the same map
    return Mixer(init_params, init_state, apply)
  setting = f"model.mem_chunk={cfg.mem_chunk}" if cfg.mem_chunk else f"model.mem_chunk=0: the default, {chunk}"
  reason = f"the inner mini-batch of model.mixer={cfg.mixer!r} ({setting})"
  return Mixer(init_params, init_state, apply, step_multiple=chunk, step_reason=reason)
