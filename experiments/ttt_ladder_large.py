"""The TTT ladder of ttt_ladder at the TTT paper's smallest scale, for a GPU or TPU.

The same rungs (`ttt_ladder.MIXERS`) as 12-layer byte LMs at width 768 with
12 heads (about 85M parameters; the paper's 125M counts a 50k-token
vocabulary's embeddings, which bytes do not have), attention over the whole
context of 2,048 bytes, 256 lanes of 2,048 bytes per step (0.5M tokens) for
2.4B tokens (4,800 steps, the paper's 125M recipe in steps and tokens), seeds
0, 1 and 2 as lanes (`--set train.seeds=0` for one, at a third of the cost,
whose rows are a pilot, not a ranking). Not run by the project on its CPU
machine; the same code path as ttt_ladder, which the tests exercise. Its
expected cost: `python benchmarks/lm_gpu_cost.py` (docs/benchmarks.md).

Data: 2.4B bytes per model (every seed reads the same bytes). The offline
Shakespeare holds 5.3M, so with the default source the run stops before
training, in one line; give it a corpus of 2.4B bytes or more (`data.path`,
or a tfds text set), or `--set data.repeat=true` to cycle through what it
has.

Command:   contlearn run ttt_ladder_large --set data.path=<a file or folder of 2.4B+ bytes>
           contlearn run ttt_ladder_large --set data.source=tfds --set data.tfds_name=<text set>
Runtime:   not measured (no accelerator); see the cost estimate.
"""

import dataclasses

from contlearn.config import Config, ModelConfig
from contlearn.experiments.nl_lm_comparison import equal_size
from contlearn.experiments.ttt_ladder import MIXERS
from contlearn.models.attention import SlidingWindowConfig


def get_config() -> dict[str, Config]:
  full = SlidingWindowConfig(window=2048)  # attention over the whole context
  base = ModelConfig(d_model=768, n_layers=12, n_heads=12, mixer=full)
  rungs = {name: dataclasses.replace(base, mixer=full if mixer == "swa" else mixer) for name, mixer in MIXERS.items()}
  return equal_size(rungs, base, batch=256, seq=2048, tokens=2_400_000_000, seeds=(0, 1, 2))
