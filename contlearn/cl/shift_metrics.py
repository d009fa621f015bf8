"""Forgetting and recovery on a stream that moves through domains, in held-out loss.

Notation: the stream has phases j = 0..P-1; `order[j]` is the domain trained
in phase j (a domain may come back). `L[j, i]` is the held-out loss (bits per
byte, lower is better) of domain i after phase j. A domain's own phase is
the first phase that trains it; it "returns" when a later phase trains it again.

  forgetting_i    max over the phases after its own one, up to its return
                  (or the end), of L[j, i] - L[own, i]; > 0 means it got worse
  final change_i  L[P-1, i] - L[own, i]
  recovery_i      for a domain that returns in phase r, with F = L[r-1, i] - L[own, i]:
                    fraction  (L[r-1, i] - L[r, i]) / F  (1: all forgetting undone;
                              None when F <= 0, nothing to undo)
                    tokens    tokens into phase r until the held-out loss is
                              within `within` of L[own, i] for the first time,
                              read off the evaluations during phase r (0 if it
                              was within at the start; None: not within the phase)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from contlearn.errors import ConfigError


def _check(losses: np.ndarray, order: Sequence[int]) -> np.ndarray:
  losses = np.asarray(losses, np.float64)
  if losses.ndim != 2 or losses.shape[0] != len(order):
    raise ConfigError(f"loss matrix must be [phases={len(order)}, domains], got shape {losses.shape}")
  if min(order) < 0 or max(order) >= losses.shape[1]:
    raise ConfigError(f"phase order {list(order)} names a domain outside 0..{losses.shape[1] - 1}")
  return losses


def own_phase(order: Sequence[int], domain: int) -> int | None:
  """The first phase that trains `domain`, or None."""
  return list(order).index(domain) if domain in order else None


def return_phase(order: Sequence[int], domain: int) -> int | None:
  """The second phase that trains `domain`, or None."""
  own = own_phase(order, domain)
  if own is None:
    return None
  later = [j for j in range(own + 1, len(order)) if order[j] == domain]
  return later[0] if later else None


def forgetting(losses: np.ndarray, order: Sequence[int]) -> list[float | None]:
  """Per domain: max of L[j, i] - L[own, i] over own < j < return (or the end); None if none."""
  losses = _check(losses, order)
  out = []
  for i in range(losses.shape[1]):
    own, back = own_phase(order, i), return_phase(order, i)
    stop = back if back is not None else len(order)
    if own is None or own + 1 >= stop:
      out.append(None)
    else:
      out.append(float(np.max(losses[own + 1 : stop, i]) - losses[own, i]))
  return out


def final_change(losses: np.ndarray, order: Sequence[int]) -> list[float | None]:
  """Per domain: L[last, i] - L[own, i]; None for an untrained domain or one trained last only."""
  losses = _check(losses, order)
  out = []
  for i in range(losses.shape[1]):
    own = own_phase(order, i)
    out.append(None if own is None or own == len(order) - 1 else float(losses[-1, i] - losses[own, i]))
  return out


def recovery(
  losses: np.ndarray,
  order: Sequence[int],
  trace: Sequence[tuple[int, int, Sequence[float]]],
  within: float,
) -> list[dict[str, Any] | None]:
  """Per domain that returns: how much of its forgetting its return undoes, and how fast.

  Args:
    losses: [phases, domains] held-out losses after each phase.
    order: the domain of each phase.
    trace: evaluations in stream order as (phase, tokens into that phase, losses per domain).
    within: the loss margin over L[own, i] that counts as recovered.
  """
  losses = _check(losses, order)
  out = []
  for i in range(losses.shape[1]):
    back = return_phase(order, i)
    if back is None:
      out.append(None)
      continue
    earlier, before, after = losses[own_phase(order, i), i], losses[back - 1, i], losses[back, i]
    forgot = before - earlier
    reached = [tokens for phase, tokens, values in trace if phase == back and values[i] <= earlier + within]
    if before <= earlier + within:  # never left the margin
      reached = [0]
    out.append(
      {
        "forgot": float(forgot),
        "fraction": float((before - after) / forgot) if forgot > 0 else None,
        "tokens": int(min(reached)) if reached else None,
        "within": within,
      }
    )
  return out
