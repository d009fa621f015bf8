"""Inner-loop memories: one abstraction, a recurrent reference, a fast form.

    rule = memories.RULES["gated_deltanet"]
    y, state = memories.reference(rule, outer, state, q, k, v, rates, mask, chunk)
    y, state = memories.chunked(rule, outer, state, q, k, v, rates, mask, chunk)

`core` holds the four choices and the token-by-token recurrence, `linear` the
WY form of online matrix memories, `dual` the chunk-start-gradient form of
dense-stack memories, `rules` the named instances, `self_modifying` the
self-modifying Titans (memories that generate keys, values and rates). Everything is per head:
`q, k [T, Dk]`, `v [T, Dv]`, rates and mask `[T]`; vmap over batch and heads.
A state is `MemState(w, m)`, each `{"w": [w_0 ...], "b": [b_0 ...]}`; a matrix
memory is `w_0 [Dk, Dv]`, read `y = q @ w_0` (the papers' `S [Dv, Dk]` is its
transpose). `outer` holds the inner LayerNorm (`ln_scale`, `ln_bias` [Dv]) of
TTT-style models, else `{}`.
"""

from __future__ import annotations

import functools

from contlearn.memories import dual, linear, pallas_linear, pallas_scan, self_modifying
from contlearn.memories.core import (
  InnerModel,
  MemState,
  Rates,
  Rule,
  dot_loss,
  half_squared_loss,
  reference,
  squared_loss,
)
from contlearn.memories.pallas_scan import KERNELS
from contlearn.memories.rules import RULES


def is_linear(rule: Rule) -> bool:
  """Whether the rule is a matrix memory with the WY form (online, dot/delta)."""
  m = rule.model
  matrix = m.depth == 1 and not (m.bias or m.ttt_norm or m.residual or m.offset)
  plain = not (rule.momentum or rule.dgd or rule.self_target)
  return rule.online and matrix and plain and rule.loss in (dot_loss, half_squared_loss)


def chunked(rule: Rule, outer, state: MemState, q, k, v, rates: Rates, mask, chunk: int, kernel: str = "xla"):
  """The fast form of `reference`: same arguments, same result.

  `kernel` chains the chunks: "xla" (a `lax.scan`: `linear.scan_chunks`,
  `dual.scan_chunks`) or "pallas" (one Pallas kernel per head:
  `pallas_linear.across_chunks`, `pallas_scan.scan` of `dual.one_chunk`).
  """
  if kernel not in KERNELS:
    raise ValueError(f"kernel={kernel!r}: choose one of {', '.join(KERNELS)}")
  pallas = kernel == "pallas"
  if is_linear(rule):
    w = state.w["w"][0]
    delta = rule.loss is half_squared_loss
    across = pallas_linear.across_chunks if pallas else linear.scan_chunks
    y, w = linear.chunked(w, q, k, v, rates.lr, rates.retain, mask, chunk, delta, across)
    return y, MemState({"w": [w], "b": state.w["b"]}, state.m)
  if rule.online:
    raise ValueError("an online rule needs a matrix memory with the dot or half squared loss")
  across = _dual_kernel if pallas else dual.scan_chunks
  return dual.chunked(rule, outer, state, q, k, v, rates, mask, chunk, across)


def _dual_kernel(rule: Rule, outer, state: MemState, xs):
  """`dual.scan_chunks` as a Pallas kernel (`pallas_scan`)."""
  return pallas_scan.scan(functools.partial(dual.one_chunk, rule), outer, state, xs)


__all__ = [
  "KERNELS",
  "RULES",
  "InnerModel",
  "MemState",
  "Rates",
  "Rule",
  "chunked",
  "dot_loss",
  "half_squared_loss",
  "is_linear",
  "reference",
  "self_modifying",
  "squared_loss",
]
