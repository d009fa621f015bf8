"""A byte-level language model whose blocks carry memory across the stream.

    h = embed[tokens]
    for each layer:  h = h + mixer(h);  h = h + MLP(h)   (or the CMS chain)
    logits = rms(h) @ head

The model is a `Model` of pure functions; its state across steps (`memory`,
one mixer state per layer) is separate from its parameters, and
`level_labels` says which level of the learner owns each parameter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from contlearn.config import ModelConfig
from contlearn.models import cms, layers
from contlearn.models.mixer import build_mixer

OUTER = "outer"


class Model(NamedTuple):
  """A sequence model as pure functions.

  Attributes:
    init_params: key -> params.
    init_memory: batch -> memory, a pytree whose leaves lead with the batch.
    apply: (params, memory, tokens [B, T] int32, mask [B, T] bool)
      -> (logits [B, T, V] float32, memory).
    level_labels: params -> a pytree of the same structure whose leaves name
      the level that updates each parameter ("outer", "cms_0", ...).
    step_multiple, step_reason: the mixer's (`contlearn.models.Mixer`): steps
      of a stream must hold a multiple of `step_multiple` tokens.
  """

  init_params: Callable[[jax.Array], Any]
  init_memory: Callable[[int], Any]
  apply: Callable[..., tuple[jax.Array, Any]]
  level_labels: Callable[[Any], Any]
  step_multiple: int = 1
  step_reason: str = ""


def is_hidden_matrix(path, leaf) -> bool:
  """True for the weight matrices inside the blocks (not embedding, head or norms)."""
  top = getattr(path[0], "key", None) if path else None
  return top == "blocks" and getattr(leaf, "ndim", 0) == 2


def byte_lm(cfg: ModelConfig) -> Model:
  """The language model described by `cfg` (see the module docstring)."""
  mixer = build_mixer(cfg)
  cms.check_variant(cfg.cms_variant)
  d = cfg.d_model
  out_scale = 1.0 / cfg.n_layers
  n_cms = len(cfg.cms_periods)

  def init_params(key):
    k_embed, k_head, *k_layers = jax.random.split(key, 2 + cfg.n_layers)
    blocks = []
    for k in k_layers:
      k_mix, k_ff = jax.random.split(k)
      if n_cms:
        ff = cms.cms_init(k_ff, d, cfg.cms_hidden * d, n_cms, out_scale, cfg.cms_variant)
      else:
        ff = layers.mlp_init(k_ff, d, cfg.mlp_ratio * d, out_scale)
      blocks.append({"mixer": mixer.init_params(k_mix), "ff": ff})
    return {
      "embed": jax.random.normal(k_embed, (cfg.vocab, d), jnp.float32),
      "blocks": blocks,
      "final_norm": jnp.ones((d,), jnp.float32),
      "head": layers.dense_init(k_head, d, cfg.vocab),
    }

  def init_memory(batch):
    return [mixer.init_state(batch) for _ in range(cfg.n_layers)]

  def apply(params, memory, tokens, mask):
    h = params["embed"][tokens]
    new_memory = []
    for block, state in zip(params["blocks"], memory):
      y, state = mixer.apply(block["mixer"], state, h, mask)
      h = h + y
      if n_cms:
        h = cms.cms_apply(block["ff"], h, cfg.cms_variant)
      else:
        h = h + layers.mlp_apply(block["ff"], h)
      new_memory.append(state)
    logits = layers.rms_norm(h, params["final_norm"]) @ params["head"]
    return logits, new_memory

  def level_labels(params):
    labels = jax.tree.map(lambda _: OUTER, params)
    if n_cms:
      for block in labels["blocks"]:
        block["ff"] = [jax.tree.map(lambda _, i=i: cms.level_name(i), blk) for i, blk in enumerate(block["ff"])]
    return labels

  return Model(init_params, init_memory, apply, level_labels, mixer.step_multiple, mixer.step_reason)
