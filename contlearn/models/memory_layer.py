"""A memory as a sequence block: projections, short conv, heads, output gate.

    x' = rms(x)
    q, k, v = silu(conv(x' W_qkv))          depthwise causal conv of width K
    q, k    = l2_normalize per head
    rates   = gates of x' (per token and head): lr, retention, momentum
    y_h     = memory_h(q_h, k_h, v_h, rates_h)   (memories.chunked, per head)
    out     = (rms(y_h) concat over heads) * silu(x' W_g) @ W_o
                                            (without `* silu(x' W_g)` if output_gate is off)

The outer loop learns W_qkv, the conv, the gates, W_g, W_o and, for memories
that are not plain matrices, the initial memory `W_0` (per head) and the
inner LayerNorm. The state carries each head's memory and momentum and the
last K - 1 conv inputs across steps, so the memory sees the whole stream.

State (leading axis B): `conv [B, K-1, 3D]`, `w`, `m` (the inner parameter
tree with leading `[B, H]`), `started [B]` (False until the first step, when
the memory starts from the learned `W_0`).

Chunks are counted from the start of each call, so a chunk-start-gradient
memory (TTT, Titans) asks for steps of whole chunks (`Mixer.step_multiple`).

Settings (`model.mixer.FIELD`), shared by the memory mixers through these
bases, each registered mixer's class taking only those it reads:

    MemoryConfig          chunk, conv, conv_init,    every memory mixer
                          output_gate
    MemoryMixerConfig     + qk_act                   `memory_mixer`'s (q, k, v projected)
    KernelConfig          kernel                     a Pallas kernel for the chunks (the two below, Hope)
    LinearMemoryConfig                               the linear memories (linear attention, DeltaNet)
    GatedRateConfig       + lr_init                  a gated inner rate (DeltaNet, TTT, Titans)
    ChunkStartConfig      + step                     chunk-start gradients (TTT, Titans)
    MlpMemoryConfig       expansion                  MLP memories (TTT-MLP, Titans, self-modifying)
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from contlearn import memories
from contlearn.config import ModelConfig
from contlearn.errors import ConfigError
from contlearn.field_checks import require
from contlearn.mixer_configs import MixerConfig
from contlearn.models import layers
from contlearn.models.mixer import Mixer, head_width


class MemoryBlock(NamedTuple):
  """How a memory's rates are made.

  rule: the memory (`contlearn.memories.RULES`).
  lr: "one" (rate 1) or "gate" (`lr_scale * sigmoid(x w + b)` per token,
    b starting at logit(`GatedRateConfig.lr_init`)).
  lr_scale: the largest inner rate of a "gate" lr.
  retain: "none", "multiscale" (fixed per head, RetNet), or "gate"
    (`1 - sigmoid(x w + b)` per token: Mamba2, Gated DeltaNet, Titans).
  chunk: default tokens per chunk (the inner mini-batch of TTT and Titans).
  form: the fast form run per head, with `memories.chunked`'s arguments and
    results (None: `memories.chunked`; TTT's official step:
    `ttt_official.chunked`).
  """

  rule: memories.Rule
  lr: str = "one"
  lr_scale: float = 1.0
  retain: str = "none"
  chunk: int = 64
  form: Callable | None = None


CONV_INITS = ("identity", "uniform")
QK_ACTS = {"silu": jax.nn.silu, "identity": lambda a: a}
STEPS = ("token", "chunk")


@dataclasses.dataclass(frozen=True)
class MemoryConfig(MixerConfig):
  """What every memory mixer reads: its chunks and its short convolution.

  Attributes:
    chunk: tokens per chunk of the memory's fast form; for TTT and Titans
      also the inner mini-batch of chunk-start gradients (0: the memory's
      default, 16 for TTT and self-modifying Titans, the segment for
      titans_mac, 64 otherwise).
    conv: width of the short causal depthwise convolution on the memory's
      inputs (1 disables it).
    conv_init: the short convolution's initial kernel: "identity" (each
      channel passes its current token; the outer loop learns any mixing)
      or "uniform" (each tap uniform in +-1/sqrt(conv), PyTorch's `Conv1d`
      default as in Mamba's and DeltaNet's reference code, so the inputs mix
      the last `conv` tokens from the start).
    output_gate: multiply the heads' normalised reads by `silu(x' W_g)`
      before `W_o` (False: no gate and no `W_g`).
  """

  chunk: int = 0
  conv: int = 4
  conv_init: str = "identity"
  output_gate: bool = True

  def __post_init__(self):
    super().__post_init__()
    require(self, positive=("conv",), non_negative=("chunk",), choices={"conv_init": CONV_INITS})


@dataclasses.dataclass(frozen=True)
class MemoryMixerConfig(MemoryConfig):
  """A memory read at queries and written with keys and values projected from the input (`memory_mixer`).

  Attributes:
    qk_act: the feature map of the queries and keys before their l2
      normalisation: "silu" (DeltaNet's default) or "identity".
  """

  qk_act: str = "silu"

  def __post_init__(self):
    super().__post_init__()
    require(self, choices={"qk_act": tuple(QK_ACTS)})


@dataclasses.dataclass(frozen=True)
class KernelConfig(MixerConfig):
  """A memory whose chunks may be chained by a Pallas kernel.

  Attributes:
    kernel: how the chunks are chained, one after the other: "xla" (a
      `lax.scan`) or "pallas" (one Pallas kernel per head,
      `memories.pallas_linear` for the linear memories,
      `memories.pallas_scan` for the chunk-start ones and self-modifying
      Titans' main memory; interpreted on a CPU,
      where it is only a test of the kernel; compiled by Triton on a GPU,
      where it was not faster than "xla" in its first measurement,
      docs/benchmarks.md).
  """

  kernel: str = "xla"

  def __post_init__(self):
    super().__post_init__()
    require(self, choices={"kernel": memories.KERNELS})


@dataclasses.dataclass(frozen=True)
class LinearMemoryConfig(MemoryMixerConfig, KernelConfig):
  """A matrix memory with the online rule, run in its chunked WY form (`memories.linear`)."""


@dataclasses.dataclass(frozen=True)
class GatedRateConfig(MemoryMixerConfig):
  """A memory whose inner rate is a gate of the input (`MemoryBlock.lr == "gate"`).

  Attributes:
    lr_init: the gate's initial value (DeltaNet's and Gated DeltaNet's
      beta, TTT's and Titans' per-token rate) as a fraction of its largest
      value: its bias starts at logit(lr_init); in (0, 1), 0.5 (bias 0) by
      default.
  """

  lr_init: float = 0.5

  def __post_init__(self):
    super().__post_init__()
    require(self, fraction=("lr_init",))


@dataclasses.dataclass(frozen=True)
class ChunkStartConfig(GatedRateConfig, KernelConfig):
  """A memory stepped with gradients at the start of each chunk (TTT, Titans).

  Attributes:
    step: "token" (each token steps the memory, and reads it after its own
      step) or "chunk" (one step per chunk of `chunk` tokens with the
      chunk's mean rates; tokens read the chunk-start memory:
      titans-pytorch's form).
  """

  step: str = "token"

  def __post_init__(self):
    super().__post_init__()
    require(self, choices={"step": STEPS})


@dataclasses.dataclass(frozen=True)
class MlpMemoryConfig(MixerConfig):
  """A memory that is an MLP per head.

  Attributes:
    expansion: the MLP's hidden width as a multiple of the head width.
  """

  expansion: int = 4

  def __post_init__(self):
    super().__post_init__()
    require(self, positive=("expansion",))


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


def conv_init(key: jax.Array, cfg: MemoryConfig, channels: int) -> jax.Array:
  """The depthwise causal kernel [K, C] of `cfg.conv_init` (its last row acts on the current token).

  "identity": the last row ones, the others zero. "uniform": every tap
  uniform in +-1/sqrt(K) (K = 1 stays the identity).
  """
  width = cfg.conv
  if cfg.conv_init == "identity" or width == 1:
    return jnp.zeros((width, channels), jnp.float32).at[-1].set(1.0)
  bound = width**-0.5
  return jax.random.uniform(key, (width, channels), jnp.float32, -bound, bound)


def io_init(k1: jax.Array, k2: jax.Array, cfg: MemoryConfig, model: ModelConfig, conv_channels: int) -> dict:
  """Input norm, conv (`conv_init`; a uniform one draws from a key folded out of k1), per-head output
  norm, output gate (k1; none if `cfg.output_gate` is off) and projection (k2)."""
  d, dh = model.d_model, model.d_model // model.n_heads
  return {
    "norm": jnp.ones((d,), jnp.float32),
    "conv": conv_init(jax.random.fold_in(k1, 1), cfg, conv_channels),
    "out_norm": jnp.ones((dh,), jnp.float32),
    **({"wg": layers.dense_init(k1, d, d)} if cfg.output_gate else {}),
    "wo": layers.dense_init(k2, d, d, scale=1.0 / model.n_layers),
  }


def normed_input(params: dict, x: jax.Array) -> jax.Array:
  """`x' = rms(x) * norm`, [B, T, D]."""
  return layers.rms_norm(x) * params["norm"][None, None]


