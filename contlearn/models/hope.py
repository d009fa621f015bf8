"""Self-modifying Titans as a mixer, and the Hope and Hope-Attention blocks.

    x'  = conv(rms(x))                     depthwise causal conv of width K
    y_h = self-modifying Titans on the head slice x'_h   (per head, chunked)
    out = (rms(y_h) concat over heads) * silu(rms(x) W_g) @ W_o

The equations are in `contlearn.memories.self_modifying`: q = x'_h W_q is the
only static projection; keys, values, inner rates, retention (and momentum)
are read from five (six) memories per head that write themselves; the main
memory is read at every token. The outer loop learns the norm, conv, W_q, the
rates' biases, W_g, W_o and every head's initial memories. The state carries
each head's memories and momenta and the last K - 1 conv inputs across steps,
so it is part of the LM's memory and of its checkpoints. With
`sm_decay_to_init` (default) the state is each memory's deviation from its
learned initial memory, starting at zero; without it, the state is the
memory itself (`started [B]`: False until a lane's first step, when the
memories start from the learned ones).
Heads see disjoint slices of the residual (no projection before the memories);
W_o mixes them, as later layers do.

Config: `mem_chunk` (main memory, 16 by default), `sm_chunk_proj` (projection
memories, 64), `mem_expansion`, `mem_conv`, `mem_conv_init`, `sm_dgd`, `sm_momentum`,
`sm_self_values`, `sm_decay_to_init`, `sm_lr_scale` (divided by the
memories' hidden width: the largest inner step of a chunk).

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
from contlearn.memories import MemState, rules
from contlearn.memories import self_modifying as sm
from contlearn.models import memory_layer as ml
from contlearn.models.mixer import Mixer, register_mixer

DEFAULT_CHUNK = 16  # the main memory's chunk when `mem_chunk` is 0
CMS_PERIODS = (1, 16, 256)

# Named presets as `--set` overrides (`contlearn run byte_lm --set ...`).
_CMS = "model.cms_periods=" + ",".join(map(str, CMS_PERIODS))
PRESETS: dict[str, tuple[str, ...]] = {
  "hope": ("model.mixer=self_modifying_titans", _CMS),
  "hope_attention": ("model.mixer=swa", _CMS),
}


def hope(**fields) -> ModelConfig:
  """Hope: self-modifying Titans followed by a CMS in every block; `fields` override."""
  return dataclasses.replace(ModelConfig(mixer="self_modifying_titans", cms_periods=CMS_PERIODS), **fields)


def hope_attention(**fields) -> ModelConfig:
  """Hope-Attention: sliding-window softmax attention followed by a CMS; `fields` override."""
  return dataclasses.replace(ModelConfig(mixer="swa", cms_periods=CMS_PERIODS), **fields)


def spec(cfg: ModelConfig) -> sm.SelfModifying:
  """The per-head self-modifying Titans of `cfg`."""
  chunk = cfg.mem_chunk or DEFAULT_CHUNK
  if cfg.sm_chunk_proj < 1 or cfg.sm_chunk_proj % chunk:
    raise ConfigError(
      f"model.sm_chunk_proj={cfg.sm_chunk_proj} must be a positive multiple of the main memory's "
      f"chunk (model.mem_chunk={cfg.mem_chunk}, 0 meaning {DEFAULT_CHUNK})"
    )
  if cfg.mem_step != "token":
    raise ConfigError(f"model.mem_step={cfg.mem_step!r}: self_modifying_titans steps its memories at every token")
  if cfg.mem_expansion < 1:
    raise ConfigError(f"model.mem_expansion={cfg.mem_expansion} must be >= 1")
  rule = rules.self_modifying(
    cfg.mem_expansion, cfg.sm_dgd, cfg.sm_momentum, cfg.sm_self_values, cfg.sm_decay_to_init, cfg.sm_step_norm
  )
  hidden = cfg.mem_expansion * (cfg.d_model // cfg.n_heads)
  return sm.SelfModifying(rule, chunk, cfg.sm_chunk_proj, cfg.sm_lr_scale / hidden)


@register_mixer("self_modifying_titans")
def self_modifying_titans(cfg: ModelConfig) -> Mixer:
  """Self-modifying Titans per head (module docstring)."""
  ml.check_heads(cfg)
  s = spec(cfg)
  d, h = cfg.d_model, cfg.n_heads
  dh, width = d // h, cfg.mem_conv
  learned_start = not s.rule.model.offset  # else the initial memories are offsets in params["sm"]
  per_head = jax.vmap(
    jax.vmap(lambda p, st, x, m: sm.chunked(s, p, st, x, m), in_axes=(0, 0, 0, None)), in_axes=(None, 0, 0, 0)
  )

  def init_params(key):
    k_g, k_o, k_m = jax.random.split(key, 3)
    inner, start = jax.vmap(lambda kk: sm.init(s, kk, dh))(jax.random.split(k_m, h))
    return {**ml.io_init(k_g, k_o, cfg, d), "sm": inner, **({"w0": start.w} if learned_start else {})}

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
    b, t, _ = x.shape
    xn = ml.normed_input(params, x)
    heads = ml.causal_conv(params["conv"], state["conv"], xn).reshape(b, t, h, dh).transpose(0, 2, 1, 3)
    w = ml.from_start(state["started"], state["w"], params["w0"]) if learned_start else state["w"]
    mem = MemState(w, state["m"])
    y, mem = per_head(params["sm"], mem, heads, mask)
    return ml.merge_heads(params, y, xn), {**ml.carried(state, xn, mask), "w": mem.w, "m": mem.m}

  reason = (
    f"the chunk of the projection memories of model.mixer={cfg.mixer!r} (model.sm_chunk_proj={cfg.sm_chunk_proj})"
  )
  return Mixer(init_params, init_state, apply, step_multiple=s.chunk_proj, step_reason=reason)
