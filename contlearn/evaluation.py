"""Scoring without learning: a model reads text with fixed parameters from a fresh memory.

    tokens [steps, B, seq + 1] --(model.apply, step by step, memory carried)--> nll, hit [steps, B, seq]

A step's inputs are `tokens[s, :, :-1]` and its targets `tokens[s, :, 1:]`,
the layout of a stream chunk, so held-out text is scored exactly as the
stream is read in training, only with no update. `segments` cuts one long
sequence per lane into that layout.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from contlearn.models.lm import Model


class Scores(NamedTuple):
  nll: jax.Array  # [steps, B, seq] float32, next-token negative log-likelihood (nats); 0 where masked
  hit: jax.Array  # [steps, B, seq] bool, the argmax prediction is the target; False where masked


def score(model: Model, params, tokens: jax.Array, mask: jax.Array) -> Scores:
  """Per-target scores of `tokens [steps, B, seq + 1]` (`mask [steps, B, seq]`), from `model.init_memory`."""

  def step(memory, batch):
    toks, m = batch
    logits, memory = model.apply(params, memory, toks[:, :-1], m)
    target = toks[:, 1:]
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, target)
    hit = jnp.argmax(logits, axis=-1) == target
    return memory, Scores(jnp.where(m, nll, 0.0), hit & m)

  _, scores = jax.lax.scan(step, model.init_memory(tokens.shape[1]), (tokens, mask))
  return scores


def segments(tokens: np.ndarray, seq: int) -> np.ndarray:
  """`tokens [B, n * seq + 1]` as `[n, B, seq + 1]`: step s reads `tokens[:, s*seq : (s+1)*seq + 1]`."""
  b, total = tokens.shape
  n, rest = divmod(total - 1, seq)
  if rest or n < 1:
    raise ValueError(f"a sequence of {total} tokens is not n * {seq} + 1")
  index = np.arange(n)[:, None] * seq + np.arange(seq + 1)[None, :]  # [n, seq + 1]
  return np.transpose(tokens[:, index], (1, 0, 2))
