"""Needle in a haystack at the Titans paper's lengths (S-NIAH to 16K), for a GPU or TPU.

nl_niah's task at training length 4,096 bytes, evaluated at 4K, 8K and 16K
with the memory carried across segments of 4,096: 4-layer byte LMs at width
256, 4,000 steps of 32 sequences (about 0.5B tokens a seed), the training
haystacks growing over the first half of the steps (`curriculum` 0.5, with
which attention retrieves single needles within its window on the CPU at
256 bytes, see docs/nested_learning.md), 3 seeds as lanes. The models:
attention, Gated DeltaNet, Titans (LMM) and Hope as in nl_niah; `hope_ln`,
Hope's rule and heads with a LayerNorm inside each memory and the step of 4,
which leaves the floor at 256 bytes on the CPU where Hope at its own settings
does not (that step does not amplify at nl_niah's size; not re-measured at
this one); and the models behind the papers' S-NIAH numbers, Titans MAC and
Hope-Attention. Not run by the project on its CPU machine; the same code path as
nl_niah, which the tests exercise. Its expected cost: `python
benchmarks/lm_gpu_cost.py` (docs/benchmarks.md).

Command:   contlearn run nl_niah_long
Runtime:   not measured (no accelerator); see the cost estimate.
"""

import dataclasses

from contlearn.config import ModelConfig
from contlearn.experiments.nl_niah import NiahConfig, report, run  # noqa: F401  (the experiment's run and report)


def get_config() -> NiahConfig:
  return dataclasses.replace(
    NiahConfig(),
    models=("transformer", "gated_deltanet", "titans", "titans_mac", "hope", "hope_ln", "hope_attention"),
    curriculum=0.5,
    seeds=(0, 1, 2),
    length=4096,
    factors=(1, 2, 4),
    steps=4000,
    batch=32,
    block=100,
    checkpoint_every=2,
    base=ModelConfig(d_model=256, n_layers=4, n_heads=4),
  )
