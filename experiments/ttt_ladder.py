"""The TTT ladder at byte-LM scale: linear attention, Mamba2-style decay, DeltaNet, TTT-Linear, TTT-MLP, a Transformer.

The rungs of the TTT paper's Table 1 that contlearn has as mixers, each a
2-layer byte LM learning online from the same Shakespeare stream
(prequential), at the width whose parameter count is closest to the
Transformer's at width 128 (`nl_lm_comparison.equal_size`), 3 seeds as the
lanes of one program per model, Adam 1e-3 for every model (at 3e-3,
nl_lm_comparison's rate before 726c323, DeltaNet's third seed diverged within 200 steps,
and at 1e-3 too: a float32 fault of the delta rule's chunk form, fixed
since, docs/memories.md):

  transformer          sliding-window attention (window 64, cache carried)
  linear_attention     M_t = a M_{t-1} + v k^T, a fixed per head (the mixer's default decay, RetNet's
                       multiscale; `--set model.mixer.decay=none` for the plain sum)
  mamba2               M_t = a_t M_{t-1} + v k^T, a_t a gate of the input
  deltanet             the delta rule, M_t = M_{t-1}(I - b_t k k^T) + b_t v k^T
  ttt_linear           TTT-Linear, mini-batches of 16, the paper's summed gradient
  ttt_linear_official  TTT-Linear with the official code's inner step (1/t-weighted, rate / head width)
  ttt_mlp              TTT-MLP (4x GELU MLP memory), mini-batches of 16

Command:   contlearn run ttt_ladder
           contlearn run ttt_ladder --set train.seeds=0,1,2,3,4 --tokens 500000
Runtime:   about 4 minutes on 2 idle CPU cores (7 models, 3 min 47 s at acaf7a3); results in docs/memories.md.
Outputs:   OUT/<model>/ (metrics.jsonl with each seed's loss, summary.json with each seed's bits per byte
           and their mean and standard deviation, checkpoints/), OUT/bits_per_byte.png.
"""

from contlearn.config import Config
from contlearn.experiments.nl_lm_comparison import mixer_comparison
from contlearn.models.ttt import TTTLinearConfig

MIXERS = {
  "transformer": "swa",
  "linear_attention": "linear_attention",
  "mamba2": "mamba2",
  "deltanet": "deltanet",
  "ttt_linear": "ttt_linear",
  "ttt_linear_official": TTTLinearConfig(inner_step="official"),
  "ttt_mlp": "ttt_mlp",
}


def get_config(tokens: int = 131_072) -> dict[str, Config]:
  return mixer_comparison(MIXERS, tokens)