def merge_heads(params: dict, y: jax.Array, xn: jax.Array, cfg: MemoryConfig) -> jax.Array:
  """`y [B, H, T, Dh]` -> `(rms(y_h) concat over heads) * silu(x' W_g) @ W_o`, [B, T, D] (no gate if
  `cfg.output_gate` is off)."""
  b, h, t, dh = y.shape
  y = (layers.rms_norm(y) * params["out_norm"][None, None, None]).transpose(0, 2, 1, 3).reshape(b, t, h * dh)
  if cfg.output_gate:
    y = y * jax.nn.silu(layers.dense(xn, params["wg"]))
  return layers.dense(y, params["wo"])


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
  """`M*(q)`: every head's memory read at `q [B, H, T, Dh]`, without a write; [B, H, T, Dh] in q's dtype.

  The memory is read in its own dtype (float32)."""
  per_head = lambda outer, w, qq: model.apply(w, outer, qq)
  run = jax.vmap(jax.vmap(per_head, in_axes=(0, 0, 0)), in_axes=(None, 0, 0))
  w = current_memory(params, state)
  dtype = jax.tree.leaves(w)[0].dtype
  return run(layers.cast_floats(params.get("ln", {}), dtype), w, q.astype(dtype)).astype(q.dtype)


def carried(state: dict, conv_in: jax.Array, mask: jax.Array) -> dict:
  """The conv inputs and started flags to carry after a step."""
  return {
    "conv": last_real(state["conv"], conv_in, mask, state["conv"].shape[1]),
    "started": state["started"] | jnp.any(mask, axis=1),
  }


