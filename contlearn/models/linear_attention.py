"""Linear memory mixers, registered by name (equations in `contlearn.memories`).

    linear_attention  W_t = a W_{t-1} + k v^T; a = 1 (`decay="none"`) or
                      fixed per head, RetNet-style (`decay="multiscale"`)
    mamba2            W_t = a_t W_{t-1} + k v^T, a_t data-dependent
    deltanet          W_t = (I - b_t k k^T) W_{t-1} + b_t k v^T
    gated_deltanet    W_t = a_t (I - b_t k k^T) W_{t-1} + b_t k v^T

Each is `memory_layer.memory_mixer` with a rule and how its rates are made;
its settings are `memory_layer`'s (`LinearMemoryConfig`, with `kernel`; b_t
is a gated rate: `lr_init`).
"""

from __future__ import annotations

import dataclasses

from contlearn import memories
from contlearn.config import ModelConfig
from contlearn.field_checks import require
from contlearn.models.memory_layer import GatedRateConfig, LinearMemoryConfig, MemoryBlock, memory_mixer
from contlearn.models.mixer import register_mixer

R = memories.RULES


@dataclasses.dataclass(frozen=True)
class LinearAttentionConfig(LinearMemoryConfig):
  """Linear attention.

  Attributes:
    decay: the memory's decay per head: "none" (a plain sum) or
      "multiscale" (half-lives spread geometrically over heads, RetNet).
  """

  decay: str = "multiscale"

  def __post_init__(self):
    super().__post_init__()
    require(self, choices={"decay": ("none", "multiscale")})


@dataclasses.dataclass(frozen=True)
class Mamba2Config(LinearMemoryConfig):
  """Mamba2's data-dependent decay: `memory_layer`'s settings."""


@dataclasses.dataclass(frozen=True)
class DeltaNetConfig(LinearMemoryConfig, GatedRateConfig):
  """DeltaNet: `memory_layer`'s settings with its gated rate beta."""


@dataclasses.dataclass(frozen=True)
class GatedDeltaNetConfig(LinearMemoryConfig, GatedRateConfig):
  """Gated DeltaNet: `memory_layer`'s settings with its gated rate beta."""


@register_mixer("linear_attention", LinearAttentionConfig)
def linear_attention(cfg: LinearAttentionConfig, model: ModelConfig):
  return memory_mixer(cfg, model, MemoryBlock(R["linear_attention"], retain=cfg.decay))


@register_mixer("mamba2", Mamba2Config)
def mamba2(cfg: Mamba2Config, model: ModelConfig):
  return memory_mixer(cfg, model, MemoryBlock(R["mamba2"], retain="gate"))


@register_mixer("deltanet", DeltaNetConfig)
def deltanet(cfg: DeltaNetConfig, model: ModelConfig):
  return memory_mixer(cfg, model, MemoryBlock(R["deltanet"], lr="gate"))


@register_mixer("gated_deltanet", GatedDeltaNetConfig)
def gated_deltanet(cfg: GatedDeltaNetConfig, model: ModelConfig):
  return memory_mixer(cfg, model, MemoryBlock(R["gated_deltanet"], lr="gate", retain="gate"))
