"""TTT layers (Sun et al. 2024) as memory mixers.

ttt_linear  f(x) = x + LN(x W + b)
ttt_mlp     f(x) = x + LN(gelu(x W1 + b1) W2 + b2), hidden `expansion` x
loss |f(W; k_t) - v_t|^2, mini-batch GD of 16 tokens (gradients at the
mini-batch start), learned W_0, per-token rate base * sigmoid(x w + b)
(base 1 for linear, 0.1 for MLP). Equations: `contlearn.memories.core`.
"""

from __future__ import annotations

import dataclasses

from contlearn.config import ModelConfig
from contlearn.memories.core import InnerModel, Rule, squared_loss
from contlearn.models.memory_layer import ChunkStartConfig, MemoryBlock, MlpMemoryConfig, memory_mixer
from contlearn.models.mixer import register_mixer


@dataclasses.dataclass(frozen=True)
class TTTLinearConfig(ChunkStartConfig):
  """TTT-Linear: `memory_layer`'s settings of a chunk-start memory (chunk 0: 16)."""


@dataclasses.dataclass(frozen=True)
class TTTMLPConfig(MlpMemoryConfig, ChunkStartConfig):
  """TTT-MLP: `memory_layer`'s settings of a chunk-start MLP memory (chunk 0: 16)."""


@register_mixer("ttt_linear", TTTLinearConfig)
def ttt_linear(cfg: TTTLinearConfig, model: ModelConfig):
  rule = Rule(InnerModel(depth=1, bias=True, ttt_norm=True), squared_loss)
  return memory_mixer(cfg, model, MemoryBlock(rule, lr="gate", chunk=16))


@register_mixer("ttt_mlp", TTTMLPConfig)
def ttt_mlp(cfg: TTTMLPConfig, model: ModelConfig):
  rule = Rule(InnerModel(depth=2, expansion=cfg.expansion, bias=True, ttt_norm=True), squared_loss)
  return memory_mixer(cfg, model, MemoryBlock(rule, lr="gate", lr_scale=0.1, chunk=16))