def block_rule(cfg: MemoryMixerConfig, block: MemoryBlock) -> memories.Rule:
  """`block.rule`; a chunk-start memory (its config a `ChunkStartConfig`) steps once per chunk if `step` is "chunk"."""
  if block.rule.online or cfg.step == "token":
    return block.rule
  return block.rule._replace(chunk_step=True)


def block_form(cfg: MemoryMixerConfig, block: MemoryBlock):
  """The per-head fast form: `block.form`, else `memories.chunked`, chaining chunks with Pallas if `kernel="pallas"`.

  A config without `kernel` (not a `KernelConfig`) runs the XLA form.
  """
  if block.form is not None:
    return block.form
  return functools.partial(memories.chunked, kernel=getattr(cfg, "kernel", "xla"))


def memory_mixer(cfg: MemoryMixerConfig, model: ModelConfig, block: MemoryBlock) -> Mixer:
  """The mixer of `block.rule` with the settings `cfg` at the sizes of `model` (see the module docstring).

  A gated rate (`block.lr == "gate"`) reads `lr_init` (`GatedRateConfig`).
  """
  d, h = model.d_model, model.n_heads
  dh = head_width(model)
  for field, value, choices in (
    ("lr", block.lr, ("one", "gate")),
    ("retain", block.retain, ("none", "multiscale", "gate")),
  ):
    if value not in choices:
      raise ConfigError(f"memory {field}={value!r}: choose one of {', '.join(choices)}")
  rule, width = block_rule(cfg, block), cfg.conv
  chunk = cfg.chunk or block.chunk
  learned_w0 = not memories.is_linear(rule)
  gates = [
    name
    for name, on in (("lr", block.lr == "gate"), ("retain", block.retain == "gate"), ("momentum", rule.momentum))
    if on
  ]
  decays = jnp.asarray(head_decays(h))

  def init_params(key):
    ks = jax.random.split(key, 5)
    p = {**io_init(ks[1], ks[2], cfg, model, 3 * d), "wqkv": layers.dense_init(ks[0], d, 3 * d)}
    if gates:
      bias = {"retain": -4.0, "momentum": 0.0}
      if "lr" in gates:
        bias["lr"] = float(np.log(cfg.lr_init / (1.0 - cfg.lr_init)))
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
      z = (layers.dense(xn, params["wr"]) + params["br"][None, None]).reshape(b, t, len(gates), h)
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
    qkv_in = layers.dense(xn, params["wqkv"])
    qkv = causal_conv(params["conv"], state["conv"], qkv_in)
    q, k, v = (a.reshape(b, t, h, dh).transpose(0, 2, 1, 3) for a in jnp.split(qkv, 3, axis=-1))
    qk_act = QK_ACTS[cfg.qk_act]
    q, k, v = layers.l2_normalize(qk_act(q)), layers.l2_normalize(qk_act(k)), jax.nn.silu(v)
    mem = memories.MemState(current_memory(params, state), state["m"])
    # the memory integrates over the stream: it runs in its state's dtype (float32) whatever the compute dtype
    dtype = jax.tree.leaves(mem.w)[0].dtype
    outer = layers.cast_floats(params.get("ln", {}), dtype)
    form = block_form(cfg, block)
    per_head = lambda o, s, qq, kk, vv, rr, mm: form(rule, o, s, qq, kk, vv, rr, mm, chunk)
    run = jax.vmap(jax.vmap(per_head, in_axes=(0, 0, 0, 0, 0, 0, None)), in_axes=(None, 0, 0, 0, 0, 0, 0))
    inputs = layers.cast_floats((q, k, v, rates(params, xn, b, t)), dtype)
    y, mem = run(outer, mem, *inputs, mask)
    return merge_heads(params, y.astype(x.dtype), xn, cfg), {**carried(state, qkv_in, mask), "w": mem.w, "m": mem.m}

  if memories.is_linear(rule):  # online: any split of the stream gives the same map
    return Mixer(init_params, init_state, apply)
  setting = f"model.mixer.chunk={cfg.chunk}" if cfg.chunk else f"model.mixer.chunk=0: the default, {chunk}"
  reason = f"the inner mini-batch of model.mixer={cfg.name!r} ({setting})"
  return Mixer(init_params, init_state, apply, step_multiple=chunk, step_reason=reason)
