"""The named memories as choices of the abstraction in `core`.

| memory          | architecture          | inner loss   | retention    | rule                    |
|-----------------|-----------------------|--------------|--------------|-------------------------|
| linear_attention| matrix                | dot          | none / head  | online, lr 1            |
| mamba2          | matrix                | dot          | data gate    | online, lr 1            |
| deltanet        | matrix                | half squared | none         | online, lr beta_t       |
| gated_deltanet  | matrix                | half squared | data gate    | online, lr beta_t       |
| ttt_linear      | x + LN(x W + b)       | squared      | none         | chunk-start GD, lr_t    |
| ttt_mlp         | x + LN(MLP_2(x))      | squared      | none         | chunk-start GD, lr_t    |
| titans          | x + LN(MLP_L(x))      | squared      | forget gate  | chunk-start GD+momentum |
| self_modifying  | x + MLP_2(x), offset  | half squared,| alpha_t      | chunk-start GD+momentum,|
|                 | (or x + LN(MLP_2(x))) | target M(v), |              | normalised              |
|                 |                       | + DGD        |              |                         |

Retention and rates are per-token inputs; which are fixed, per head or
data-dependent is decided by the layer (`contlearn.models.memory_layer`).
"""

from __future__ import annotations

from contlearn.memories.core import InnerModel, Rule, dot_loss, half_squared_loss, squared_loss

MATRIX = InnerModel(depth=1, bias=False)


def titans(depth: int = 2, expansion: int = 4, momentum: bool = True, layer_norm: bool = True) -> Rule:
  """Titans' neural memory: a GELU MLP of `depth` layers, `x + LN(MLP(x))`, with momentum unless `momentum` is
  False; without `layer_norm`, `x + MLP(x)`."""
  model = InnerModel(depth=depth, expansion=expansion, bias=False, ttt_norm=layer_norm, residual=not layer_norm)
  return Rule(model, squared_loss, momentum=momentum)


def self_modifying(
  expansion: int = 4,
  dgd: bool = True,
  momentum: bool = True,
  self_values: bool = True,
  decay_to_init: bool = True,
  normalized: bool = True,
  layer_norm: bool = False,
  self_values_grad: bool = True,
) -> Rule:
  """A memory of self-modifying Titans: `x + W_b gelu(W_a x)`, half squared loss.

  `dgd` adds delta gradient descent on `W_a`; `self_values` makes the target
  the memory's own `M(v)`; `decay_to_init` makes the weights an outer-learned
  offset plus the written state, so retention decays toward the offset
  (`contlearn.memories.self_modifying`); `normalized` divides each step by
  the memory's curvature bound (`core.step_size`); `layer_norm` makes the
  memory `x + LN(W_b gelu(W_a x))` with an outer-learned scale and bias, as
  Titans' (no curvature bound: refused with `normalized`); without
  `self_values_grad` the outer loop takes the self-generated targets as
  constants (`core.Rule.target_outer_grad`).
  """
  if layer_norm and normalized:
    raise ValueError("a self-modifying memory with a LayerNorm has no curvature bound: it needs normalized=False")
  model = InnerModel(depth=2, expansion=expansion, bias=False, ttt_norm=layer_norm, residual=True, offset=decay_to_init)
  return Rule(
    model,
    half_squared_loss,
    momentum=momentum,
    dgd=dgd,
    self_target=self_values,
    target_outer_grad=self_values_grad,
    normalized=normalized,
  )


RULES: dict[str, Rule] = {
  "linear_attention": Rule(MATRIX, dot_loss, online=True),
  "mamba2": Rule(MATRIX, dot_loss, online=True),
  "deltanet": Rule(MATRIX, half_squared_loss, online=True),
  "gated_deltanet": Rule(MATRIX, half_squared_loss, online=True),
  "ttt_linear": Rule(InnerModel(depth=1, bias=True, ttt_norm=True), squared_loss),
  "ttt_mlp": Rule(InnerModel(depth=2, expansion=4, bias=True, ttt_norm=True), squared_loss),
  "titans": titans(),
  "self_modifying": self_modifying(),
}
