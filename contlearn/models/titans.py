"""The Titans neural memory (Behrouz et al. 2025) as a memory mixer.

    M(x) = x + LN(MLP_L(x))                      L = mem_depth >= 1 (GELU)
    S_t  = eta_t S_{t-1} - theta_t grad |M_{t'}(k_t) - v_t|^2   (surprise)
    M_t  = (1 - alpha_t) M_{t-1} + S_t                          (forget gate)
    y_t  = M_t(q_t)

with t' the start of the chunk of `mem_chunk` tokens (64 by default) and
theta, eta, alpha sigmoids of the input per token and head. The fast form is
`contlearn.memories.dual`; the token recurrence is `contlearn.memories.core`.
"""

from __future__ import annotations

from contlearn import memories
from contlearn.config import ModelConfig
from contlearn.errors import ConfigError
from contlearn.models.memory_layer import MemoryBlock, memory_mixer
from contlearn.models.mixer import register_mixer


def titans_block(cfg: ModelConfig) -> MemoryBlock:
  if cfg.mem_depth < 1:
    raise ConfigError(f"model.mem_depth={cfg.mem_depth} must be >= 1")
  rule = memories.rules.titans(cfg.mem_depth, cfg.mem_expansion)
  return MemoryBlock(rule, lr="gate", retain="gate")


@register_mixer("titans")
def titans(cfg: ModelConfig):
  return memory_mixer(cfg, titans_block(cfg))
