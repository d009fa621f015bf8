"""Linear memory mixers, registered by name (equations in `contlearn.memories`).

    linear_attention  W_t = a W_{t-1} + k v^T; a = 1 (`decay="none"`) or
                      fixed per head, RetNet-style (`decay="multiscale"`)
    mamba2            W_t = a_t W_{t-1} + k v^T, a_t data-dependent
    deltanet          W_t = (I - b_t k k^T) W_{t-1} + b_t k v^T
    gated_deltanet    W_t = a_t (I - b_t k k^T) W_{t-1} + b_t k v^T

Each is `memory_layer.memory_mixer` with a rule and how its rates are made.
"""

from __future__ import annotations

from contlearn import memories
from contlearn.config import ModelConfig
from contlearn.errors import ConfigError
from contlearn.models.memory_layer import MemoryBlock, memory_mixer
from contlearn.models.mixer import register_mixer

R = memories.RULES


@register_mixer("linear_attention")
def linear_attention(cfg: ModelConfig):
  if cfg.decay not in ("none", "multiscale"):
    raise ConfigError(f"model.decay={cfg.decay!r}: choose 'none' or 'multiscale'")
  retain = "none" if cfg.decay == "none" else "multiscale"
  return memory_mixer(cfg, MemoryBlock(R["linear_attention"], retain=retain))


@register_mixer("mamba2")
def mamba2(cfg: ModelConfig):
  return memory_mixer(cfg, MemoryBlock(R["mamba2"], retain="gate"))


@register_mixer("deltanet")
def deltanet(cfg: ModelConfig):
  return memory_mixer(cfg, MemoryBlock(R["deltanet"], lr="gate"))


@register_mixer("gated_deltanet")
def gated_deltanet(cfg: ModelConfig):
  return memory_mixer(cfg, MemoryBlock(R["gated_deltanet"], lr="gate", retain="gate"))
