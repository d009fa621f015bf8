"""TTT layers (Sun et al. 2024) as memory mixers.

ttt_linear  f(x) = x + LN(x W + b)
ttt_mlp     f(x) = x + LN(gelu(x W1 + b1) W2 + b2), hidden `expansion` x
mini-batch GD of 16 tokens (gradients at the mini-batch start), learned W_0,
per-token rate base * sigmoid(x w + b) (base 1 for linear, 0.1 for MLP).

`inner_step` chooses the step:

  "paper"     the paper's equations: loss |f(W; k_t) - v_t|^2, and token t
              reads W_0 - sum_{i<=t} lr_i g_i (`contlearn.memories.core`)
  "official"  ttt-lm-jax's code: loss |f(W; k_t) - v_t|^2 / 2, rate divided
              by the head width, and token t reads
              W_0 - (1/t) sum_{i<=t} lr_i g_i (`ttt_official`)

docs/memories.md compares them.
"""

from __future__ import annotations

import dataclasses

from contlearn.config import ModelConfig
from contlearn.errors import ConfigError
from contlearn.field_checks import require
from contlearn.memories.core import InnerModel, Rule, half_squared_loss, squared_loss
from contlearn.models import ttt_official
from contlearn.models.memory_layer import ChunkStartConfig, MemoryBlock, MlpMemoryConfig, memory_mixer
from contlearn.models.mixer import head_width, register_mixer

INNER_STEPS = ("paper", "official")


@dataclasses.dataclass(frozen=True)
class TTTConfig(ChunkStartConfig):
  """A TTT layer: `memory_layer`'s settings of a chunk-start memory (chunk 0: 16) and its inner step.

  Attributes:
    inner_step: "paper" (the paper's equations: squared loss, the summed
      mini-batch gradient) or "official" (ttt-lm-jax's code: half the
      squared loss, the rate divided by the head width, token t of a
      mini-batch reading the memory stepped by 1/t times the sum; needs
      step="token"). See the module docstring.
  """

  inner_step: str = "paper"

  def __post_init__(self):
    super().__post_init__()
    require(self, choices={"inner_step": INNER_STEPS})


@dataclasses.dataclass(frozen=True)
class TTTLinearConfig(TTTConfig):
  """TTT-Linear: `TTTConfig`'s settings."""


@dataclasses.dataclass(frozen=True)
class TTTMLPConfig(MlpMemoryConfig, TTTConfig):
  """TTT-MLP: `TTTConfig`'s settings and the MLP's expansion."""


def ttt_block(cfg: TTTConfig, model: ModelConfig, inner: InnerModel, base: float) -> MemoryBlock:
  """The memory block of a TTT layer with inner model `inner` and rate `base * sigmoid(.)`, as `cfg.inner_step` says."""
  if cfg.inner_step == "paper":
    return MemoryBlock(Rule(inner, squared_loss), lr="gate", lr_scale=base, chunk=16)
  if cfg.step != "token":
    raise ConfigError(f"model.mixer.inner_step=official: needs model.mixer.step=token, got {cfg.step}")
  rule = Rule(inner, half_squared_loss)
  return MemoryBlock(rule, lr="gate", lr_scale=base / head_width(model), chunk=16, form=ttt_official.chunked)


@register_mixer("ttt_linear", TTTLinearConfig)
def ttt_linear(cfg: TTTLinearConfig, model: ModelConfig):
  return memory_mixer(cfg, model, ttt_block(cfg, model, InnerModel(depth=1, bias=True, ttt_norm=True), 1.0))


@register_mixer("ttt_mlp", TTTMLPConfig)
def ttt_mlp(cfg: TTTMLPConfig, model: ModelConfig):
  inner = InnerModel(depth=2, expansion=cfg.expansion, bias=True, ttt_norm=True)
  return memory_mixer(cfg, model, ttt_block(cfg, model, inner, 0.1))
