"""Self-modifying Titans as a mixer, and the Hope and Hope-Attention blocks.

    x'  = conv(rms(x))                     depthwise causal conv of width K
                                           (`in_proj`: conv(rms(x) W_in))
    y_h = self-modifying Titans on the head slice x'_h   (per head, chunked)
    out = (rms(y_h) concat over heads) * silu(rms(x) W_g) @ W_o
                                           (no gate and no W_g if `output_gate` is off)

The equations are in `contlearn.memories.self_modifying`: q = x'_h W_q is the
only static projection; keys, values, inner rates, retention (and momentum)
are read from five (six) memories per head that write themselves; the main
memory is read at every token. The outer loop learns the norm, conv, W_q, the
rates' biases, W_g (with the gate), W_o and every head's initial memories.
The state carries each head's memories and momenta and the last K - 1 conv
inputs across steps, so it is part of the LM's memory and of its
checkpoints. With `decay_to_init` (default) the state is each memory's
deviation from its learned initial memory, starting at zero; without it,
the state is the memory itself (`started [B]`: False until a lane's first step, when the
memories start from the learned ones).
Heads see disjoint slices of the residual (no projection before the memories);
W_o mixes them, as later layers do. With `in_proj` a learned `W_in [D, D]`
before the conv lets each head read the whole residual, as Titans' heads
read `x W_q`, `x W_k`, `x W_v`.

Settings (`model.mixer.FIELD`, `SelfModifyingTitansConfig`): `chunk` (main
memory, 16 by default), `chunk_proj` (projection memories, 64), `expansion`,
`conv`, `conv_init`, `output_gate`, `dgd`, `momentum`, `self_values`, `self_values_grad`,
`decay_to_init`, `step_norm`, `read_residual`, `kv_residual`, `layer_norm` (with
`step_norm=false`), `in_proj`, `lr_scale` (divided by the memories' hidden
width: the largest inner step of a chunk), `kernel` (`pallas`: the main
memory's chunks chained by one Pallas kernel per head,
`memories.pallas_scan`).

Blocks of the language model (`byte_lm`: mixer, then the CMS chain):

    Hope            = self_modifying_titans, then CMS (`model.cms_periods`)
    Hope-Attention  = swa (softmax attention), then CMS

From the command line:

    contlearn run byte_lm --set model.mixer=self_modifying_titans --set model.cms_periods=1,16,256
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from contlearn.config import ModelConfig
from contlearn.errors import ConfigError
from contlearn.field_checks import require
from contlearn.memories import MemState, rules
from contlearn.memories import self_modifying as sm
from contlearn.models import layers
from contlearn.models import memory_layer as ml
from contlearn.models.mixer import Mixer, head_width, register_mixer

DEFAULT_CHUNK = 16  # the main memory's chunk when `chunk` is 0
CMS_PERIODS = (1, 16, 256)

# Named presets as `--set` overrides (`contlearn run byte_lm --set ...`).
_CMS = "model.cms_periods=" + ",".join(map(str, CMS_PERIODS))
PRESETS: dict[str, tuple[str, ...]] = {
  "hope": ("model.mixer=self_modifying_titans", _CMS),
  "hope_attention": ("model.mixer=swa", _CMS),
}


@dataclasses.dataclass(frozen=True)
class SelfModifyingTitansConfig(ml.MlpMemoryConfig, ml.MemoryConfig, ml.KernelConfig):
  """Self-modifying Titans (module docstring); `chunk` is the main memory's (0: 16).

  Attributes:
    chunk_proj: tokens per chunk of the projection memories (keys, values,
      rates); a multiple of the main memory's chunk.
    dgd: the memories learn by delta gradient descent (false: plain
      gradient steps).
    momentum: the memories learn with momentum, its rate read from a sixth
      memory.
    self_values: each memory makes its own target `M(v)` (false: every
      target is `v`).
    self_values_grad: the outer loop differentiates through the
      self-generated targets (false: it takes them as constants, as the
      inner step does).
    lr_scale: the largest inner step of the memories in one chunk, times
      their hidden width H (a memory with chunks of C tokens steps at most
      lr_scale / (H C) per token).
    decay_to_init: retention decays each memory toward its learned initial
      memory (false: toward zero, as the paper's equation).
    step_norm: each memory's step is divided by its curvature bound,
      `(eta / C) / (1 + eta kappa)`, so no chunk overshoots however large
      its weights grow (false: `eta / C`).
    read_residual: the main memory is read as `M(q) = q + gelu(q W_a) W_b`
      (false: `M(q) - q`, the written layers alone, brought to unit size by
      the per-head RMS norm of the output).
    kv_residual: the keys and values are `normalize(M_k(x))`,
      `normalize(M_v(x))` (false: `M_k(x) - x`, `M_v(x) - x`, the written
      layers alone, so a key need not carry the current token).
    layer_norm: every memory is `x + LN(gelu(x W_a) W_b)`, a LayerNorm with
      a learned scale and bias per memory and head inside the inner loss, as
      Titans' memory (false: `x + gelu(x W_a) W_b`); needs
      `step_norm=false` (the curvature bound has no LayerNorm).
    in_proj: the heads read `conv(rms(x) W_in)`, a learned projection of
      the whole residual (false: `conv(rms(x))`, each head its own slice).
  """

  chunk_proj: int = 64
  dgd: bool = True
  momentum: bool = True
  self_values: bool = True
  self_values_grad: bool = True
  lr_scale: float = 2.0
  decay_to_init: bool = True
  step_norm: bool = True
  read_residual: bool = True
  kv_residual: bool = True
  layer_norm: bool = False
  in_proj: bool = False

  def __post_init__(self):
    super().__post_init__()
    require(self, positive=("chunk_proj", "lr_scale"))


def hope(**fields) -> ModelConfig:
  """Hope: self-modifying Titans followed by a CMS in every block; `fields` override."""
  return dataclasses.replace(ModelConfig(mixer="self_modifying_titans", cms_periods=CMS_PERIODS), **fields)


def hope_attention(**fields) -> ModelConfig:
  """Hope-Attention: sliding-window softmax attention followed by a CMS; `fields` override."""
  return dataclasses.replace(ModelConfig(mixer="swa", cms_periods=CMS_PERIODS), **fields)


def spec(cfg: SelfModifyingTitansConfig, model: ModelConfig) -> sm.SelfModifying:
  """The per-head self-modifying Titans of `cfg` at the sizes of `model`."""
  chunk = cfg.chunk or DEFAULT_CHUNK
  if cfg.chunk_proj % chunk:
    raise ConfigError(
      f"model.mixer.chunk_proj={cfg.chunk_proj} must be a positive multiple of the main memory's "
      f"chunk (model.mixer.chunk={cfg.chunk}, 0 meaning {DEFAULT_CHUNK})"
    )
  if cfg.layer_norm and cfg.step_norm:
    raise ConfigError(
      "model.mixer.layer_norm=true needs model.mixer.step_norm=false: the normalised step's curvature bound "
      "has no LayerNorm"
    )
  rule = rules.self_modifying(
    cfg.expansion,
    cfg.dgd,
    cfg.momentum,
    cfg.self_values,
    cfg.decay_to_init,
    cfg.step_norm,
    cfg.layer_norm,
    cfg.self_values_grad,
  )
  hidden = cfg.expansion * head_width(model)
  return sm.SelfModifying(
    rule, chunk, cfg.chunk_proj, cfg.lr_scale / hidden, cfg.kernel, cfg.read_residual, cfg.kv_residual
  )


def head_inputs(cfg: SelfModifyingTitansConfig, model: ModelConfig, params: dict, conv_cache: jax.Array, x: jax.Array):
  """What the heads of a self-modifying Titans layer read of its input x [B, T, D]: `(xn, conv_in, heads)`, the
  normed input [B, T, D], the convolution's input (`xn`, or `xn W_in` with `in_proj`) [B, T, D] and the heads'
  inputs `conv(conv_in)` [B, H, T, Dh], the convolution continuing from `conv_cache` [B, K-1, D]."""
  b, t, _ = x.shape
  xn = ml.normed_input(params, x)
  conv_in = layers.dense(xn, params["win"]) if cfg.in_proj else xn
  heads = ml.causal_conv(params["conv"], conv_cache, conv_in).reshape(b, t, model.n_heads, head_width(model))
  return xn, conv_in, heads.transpose(0, 2, 1, 3)


@register_mixer("self_modifying_titans", SelfModifyingTitansConfig)
def self_modifying_titans(cfg: SelfModifyingTitansConfig, model: ModelConfig) -> Mixer:
  """Self-modifying Titans per head (module docstring)."""
  s = spec(cfg, model)
  d, h = model.d_model, model.n_heads
  dh, width = head_width(model), cfg.conv
  learned_start = not s.rule.model.offset  # else the initial memories are offsets in params["sm"]
  per_head = jax.vmap(
    jax.vmap(lambda p, st, x, m: sm.chunked(s, p, st, x, m), in_axes=(0, 0, 0, None)), in_axes=(None, 0, 0, 0)
  )

  def init_params(key):
    k_g, k_o, k_m = jax.random.split(key, 3)
    k_i = jax.random.fold_in(key, 3)  # W_in's key, the others as without it
    inner, start = jax.vmap(lambda kk: sm.init(s, kk, dh))(jax.random.split(k_m, h))
    return {
      **ml.io_init(k_g, k_o, cfg, model, d),
      "sm": inner,
      **({"w0": start.w} if learned_start else {}),
      **({"win": layers.dense_init(k_i, d, d)} if cfg.in_proj else {}),
    }

  def init_state(batch):
    _, start = jax.eval_shape(lambda: sm.init(s, jax.random.PRNGKey(0), dh))
    w = jax.tree.map(lambda x: jnp.zeros((batch, h, *x.shape), jnp.float32), start.w)
    return {
      "conv": jnp.zeros((batch, width - 1, d), jnp.float32),
      "w": w,
      "m": jax.tree.map(jnp.zeros_like, w),
      "started": jnp.zeros((batch,), bool),
    }

  def apply(params, state, x, mask):
    xn, conv_in, heads = head_inputs(cfg, model, params, state["conv"], x)
    w = ml.from_start(state["started"], state["w"], params["w0"]) if learned_start else state["w"]
    mem = MemState(w, state["m"])
    dtype = jax.tree.leaves(w)[0].dtype  # the memories run in their state's dtype (float32), whatever the compute dtype
    y, mem = per_head(layers.cast_floats(params["sm"], dtype), mem, heads.astype(dtype), mask)
    return ml.merge_heads(params, y.astype(x.dtype), xn, cfg), {
      **ml.carried(state, conv_in, mask),
      "w": mem.w,
      "m": mem.m,
    }

  reason = f"the chunk of the projection memories of model.mixer={cfg.name!r} (model.mixer.chunk_proj={cfg.chunk_proj})"
  return Mixer(init_params, init_state, apply, step_multiple=s.chunk_proj, step_reason=reason)
