"""Recursive reasoning models on the engine: TRM and its building blocks.

| module | what |
|---|---|
| `stablemax` | stablemax cross-entropy (HRM/TRM's answer loss) |
| `adam_atan2` | AdamATan2, Adam with `atan2(m, b sqrt(v))`, as an optax rule |
| `sign_sgd` | sign-SGD with decoupled weight decay on the rows a step touched (puzzle embeddings) |
| `ema` | `with_ema(rule, rate)`: an average of the weights kept in the rule's state |
| `trm` | the Tiny Recursive Model: `TRMConfig`, `trm_learner`, `solve`, `rollout`, `single_pass` |

See docs/reasoning.md, "Recursive models".
"""

from contlearn.reasoning.adam_atan2 import adam_atan2
from contlearn.reasoning.ema import ema_params, with_ema
from contlearn.reasoning.sign_sgd import sign_sgd
from contlearn.reasoning.stablemax import log_stablemax, stablemax, stablemax_cross_entropy
from contlearn.reasoning.trm import TRMConfig, rollout, single_pass, solve, trm_learner

__all__ = [
  "TRMConfig",
  "adam_atan2",
  "ema_params",
  "log_stablemax",
  "rollout",
  "sign_sgd",
  "single_pass",
  "solve",
  "stablemax",
  "stablemax_cross_entropy",
  "trm_learner",
  "with_ema",
]
