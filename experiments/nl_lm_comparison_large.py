"""The language-model comparison of nl_lm_comparison, scaled for a GPU or TPU.

Same 14 models at equal parameter count (8 layers, the Transformer at width
512, about 25M parameters), Adam 1e-3 and seeds 0, 1, 2 as lanes, as the
small configuration; 32 lanes of 512 bytes a step and 350M tokens per model
and seed (21,362 steps), so that the slowest CMS level of every model (period
1,024 in hope_cms_1_64_1024) updates 20 times and Hope's (256) 83 times: the
period rows are not structural nulls (tests/test_accelerator_configs.py).
Not run by the project on its CPU machine; the same code path as the small
configuration, which the tests exercise.

Data: the seeds read one stream of 350M bytes. The offline Shakespeare
holds 5.3M, so with the default source the run stops before training, in
one line; give it a corpus of 350M bytes or more (`data.path`, or a tfds
text set), or `--set data.repeat=true` to cycle through Shakespeare about
66 times (the planned compute, not the papers' data).

Command:   contlearn run nl_lm_comparison_large --set data.path=<a file or folder of 350M+ bytes>
           contlearn run nl_lm_comparison_large --set data.source=tfds --set data.tfds_name=<text set>
Runtime:   not measured (no accelerator); expected cost: `python benchmarks/lm_gpu_cost.py` (docs/benchmarks.md).
"""

from contlearn.experiments import nl_lm_comparison


def get_config():
  return nl_lm_comparison.get_config(
    d_model=512, n_layers=8, n_heads=8, batch=32, seq=512, tokens=350_000_000, seeds=(0, 1, 2), lr=1e-3
  )
