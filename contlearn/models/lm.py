"""A byte-level language model whose blocks carry memory across the stream.

    h = embed[tokens]
    for each layer:  h = h + mixer(h);  h = h + MLP(h)   (or the CMS chain)
    logits = rms(h) @ head

The model is a `Model` of pure functions; its state across steps (`memory`,
one mixer state per layer) is separate from its parameters, and
`level_labels` says which level of the learner owns each parameter.

Precision, rematerialisation and layer scan follow `ModelConfig`:
`param_dtype` is the dtype `init_params` stores, `compute_dtype` the one
`apply` casts the weights to (the logits are float32 whatever it is, and
each layer's memory keeps the dtypes of `init_memory`); `remat` wraps each
block in `jax.checkpoint`; `scan_layers` stacks the blocks' parameters
(`stack_blocks`) and runs them with `lax.scan`.
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
  """True for the weight matrices inside the blocks (not embedding, head or norms).

  Blocks stacked by `model.scan_layers` hold [L, ...] leaves, none of them 2-D: an
  orthogonalising optimizer is refused then (`learner.build_learner`)."""
  top = getattr(path[0], "key", None) if path else None
  return top == "blocks" and getattr(leaf, "ndim", 0) == 2


def stack_blocks(params: Any) -> Any:
  """Params with `"blocks"` a list of L blocks -> one block whose leaves lead with [L] (`scan_layers`'s layout)."""
  return {**params, "blocks": jax.tree.map(lambda *layer: jnp.stack(layer), *params["blocks"])}


def unstack_blocks(params: Any) -> Any:
  """The inverse of `stack_blocks`: `"blocks"` as a list of L blocks."""
  n_layers = jax.tree.leaves(params["blocks"])[0].shape[0]
  return {**params, "blocks": [jax.tree.map(lambda a, i=i: a[i], params["blocks"]) for i in range(n_layers)]}


def checkpointed(fn: Callable, remat: str, in_scan: bool = False) -> Callable:
  """`fn` as `ModelConfig.remat` says: itself ("none"), `jax.checkpoint` ("block") or with the named policy.

  `in_scan`: `fn` is a `lax.scan` body, which needs no protection from common-subexpression elimination."""
  if remat == "none":
    return fn
  policy = None if remat == "block" else getattr(jax.checkpoint_policies, remat)
  return jax.checkpoint(fn, policy=policy, prevent_cse=not in_scan)


def byte_lm(cfg: ModelConfig) -> Model:
  """The language model described by `cfg` (see the module docstring)."""
  mixer = build_mixer(cfg)
  cms.check_variant(cfg.cms_variant)
  d = cfg.d_model
  out_scale = 1.0 / cfg.n_layers
  n_cms = len(cfg.cms_periods)
  compute = jnp.dtype(cfg.compute_dtype)

  def in_compute_dtype(a):
    """A weight in the compute dtype; "float32" means at least float32 (float64 weights, under x64, stay)."""
    if not jnp.issubdtype(a.dtype, jnp.floating):
      return a
    return a.astype(layers.wide(a.dtype) if compute == jnp.float32 else compute)

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
    params = {
      "embed": jax.random.normal(k_embed, (cfg.vocab, d), jnp.float32),
      "blocks": blocks,
      "final_norm": jnp.ones((d,), jnp.float32),
      "head": layers.dense_init(k_head, d, cfg.vocab),
    }
    return layers.cast_floats(stack_blocks(params) if cfg.scan_layers else params, jnp.dtype(cfg.param_dtype))

  def init_memory(batch):
    return [mixer.init_state(batch) for _ in range(cfg.n_layers)]

  def block_apply(block, state, h, mask):
    """One block: `h [B, T, D]` and the layer's memory -> the next `h` and memory (in the dtypes of `state`)."""
    y, new_state = mixer.apply(block["mixer"], state, h, mask)
    new_state = jax.tree.map(lambda new, old: new.astype(old.dtype), new_state, state)
    h = h + y.astype(h.dtype)
    if n_cms:
      return cms.cms_apply(block["ff"], h, cfg.cms_variant), new_state
    return h + layers.mlp_apply(block["ff"], h), new_state

  block_apply = checkpointed(block_apply, cfg.remat, in_scan=cfg.scan_layers)

  def apply(params, memory, tokens, mask):
    params = jax.tree.map(in_compute_dtype, params)
    h = params["embed"][tokens]
    if cfg.scan_layers:
      layer_step = lambda h, layer: block_apply(*layer, h, mask)  # (block, state) -> (h, state)
      stacked = jax.tree.map(lambda *layer: jnp.stack(layer), *memory)
      h, stacked = jax.lax.scan(layer_step, h, (params["blocks"], stacked))
      new_memory = [jax.tree.map(lambda a, i=i: a[i], stacked) for i in range(cfg.n_layers)]
    else:
      new_memory = []
      for block, state in zip(params["blocks"], memory):
        h, state = block_apply(block, state, h, mask)
        new_memory.append(state)
    normed = layers.rms_norm(h, params["final_norm"])
    logits = jnp.matmul(normed, params["head"], preferred_element_type=layers.wide(normed.dtype))
    return logits, new_memory

  def level_labels(params):
    labels = jax.tree.map(lambda _: OUTER, params)
    if n_cms:
      for block in [labels["blocks"]] if cfg.scan_layers else labels["blocks"]:
        block["ff"] = [jax.tree.map(lambda _, i=i: cms.level_name(i), blk) for i, blk in enumerate(block["ff"])]
    return labels

  return Model(init_params, init_memory, apply, level_labels, mixer.step_multiple, mixer.step_reason)
