"""The Titans neural memory (Behrouz et al. 2025), alone and beside attention.

    M(x) = x + LN(MLP_L(x))                      L = depth >= 1 (GELU)
    S_t  = eta_t S_{t-1} - theta_t grad |M_{t'}(k_t) - v_t|^2   (surprise)
    M_t  = (1 - alpha_t) M_{t-1} + S_t                          (forget gate)
    y_t  = M_t(q_t)

with t' the start of the chunk of `chunk` tokens (64 by default) and
theta, eta, alpha sigmoids of the input per token and head. The fast form is
`contlearn.memories.dual`; the token recurrence is `contlearn.memories.core`.

Beside attention (`contlearn.models.attention`), whose N_p =
`model.mixer.persistent_tokens` learned keys and values p, seen by every query, are
Titans' persistent memory:

    titans_mag   o = SWA_p(x) * sigmoid(M(x))                memory as a gate
    titans_mal   h = x + M(x),  o = M(x) + SWA_p(h)          memory as a layer
    titans_mac   memory as context, segment by segment (below)

MAL is the paper's `o = SWA(M(x))` with a residual around each of its two
layers: with the block's own residual, `x + o = h + SWA_p(h)`.

MAC cuts the stream into segments S of `model.mixer.window` tokens (every step holds
whole segments) and, for each, with M_{t-1} the memory at the segment start:

    h   = M*_{t-1}(q_r),  q_r = l2norm(silu(rms(S) W_r))  a read, no write
    y   = Attn([p | h | S]) W_o    the query of S_i sees p, h_j and S_j, j <= i
    M_t = M_{t-1} written with y   the memory mixer over the segment's y,
    m   = its reads                m_i read after the write of token i
    o   = y * sigmoid(m)

The paper lets every query of the segment see all of h and reads o with the
memory after the whole segment. Here h_j, a read at token j's own query, sits
at position j like S_j, and m_i is read after token i: a query seeing h_{i+1}
or a memory written with y_{i+1} would see token i + 1, the next-token target.
The memory's chunks (`chunk`, by default the segment) divide the segment.

Settings (`model.mixer.FIELD`): `TitansConfig` (`memory_layer`'s settings of
a chunk-start MLP memory, and `depth`); the hybrids add the attention's
`window` (MAC: the segment) and `persistent_tokens`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from contlearn import memories
from contlearn.config import ModelConfig
from contlearn.errors import ConfigError
from contlearn.field_checks import require
from contlearn.models import attention, layers
from contlearn.models.memory_layer import ChunkStartConfig, MemoryBlock, MlpMemoryConfig, memory_mixer, read
from contlearn.models.mixer import Mixer, head_width, register_mixer


@dataclasses.dataclass(frozen=True)
class TitansConfig(MlpMemoryConfig, ChunkStartConfig):
  """Titans' neural memory: `memory_layer`'s settings of a chunk-start MLP memory.

  Attributes:
    depth: layers of the MLP memory (>= 1; 1: the paper's linear-memory
      ablation, `x + LN(x W)`).
    momentum: carry the surprise S across tokens (eta_t); False: S_t is the
      step's own gradient term (the paper's "w/o momentum").
    decay: the forget gate alpha_t; False: M_t = M_{t-1} + S_t (the
      paper's "w/o weight decay").
    layer_norm: the memory is `x + LN(MLP(x))`, its LayerNorm inside the
      inner loss; False: `x + MLP(x)` (not an ablation of the paper's).
  """

  depth: int = 2
  momentum: bool = True
  decay: bool = True
  layer_norm: bool = True

  def __post_init__(self):
    super().__post_init__()
    require(self, positive=("depth",))


@dataclasses.dataclass(frozen=True)
class TitansAttentionConfig(attention.SlidingWindowConfig, TitansConfig):
  """Titans' memory beside sliding-window attention with persistent tokens (the hybrids)."""


@dataclasses.dataclass(frozen=True)
class TitansMAGConfig(TitansAttentionConfig):
  """Memory as a gate."""


@dataclasses.dataclass(frozen=True)
class TitansMALConfig(TitansAttentionConfig):
  """Memory as a layer."""


@dataclasses.dataclass(frozen=True)
class TitansMACConfig(TitansAttentionConfig):
  """Memory as context.

  Attributes:
    window: the segment, in tokens: each step holds whole segments, and the
      memory's chunks divide it.
  """


def titans_block(cfg: TitansConfig) -> MemoryBlock:
  rule = memories.rules.titans(cfg.depth, cfg.expansion, momentum=cfg.momentum, layer_norm=cfg.layer_norm)
  return MemoryBlock(rule, lr="gate", retain="gate" if cfg.decay else "none")


@register_mixer("titans", TitansConfig)
def titans(cfg: TitansConfig, model: ModelConfig):
  return memory_mixer(cfg, model, titans_block(cfg))


def _with_attention(cfg: TitansAttentionConfig, model: ModelConfig, combine) -> Mixer:
  """Titans' memory beside sliding-window attention, joined by `combine`.

  `combine(mem, swa, params, state, x, mask) -> (y, mem_state, swa_state)`.
  State: {"mem": memory state, "swa": attention cache}.
  """
  mem = memory_mixer(cfg, model, titans_block(cfg))
  swa = attention.sliding_window_attention(cfg, model)

  def init_params(key):
    k1, k2 = jax.random.split(key)
    return {"mem": mem.init_params(k1), "swa": swa.init_params(k2)}

  def init_state(batch):
    return {"mem": mem.init_state(batch), "swa": swa.init_state(batch)}

  def apply(params, state, x, mask):
    y, s_mem, s_swa = combine(mem, swa, params, state, x, mask)
    return y, {"mem": s_mem, "swa": s_swa}

  return Mixer(init_params, init_state, apply, mem.step_multiple, mem.step_reason)


@register_mixer("titans_mag", TitansMAGConfig)
def titans_mag(cfg: TitansMAGConfig, model: ModelConfig):
  """Memory as a gate: `y = SWA_p(x) * sigmoid(M(x))`."""

  def combine(mem, swa, params, state, x, mask):
    m, s_mem = mem.apply(params["mem"], state["mem"], x, mask)
    a, s_swa = swa.apply(params["swa"], state["swa"], x, mask)
    return a * jax.nn.sigmoid(m), s_mem, s_swa

  return _with_attention(cfg, model, combine)


@register_mixer("titans_mal", TitansMALConfig)
def titans_mal(cfg: TitansMALConfig, model: ModelConfig):
  """Memory as a layer: `h = x + M(x)`, `y = M(x) + SWA_p(h)`."""

  def combine(mem, swa, params, state, x, mask):
    m, s_mem = mem.apply(params["mem"], state["mem"], x, mask)
    a, s_swa = swa.apply(params["swa"], state["swa"], x + m, mask)
    return m + a, s_mem, s_swa

  return _with_attention(cfg, model, combine)


@register_mixer("titans_mac", TitansMACConfig)
def titans_mac(cfg: TitansMACConfig, model: ModelConfig):
  """Memory as context, one segment of `cfg.window` tokens at a time (module docstring).

  Params: {"mem": the memory mixer's, "attn": attention's (norm, wqkv, wo,
  persistent), "wr": [D, D] the retrieval queries}. State: {"mem": the
  memory mixer's}; the attention needs no cache, as it stays in the segment.
  """
  d, h, seg = model.d_model, model.n_heads, cfg.window
  dh = head_width(model)
  block = titans_block(cfg)._replace(chunk=seg)
  if seg % (cfg.chunk or seg):
    raise ConfigError(
      f"model.mixer.window={seg} (the segment of titans_mac) must be a multiple of model.mixer.chunk={cfg.chunk}"
    )
  mem = memory_mixer(cfg, model, block)
  inner = block.rule.model

  def init_params(key):
    k1, k2, k3 = jax.random.split(key, 3)
    return {
      "mem": mem.init_params(k1),
      "attn": attention.init_params(k2, cfg, model),
      "wr": layers.dense_init(k3, d, d),
    }

  def init_state(batch):
    return {"mem": mem.init_state(batch)}

  def apply(params, state, x, mask):
    b, t, _ = x.shape
    if t % seg:
      raise ConfigError(
        f"titans_mac reads whole segments: {t} tokens per call is not a multiple of model.mixer.window={seg}"
      )
    n = t // seg
    pa = params["attn"]
    q, k, v = attention.project(pa, x, h)  # [B, T, H, Dh]
    q_r = layers.l2_normalize(jax.nn.silu(layers.rms_norm(x) @ params["wr"]).reshape(b, t, h, dh))
    segments = lambda a: jnp.moveaxis(a.reshape(b, n, seg, *a.shape[2:]), 1, 0)  # [N, B, seg, ...]
    pos = jnp.arange(seg)
    both = jnp.concatenate([pos, pos])

    def segment(mem_state, xs):
      q_s, k_s, v_s, r_s, m_s = xs
      retrieved = read(inner, params["mem"], mem_state, r_s.transpose(0, 2, 1, 3))  # [B, H, seg, Dh]
      _, k_h, v_h = attention.project(pa, retrieved.transpose(0, 2, 1, 3).reshape(b, seg, d), h)
      keys, values = jnp.concatenate([k_h, k_s], axis=1), jnp.concatenate([v_h, v_s], axis=1)
      valid = jnp.concatenate([m_s, m_s], axis=1)
      y = attention.attend(q_s, keys, values, pos, both, valid, seg, attention.persistent(pa))
      y = y.reshape(b, seg, d) @ pa["wo"]
      m, mem_state = mem.apply(params["mem"], mem_state, y, m_s)
      return mem_state, y * jax.nn.sigmoid(m)

    s_mem, out = jax.lax.scan(segment, state["mem"], tuple(segments(a) for a in (q, k, v, q_r, mask)))
    return jnp.moveaxis(out, 0, 1).reshape(b, t, d), {"mem": s_mem}

  reason = f"the segment of model.mixer={cfg.name!r} (model.mixer.window={seg})"
  return Mixer(init_params, init_state, apply, step_multiple=seg, step_reason=reason)
