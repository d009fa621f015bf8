"""The language-model comparison of nl_lm_comparison, scaled for a GPU or TPU.

Same 14 models at equal parameter count (8 layers, the Transformer at width
512, about 25M parameters), 64 lanes of 512 bytes, 100M tokens per model,
Adam 3e-3, one seed (`--set train.seeds=0,1,2` for three, at three times the
cost). Not run by the project on its CPU machine; the same code path as the small
configuration, which the tests exercise.

Command:   contlearn run nl_lm_comparison_large [--set data.source=tfds --set data.tfds_name=...]
Runtime:   not measured (no accelerator); expected cost: `python benchmarks/lm_gpu_cost.py` (docs/benchmarks.md).
"""

from contlearn.experiments import nl_lm_comparison


def get_config():
  return nl_lm_comparison.get_config(
    d_model=512, n_layers=8, n_heads=8, batch=64, seq=512, tokens=100_000_000, seeds=(), lr=3e-3
  )
