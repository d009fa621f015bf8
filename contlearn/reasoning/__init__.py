"""Recursive reasoning models on the engine: TRM, HRM and their building blocks.

| module | what |
|---|---|
| `stablemax` | stablemax cross-entropy (HRM/TRM's answer loss) |
| `adam_atan2` | AdamATan2, Adam with `atan2(m, b sqrt(v))`, as an optax rule |
| `sign_sgd` | sign-SGD with decoupled weight decay on the rows a step touched (puzzle embeddings) |
| `ema` | `with_ema(rule, rate)`: an average of the weights kept in the rule's state |
| `segments` | one segment per engine step: the carry of the rows, its refill, halting, `segment_learner` |
| `network` | the network f: post-norm blocks mixing positions by an MLP or by attention with RoPE, then channels |
| `trm` | the Tiny Recursive Model: `TRMConfig`, `trm_learner`, `solve`, `rollout`, `single_pass` |
| `hrm` | the Hierarchical Reasoning Model: `HRMConfig`, `hrm_learner`, its `solve` as `hrm.solve` |

See docs/reasoning.md, "Recursive models".
"""

from contlearn.reasoning.adam_atan2 import adam_atan2
from contlearn.reasoning.ema import ema_params, with_ema
from contlearn.reasoning.hrm import HRMConfig, hrm_learner
from contlearn.reasoning.sign_sgd import sign_sgd
from contlearn.reasoning.stablemax import log_stablemax, stablemax, stablemax_cross_entropy
from contlearn.reasoning.trm import TRMConfig, rollout, single_pass, solve, trm_learner

__all__ = [
  "HRMConfig",
  "TRMConfig",
  "adam_atan2",
  "ema_params",
  "hrm_learner",
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
