"""The Titans neural memory (Behrouz et al. 2025) as a memory mixer.

    M(x) = x + LN(MLP_L(x))                      L = mem_depth >= 1 (GELU)
    S_t  = eta_t S_{t-1} - theta_t grad |M_{t'}(k_t) - v_t|^2   (surprise)
    M_t  = (1 - alpha_t) M_{t-1} + S_t                          (forget gate)
    y_t  = M_t(q_t)

with t' the start of the chunk of `mem_chunk` tokens (64 by default) and
theta, eta, alpha sigmoids of the input per token and head. The fast form is
`contlearn.memories.dual`; the token recurrence is `contlearn.memories.core`.

Beside attention (Titans' variants, without persistent tokens so far):

    titans_mag   y = SWA(x) * sigmoid(M(x))          memory as a gate
    titans_mal   y = M(x) + SWA(x + M(x))            memory as a layer
"""

from __future__ import annotations

import jax

from contlearn import memories
from contlearn.config import ModelConfig
from contlearn.errors import ConfigError
from contlearn.models import attention
from contlearn.models.memory_layer import MemoryBlock, memory_mixer
from contlearn.models.mixer import Mixer, register_mixer


def titans_block(cfg: ModelConfig) -> MemoryBlock:
  if cfg.mem_depth < 1:
    raise ConfigError(f"model.mem_depth={cfg.mem_depth} must be >= 1")
  rule = memories.rules.titans(cfg.mem_depth, cfg.mem_expansion)
  return MemoryBlock(rule, lr="gate", retain="gate")


@register_mixer("titans")
def titans(cfg: ModelConfig):
  return memory_mixer(cfg, titans_block(cfg))


def _with_attention(cfg: ModelConfig, combine) -> Mixer:
  """Titans' memory beside sliding-window attention, joined by `combine`.

  `combine(mem, swa, params, state, x, mask) -> (y, mem_state, swa_state)`.
  State: {"mem": memory state, "swa": attention cache}.
  """
  mem = memory_mixer(cfg, titans_block(cfg))
  swa = attention.sliding_window_attention(cfg)

  def init_params(key):
    k1, k2 = jax.random.split(key)
    return {"mem": mem.init_params(k1), "swa": swa.init_params(k2)}

  def init_state(batch):
    return {"mem": mem.init_state(batch), "swa": swa.init_state(batch)}

  def apply(params, state, x, mask):
    y, s_mem, s_swa = combine(mem, swa, params, state, x, mask)
    return y, {"mem": s_mem, "swa": s_swa}

  return Mixer(init_params, init_state, apply)


@register_mixer("titans_mag")
def titans_mag(cfg: ModelConfig):
  """Memory as a gate: `y = SWA(x) * sigmoid(M(x))`."""

  def combine(mem, swa, params, state, x, mask):
    m, s_mem = mem.apply(params["mem"], state["mem"], x, mask)
    a, s_swa = swa.apply(params["swa"], state["swa"], x, mask)
    return a * jax.nn.sigmoid(m), s_mem, s_swa

  return _with_attention(cfg, combine)


@register_mixer("titans_mal")
def titans_mal(cfg: ModelConfig):
  """Memory as a layer: `h = x + M(x)`, `y = M(x) + SWA(h)`."""

  def combine(mem, swa, params, state, x, mask):
    m, s_mem = mem.apply(params["mem"], state["mem"], x, mask)
    a, s_swa = swa.apply(params["swa"], state["swa"], x + m, mask)
    return m + a, s_mem, s_swa

  return _with_attention(cfg, combine)
