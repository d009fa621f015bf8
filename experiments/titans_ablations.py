"""Titans' ablations at byte-LM scale: the memory alone and without each part, and beside attention.

The rows of the Titans paper's Table 5 that contlearn can run, each a
2-layer byte LM learning online from the same Shakespeare stream
(prequential), at the width whose parameter count is closest to the
Transformer's at width 128 (`nl_lm_comparison.equal_size`), 3 seeds as the
lanes of one program per model, Adam 1e-3 for every model (at 3e-3,
nl_lm_comparison's rate before 726c323, the memory alone (seed 0) diverged within 200 steps;
docs/memories.md):

  titans_lmm          the neural memory alone: a 2-layer MLP memory, momentum, forget gate, conv 4
  titans_linear       the memory a linear map (depth 1)
  titans_no_momentum  no surprise momentum (eta = 0)
  titans_no_decay     no forget gate (alpha = 0)
  titans_no_conv      no short convolution on the memory's inputs
  titans_mac          memory as context (segments of 64, 4 persistent tokens)
  titans_mag          memory as a gate beside sliding-window attention (4 persistent tokens)
  titans_mal          memory as a layer before sliding-window attention (4 persistent tokens)

Command:   contlearn run titans_ablations
           contlearn run titans_ablations --only titans_lmm,titans_no_decay --set train.seeds=0,1,2,3,4
Runtime:   about 6 minutes on 2 idle CPU cores (8 models, 6 min 2 s at c349e50); results in docs/memories.md.
Outputs:   OUT/<model>/ (metrics.jsonl with each seed's loss, summary.json with each seed's bits per byte
           and their mean and standard deviation, checkpoints/), OUT/bits_per_byte.png.
"""

from contlearn.config import Config
from contlearn.experiments.nl_lm_comparison import mixer_comparison
from contlearn.models.titans import TitansConfig, TitansMACConfig, TitansMAGConfig, TitansMALConfig

MIXERS = {
  "titans_lmm": TitansConfig(),
  "titans_linear": TitansConfig(depth=1),
  "titans_no_momentum": TitansConfig(momentum=False),
  "titans_no_decay": TitansConfig(decay=False),
  "titans_no_conv": TitansConfig(conv=1),
  "titans_mac": TitansMACConfig(persistent_tokens=4),
  "titans_mag": TitansMAGConfig(persistent_tokens=4),
  "titans_mal": TitansMALConfig(persistent_tokens=4),
}


def get_config(tokens: int = 131_072) -> dict[str, Config]:
  return mixer_comparison(MIXERS, tokens)
